#!/usr/bin/env bash
# Set up .venv/ at the repository root for napari-astrodenoise.
#   bash scripts/setup.sh           runtime: the plugin, the CLI and the shipped model
#   bash scripts/setup.sh --tests   also Xvfb and the Qt6/X libraries (apt, as root) and test tools
# The Qt bindings are PyQt6 (the `qt` extra: napari[pyqt6]); Qt6's xcb platform needs libxcb-cursor0.
# torch is pinned to the CPU build this machine provides; pyproject itself only asks torch>=2.2.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

extras=""
if [[ "${1:-}" == "--tests" ]]; then
  extras="[testing]"
  if ! command -v xvfb-run >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-icccm \
    || ! ldconfig -p | grep -q libxcb-cursor; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q
      apt-get install -y -q xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 \
        libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 \
        libxkbcommon-x11-0 \
        libgl1 libegl1 libfontconfig1 libdbus-1-3
    else
      echo "setup: Xvfb and libxcb packages are missing; install them (see README) as root" >&2
      exit 1
    fi
  fi
fi

[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${extras}"
