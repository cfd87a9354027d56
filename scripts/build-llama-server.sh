#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the llama.cpp source vendored in the llama-cpp-python
# sdist (the version suggest-ls uses in-process), into a cache outside git:
#   ${SUGGEST_LS_CACHE:-~/.cache/suggest-ls}/llama-server/<version>/bin/llama-server
# Prints the binary's path. A second run finds it built and only prints the path; a run that was
# stopped is resumed (the build folder stays until the binary is in place). The build is for this
# CPU (-march=native): a binary built on a CPU with other features is rebuilt.
#
#   scripts/build-llama-server.sh                     # CPU build
#   CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" scripts/build-llama-server.sh
#   JOBS=16 scripts/build-llama-server.sh             # parallel compile jobs (default: 2)
#
# Needs cmake, ninja, a C++ compiler and pip (to download the sdist, or LLAMA_CPP_SDIST=path to a
# .tar.gz already downloaded). On 2 cores the CPU build takes many minutes: run it niced.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${SUGGEST_LS_CACHE:-$HOME/.cache/suggest-ls}/llama-server/$VERSION"
BIN="$CACHE/bin/llama-server"
STAMP="$CACHE/bin/built-for"
WORK="$CACHE/work"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"
# what the binary depends on: the CPU's features (-march=native) and the CMake flags given
BUILT_FOR="$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; echo "${CMAKE_ARGS:-}") | sha256sum | cut -c1-16)"

if [[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$BUILT_FOR" ]]; then
  echo "$BIN"
  exit 0
fi
if [[ -e "$BIN" ]]; then
  echo "rebuilding $BIN: built for another CPU or other CMake flags" >&2
  rm -rf "$CACHE/bin" "$WORK/build"
fi
mkdir -p "$WORK"

src="$(ls -d "$WORK"/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | head -n 1 || true)"
if [[ -z "$src" ]]; then
  sdist="${LLAMA_CPP_SDIST:-}"
  if [[ -z "$sdist" ]]; then
    # the sdist only: --no-binary for this package alone (":all:" would also build its build tools from source)
    "$PYTHON" -m pip download --no-deps --no-binary llama-cpp-python --dest "$WORK/dl" "llama-cpp-python==$VERSION" >&2
    sdist="$(ls "$WORK"/dl/llama_cpp_python-*.tar.gz)"
  fi
  tar -xzf "$sdist" -C "$WORK"
  src="$(ls -d "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
fi

if [[ ! -f "$WORK/build/build.ninja" ]]; then
  # As scripts/setup.sh: without llama.cpp's AMX kernels, which -march=native compiles in on CPUs
  # with AMX and which crash there (GCC keeps an explicit -mno-* over -march).
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  # shellcheck disable=SC2086  # CMAKE_ARGS holds several flags
  cmake -S "$src" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
    "-DCMAKE_C_FLAGS=$no_amx" "-DCMAKE_CXX_FLAGS=$no_amx" ${CMAKE_ARGS:-} >&2
fi
ninja -C "$WORK/build" -j "$JOBS" llama-server >&2

mkdir -p "$CACHE/bin"
cp "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BUILT_FOR" > "$STAMP"
rm -rf "$WORK"
echo "$BIN"
