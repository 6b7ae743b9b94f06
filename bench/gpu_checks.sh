#!/bin/bash
# The GPU checks of one device session in one call (under 10 minutes on an H200): the whole test suite with CUDA
# present (pytest-xdist, 8 workers), then bench/gpu.py with the time left. Everything lands in $OUT (or ./gpu-out).
#
#   bash bench/gpu_checks.sh            # from the repository root, on the machine with the GPU
#
# The device machine's image has torch, pytest(-xdist), onnx(runtime), pyarrow, pandas, tensorboard and hypothesis
# but not the explorer's server or pythae: carry them as wheels in .whl/ (cp312, manylinux), fetched here with
# `pip download --no-deps --only-binary=:all: --python-version 3.12 ...`: starlette uvicorn httptools httpx2
# httpcore2 truststore idna anyio h11 typing_extensions (the explorer and its TestClient) and pythae pydantic
# pydantic-core annotated-types typing-inspection (bench/gpu.py's pythae rows). The datasets travel in ./shared/data
# (a copy of ../shared/data, which does not travel).
set -o pipefail
OUT=${OUT:-gpu-out}
source bench/gpu_env.sh
OMP_NUM_THREADS=2 timeout 330 python3 -m pytest -n 8 -p no:cacheprovider -q -rfEs --durations=15 \
  --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/tests.log" | grep -v -E "^\[gw|^\.|PytestBenchmarkWarning|warner"
echo "== tests rc ${PIPESTATUS[0]} after ${SECONDS}s"
timeout $((585 - SECONDS)) python3 bench/gpu.py --data-dir "$DATA" --rounds 2 --epochs 3 --out "$OUT/gpu.json" 2>&1 \
  | tee "$OUT/gpu.log" | grep -v -E "it/s|s/it"
echo "== bench rc ${PIPESTATUS[0]} after ${SECONDS}s"
