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
# llama.cpp's AMX kernels (compiled in by -march=native on CPUs with AMX) crash in batched decoding:
# build without them; the AVX-512 kernels serve instead. GCC keeps an explicit -mno-* over -march.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
.venv/bin/python -m pip install -e '.[dev,bench,coder]'
.venv/bin/suggest-ls check
.venv/bin/suggest-ls complete examples/demo.py:7:12 --repeat 3
