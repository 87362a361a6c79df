#!/usr/bin/env bash
# A real Slurm on this one machine, to try the sbatch scripts (and to test them): munged, one
# slurmctld and NODES slurmd daemons (`slurmd -N nK`), nodes n1..nN that all run here on CPU.
#
#   sudo apt-get install -y slurm-wlm munge        # Debian/Ubuntu packages
#   sudo bash launch/slurm/local-cluster.sh up     # start (idempotent); prints `sinfo`
#   sudo bash launch/slurm/local-cluster.sh down   # stop every daemon it started
#   bash launch/slurm/local-cluster.sh status      # `sinfo`, exit 1 when the cluster is down
#
# It needs root (munged and the slurmd daemons run as root) and writes /etc/slurm/slurm.conf
# (refusing to replace one it did not write), hosts entries n1..nN -> 127.0.0.1 in /etc/hosts
# (removed by `down`), and its state and daemon logs under STATE_DIR. Jobs see no GPUs, so submit
# with `--gres=none` (the scripts ask for GPUs). Knobs (environment, defaults in brackets):
#   NODES [3]   CPUS_PER_NODE [2]   STATE_DIR [/tmp/grpo-gsm8k-slurm]   FIRST_PORT [17001]
set -euo pipefail

NODES=${NODES:-3}
CPUS_PER_NODE=${CPUS_PER_NODE:-2}
STATE_DIR=${STATE_DIR:-/tmp/grpo-gsm8k-slurm}
FIRST_PORT=${FIRST_PORT:-17001}
CONF=/etc/slurm/slurm.conf
MARK="# written by grpo-gsm8k launch/slurm/local-cluster.sh"
HOSTS_MARK="# grpo-gsm8k local cluster"

die() {
    echo "local-cluster.sh: error: $*" >&2
    exit 2
}

[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "NODES must be a positive integer, got '$NODES'"
[[ $CPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] || die "CPUS_PER_NODE must be a positive integer, got '$CPUS_PER_NODE'"
[[ $FIRST_PORT =~ ^[1-9][0-9]*$ ]] || die "FIRST_PORT must be a port number, got '$FIRST_PORT'"

node_names() {
    local i
    for ((i = 1; i <= NODES; i++)); do echo "n$i"; done
}

# is a pid file's process alive?
alive() {
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# wait until every node answers idle (or mixed/allocated), at most $1 seconds
wait_nodes() {
    local deadline=$((SECONDS + $1)) ready
    while ((SECONDS < deadline)); do
        ready=$(sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 ~ /^(idle|mixed|allocated|completing)/' | wc -l)
        ((ready >= NODES)) && return 0
        # nodes that were down when the controller last ran come back with a resume
        scontrol update nodename="n[1-$NODES]" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    return 1
}

write_config() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; move it away to use the local cluster"
    fi
    mkdir -p /etc/slurm "$STATE_DIR/state" "$STATE_DIR/log"
    local n
    for n in $(node_names); do mkdir -p "$STATE_DIR/spool/$n"; done
    local last_port=$((FIRST_PORT + NODES - 1))
    cat >"$CONF.tmp" <<EOF
$MARK
# $NODES slurmd daemons on this machine (multiple-slurmd): nodes n1..n$NODES, all localhost.
ClusterName=grpo-local
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool/%n
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd-%n.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
MinJobAge=600
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=$FIRST_PORT-$last_port CPUs=$CPUS_PER_NODE State=UNKNOWN
PartitionName=local Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

add_hosts() {
    local name
    for name in $(node_names); do
        grep -qE "^127\.0\.0\.1[[:space:]]+$name([[:space:]]|\$)" /etc/hosts ||
            echo "127.0.0.1 $name $HOSTS_MARK" >>/etc/hosts
    done
}

remove_hosts() {
    if grep -qF "$HOSTS_MARK" /etc/hosts; then
        # /etc/hosts may be a bind mount: rewrite it in place rather than replace it
        local kept
        kept=$(grep -vF "$HOSTS_MARK" /etc/hosts)
        printf '%s\n' "$kept" >/etc/hosts
    fi
}

start_munge() {
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chmod 400 /etc/munge/munge.key
    fi
    if ! alive /run/munge/munged.pid; then
        munged --force --pid-file=/run/munge/munged.pid
    fi
}

up() {
    [[ $(id -u) == 0 ]] || die "up needs root (munged and slurmd run as root)"
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        die "slurmctld or munged not found; install them: apt-get install -y slurm-wlm munge"
    fi
    write_config
    add_hosts
    start_munge
    if ! alive "$STATE_DIR/slurmctld.pid"; then
        slurmctld
    fi
    local name
    for name in $(node_names); do
        if ! alive "$STATE_DIR/slurmd-$name.pid"; then
            slurmd -N "$name"
        fi
    done
    wait_nodes 60 || die "the nodes did not come up in 60 s; see $STATE_DIR/log/"
    sinfo
}

down() {
    [[ $(id -u) == 0 ]] || die "down needs root"
    local name pidfile
    if [[ -f $CONF ]] && grep -qF "$MARK" "$CONF"; then
        scancel --full --quiet --partition=local 2>/dev/null || true
    fi
    for pidfile in "$STATE_DIR"/slurmd-*.pid "$STATE_DIR/slurmctld.pid" /run/munge/munged.pid; do
        if alive "$pidfile"; then kill "$(cat "$pidfile")"; fi
    done
    for pidfile in "$STATE_DIR"/slurmd-*.pid "$STATE_DIR/slurmctld.pid" /run/munge/munged.pid; do
        for _ in {1..50}; do
            alive "$pidfile" || break
            sleep 0.2
        done
        rm -f "$pidfile"
    done
    for name in $(node_names); do rm -rf "${STATE_DIR:?}/spool/$name"; done
    remove_hosts
    echo "local cluster stopped"
}

case ${1:-} in
up) up ;;
down) down ;;
status) sinfo ;;
*) die "usage: local-cluster.sh up|down|status" ;;
esac
