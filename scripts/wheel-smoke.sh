#!/usr/bin/env bash
# Build smartrec's sdist and wheel, check what they contain, install the wheel (not editable)
# into a fresh virtual environment outside the source tree, and run scripts/wheel_smoke.py
# against that install: server, ingest, training (the default pipeline included), serving.
#
#   bash scripts/wheel-smoke.sh        # or: make wheel-smoke (make test runs it after pytest)
#
# SMOKE_PYTHON: the Python that builds (default .venv/bin/python, which has `build` from the
# dev extras); the fresh environment uses the same interpreter. SMOKE_KEEP=1 keeps the temporary
# directory. Everything happens under one mktemp directory, removed at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${SMOKE_PYTHON:-$ROOT/.venv/bin/python}"
# The installed package must be the only smartrec the smoke test can import.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONSAFEPATH VIRTUAL_ENV

fail() {
  echo "wheel-smoke: FAILED: $*" >&2
  exit 1
}

[[ -x "$PY" ]] || fail "no Python at $PY (run 'make test' or 'make wheel-smoke', or set SMOKE_PYTHON)"
"$PY" -c "import build" 2>/dev/null ||
  fail "$PY has no 'build' module: pip install -e '.[dev]' (the dev extras have build>=1.2)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/smartrec-wheel-XXXXXX")"
WORK="$(cd "$WORK" && pwd -P)"
cleanup() {
  if [[ "${SMOKE_KEEP:-0}" == 1 ]]; then
    echo "wheel-smoke: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
case "$WORK/" in
  "$(cd "$ROOT" && pwd -P)"/*) fail "the temporary directory $WORK is inside the source tree" ;;
esac
started=$SECONDS

# ---------------------------------------------------------------- build (the wheel from the sdist)
echo "wheel-smoke: building the sdist and the wheel into $WORK/dist"
if ! "$PY" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1; then
  tail -n 40 "$WORK/build.log" >&2
  fail "python -m build failed (log above)"
fi
shopt -s nullglob
wheels=("$WORK"/dist/smartrec-*.whl)
sdists=("$WORK"/dist/smartrec-*.tar.gz)
shopt -u nullglob
[[ ${#wheels[@]} == 1 && ${#sdists[@]} == 1 ]] || fail "expected one wheel and one sdist in $WORK/dist"
WHEEL="${wheels[0]}"
SDIST="${sdists[0]}"
echo "wheel-smoke: $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)," \
  "$(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB), built in $((SECONDS - started))s"

# ---------------------------------------------------------------- contents
# Every file of the package in the source tree (git's view: tracked, or new and not ignored)
# must be in the wheel and the sdist: the data files the code reads (default_pipeline.toml, the
# migrations, templates, static assets) included.
"$PY" - "$ROOT/src/smartrec" "$WHEEL" "$SDIST" <<'EOF' || fail "the distributions are incomplete"
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

package, wheel, sdist = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
problems = []
with zipfile.ZipFile(wheel) as whl:
    in_wheel = set(whl.namelist())
try:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
        cwd=package, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    files = [package / name for name in listed if name]
except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but bytecode
    files = [p for p in package.rglob("*") if "__pycache__" not in p.parts]
source = {
    f"smartrec/{p.relative_to(package).as_posix()}"
    for p in files
    if p.is_file() and p.suffix not in (".pyc", ".pyo") and not p.name.startswith(".")
}
problems += [f"wheel lacks {name}" for name in sorted(source - in_wheel)]
required_wheel = [
    "smartrec/py.typed",
    "smartrec/pipeline/default_pipeline.toml",
    "smartrec/storage/sql/migrations/env.py",
    "smartrec/storage/sql/migrations/script.py.mako",
    "smartrec/storage/sql/migrations/versions/0001_initial.py",
]
problems += [f"wheel lacks {name}" for name in required_wheel if name not in in_wheel]
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in in_wheel):
    problems.append("wheel lacks the LICENSE in its .dist-info")
with tarfile.open(sdist) as tar:
    top = tar.getnames()[0].split("/")[0]
    in_sdist = {n.removeprefix(f"{top}/") for n in tar.getnames()}
required_sdist = [
    "LICENSE",
    "README.md",
    "pyproject.toml",
    "PKG-INFO",
    "src/smartrec/pipeline/default_pipeline.toml",
    "src/smartrec/storage/sql/migrations/script.py.mako",
]
problems += [f"sdist lacks {name}" for name in required_sdist if name not in in_sdist]
problems += [f"sdist lacks src/{name}" for name in sorted(source) if f"src/{name}" not in in_sdist]
for problem in dict.fromkeys(problems):
    print(f"wheel-smoke: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"wheel-smoke: contents ok: the {len(source)} files of the package; LICENSE in both")
EOF

# ---------------------------------------------------------------- a fresh environment
step=$SECONDS
echo "wheel-smoke: installing the wheel into a fresh environment in $WORK/venv"
"$PY" -m venv "$WORK/venv" || fail "python -m venv failed"
if ! "$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "$WHEEL" \
  >"$WORK/pip.log" 2>&1; then
  grep -v "is ignored: it is neither a file nor a directory" "$WORK/pip.log" | tail -n 40 >&2
  fail "pip install $(basename "$WHEEL") failed (log above)"
fi
echo "wheel-smoke: installed in $((SECONDS - step))s"

# ---------------------------------------------------------------- the smoke test
# From the temporary directory, with a copy of the script: nothing of the source tree is on
# sys.path, so `import smartrec` is the installed wheel.
cp "$ROOT/scripts/wheel_smoke.py" "$WORK/wheel_smoke.py"
cd "$WORK"
step=$SECONDS
status=0
"$WORK/venv/bin/python" "$WORK/wheel_smoke.py" || status=$?
echo "wheel-smoke: smoke test ran in $((SECONDS - step))s; ${SECONDS}s in all"
[[ $status == 0 ]] || fail "the smoke test against the installed wheel failed (status $status)"
echo "wheel-smoke: ok"
