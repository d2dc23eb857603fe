#!/usr/bin/env bash
# A one-node Slurm on this machine for the cluster tests: Debian's slurmctld and slurmd
# (Slurm 22.05), no munge (auth/none), two stand-in GPUs, every state, spool, pid and
# log file under DIR, its own ports. Nothing outside DIR is changed besides installing the packages.
#   scripts/slurm.sh start DIR   install the packages if missing (as root), write
#                                DIR/slurm.conf, start both daemons, wait for the node
#   scripts/slurm.sh stop DIR    stop the daemons started in DIR, by their pid files
# Clients find it with SLURM_CONF=DIR/slurm.conf.
set -euo pipefail
command="${1:?usage: scripts/slurm.sh start|stop DIR}"
dir="${2:?usage: scripts/slurm.sh start|stop DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
export SLURM_CONF="$dir/slurm.conf"

stop() {
  for daemon in slurmd slurmctld; do
    if [ -f "$dir/$daemon.pid" ]; then
      pid="$(cat "$dir/$daemon.pid")"
      # only our daemon: the pid must still be that program
      if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$daemon" ]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
      fi
      rm -f "$dir/$daemon.pid"
    fi
  done
}

case "$command" in
stop) stop ;;
start)
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      echo "slurm.sh: Slurm is missing; as root on Debian: apt-get install slurmctld slurmd slurm-client" >&2
      exit 1
    fi
    echo "slurm.sh: installing Debian's slurmctld, slurmd and slurm-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client >/dev/null; }
  fi
  stop
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/dev"
  # two stand-in GPUs (Debian's Slurm has no NVML detection; any file will do): Slurm
  # hands them out per task and sets CUDA_VISIBLE_DEVICES as on a GPU node
  ln -sf /dev/null "$dir/dev/gpu0"
  ln -sf /dev/null "$dir/dev/gpu1"
  printf 'Name=gpu File=%s\nName=gpu File=%s\n' "$dir/dev/gpu0" "$dir/dev/gpu1" > "$dir/gres.conf"
  host="$(hostname -s)"
  # the node as slurmd sees it (CPUs, sockets, memory), with two more CPUs than the
  # cores so that a 2-core machine runs a few tasks at once (config_overrides)
  node="$(slurmd -C | head -1 | sed -E 's/ CPUs=[0-9]+/ CPUs=4/; s/ (Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+//g')"
  cat > "$SLURM_CONF" <<CONF
ClusterName=radrun-test
GresTypes=gpu
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=10
$node Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if [ "$(sinfo --noheader --format=%T 2>/dev/null | head -1)" = idle ]; then
      echo "slurm.sh: one-node Slurm up ($host); SLURM_CONF=$SLURM_CONF"
      exit 0
    fi
    sleep 0.5
  done
  echo "slurm.sh: the node did not become idle; logs in $dir/log" >&2
  sinfo >&2 || true
  tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
  ;;
*) echo "usage: scripts/slurm.sh start|stop DIR" >&2; exit 2 ;;
esac
