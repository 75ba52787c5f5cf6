#!/usr/bin/env bash
# Training under Slurm with srun: one task per process, rank from SLURM_PROCID.
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# GPUS: total tasks (processes; on CPU nodes "GPUS" just counts processes),
# GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: as in OpenMMLab's script.
# GPUs are requested (--gres) only when GPUS_PER_NODE > 0 and USE_GRES != 0,
# so the same script runs on CPU-only partitions with USE_GRES=0.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
USE_GRES=${USE_GRES:-1}
gres=()
if [ "$USE_GRES" != 0 ] && [ "$GPUS_PER_NODE" -gt 0 ]; then
  gres=(--gres=gpu:"$GPUS_PER_NODE")
fi
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${gres[@]}" \
  --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
  "${PYTHON:-python}" -u "$here/train.py" "$CONFIG" --work-dir="$WORK_DIR" \
  --launcher=slurm "${@:5}"
