#!/usr/bin/env bash
# Preprocess ADNI T1 scans into the 1.5 mm MNI grid that training reads (121x145x121, ML4H input).
#
# Input: a BIDS tree (e.g. from `clinica convert adni-to-bids`; participants.tsv columns such as
# diagnosis/age/sex are carried through) or a CSV with participant_id,session_id,path[,diagnosis,age,sex].
#
#   On one machine:     scripts/preprocess_adni.sh ADNI_BIDS_OR_CSV OUT_DIR
#   On a SLURM cluster: sbatch --array=0-15 --cpus-per-task=4 scripts/preprocess_adni.sh IN OUT
#                       then, once all tasks ended: SHARDS=merge scripts/preprocess_adni.sh IN OUT
# Re-running the same command resumes: scans whose sidecar matches are skipped.
# Exit status: 0 all scans done; 1 some failed (OUT/failures.csv says why); 2 bad input table.
set -euo pipefail

INPUT=${1:?usage: preprocess_adni.sh ADNI_BIDS_DIR_OR_CSV OUT_DIR}
OUTPUT=${2:?usage: preprocess_adni.sh ADNI_BIDS_DIR_OR_CSV OUT_DIR}
PYTHON=${PYTHON:-"$(dirname "$0")/../.venv/bin/python"}
CORES=${SLURM_CPUS_PER_TASK:-$(nproc)}
JOBS=${JOBS:-$(( CORES > 1 ? CORES / 2 : 1 ))}  # 2 ITK threads per worker suits 1 mm registrations

COMMON=(--input "$INPUT" --output "$OUTPUT" --resolution 1.5 --transform affine --normalise minmax)

if [[ "${SHARDS:-}" == "merge" ]]; then
    exec "$PYTHON" -m preprocess merge --output "$OUTPUT"
elif [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    COUNT=$(( ${SLURM_ARRAY_TASK_MAX:?} - ${SLURM_ARRAY_TASK_MIN:-0} + 1 ))
    INDEX=$(( SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} ))
    exec "$PYTHON" -m preprocess "${COMMON[@]}" --jobs "$JOBS" --shard "$INDEX/$COUNT" --no-progress
else
    exec "$PYTHON" -m preprocess "${COMMON[@]}" --jobs "$JOBS"
fi
