#!/usr/bin/env bash
# The code's shape: ruff (rule set in ruff.toml) and the import contracts (.importlinter, docs/architecture.md).
#   scripts/lint.sh     (after scripts/install.sh --test; exits non-zero on any finding)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache
