#!/usr/bin/env bash
# Issue 8's open GPU figures in one go, at most 9.5 minutes: `OUT=DIR PYTHON=.venv/bin/python bash bench/gpu_checks.sh`
# on a GPU machine set up as the README says, or as one call of this workplace's device tool after
# bench/gpu_prepare.sh (whose wheels and CIFAR archive this script then uses). In this order:
#   1. the CIFAR-10 sym-40 ELR row, 120 epochs, engine defaults on CUDA plus CUDA graphs, timed to the end with its
#      test accuracy (paper 89.15 ± 0.17), with all the time but 15 s (metrics.csv keeps what a cut run did); if the
#      CUDA-graph run fails outright, again in compile's default mode in the time left.
#      Why CUDA graphs: on an H200 (2026-12-04) a step of this row took 21.8 ms of which the GPU computed 4.4 ms;
#      the host queueing ~1,000 kernels a step was the limit, and the row ran 9 s an epoch;
#   then, in whatever time the row leaves (each skipped under 30 s):
#   2. images/s of the DataLoader path against the device-resident path, random pixels (at most 40 s);
#   3. the GPU tests (at most 90 s): device-resident augmentation against the CPU's, no host waits in a training
#      step, every `auto` switch on, CUDA graphs (compile_mode reduce-overhead) really graphing a step;
#   4. bench/bench_cifar_step.py (at most 90 s): a step's time by piece under five plans, CUDA graphs among them.
# Other modes (first argument), each described where it is handled below:
#   step      ELR and ELR+ trained under CUDA graphs (the GPU tests, never run yet), then
#             bench/bench_cifar_step.py, train.compile_step first (~5.5 min)
#   gap       the clean-label row and the official config's cosine row side by side: the JPEG copy's and the
#             schedule's price (~10 min; bf16's: the default mode with ROW_SETTINGS="--set train.precision=fp32")
#   jobs      two seeds in turn, then side by side on the one GPU (~5 min)
#   3d        the MRI side: device-blur and phase-grid GPU tests, the two dilated convolutions alone (library,
#             phase grids, im2col GEMM), 3D ×8 variants (phase-grid convolutions right after the two anchors) with
#             their TFLOP/s and the engine's variant's busiest kernels, then the MRI loader by workers and blur
#             place (~8.5 min)
#   cifar10n  the CIFAR-10N worst row (needs data/CIFAR-10_human.npz carried)
# It may be started from any folder (relative OUT and PYTHON are read from there); it ends with one line naming the
# steps that failed, were cut at their limit or skipped for time, and exits 1 if any failed (before any step: 2 for
# a setting refused, 1 for a carry missing). Where $PYTHON's torch sees no CUDA device it stops (1) in one line, unless
# GPU_CHECKS_DRY_RUN=1: then every step runs here and is refused within seconds for want of CUDA (a check of each
# mode's steps, their options and the script's ending on a CPU).
# Why a shared deadline: a device call has one fixed limit, and a step cut short must still leave the earlier steps'
# figures (and its own log lines) in $OUT.
# With 15 minutes of device time in all (machine start ~35 s included), what is still open fits as two calls after
# bench/gpu_prepare.sh, first
#   run(command="GPU_CHECKS_SECONDS=330 bash bench/gpu_checks.sh 3d", carry=[".whl"], timeout_s=350)
# (the tests, the convolutions alone, and the variants table at least as far as its phase-grid rows; its later rows
# and the loader are likely cut), then, while the machine is warm (30 s after a call; a fresh start costs minutes of
# the same time),
#   run(command="GPU_CHECKS_SECONDS=480 bash bench/gpu_checks.sh gap", carry=[".whl", "data/cifar10-jpeg.tar.xz"],
#       timeout_s=500)
# with 480 the device time `status` then says is left less ~40 s (budget_left_s: transfers and the idle wait between
# the calls count too) and timeout_s 20 s above it. gap's rows are likely cut short; the clean one, one hopes, past
# epoch 80, the rate's last step, nearly at its final accuracy, and the cosine one read at the end of each 10-epoch
# cycle. Their metrics.csv come back every 15 s, so a call cut by the device's own limit keeps them.
# `sh bench/gpu_checks.sh` (dash) failed on the first bash-only line with a misleading message
[ -n "${BASH_VERSION:-}" ] || { echo "bench/gpu_checks.sh is a bash script: run it as bash bench/gpu_checks.sh"; exit 2; }
set -u
# a mistyped mode (`3D`, `steps`) or a ROW_SETTINGS that the mode would ignore ends here, before the device time goes
# to something not asked for
case "$#:${1:-}" in
    0:|1:|1:gap|1:cifar10n) ;;
    1:3d|1:step|1:jobs)
        [ -z "${ROW_SETTINGS:-}" ] \
            || { echo "ROW_SETTINGS is for the CIFAR rows (no mode, gap, cifar10n): $1 would ignore it"; exit 2; } ;;
    *) echo "usage: bash bench/gpu_checks.sh [step|gap|jobs|3d|cifar10n] (one mode or none), not: $*"; exit 2 ;;
esac
# the budget too: a misspelt name (GPU_CHECK_SECONDS) would leave the default 570 s, past the shorter timeout_s of
# the two calls planned above, and a unit (330s) would end the script in bash's arithmetic without naming the setting
misspelt=$(compgen -e | grep -iE '^gpu_?checks?' | grep -vxE 'GPU_CHECKS_(SECONDS|DRY_RUN)' | tr '\n' ' ')
[ -z "$misspelt" ] || { echo "no such setting: ${misspelt}(the time budget is GPU_CHECKS_SECONDS; the CPU's dry run" \
    "GPU_CHECKS_DRY_RUN)"; exit 2; }
[[ ${GPU_CHECKS_DRY_RUN:-0} =~ ^[01]$ ]] \
    || { echo "GPU_CHECKS_DRY_RUN='$GPU_CHECKS_DRY_RUN': 1 (steps run without CUDA) or 0"; exit 2; }
budget=${GPU_CHECKS_SECONDS-570}
[[ $budget =~ ^[0-9]+$ ]] || { echo "GPU_CHECKS_SECONDS='$budget': not a whole number of seconds (e.g. 330)"; exit 2; }
# OUT and PYTHON as given where the script was started (a bare name: python3 on PATH), then the repository root:
# every path below (bench/, configs/, tests/, data/, .whl/) is relative to it
OUT=${OUT:-gpu_out}
[[ $OUT = /* ]] || OUT=$PWD/$OUT
PYTHON=${PYTHON:-python3}
[[ $PYTHON != */* || $PYTHON = /* ]] || PYTHON=$PWD/$PYTHON
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
DEADLINE=$(( $(date +%s) + 10#$budget ))
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
# the settings every row trains with besides its torch.compile mode (`row`), and those of gap's clean-label row;
# train.device=cuda: a torch without CUDA refuses the row at once instead of training it on the CPU to the deadline
row_settings="--set train.progress=false --set train.tensorboard=false --set train.device=cuda"
clean_labels="--set data.noise.mode=none --set data.noise.rate=0"
# check_row CONFIG [--set KEY=VALUE ...]: exit unless `elr-mri train` takes CONFIG with these settings, the rows' own
# and ROW_SETTINGS: a typo fails here in a second, not as a failed row (and fallback) minutes into the call
check_row() {
    # shellcheck disable=SC2086  # word splitting intended: the settings hold several arguments
    "$PYTHON" bench/check_row_settings.py --config "$@" $row_settings --set train.compile_mode=reduce-overhead \
        ${ROW_SETTINGS:-} || exit 2
}
case "${1:-}" in
    '') check_row configs/cifar10/elr_sym40.yaml ;;
    gap)
        # shellcheck disable=SC2086  # word splitting intended: clean_labels holds several arguments
        check_row configs/cifar10/elr_sym40.yaml $clean_labels
        check_row configs/cifar10/elr_sym40_cosine.yaml ;;
    cifar10n) check_row configs/cifar10n/elr.yaml ;;
esac
# the budget said first, and whether it was given: a device call's timeout_s must leave it room
given=GPU_CHECKS_SECONDS
[ -n "${GPU_CHECKS_SECONDS+set}" ] || given="GPU_CHECKS_SECONDS unset: the default"
echo "budget: $budget s ($given), to $(date -u -d "@$DEADLINE" +%H:%M:%S) UTC" | tee "$OUT/device.txt"
# a missing carry fails here in seconds, not minutes into a mode: the files first, then the wheels' import
[ "${1:-}" != cifar10n ] || [ -f data/CIFAR-10_human.npz ] \
    || { echo "data/CIFAR-10_human.npz missing: run bench/gpu_prepare.sh and carry it"; exit 1; }
unpack=""  # the CIFAR archive, where a mode reads the images and they are not unpacked yet
case "${1:-}" in
    3d|step) ;;  # random pixels and volumes: no CIFAR images read
    *) [ -d data/cifar10/train ] || unpack=data/cifar10-jpeg.tar.xz
       [ -z "$unpack" ] || [ -f "$unpack" ] \
           || { echo "$unpack missing: run bench/gpu_prepare.sh and carry it"; exit 1; } ;;
esac
# no CUDA: each step would fail, or train on the CPU until the deadline; said in one line, before the archive's
# extraction and the wheels' install (GPU_CHECKS_DRY_RUN=1 goes on, as the header says). torch's version line for
# device.txt comes from the same import (seconds on a device machine's first call)
torch_said=$("$PYTHON" -c 'import torch
print("torch " + torch.__version__ + ("" if torch.cuda.is_available() else " sees no CUDA device"))' 2>&1 | tail -n 1)
[[ $torch_said = "torch "* && $torch_said != *" sees no CUDA device" ]] || [ "${GPU_CHECKS_DRY_RUN:-0}" = 1 ] \
    || { echo "$PYTHON: $torch_said: the checks need torch with a CUDA device (PYTHON=... names another Python;" \
             "GPU_CHECKS_DRY_RUN=1 runs the steps here, each refused for want of CUDA)"; exit 1; }
[ -z "$unpack" ] || tar -xJf "$unpack" -C data/ || exit 1
if [ -d .whl ]; then
    "$PYTHON" -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
"$PYTHON" -c "import monai, nibabel, nilearn" \
    || { echo "MONAI, nibabel or nilearn missing: run bench/gpu_prepare.sh and carry .whl"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$OUT/device.txt"
echo "$torch_said" | tee -a "$OUT/device.txt"

# step NAME CAP LOG COMMAND...: COMMAND under min(CAP, seconds left less KILL_GRACE) (skipped under 30 s), its output
# appended to LOG; its start and limit, then its exit status, wall time and, unless it ended well, how it ended, go to
# stdout and device.txt (a call cut by the device's own limit still says which steps were under way), and to
# OUTCOMES for `finish`; LAST_CUT is 1 when the limit stopped it (or it was skipped), 0 when it ended on its own. A
# training run stops at the next step after timeout's SIGTERM, saving what it did; -k: killed KILL_GRACE s later if it
# has not stopped by then, so at the deadline at the latest.
LAST_CUT=0
KILL_GRACE=15
OUTCOMES=$(mktemp)  # a file, not a variable: gap's rows run their steps in subshells
trap 'rm -f "$OUTCOMES"' EXIT
step() {
    local name=$1 cap=$2 log=$3 left=$(( DEADLINE - $(date +%s) - KILL_GRACE ))
    shift 3
    local limit=$(( cap < left ? cap : left )) start ended
    start=$(date +%s)
    if [ "$limit" -lt 30 ]; then
        echo "$name: skipped, ${limit} s for it" | tee -a "$OUT/device.txt"
        printf 'skipped for time\t%s\n' "$name" >> "$OUTCOMES"
        LAST_CUT=1
        return
    fi
    echo "$name: started $(date -u +%H:%M:%S) UTC, limit ${limit} s" | tee -a "$OUT/device.txt"
    timeout -k "$KILL_GRACE" "$limit" "$@" >> "$log" 2>&1
    local code=$? wall=$(( $(date +%s) - start ))
    ended=$(ending "$code" "$wall" "$limit" "$cap")
    LAST_CUT=0
    [[ $ended != cut* ]] || LAST_CUT=1
    echo "$name: exit $code, $wall s wall (limit ${limit} s)${ended:+, $ended}" | tee -a "$OUT/device.txt"
    [ -z "$ended" ] || printf '%s\t%s\n' "$ended" "$name" >> "$OUTCOMES"
}

# ending CODE WALL LIMIT CAP: how a step under LIMIT (the smaller of its CAP and the time left) ended, if not well:
# 124 is timeout's SIGTERM at the limit, 137 at or past it the kill KILL_GRACE s later (137 before it: something else,
# OOM); cut by the budget where the deadline set the limit, so that a step the plan gave too little time reads as that
ending() {
    local code=$1 wall=$2 limit=$3 cap=$4
    if [ "$code" -eq 124 ] || { [ "$code" -eq 137 ] && [ "$wall" -ge "$limit" ]; }; then
        if [ "$limit" -lt "$cap" ]; then echo "cut by the budget"; else echo "cut at its own limit"; fi
    elif [ "$code" -ne 0 ]; then
        echo "failed"
    fi
}

# finish: the steps that did not end well in one line (stdout and device.txt), then exit 1 if any failed, 0 if not: a
# step cut or skipped for time is a planned call's expected end, a failed one (its log in $OUT) is not
finish() {
    local kind names said=""
    for kind in failed "cut by the budget" "cut at its own limit" "skipped for time"; do
        names=$(awk -F '\t' -v kind="$kind" '$1 == kind { printf "%s\"%s\"", (n++ ? ", " : ""), $2 }' "$OUTCOMES")
        [ -z "$names" ] || said+="${said:+; }$kind: $names"
    done
    echo "end: ${said:-every step ended well}" | tee -a "$OUT/device.txt"
    if grep -q $'^failed\t' "$OUTCOMES"; then exit 1; fi
    exit 0
}

# row NAME MODE CONFIG [--set KEY=VALUE ...]: a CIFAR-10 row (CONFIG) under torch.compile's MODE and the settings
# given, with all the time left but step's KILL_GRACE; TORCH_LOGS=perf_hints makes torch log why it would skip CUDA graphs.
# Then a line (stdout, device.txt) with its seconds before the first epoch, decoding included, and how much longer its
# first epoch took than the later ones (compilation, graph capture): bench/row_setup.py.
row() {
    local name=$1 mode=$2 config=$3
    shift 3
    rm -rf "/tmp/$name"  # a rerun on the same machine starts the row afresh, and its figures in a reused OUT go,
    # its log too (appended to by step: an earlier run's summary or error would read as this run's)
    rm -f "$OUT/${name}_${mode}.log" "$OUT/${name}_${mode}_metrics.csv" "$OUT/${name}_${mode}_summary.json"
    keep_copying "/tmp/$name/metrics.csv" "$OUT/${name}_${mode}_metrics.csv" &
    local copier=$! started
    started=$(date +%s.%N)
    # shellcheck disable=SC2086  # word splitting intended: row_settings holds several arguments
    step "$name ($mode)" "$(( DEADLINE - $(date +%s) ))" "$OUT/${name}_$mode.log" \
        env TORCH_LOGS=perf_hints "$PYTHON" -m elr_mri.cli train --config "$config" \
        --out "/tmp/$name" $row_settings --set train.compile_mode="$mode" "$@"
    kill "$copier" 2>/dev/null
    wait "$copier" 2>/dev/null
    rm -f "$OUT/${name}_${mode}_metrics.csv.part"  # a copy the kill cut short
    cp "/tmp/$name/metrics.csv" "$OUT/${name}_${mode}_metrics.csv" 2>/dev/null
    cp "/tmp/$name/summary.json" "$OUT/${name}_${mode}_summary.json" 2>/dev/null
    # its setup apart from its training: metrics.csv starts at the first epoch (a row skipped for time has no folder)
    [ ! -d "/tmp/$name" ] || timeout 10 "$PYTHON" bench/row_setup.py "/tmp/$name" "$started" "$name ($mode)" \
        | tee -a "$OUT/device.txt"
}

# keep_copying FROM TO: FROM onto TO every 15 s (whole files: copied beside, then renamed). A device call cut by its
# own limit (the device time left can be shorter than the timeout asked) kills this script before a row's end:
# its epochs so far still come back.
keep_copying() {
    while sleep 15; do
        cp "$1" "$2.part" 2>/dev/null && mv "$2.part" "$2"
    done
}

# `bash bench/gpu_checks.sh gap`: the row's 3.2-point gap to the paper (85.98 against 89.15), two suspects at once,
# side by side on the one GPU: the row on the JPEGs' true labels (how far the JPEG copy alone holds the network back)
# and the noisy row under the official code's CIFAR-10 config (cosine warm restarts every 10 epochs, 150 epochs: the
# config the official repository ships, where the paper's appendix gives the ÷100 steps at 40 and 80; the official
# ELR/README.md reports it at 91.43% for this row, against 89.15 for the steps). Their epoch
# times against the 2.37 s of one run alone also say how much a second process gains. A run cut by the limit still
# leaves its metrics.csv: the clean row comparable epoch by epoch with
# bench/results/cifar10_elr_sym40_h200_cudagraphs.csv, the cosine row at the end of each 10-epoch cycle.
# ROW_SETTINGS applies to both (e.g. "--set train.compile_step=true" once `step` shows that it works and pays).
if [ "${1:-}" = gap ]; then
    # shellcheck disable=SC2086  # word splitting intended: ROW_SETTINGS holds several arguments
    row cifar10_elr_clean reduce-overhead configs/cifar10/elr_sym40.yaml $clean_labels ${ROW_SETTINGS:-} &
    # shellcheck disable=SC2086
    row cifar10_elr_sym40_cosine reduce-overhead configs/cifar10/elr_sym40_cosine.yaml ${ROW_SETTINGS:-} &
    wait
    finish
fi
# `bash bench/gpu_checks.sh cifar10n`: the CIFAR-10N worst row (real human labels, 40.2% wrong), CUDA graphs, with
# ROW_SETTINGS; it needs data/CIFAR-10_human.npz carried too (bench/gpu_prepare.sh copies it).
if [ "${1:-}" = cifar10n ]; then
    # shellcheck disable=SC2086  # word splitting intended: ROW_SETTINGS holds several arguments
    row cifar10n_elr_worst reduce-overhead configs/cifar10n/elr.yaml ${ROW_SETTINGS:-}
    finish
fi
# `bash bench/gpu_checks.sh jobs`: the sym-40 row's first 15 epochs for two seeds, one after the other and then side by
# side on the one GPU (bench/bench_side_by_side.py, the code path of `reproduce_paper_table.py --jobs`), CUDA graphs:
# whether a second process fills the GPU time one run leaves idle (~4.4 of 7.2 ms a step busy on an H200). ~5 min.
if [ "${1:-}" = jobs ]; then
    step "sym-40 two seeds, alone and side by side" "$(( DEADLINE - $(date +%s) ))" "$OUT/bench.log" \
        "$PYTHON" bench/bench_side_by_side.py --config configs/cifar10/elr_sym40.yaml --seeds 2 \
        --set train.epochs=15 --set train.compile_mode=reduce-overhead --set train.device=cuda \
        --out "$OUT/side_by_side_cuda.md" --keep-logs "$OUT"  # a failed run's log only: at most 2 more files
    finish
fi
# `bash bench/gpu_checks.sh step` (~5.5 min): the CUDA-graph engine tests (at most 2 min), then
# bench/bench_cifar_step.py in the time left (~3.5 min): a CIFAR step's time by piece under each plan, the whole step
# compiled first (train.compile_step: ELR's arithmetic in the CUDA graph, the batch assembly in one graph); then, if it
# pays, the row with ROW_SETTINGS="--set train.compile_step=true".
if [ "${1:-}" = step ]; then
    # 4 cases × 2 cold torch.compile trainings each
    step "CUDA-graph engine tests" 120 "$OUT/gpu_tests.log" "$PYTHON" -m pytest -v --tb=short -m gpu \
        -p no:cacheprovider tests/test_execution.py -k cuda_graphs
    step "cifar step by piece" "$(( DEADLINE - $(date +%s) ))" "$OUT/bench.log" "$PYTHON" bench/bench_cifar_step.py \
        --device cuda --out "$OUT/cifar_step_cuda.md"
    finish
fi
# `bash bench/gpu_checks.sh 3d`: what has never run on a GPU first (the phase-grid tests, the two dilated convolutions
# alone three ways, the variants table with its phase-grid rows right after the two anchors), the MRI loader last;
# ~8.5 min in all, the first three steps ~6.
if [ "${1:-}" = 3d ]; then
    step "device blur and phase-grid tests" 60 "$OUT/gpu_tests.log" "$PYTHON" -m pytest -v --tb=short -m gpu \
        -p no:cacheprovider tests/test_device_blur.py tests/test_phase_grid_conv.py
    step "dilated convolutions: library, phase grids, GEMM" 80 "$OUT/bench.log" "$PYTHON" bench/bench_dilated_conv.py \
        --device cuda --budget 1 --out "$OUT/dilated_conv_cuda.md"
    step "3D x8 execution variants" 280 "$OUT/bench.log" "$PYTHON" bench/bench_execution_variants.py \
        --device cuda --size 96 --budget 4 --profile 5 --out "$OUT/execution_variants_cuda.md"
    step "mri loader by workers and blur" 120 "$OUT/bench.log" "$PYTHON" bench/bench_mri_loader.py \
        --workers 0 4 8 --blur-on loader device --device cuda --out "$OUT/mri_loader_gpu_machine.md"
    finish
fi
# ROW_SETTINGS="--set KEY=VALUE ..." adds settings to this row (e.g. --set train.compile_step=true)
# shellcheck disable=SC2086  # word splitting intended: ROW_SETTINGS holds several arguments
row cifar10_elr_sym40 reduce-overhead configs/cifar10/elr_sym40.yaml ${ROW_SETTINGS:-}
# a CUDA-graph run that failed outright (no summary, and not cut by the limit) leaves the time to compile's default mode
if [ ! -f "$OUT/cifar10_elr_sym40_reduce-overhead_summary.json" ] && [ "$LAST_CUT" -eq 0 ]; then
    # the failed run's log tail and metrics move into device.txt: the device tool brings back 8 files at most
    for failed in "$OUT"/cifar10_elr_sym40_reduce-overhead.log "$OUT"/cifar10_elr_sym40_reduce-overhead_metrics.csv; do
        [ -f "$failed" ] && { echo "== $(basename "$failed") (CUDA-graph run, failed)"; tail -n 60 "$failed"; } \
            >> "$OUT/device.txt" && rm -f "$failed"
    done
    # shellcheck disable=SC2086  # word splitting intended: ROW_SETTINGS holds several arguments
    row cifar10_elr_sym40 default configs/cifar10/elr_sym40.yaml ${ROW_SETTINGS:-}
fi
step "device batches" 40 "$OUT/bench.log" "$PYTHON" bench/bench_device_batches.py --device cuda --random-pixels \
    --repeats 2 --out "$OUT/device_batches_cuda.md"
# test_execution.py first: its CUDA-graph tests have never run on a GPU
step "gpu tests" 90 "$OUT/gpu_tests.log" "$PYTHON" -m pytest -v --tb=short -m gpu -p no:cacheprovider \
    tests/test_execution.py tests/test_training_step.py tests/test_device_batches.py
step "cifar step by piece" 90 "$OUT/bench.log" "$PYTHON" bench/bench_cifar_step.py --device cuda \
    --out "$OUT/cifar_step_cuda.md"
finish
