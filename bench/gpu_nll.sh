#!/bin/bash
# Issue #17 on a GPU in one device call (under 10 minutes on an H200): $MODELS (bench/nll_binarized.py's entries)
# trained side by side on the one GPU for $MINUTES each (default 6) while the test suite runs beside them (CUDA
# present); then each pair in $MIXTURES scored as a uniform mixture with its members, and every other run that left
# a model scored alone (k = 5000, all 10,000 static test images, on the GPU, in parallel).
#
#   bash bench/gpu_nll.sh                                   # from the repository root, on the machine with the GPU
#   MODELS="a b c" MIXTURES="a,b" MINUTES=5 bash bench/gpu_nll.sh
#
# Wheels and data travel as for bench/gpu_checks.sh (its header): .whl/ (the explorer's server and TestClient) and
# ./shared/data. $OUT gets at most 8 files: env.txt, train.log, tests.log, eval.log, nll.json (every row) and the
# first two MLP runs of $MODELS (model, config, metrics, summary; no checkpoint) as runs-1.tgz, runs-2.tgz (a conv
# run's 18 MB model is over the device tool's 16 MB a file). Measured 2026-12-04 (s): bench/README.md.
set -o pipefail
OUT=${OUT:-gpu-out}
MINUTES=${MINUTES:-6}
MLP=hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval
CONV=convhvae-vamp-b500-cosine
MODELS=${MODELS:-"$MLP $MLP-columns $CONV-fp32 $CONV-wd01-ar-w1-trainval-fp32"}
MIXTURES=${MIXTURES:-"$MLP,$MLP-columns"}
source bench/gpu_env.sh
KEEP=/tmp/runs
pids=()
for m in $MODELS; do
  OMP_NUM_THREADS=2 python3 bench/nll_binarized.py --data-dir "$DATA" --models "$m" --minutes "$MINUTES" \
    --threads 2 --keep $KEEP --train-only --out "/tmp/train-$m.json" >"/tmp/train-$m.log" 2>&1 &
  pids+=($!)
done
OMP_NUM_THREADS=1 timeout 420 python3 -m pytest -n 8 -p no:cacheprovider -q -rfEs --durations=10 \
  >"$OUT/tests.log" 2>&1 &
tests=$!
for p in "${pids[@]}"; do wait "$p"; echo "== training $p rc $?"; done
echo "== trainings done after ${SECONDS}s"
for m in $MODELS; do echo "--- $m"; grep -v -E "it/s|s/it|Tomczak|Burda|pythae|^published" "/tmp/train-$m.log" | tail -8; done >"$OUT/train.log"
i=0
for m in $MODELS; do  # a conv model is over the 16 MB a file that comes back
  if [ $i -lt 2 ] && [ -f "$KEEP/$m/model.safetensors" ] && [[ $m != conv* ]]; then
    i=$((i + 1)); tar czf "$OUT/runs-$i.tgz" -C $KEEP --exclude=checkpoint.safetensors --exclude=report.html "$m"
  fi
done
# what to score: each mixture whose members all left a model, then every run in none of them, alone
jobs=(); mixed=" "
for mix in $MIXTURES; do
  runs=""; ok=1
  for m in ${mix//,/ }; do [ -f "$KEEP/$m/model.safetensors" ] || ok=0; runs="$runs${runs:+,}$KEEP/$m"; done
  [ $ok = 1 ] && jobs+=("$runs") && mixed="$mixed${mix//,/ } "
done
for m in $MODELS; do
  [[ $mixed == *" $m "* ]] || [ ! -f "$KEEP/$m/model.safetensors" ] || jobs+=("$KEEP/$m")
done
left=$((585 - SECONDS))
epids=()
for j in "${!jobs[@]}"; do
  timeout $left python3 bench/nll_binarized.py --data-dir "$DATA" --mixture "${jobs[$j]}" --threads 2 \
    --out "/tmp/nll-$j.json" >"/tmp/eval-$j.log" 2>&1 &
  epids+=($!)
done
for p in "${epids[@]}"; do wait "$p"; echo "== scoring $p rc $? after ${SECONDS}s"; done
python3 - "${!jobs[@]}" >"$OUT/nll.json" <<'PY'
import json, sys
rows = {}
for j in sys.argv[1:]:
    try:
        rows.update(json.load(open(f"/tmp/nll-{j}.json"))["models"])
    except (OSError, ValueError, KeyError):
        pass
print(json.dumps({"models": rows}, indent=2))
PY
wait $tests; echo "== tests rc $? after ${SECONDS}s"
for j in "${!jobs[@]}"; do echo "--- ${jobs[$j]}"; tr '\r' '\n' <"/tmp/eval-$j.log" | grep -v -E "item/s|Tomczak|Burda|pythae|^published"
done >"$OUT/eval.log"
tail -25 "$OUT/tests.log"
cat "$OUT/train.log" "$OUT/eval.log"
