#!/usr/bin/env bash
# Preprocess ADNI T1 scans into the 1.5 mm MNI grid that training reads (121x145x121, ML4H input).
#
# Input: a BIDS tree (e.g. from `clinica convert adni-to-bids`; participants.tsv columns such as
# diagnosis/age/sex are carried through) or a CSV with participant_id,session_id,path[,diagnosis,age,sex].
#
#   On one machine:     scripts/preprocess_adni.sh ADNI_BIDS_OR_CSV OUT_DIR
#   On a SLURM cluster: sbatch --array=0-15 --export=ALL,SHARDS=16 --cpus-per-task=4 scripts/preprocess_adni.sh IN OUT
#                       (from the project's root, or with PYTHON=/path/to/.venv/bin/python in --export)
#                       (task I runs shard I of SHARDS: a failed task resubmitted alone, --array=3,7, redoes its own
#                       shards), then, once all tasks ended: SHARDS=merge scripts/preprocess_adni.sh IN OUT
# Re-running the same command resumes: scans whose sidecar matches are skipped.
# Exit status: 0 all scans done; 1 some failed (OUT/failures.csv says why), or the merge found shards missing or
# run with other settings; 2 bad input table or settings.
set -euo pipefail

USAGE="usage: scripts/preprocess_adni.sh ADNI_BIDS_DIR_OR_CSV OUT_DIR"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then  # the usage and the comments above, as a command's --help
    echo "$USAGE"
    sed -n '2,/^set /s/^# \{0,1\}//p' "$0"
    exit 0
fi
[ $# -eq 2 ] || { echo "$USAGE (--help, or the comments at its top, say more)" >&2
                  exit 2; }
INPUT=$1
OUTPUT=$2
# Under sbatch, $0 is Slurm's copy of this script (/var/spool/slurmd/job<N>/slurm_script), beside no .venv: the
# project is then the folder sbatch ran in (its root, as in the usage above)
ROOT="$(dirname "$0")/.."
if [[ ! -e "$ROOT/.venv/bin/python" && -n "${SLURM_SUBMIT_DIR:-}" ]]; then
    ROOT=$SLURM_SUBMIT_DIR
fi
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
if ! command -v "$PYTHON" > /dev/null; then
    echo "preprocess_adni.sh: error: no Python at $PYTHON; run the script (or sbatch) from the project's root, or" \
         "set PYTHON to the project's environment (sbatch --export=ALL,PYTHON=/path/to/.venv/bin/python ...)" >&2
    exit 2
fi
if [[ -z "${JOBS:-}" ]]; then  # 2 ITK threads per worker suits 1 mm registrations
    # the cores preprocess shares out (affinity, --cpus-per-task, a container's quota); nproc says 1 under the
    # OMP_NUM_THREADS=1 that busy machines are advised, and the host's cores in a container
    CORES=$("$PYTHON" -c "from preprocess.cores import usable_cores; print(usable_cores())")
    JOBS=$(( CORES > 1 ? CORES / 2 : 1 ))
fi

COMMON=(--input "$INPUT" --output "$OUTPUT" --resolution 1.5 --transform affine --normalise minmax)

if [[ "${SHARDS:-}" == "merge" ]]; then
    exec "$PYTHON" -m preprocess merge --output "$OUTPUT"
elif [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    # The shard count is given, not read from the array's bounds: a resubmitted task must keep its shard's N
    if [[ ! "${SHARDS:-}" =~ ^[1-9][0-9]*$ ]]; then
        echo "preprocess_adni.sh: error: an array task needs SHARDS, the number of shards of the whole array (e.g." \
             "sbatch --array=0-15 --export=ALL,SHARDS=16 ...); got '${SHARDS:-}'" >&2
        exit 2
    fi
    if (( SLURM_ARRAY_TASK_ID >= SHARDS )); then  # a 1-based array (--array=1-16) would never run shard 0
        echo "preprocess_adni.sh: error: array task $SLURM_ARRAY_TASK_ID is no shard of $SHARDS: task ids are the" \
             "shards' 0-based indices, --array=0-$(( SHARDS - 1 ))" >&2
        exit 2
    fi
    exec "$PYTHON" -m preprocess "${COMMON[@]}" --jobs "$JOBS" --shard "$SLURM_ARRAY_TASK_ID/$SHARDS"
else
    exec "$PYTHON" -m preprocess "${COMMON[@]}" --jobs "$JOBS"
fi
