#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (unit + integration on a real local Serve).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
.venv/bin/ruff check serve_app tests bench scripts
.venv/bin/mypy serve_app
exec .venv/bin/python -m pytest "$@"
