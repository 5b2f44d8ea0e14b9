#!/usr/bin/env bash
# Long fuzzing runs on demand (CI runs the same tests with the bounded "ci" profile).
#   scripts/fuzz.sh                        every fuzz test under the "long" hypothesis profile (20x the CI budget)
#   scripts/fuzz.sh -k ingest              ... only some of them (any pytest arguments)
#   scripts/fuzz.sh --atheris TARGET [ARGS]  coverage-guided: atheris / libFuzzer on one parser (needs
#                                          `.venv/bin/pip install -c constraints.txt -e ".[fuzz]"`); `--atheris --list` names the targets;
#                                          ARGS go to libFuzzer, default -max_total_time=600 -rss_limit_mb=1024
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python

if [[ "${1:-}" == "--atheris" ]]; then
    shift
    target="${1:---list}"
    shift || true
    if [[ "$target" != "--list" ]] && ! "$PY" -c "import atheris" 2>/dev/null; then
        echo "atheris is not installed: .venv/bin/pip install -c constraints.txt -e \".[fuzz]\"" >&2
        exit 2
    fi
    args=("$@")
    [[ ${#args[@]} -gt 0 ]] || args=(-max_total_time=600 -rss_limit_mb=1024)
    mkdir -p .fuzz/"$target"  # the corpus grows here between runs; crash-* files land next to it
    exec "$PY" -m tests.fuzz.atheris_targets "$target" -artifact_prefix=.fuzz/"$target"/ "${args[@]}" .fuzz/"$target"
fi

export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-long}"
exec "$PY" -m pytest -q -p no:cacheprovider tests/fuzz "$@"
