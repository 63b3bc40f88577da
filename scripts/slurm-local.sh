#!/bin/bash
# A one-node Slurm cluster on this machine (slurmctld + slurmd as root, no
# systemd), for the tests of `nave-lab train --slurm`:
#   scripts/slurm-local.sh start DIR    writes DIR/slurm.conf and starts the daemons
#   scripts/slurm-local.sh stop DIR     stops them
# Then point the Slurm commands at it: export SLURM_CONF=DIR/slurm.conf.
# Needs Debian's slurm-wlm and munge (`make setup-slurm`).
set -euo pipefail
action=${1:?start or stop}
dir=$(realpath -m "${2:?a folder for the cluster state}")

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi

for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null || { echo "slurm-local: $tool is missing; run make setup-slurm" >&2; exit 1; }
done
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
# munged refuses folders others may write to (a umask of 002 would make them so).
chmod 700 "$dir" "$dir/munge"
# Munge, the daemons' authentication, with a key and socket of its own.
if [ ! -f "$dir/munge/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
  chmod 400 "$dir/munge/munge.key"
fi
socket="$dir/munge/munge.socket"
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
host=$(hostname)
cpus=$(nproc)
cat > "$dir/slurm.conf" <<CONF
ClusterName=navelab
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued task waits before it may start
# again (120 s by default): short, for tests.
AuthInfo=socket=$socket,cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000))
SlurmdPort=$((7817 + RANDOM % 1000))
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# No cgroups in a container: the v1 plugin loads without using them.
echo "CgroupPlugin=cgroup/v1" > "$dir/cgroup.conf"
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "slurm-local: a one-node cluster ($host, $cpus CPUs) is up; export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm-local: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
stop
exit 1
