# Sourced by bench/gpu_checks.sh and bench/gpu_nll.sh on the device machine: the carried wheels (.whl/) installed
# into /tmp/site, vaekit and bench/ on PYTHONPATH, the datasets ($DATA: ./shared/data unless VAEKIT_SHARED_DATA
# says otherwise), and the machine described in $OUT/env.txt.
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 9
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src:$PWD/bench PYTHONUNBUFFERED=1
DATA=${VAEKIT_SHARED_DATA:-$PWD/shared/data}
export VAEKIT_SHARED_DATA=$DATA
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), torch.cuda.device_count())"
} 2>&1 | tee "$OUT/env.txt"
