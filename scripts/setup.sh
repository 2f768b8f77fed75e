#!/usr/bin/env bash
# Set up everything blurkit needs on a fresh Debian/Ubuntu machine (run from anywhere):
#   - Debian packages: dataset-fashion-mnist (the default dataset) and chromium (report test)
#   - PyTorch: the CPU wheel torch==2.13.0 if no torch is installed (a user's own CUDA build is kept)
#   - blurkit itself, editable, with its dev and bench extras (pytest, hypothesis, ruff, scipy,
#     scikit-image, OpenCV, kornia)
# PYTHON=/path/to/python selects the interpreter (default: python3; a virtualenv's python works).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "setup: not root and no sudo: install ${need_apt[*]} with apt-get yourself" >&2; SUDO="skip"; fi
    fi
    if [ "$SUDO" != "skip" ]; then
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    fi
  else
    echo "setup: no apt-get: install ${need_apt[*]} yourself (the dataset can also be given with --data)" >&2
  fi
fi

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install --disable-pip-version-check "torch==2.13.0"
fi
"$PY" -m pip install --disable-pip-version-check -e ".[dev,bench]"
"$PY" -c "import blurkit; print('blurkit', blurkit.__version__, blurkit.backend_info())"
