#!/usr/bin/env bash
# Issue 8's GPU figures in one go, about 9 minutes: `OUT=DIR PYTHON=.venv/bin/python bash bench/gpu_checks.sh`
# on a GPU machine set up as the README says, or as one call of this workplace's device tool after
# bench/gpu_prepare.sh (whose wheels and CIFAR archive this script then uses):
#   1. the CIFAR-10 sym-40 ELR row, 120 epochs, engine defaults on CUDA (bf16, device-resident batches,
#      channels-last, torch.compile), timed to the end with its test accuracy (paper 89.15 ± 0.17);
#   2. the 3D ×8 + age model's volumes/s, fp32 eager against bf16 + channels-last + compile;
#   3. images/s of the DataLoader path against the device-resident path.
# Each step has its own time limit so that a slow one still leaves the others' figures in $OUT.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
if [ -d .whl ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
[ -d data/cifar10/train ] || tar -xJf data/cifar10-jpeg.tar.xz -C data/ || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
"$PYTHON" -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/device.txt"

start=$(date +%s)
timeout 330 "$PYTHON" -m elr_mri.cli train --config configs/cifar10/elr_sym40.yaml --out /tmp/cifar10_elr_sym40 \
    --set train.progress=false --set train.tensorboard=false > "$OUT/cifar10_elr_sym40.log" 2>&1
echo "cifar10 elr sym40: exit $?, $(( $(date +%s) - start )) s wall" | tee -a "$OUT/device.txt"
cp /tmp/cifar10_elr_sym40/metrics.csv "$OUT/cifar10_elr_sym40_metrics.csv" 2>/dev/null
cp /tmp/cifar10_elr_sym40/summary.json "$OUT/cifar10_elr_sym40_summary.json" 2>/dev/null

timeout 150 "$PYTHON" bench/bench_mri_models.py --device cuda --out "$OUT/mri_models_cuda.md" > "$OUT/mri_models.log" 2>&1
echo "mri models: exit $?" | tee -a "$OUT/device.txt"
timeout 60 "$PYTHON" bench/bench_device_batches.py --device cuda --out "$OUT/device_batches_cuda.md" >> "$OUT/mri_models.log" 2>&1
echo "device batches: exit $?" | tee -a "$OUT/device.txt"
