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

# module -> "file to mutate|test selection (pytest arguments, space separated)"
declare -A MODULES=(
  [ingest]="src/smartrec/ingest.py|tests/unit/test_ingest.py tests/api/test_ingest.py"
  [rules]="src/smartrec/pipeline/rules.py|tests/unit/test_rules.py tests/unit/test_fastlane.py"
  [filters]="src/smartrec/pipeline/filters.py|tests/unit/test_filters.py"
  [promotion]="src/smartrec/training/trainer.py|tests/unit/test_mutants.py tests/integration/test_training.py"
  [exclusions]="src/smartrec/serving/state.py|tests/api/test_recommendations.py -k seen_or_disliked_or_exclude"
)
ORDER=(ingest rules filters promotion exclusions)
SELECTED=("$@")
[ ${#SELECTED[@]} -eq 0 ] && SELECTED=("${ORDER[@]}")

toml_list() {  # words -> a TOML list of strings
  local out="" word
  for word in "$@"; do out+="\"$word\", "; done
  echo "[${out%, }]"
}

for name in "${SELECTED[@]}"; do
  spec=${MODULES[$name]:-}
  if [ -z "$spec" ]; then
    echo "unknown module '$name' (one of: ${ORDER[*]})" >&2
    exit 2
  fi
  file=${spec%%|*}
  read -r -a tests <<<"${spec#*|}"
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
pytest_add_cli_args_test_selection = $(toml_list "${tests[@]}")
EOF
  echo "== $name: $file  (tests: ${tests[*]})"
  started=$(date +%s)
  (cd "$copy" && "$MUTMUT" run --max-children "$JOBS" >"$copy/mutmut-run.log" 2>&1) || {
    echo "mutmut failed for $name: see $copy/mutmut-run.log" >&2
    tail -20 "$copy/mutmut-run.log" >&2
    exit 1
  }
  (cd "$copy" && "$MUTMUT" export-cicd-stats >/dev/null && cat mutants/mutmut-cicd-stats.json)
  echo
  echo "-- survivors of $name ($(($(date +%s) - started)) s):"
  (cd "$copy" && "$MUTMUT" results | grep -v ": killed" || true)
done
echo "work directories: $WORK"
