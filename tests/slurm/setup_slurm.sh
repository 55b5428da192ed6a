#!/usr/bin/env bash
# Start or stop a private one-node Slurm cluster for nvlow's real-Slurm tests (tests/test_slurm_real.py).
#
#   tests/slurm/setup_slurm.sh start WORKDIR              # install (if needed), start; writes WORKDIR/env.sh
#   tests/slurm/setup_slurm.sh start WORKDIR --task-cgroup  # the same with task/cgroup (see below)
#   tests/slurm/setup_slurm.sh restart-slurmd WORKDIR DIR # slurmd again, with DIR/slurm.conf + DIR/gres.conf
#   tests/slurm/setup_slurm.sh stop  WORKDIR              # idempotent teardown; removes WORKDIR
#
# Everything lives under WORKDIR and listens on localhost only: munged with its own key, socket, pid and
# seed files; slurmctld and slurmd on free ports, SLURM_CONF=WORKDIR/etc/slurm.conf (SlurmUser=root,
# proctrack/linuxproc, task/none, select/cons_tres, GresTypes=gpu, AuthInfo=socket=<our munged>).
# The node's GPUs are the mknod'd /dev/nvidiaN of a fake root (tests/slurm/fakeroot.py, WORKDIR/root):
# gres.conf (AutoDetect=off) lists them in device-minor order with their Type, as `nvlow slurm gres`
# does, and slurm.conf's Gres= names the same type (slurmctld schedules typed requests by slurm.conf's
# types only: with an untyped Gres=gpu:4 there, --gres=gpu:a100:1 is "not available"). Debian's
# package scripts do not start the system daemons here (no systemd), and nothing of the system's
# Slurm or munge configuration is read or touched. Every client call runs under `timeout`; daemons
# are stopped by their PID, SIGKILL after 10 s.
#
# After `start`, `. WORKDIR/env.sh` exports SLURM_CONF, NVLOW_SLURM=1, NVLOW_TEST_SLURM_WORKDIR,
# NVLOW_TEST_SLURM_ROOT (the fake root), NVLOW_TEST_SLURM_NODE, NVLOW_TEST_SLURM_GPUS (GRES count) and
# NVLOW_TEST_SLURM_TASK (the TaskPlugin).
#
# --task-cgroup (the renumbered variant): TaskPlugin=task/cgroup, and WORKDIR/etc/cgroup.conf with
# CgroupPlugin=cgroup/v1, CgroupAutomount=no, ConstrainDevices=yes (cores and memory unconstrained). Slurm
# then puts each step in a devices cgroup under /sys/fs/cgroup/devices/slurm_<node> and numbers the step's
# CUDA_VISIBLE_DEVICES from 0, while SLURM_STEP_GPUS keeps the GRES indices. Needs the cgroup v1 devices
# hierarchy mounted at /sys/fs/cgroup/devices (a pure cgroup v2 host has none: `start` says so and fails).
# `stop` removes the (empty) /sys/fs/cgroup/*/slurm_<node> trees Slurm left, unless they predate `start`.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
NODE=nvlow-node
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
T=10  # seconds for one client call
TASK_PLUGIN=task/none
# task/cgroup's v1 cgroups (Debian's build names the root slurm_<node>, as with MULTIPLE_SLURMD: measured)
CGROUP_ROOTS="/sys/fs/cgroup/*/slurm_$NODE"

log() { printf 'setup_slurm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { die "usage: $0 start WORKDIR [--task-cgroup] | stop WORKDIR | restart-slurmd WORKDIR CONFDIR"; }

# ---------------------------------------------------------------- packages
# shellcheck source=../harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/../harness.sh"  # ensure_packages, stop_pidfile

find_tools() {
    PATH=$PATH:/usr/sbin:/sbin
    local t
    for t in munged munge unmunge slurmctld slurmd srun sbatch scontrol sinfo squeue scancel; do
        command -v "$t" >/dev/null || die "$t not found"
    done
}

# ---------------------------------------------------------------- munge
start_munged() {
    local m="$W/munge"
    mkdir -p "$m/etc" "$m/run" "$m/lib" "$m/log"
    # munged refuses a socket directory that others may write to, and a key others may read
    chmod 0755 "$W" "$m" "$m/run"
    chmod 0700 "$m/etc" "$m/lib" "$m/log"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$m/etc/munge.key" >/dev/null 2>&1 || die "mungekey failed"
    else
        dd if=/dev/urandom of="$m/etc/munge.key" bs=1024 count=1 status=none
    fi
    chmod 0400 "$m/etc/munge.key"
    MUNGE_SOCKET="$m/run/munge.socket.2"
    munged --key-file="$m/etc/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$m/run/munged.pid" \
        --seed-file="$m/lib/munged.seed" --log-file="$m/log/munged.log" </dev/null >"$m/log/start.log" 2>&1 \
        || { cat "$m/log/start.log" "$m/log/munged.log" >&2 2>/dev/null; die "munged did not start"; }
    local i
    for i in $(seq 1 50); do
        if [ -S "$MUNGE_SOCKET" ] && timeout "$T" munge -n -S "$MUNGE_SOCKET" </dev/null \
                | timeout "$T" unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    tail -20 "$m/log/munged.log" >&2 || true
    die "munged does not answer on $MUNGE_SOCKET"
}

# ---------------------------------------------------------------- configuration
free_ports() {
    "$PYTHON" - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The node's sockets, cores and threads as slurmd sees this machine (slurmd -C), so it is never drained
# for a mismatch; RealMemory is left at its default.
node_hardware() {
    timeout "$T" slurmd -C 2>/dev/null | head -1 | tr ' ' '\n' \
        | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' '
}

write_conf() {
    local ctld_port slurmd_port host hw count type
    read -r ctld_port slurmd_port <<<"$(free_ports)"
    host=$(hostname -s)
    hw=$(node_hardware)
    [ -n "$hw" ] || die "slurmd -C printed no node configuration"
    count=$("$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["gpus"]))' "$W/fakeroot.json")
    type=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["gres_type"])' "$W/fakeroot.json")
    mkdir -p "$W/etc" "$W/state" "$W/spool" "$W/log" "$W/run"
    cat >"$W/etc/slurm.conf" <<EOF
# nvlow test cluster (tests/slurm/setup_slurm.sh); private to $W
ClusterName=nvlowtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool/%n
SlurmctldPidFile=$W/run/slurmctld.pid
SlurmdPidFile=$W/run/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=$TASK_PLUGIN
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=5
KillWait=5
NodeName=$NODE NodeHostname=$host NodeAddr=127.0.0.1 $hw Gres=gpu:$type:$count State=UNKNOWN
PartitionName=nvlow Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # the harness's own gres.conf: the fake root's /dev/nvidiaN in minor order, nothing else
    {
        echo "AutoDetect=off"
        "$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1]))
for m in d["minor_order"]: print("Name=gpu Type=%s File=%s/dev/nvidia%d" % (d["gres_type"], d["root"], m))' \
            "$W/fakeroot.json"
    } >"$W/etc/gres.conf"
    if [ "$TASK_PLUGIN" = task/cgroup ]; then
        # read from slurm.conf's directory; autodetection would pick v1 on this hybrid layout too, but say it
        cat >"$W/etc/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
ConstrainDevices=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
EOF
    fi
    export SLURM_CONF="$W/etc/slurm.conf"
    GRES_COUNT=$count
}

# ---------------------------------------------------------------- daemons
slurmd_start_time() {
    timeout "$T" scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' || true
}

# $1 (optional): a SlurmdStartTime= the node must no longer report (a slurmd started before ours): until the
# new slurmd has registered, slurmctld still shows the old one's state, and a job started in that window
# leaves the node "mixed" for half a minute after it ends
wait_node_idle() {
    local i state old=${1:-}
    for i in $(seq 1 150); do
        state=$(timeout "$T" sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true)
        if [ -z "$old" ] || [ "$(slurmd_start_time)" != "$old" ]; then
            case "$state" in idle*) return 0 ;; esac
        fi
        sleep 0.2
    done
    log "node $NODE is '${state:-unknown}' after 30 s:"
    { timeout "$T" scontrol show node "$NODE"; timeout "$T" squeue -t all; } 2>&1 | sed 's/^/    /' >&2 || true
    return 1
}

# no job in a non-final state on the node, and idle on two polls a second apart
wait_node_quiet() {
    local i quiet=0 jobs state
    for i in $(seq 1 150); do
        jobs=$(timeout "$T" squeue -h -w "$NODE" -t PD,R,CG,CF,S,ST -o %i 2>/dev/null || echo busy)
        state=$(timeout "$T" sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true)
        if [ -z "$jobs" ] && [ "$state" = idle ]; then
            quiet=$((quiet + 1))
            [ "$quiet" -ge 5 ] && return 0
        else
            quiet=0
        fi
        sleep 0.2
    done
    log "node $NODE still busy ('$state', jobs: ${jobs:-none}) after 30 s"
    return 1
}

start_slurmctld() {
    slurmctld -D -i </dev/null >"$W/log/slurmctld.out" 2>&1 &
    echo $! >"$W/run/slurmctld.launch.pid"
    local i
    for i in $(seq 1 150); do
        timeout "$T" scontrol ping 2>/dev/null | grep -q 'is UP' && return 0
        kill -0 "$(cat "$W/run/slurmctld.launch.pid")" 2>/dev/null \
            || { tail -20 "$W/log/slurmctld.log" "$W/log/slurmctld.out" >&2 2>/dev/null; die "slurmctld exited"; }
        sleep 0.2
    done
    tail -20 "$W/log/slurmctld.log" >&2 || true
    die "slurmctld did not answer within 30 s"
}

# $1: the slurm.conf slurmd reads (gres.conf is read from the same directory)
start_slurmd() {
    local conf=$1 old
    old=$(slurmd_start_time)
    SLURM_CONF=$conf slurmd -D -N "$NODE" </dev/null >>"$W/log/slurmd.out" 2>&1 &
    echo $! >"$W/run/slurmd.launch.pid"
    if ! wait_node_idle "$old"; then
        tail -30 "$W/log/slurmd.log" "$W/log/slurmd.out" >&2 2>/dev/null || true
        return 1
    fi
}

# ---------------------------------------------------------------- env
write_env() {
    cat >"$W/env.sh" <<EOF
export SLURM_CONF='$W/etc/slurm.conf'
export NVLOW_SLURM=1
export NVLOW_TEST_SLURM_WORKDIR='$W'
export NVLOW_TEST_SLURM_ROOT='$W/root'
export NVLOW_TEST_SLURM_NODE='$NODE'
export NVLOW_TEST_SLURM_GPUS='$GRES_COUNT'
export NVLOW_TEST_SLURM_TASK='$TASK_PLUGIN'
EOF
}

start() {
    [ "$(id -u)" -eq 0 ] || die "the Slurm tests need root (mknod, SlurmUser=root)"
    [ ! -e "$W" ] || { log "$W exists: tearing down what it holds first"; stop; }
    local t0=$SECONDS
    ensure_packages
    find_tools
    if [ "$TASK_PLUGIN" = task/cgroup ]; then
        [ "$(stat -fc %T /sys/fs/cgroup/devices 2>/dev/null)" = cgroupfs ] \
            || die "--task-cgroup needs the cgroup v1 devices hierarchy at /sys/fs/cgroup/devices" \
                   "(/sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo missing))"
    fi
    mkdir -p "$W"
    log "work dir $W ($TASK_PLUGIN)"
    # shellcheck disable=SC2086
    if [ "$TASK_PLUGIN" = task/cgroup ] && ! ls -d $CGROUP_ROOTS >/dev/null 2>&1; then
        touch "$W/cgroup-ours"  # stop removes the slurm cgroup trees again
    fi
    "$PYTHON" "$HERE/fakeroot.py" "$W/root" --json >"$W/fakeroot.json" || die "building the fake root failed"
    start_munged
    write_conf
    start_slurmctld
    start_slurmd "$W/etc/slurm.conf" || die "slurmd did not bring node $NODE up"
    write_env
    log "slurm ready in $((SECONDS - t0)) s (SLURM_CONF=$SLURM_CONF, $GRES_COUNT GPUs on $NODE, $TASK_PLUGIN)"
}

restart_slurmd() {
    local dir=$1
    [ -f "$dir/slurm.conf" ] || die "$dir/slurm.conf missing"
    find_tools
    export SLURM_CONF="$W/etc/slurm.conf"
    # a job that just ended is completing until slurmd reports its epilog; a slurmd stopped before that
    # leaves the node "mixed" for half a minute, so wait until no job is left and the node stays idle
    wait_node_quiet || log "stopping slurmd anyway"
    stop_pidfile "$W/run/slurmd.launch.pid"
    start_slurmd "$dir/slurm.conf" || die "slurmd did not bring node $NODE up with $dir"
    log "slurmd restarted with $dir"
}

# ---------------------------------------------------------------- teardown (idempotent)
stop() {
    [ -d "$W" ] || return 0
    PATH=$PATH:/usr/sbin:/sbin
    if [ -f "$W/etc/slurm.conf" ] && command -v scancel >/dev/null; then
        SLURM_CONF="$W/etc/slurm.conf" timeout "$T" scancel --full --quiet --partition=nvlow 2>/dev/null || true
    fi
    stop_pidfile "$W/run/slurmd.launch.pid"
    stop_pidfile "$W/run/slurmctld.launch.pid"
    stop_pidfile "$W/munge/run/munged.pid"
    if [ -f "$W/cgroup-ours" ]; then
        # rmdir removes only empty cgroups; one still holding a process stays (and is reported)
        local d
        # shellcheck disable=SC2086
        for d in $(find $CGROUP_ROOTS -depth -type d 2>/dev/null); do
            rmdir "$d" 2>/dev/null || log "cgroup $d not removed (busy?)"
        done
    fi
    rm -rf --one-file-system "$W"
}

[ $# -ge 2 ] || usage
W=$2
case "$W" in /*) ;; *) die "WORKDIR must be absolute: $W" ;; esac
[ "$W" != / ] || die "refusing WORKDIR /"
case "$1" in
    start)
        case "$#:${3:-}" in 2:) ;; 3:--task-cgroup) TASK_PLUGIN=task/cgroup ;; *) usage ;; esac
        start ;;
    stop) [ $# -eq 2 ] || usage; stop ;;
    restart-slurmd) [ $# -eq 3 ] || usage; restart_slurmd "$3" ;;
    *) usage ;;
esac
