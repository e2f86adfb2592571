#!/usr/bin/env bash
# Issue 8's GPU figures in one go, at most 9.5 minutes: `OUT=DIR PYTHON=.venv/bin/python bash bench/gpu_checks.sh`
# on a GPU machine set up as the README says, or as one call of this workplace's device tool after
# bench/gpu_prepare.sh (whose wheels and CIFAR archive this script then uses). In this order:
#   1. the 3D ×8 + age model's volumes/s at 96³, fp32 eager against bf16 + channels-last + compile
#      (those two first, then the other variants while its 130 s last; the file is rewritten after each);
#   2. images/s of the DataLoader path against the device-resident path (at most 45 s);
#   3. the CIFAR-10 sym-40 ELR row, 120 epochs, engine defaults on CUDA (bf16, device-resident batches,
#      channels-last, torch.compile), timed to the end with its test accuracy (paper 89.15 ± 0.17), with
#      all the time the steps before left less 75 s, at least about 5 minutes (the target; its
#      length is the unknown; metrics.csv keeps what a cut run did);
#   4. the GPU tests, in the 75 s kept for them: device-resident augmentation against the CPU's, no host
#      waits in a training step, every `auto` switch on;
#   5. with the time left, bench_mri_models' full table (every 3D model, the loader).
# Why a shared deadline: a device call has one fixed limit, and a step cut short must still leave the
# earlier steps' figures (and its own log lines) in $OUT.
set -u
OUT=${OUT:-gpu_out}
DEADLINE=$(( $(date +%s) + ${GPU_CHECKS_SECONDS:-570} ))
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

# step NAME CAP LOG COMMAND...: COMMAND under min(CAP, seconds left) (skipped under 30 s), its output appended to LOG;
# its exit status and wall time go to stdout and device.txt.
step() {
    local name=$1 cap=$2 log=$3 left=$(( DEADLINE - $(date +%s) ))
    shift 3
    local limit=$(( cap < left ? cap : left )) start=$(date +%s)
    if [ "$limit" -lt 30 ]; then
        echo "$name: skipped, ${limit} s for it" | tee -a "$OUT/device.txt"
        return
    fi
    timeout "$limit" "$@" >> "$log" 2>&1
    echo "$name: exit $?, $(( $(date +%s) - start )) s wall (limit ${limit} s)" | tee -a "$OUT/device.txt"
}

step "3D x8 execution variants" 130 "$OUT/bench.log" "$PYTHON" bench/bench_execution_variants.py \
    --device cuda --size 96 --budget 4 --out "$OUT/execution_variants_cuda.md"
step "device batches" 45 "$OUT/bench.log" "$PYTHON" bench/bench_device_batches.py --device cuda \
    --out "$OUT/device_batches_cuda.md"
rm -rf /tmp/cifar10_elr_sym40  # a rerun on the same machine starts the row afresh
GPU_TESTS_SECONDS=75
step "cifar10 elr sym40" $(( DEADLINE - $(date +%s) - GPU_TESTS_SECONDS )) "$OUT/cifar10_elr_sym40.log" \
    "$PYTHON" -m elr_mri.cli train --config configs/cifar10/elr_sym40.yaml --out /tmp/cifar10_elr_sym40 \
    --set train.progress=false --set train.tensorboard=false
cp /tmp/cifar10_elr_sym40/metrics.csv "$OUT/cifar10_elr_sym40_metrics.csv" 2>/dev/null
cp /tmp/cifar10_elr_sym40/summary.json "$OUT/cifar10_elr_sym40_summary.json" 2>/dev/null

step "gpu tests" $GPU_TESTS_SECONDS "$OUT/bench.log" "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider \
    tests/test_training_step.py tests/test_device_batches.py tests/test_execution.py
step "mri models" 300 "$OUT/bench.log" "$PYTHON" bench/bench_mri_models.py --device cuda \
    --out "$OUT/mri_models_cuda.md"
