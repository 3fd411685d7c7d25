#!/usr/bin/env bash
# A single-node Slurm cluster on localhost for the tests of `nas search --executor slurm`:
#   scripts/slurm-local.sh start   installs slurm-wlm and munge when missing (Debian packages),
#                                  writes slurm.conf for this host, starts munged, slurmctld
#                                  and slurmd, and waits until the node is idle
#   scripts/slurm-local.sh stop    stops the daemons it started (by their pid files)
# Needs root (it writes /etc/slurm and runs the daemons), as the test script runs in CI.
set -euo pipefail

STATE=/tmp/nas-slurm
CONF=/etc/slurm/slurm.conf

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing: slurm-wlm munge"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
    fi
    mkdir -p "$STATE" /etc/slurm /var/spool/slurmd /var/spool/slurmctld /run/munge /var/log/munge
    local node cpus mem
    node=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat >"$CONF" <<EOF
# Written by nas scripts/slurm-local.sh: one node, this host, for the tests.
ClusterName=nas-local
SlurmctldHost=$node
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmUser=root
SchedulerParameters=sched_interval=1
MinJobAge=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown -R munge:munge /etc/munge /run/munge /var/log/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        su -s /bin/sh munge -c munged
        echo munged >>"$STATE/started"
    fi
    if ! pgrep -x slurmctld >/dev/null; then
        slurmctld
        echo slurmctld >>"$STATE/started"
    fi
    if ! pgrep -x slurmd >/dev/null; then
        slurmd
        echo slurmd >>"$STATE/started"
    fi
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "slurm: node $node up ($(sinfo -h -o '%T %c CPUs'))"
            return 0
        fi
        sleep 1
    done
    echo "slurm: the node did not come up:" >&2
    sinfo >&2 || true
    return 1
}

stop() {
    [ -f "$STATE/started" ] || return 0
    for d in slurmd slurmctld; do
        if grep -qx "$d" "$STATE/started"; then
            [ -f "/run/$d.pid" ] && kill "$(cat "/run/$d.pid")" 2>/dev/null || pkill -x "$d" || true
        fi
    done
    if grep -qx munged "$STATE/started"; then
        pkill -x munged || true
    fi
    rm -f "$STATE/started"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
