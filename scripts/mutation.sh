#!/usr/bin/env bash
# Mutation testing of the core modules (issue 11): `make mutation`, or
#   bash scripts/mutation.sh [MODULE...]      MODULE: ingest rules filters promotion exclusions
#
# Each module runs in its own copy of the working tree (tracked and untracked files, not
# ignored ones) with a [tool.mutmut] section naming that module and a targeted, fast test
# selection, so that a run takes minutes rather than hours on two cores and the real
# pyproject.toml and tree stay untouched. mutmut (3.x) keeps per-mutant results in the copy's
# mutants/ directory; this script prints the per-module summary (mutmut export-cicd-stats) and
# lists the survivors, to be killed by a test or named as equivalent in BENCHMARKS.md section 10.
#
# Env: MUTATION_WORK (where the copies go; default a temporary directory, kept for
#      `mutmut show NAME` / `mutmut results` inside it), MUTATION_JOBS (mutmut --max-children,
#      default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MUTMUT=${MUTMUT:-$ROOT/.venv/bin/mutmut}
JOBS=${MUTATION_JOBS:-$(nproc)}
WORK=${MUTATION_WORK:-$(mktemp -d -t smartrec-mutation.XXXXXX)}

# module -> the file mutated, and the tests run per mutant (a TOML list of pytest arguments):
# pure unit tests that run in about a second, so that a module's run takes minutes on two cores.
# mutmut runs, for each mutant, only those of these tests that cover the mutated function.
declare -A FILES=(
  [ingest]="src/smartrec/ingest.py"
  [rules]="src/smartrec/pipeline/rules.py"
  [filters]="src/smartrec/pipeline/filters.py"
  [promotion]="src/smartrec/training/promotion.py"
  [exclusions]="src/smartrec/serving/state.py"
)
# module -> the mutants run (mutmut name globs), where a file holds more than the module:
# state.py's exclusion functions only (seen and confidence rows, negative feedback, history).
declare -A ONLY=(
  [exclusions]='*ǁuser_rows__mutmut_* *ǁitems_row__mutmut_* *.x_negative_row__mutmut_* *.x_positive_first__mutmut_*'
)
declare -A TESTS=(
  [ingest]='["tests/unit/test_ingest.py"]'
  [rules]='["tests/unit/pipeline/test_rules.py"]'
  # The three fuzz tests (2.5 s, every function) guard against crashes; they are left out
  # per mutant, where the error-message and matching tests decide.
  [filters]='["tests/unit/pipeline/test_filters.py", "-k", "not fuzz"]'
  [promotion]='["tests/unit/training/test_promotion.py"]'
  [exclusions]='["tests/unit/serving/test_exclusions.py"]'
)
ORDER=(ingest rules filters promotion exclusions)
SELECTED=("$@")
[ ${#SELECTED[@]} -eq 0 ] && SELECTED=("${ORDER[@]}")

for name in "${SELECTED[@]}"; do
  file=${FILES[$name]:-}
  if [ -z "$file" ]; then
    echo "unknown module '$name' (one of: ${ORDER[*]})" >&2
    exit 2
  fi
  tests=${TESTS[$name]}
  copy=$WORK/$name
  rm -rf "$copy"
  mkdir -p "$copy"
  git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$copy" 2>/dev/null || true
  cat >>"$copy/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["$file"]
# Fixed order: the survivors of a run must not depend on a random seed.
pytest_add_cli_args = ["-p", "no:randomly", "-q", "-x", "--timeout=120"]
pytest_add_cli_args_test_selection = $tests
EOF
  echo "== $name: $file  (tests: $tests)"
  started=$(date +%s)
  read -r -a only <<<"${ONLY[$name]:-}"
  (cd "$copy" && "$MUTMUT" run --max-children "$JOBS" "${only[@]}" >"$copy/mutmut-run.log" 2>&1) || {
    echo "mutmut failed for $name: see $copy/mutmut-run.log" >&2
    tail -20 "$copy/mutmut-run.log" >&2
    exit 1
  }
  # Per-status counts of the mutants run (those matching the name globs), then the survivors.
  (cd "$copy" && "$MUTMUT" results --all true) | "$ROOT/.venv/bin/python" -c '
import collections, fnmatch, sys
globs = sys.argv[1:] or ["*"]
rows = [line.strip().rsplit(": ", 1) for line in sys.stdin if ": " in line]
rows = [(n, s) for n, s in rows if any(fnmatch.fnmatch(n, g) for g in globs)]
print(dict(collections.Counter(s for _, s in rows)), "total", len(rows))
for n, s in rows:
    if s != "killed":
        print("   ", n + ":", s)
' "${only[@]}"
  echo "-- $name took $(($(date +%s) - started)) s"
done
echo "work directories: $WORK"
