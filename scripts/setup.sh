#!/usr/bin/env bash
# One command: create .venv, install suggest-ls with its test and benchmark extras
# (builds llama-cpp-python from source the first time: ~5 min on 2 cores, cached after),
# then show it working: a health check and a demo completion with timings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# CMAKE_ARGS="-DGGML_CUDA=on" in the environment gives a CUDA build (see README).
.venv/bin/python -m pip install -e '.[dev,bench]'
.venv/bin/suggest-ls check
.venv/bin/suggest-ls complete examples/demo.py:7:12 --repeat 3
