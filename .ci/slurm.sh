#!/usr/bin/env bash
# A single-node Slurm for tests/slurm.rs: `.ci/slurm.sh start` installs it (Debian packages
# slurmctld, slurmd, slurm-client), writes /etc/slurm/slurm.conf, starts both daemons by PID and waits
# until a job step runs; `.ci/slurm.sh stop` cancels every job, waits for an empty queue (stopping the
# daemons does not stop jobs) and stops the daemons by PID; `status` says whether it is up.
# Both are idempotent. Needs root (apt-get, SlurmUser=root).
#
# The configuration needs no munge and no cgroups (auth/none, cred/none, proctrack/linuxproc,
# task/none). The node declares 16 CPUs whatever it has (SlurmdParameters=config_overrides), so more
# workers than cores can run at once, and a `gpu` feature for constraint tests.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
STATE=${EBBTIDE_SLURM_STATE:-/var/lib/ebbtide-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by ebbtide .ci/slurm.sh"

say() { echo "slurm.sh: $*" >&2; }
alive() { [[ -f $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }
step_runs() { timeout 10 srun -N1 -n1 true >/dev/null 2>&1; }

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && return
    say "installing slurmctld slurmd slurm-client"
    apt-get install -y slurmctld slurmd slurm-client >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y slurmctld slurmd slurm-client >/dev/null; }
}

write_conf() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        say "$CONF exists and was not written by this script; refusing to overwrite it"
        exit 1
    fi
    local host mem
    host=$(hostname -s)
    # RealMemory must not exceed what slurmd finds, or the node is drained: 90% of MemTotal, in MB.
    mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=ebbtide
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# Oversized jobs are refused at submission instead of pending for ever.
EnforcePartLimits=ALL
# From sbatch to RUNNING in about 0.4 s instead of 1.3 s.
SchedulerParameters=batch_sched_delay=0
# Seconds between SIGTERM and SIGKILL when a job is cancelled or runs out of time.
KillWait=5
SlurmdParameters=config_overrides
NodeName=$host CPUs=16 RealMemory=$mem Feature=gpu State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [[ $(id -u) == 0 ]] || { say "needs root (apt-get, SlurmUser=root)"; exit 1; }
    install
    if alive slurmctld && alive slurmd && step_runs; then
        say "already running (slurmctld $(cat "$STATE/slurmctld.pid"), slurmd $(cat "$STATE/slurmd.pid"))"
        return
    fi
    stop_daemons
    write_conf
    # -c: start from a clean state (no jobs from an earlier run); -i: ignore an unreadable one.
    setsid slurmctld -D -c -i </dev/null >"$STATE/slurmctld.log" 2>&1 &
    echo $! >"$STATE/slurmctld.pid"
    setsid slurmd -D </dev/null >"$STATE/slurmd.log" 2>&1 &
    echo $! >"$STATE/slurmd.pid"
    for _ in $(seq 60); do
        if step_runs; then
            say "running (slurmctld $(cat "$STATE/slurmctld.pid"), slurmd $(cat "$STATE/slurmd.pid"), node $(hostname -s))"
            return
        fi
        alive slurmctld || { say "slurmctld exited:"; tail -20 "$STATE/slurmctld.log" >&2; exit 1; }
        alive slurmd || { say "slurmd exited:"; tail -20 "$STATE/slurmd.log" >&2; exit 1; }
        sleep 0.5
    done
    say "no job step ran within 30 s; logs in $STATE"
    tail -5 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2
    exit 1
}

# Stops the daemons we started, by PID: SIGTERM, then SIGKILL after 10 s.
stop_daemons() {
    local name pid
    for name in slurmd slurmctld; do
        alive "$name" || { rm -f "$STATE/$name.pid"; continue; }
        pid=$(cat "$STATE/$name.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        rm -f "$STATE/$name.pid"
    done
}

stop() {
    if alive slurmctld; then
        # Jobs outlive the daemons: cancel them all and wait for an empty queue first.
        scancel --full --quiet $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 60); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
        [[ -z $(squeue -h -o %i 2>/dev/null) ]] || say "jobs still listed after 30 s: $(squeue -h -o '%i %T' | tr '\n' ' ')"
    fi
    stop_daemons
    say "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) alive slurmctld && alive slurmd && step_runs && { say "up"; exit 0; }; say "down"; exit 1 ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
