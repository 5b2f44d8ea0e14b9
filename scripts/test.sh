#!/usr/bin/env bash
# Set up (Debian packages, virtualenv with test extras) and run the test suite.
#   scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh --test
exec .venv/bin/python -m pytest -q "$@"
