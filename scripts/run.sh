#!/usr/bin/env bash
# Starts a local Ray + Serve with the embedded default (CPU engines) and serves until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
config="${SERVE_APP_CONFIG:-serve_config.cpu.yaml}"
echo "serve_app: starting with $config; it answers at http://127.0.0.1:8000"
echo "  readiness http://127.0.0.1:8000/ready   API docs http://127.0.0.1:8000/docs"
exec .venv/bin/serve run "$config"
