#!/usr/bin/env bash
# Serves the embedded default (CPU engines) on a local Ray until Ctrl-C, with a local S3 for stored
# results and async jobs: SeaweedFS on 127.0.0.1, its data in .run/s3 (kept between runs, so queued
# jobs survive a restart), stopped on exit. With SERVE_APP_STORAGE__ENDPOINT_URL set, that S3 is used
# instead; SERVE_APP_LOCAL_S3=0 runs without storage (no jobs, no store).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
config="${SERVE_APP_CONFIG:-serve_config.cpu.yaml}"

if [ -z "${SERVE_APP_STORAGE__ENDPOINT_URL:-}" ] && [ "${SERVE_APP_LOCAL_S3:-1}" != 0 ]; then
  mkdir -p .run
  # Development credentials: SeaweedFS creates this identity and boto3 signs with it.
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-serve-app-dev}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-serve-app-dev}"
  : >.run/s3.endpoint
  .venv/bin/python -m scripts.s3_dev .run/s3 serve-app >.run/s3.endpoint &
  s3_pid=$!
  trap 'kill "$s3_pid" 2>/dev/null; wait "$s3_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 600); do
    [ -s .run/s3.endpoint ] && break
    kill -0 "$s3_pid" 2>/dev/null || { echo "serve_app: local S3 failed to start; see .run/s3/weed.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -s .run/s3.endpoint ] || { echo "serve_app: local S3 not up within 60 s; see .run/s3/weed.log" >&2; exit 1; }
  export SERVE_APP_STORAGE__ENDPOINT_URL="$(head -1 .run/s3.endpoint)"
  export SERVE_APP_STORAGE__BUCKET="${SERVE_APP_STORAGE__BUCKET:-serve-app}"
  echo "serve_app: local S3 (SeaweedFS) at $SERVE_APP_STORAGE__ENDPOINT_URL, data in .run/s3"
fi

echo "serve_app: starting with $config; it answers at http://127.0.0.1:8000"
echo "  web page http://127.0.0.1:8000/   readiness /ready   API docs /docs   CLI .venv/bin/serve-app"
if [ -z "${SERVE_APP_AUTH__API_KEYS:-}" ]; then
  echo "  no API keys: open to anyone on this machine (127.0.0.1 only); SERVE_APP_AUTH__API_KEYS=k1,k2 asks for one"
fi
.venv/bin/serve run "$config"
