#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for running tools/slurm_train.sh for real.
#
#   tools/slurm/cluster.sh up       install slurm-wlm + munge if missing, start
#                                   munged, slurmctld, slurmd; wait for the node
#   tools/slurm/cluster.sh down     stop what `up` started
#   tools/slurm/cluster.sh status   daemons and sinfo
#
# Everything lives in $MMWRS_SLURM_DIR (default /tmp/mmwrs-slurm): its own munge
# socket and key, slurm.conf on non-default ports (6917/6918), logs, pid files.
# Clients need `source $MMWRS_SLURM_DIR/env.sh` (it exports SLURM_CONF).
# Settings known to work on these machines (no cgroups): proctrack/linuxproc,
# task/none, SlurmUser=root. Needs root.
set -euo pipefail
DIR=${MMWRS_SLURM_DIR:-/tmp/mmwrs-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)

die() { echo "[slurm] $*" >&2; exit 1; }

install_if_missing() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
      && command -v munged >/dev/null && command -v srun >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "slurm-wlm/munge are not installed and installing them needs root"
  echo "[slurm] installing slurm-wlm and munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurm-wlm munge >/dev/null; } \
    || die "apt-get could not install slurm-wlm and munge"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {
  local pidfile=$1
  if running "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

write_conf() {
  # The CPUs slurmd will detect. Not nproc: it honours OMP_NUM_THREADS, and a
  # node declared with fewer CPUs than a job's tasks leaves the job pending.
  CPUS=$(getconf _NPROCESSORS_ONLN)
  cat > "$CONF" <<CONF
ClusterName=mmwrs
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6917
SlurmdPort=6918
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
  printf 'export SLURM_CONF=%s\n' "$CONF" > "$DIR/env.sh"
}

up() {
  install_if_missing
  mkdir -p "$DIR"/{state,spool,log,run,munge}
  chmod 700 "$DIR/munge"
  # A crashed earlier run leaves pid files of dead processes: clear them.
  for pidfile in "$DIR"/run/*.pid "$DIR"/munge/munged.pid; do
    [ -e "$pidfile" ] && ! running "$pidfile" && rm -f "$pidfile"
  done
  write_conf
  export SLURM_CONF=$CONF
  if ! running "$DIR/munge/munged.pid"; then
    [ -s "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null; chmod 600 "$DIR/munge/munge.key"; }
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
      --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
      --seed-file="$DIR/munge/munged.seed" \
      || die "munged did not start: $(tail -3 "$DIR/log/munged.log" 2>/dev/null)"
  fi
  if ! running "$DIR/run/slurmctld.pid"; then
    slurmctld -f "$CONF" || die "slurmctld did not start: $(tail -5 "$DIR/log/slurmctld.log")"
  fi
  if ! running "$DIR/run/slurmd.pid"; then
    slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start: $(tail -5 "$DIR/log/slurmd.log")"
  fi
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle|mixed|allocated) break;; esac
    sleep 0.5
  done
  case "${state:-}" in
    idle|mixed|allocated) ;;
    *) die "node $NODE did not come up (state '${state:-none}'); slurmctld log: $(tail -5 "$DIR/log/slurmctld.log"); slurmd log: $(tail -5 "$DIR/log/slurmd.log")";;
  esac
  echo "[slurm] up: node $NODE $state, partition debug. Use: source $DIR/env.sh"
}

down() {
  stop_pidfile "$DIR/run/slurmd.pid"
  stop_pidfile "$DIR/run/slurmctld.pid"
  stop_pidfile "$DIR/munge/munged.pid"
  echo "[slurm] down"
}

status() {
  for pidfile in "$DIR/munge/munged.pid" "$DIR/run/slurmctld.pid" "$DIR/run/slurmd.pid"; do
    if running "$pidfile"; then echo "running $(basename "$pidfile" .pid) $(cat "$pidfile")";
    else echo "stopped $(basename "$pidfile" .pid)"; fi
  done
  [ -f "$CONF" ] && SLURM_CONF=$CONF sinfo 2>/dev/null || true
}

case "${1:-}" in
  up) up;;
  down) down;;
  status) status;;
  *) echo "usage: $0 up|down|status" >&2; exit 2;;
esac
