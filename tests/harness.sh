# Shell helpers of the private test harnesses, sourced by tests/engine/setup_engines.sh and
# tests/slurm/setup_slurm.sh (which define log and die):
# - ensure_packages installs the Debian packages named in the caller's PACKAGES array when any is missing
#   (root and apt-get needed);
# - stop_pidfile PIDFILE stops the daemon a pidfile names (SIGTERM, SIGKILL after 10 s) and removes it.
#
# No recommends: for the engines they pull in apparmor, criu and needrestart (`runc` satisfies podman's
# crun|runc); Slurm and munge need none either.
ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}) and not root to install them"
    command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2 || die "apt-get install failed"
}

stop_pidfile() {
    local f=$1 pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ($f) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}
