#!/usr/bin/env bash
# Start or stop private container engines for nvlow's end-to-end tests.
#
#   tests/engine/setup_engines.sh start WORKDIR   # install (if needed), start, import images; writes WORKDIR/env.sh
#   tests/engine/setup_engines.sh stop  WORKDIR   # idempotent teardown; removes WORKDIR
#
# Everything lives under WORKDIR: a dockerd with its own socket, data root, exec root and
# pidfile (no bridge, no iptables), and podman with private containers.conf/storage.conf
# (runc, cgroupfs, file events, netns none). A system daemon, if any, is never touched.
# Images are imported from a busybox-static rootfs plus the host's glibc loader and libc; nothing is ever pulled.
# Recipe and its reasons: container-engines-ci.md (crun rejects hybrid cgroups -> runc;
# no CAP_SYS_RESOURCE -> container ulimits must not exceed our hard limits).
#
# After `start`, `. WORKDIR/env.sh` exports NVLOW_TEST_DOCKER_HOST, NVLOW_TEST_CONTAINERS_CONF,
# NVLOW_TEST_STORAGE_CONF, NVLOW_TEST_WORKDIR and NVLOW_ENGINES=1.
set -euo pipefail

PACKAGES=(docker.io podman runc busybox-static)
# ---- rootless podman (tests/engine/test_engine_rootless.py): newuidmap/newgidmap for a throwaway user ----
PACKAGES+=(uidmap)
# ---- end rootless podman ----
IMAGE=nvlow-test:latest
IMAGE_NEWCUDA=nvlow-test-newcuda:latest
# A directory only the image's PATH has, so tests can check that nvlow kept the image PATH.
IMAGE_PATH=/opt/nvlow-image/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'setup_engines: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { die "usage: $0 start|stop WORKDIR"; }

# ---------------------------------------------------------------- packages
# shellcheck source=../harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/../harness.sh"  # ensure_packages, stop_pidfile

# The Debian daemon binaries; the `docker` client may be a newer one earlier on PATH (it negotiates the API down).
find_tools() {
    DOCKERD=$(command -v dockerd || true); [ -n "$DOCKERD" ] || DOCKERD=/usr/sbin/dockerd
    [ -x "$DOCKERD" ] || die "dockerd not found"
    DOCKER=$(command -v docker || true); [ -n "$DOCKER" ] || die "docker client not found"
    PODMAN=$(command -v podman || true); [ -n "$PODMAN" ] || die "podman not found"
    command -v runc >/dev/null || die "runc not found"
    BUSYBOX=/bin/busybox
    file_is_static "$BUSYBOX" || BUSYBOX=$(command -v busybox || true)
    [ -n "$BUSYBOX" ] && [ -x "$BUSYBOX" ] || die "busybox not found"
}

file_is_static() { [ -x "$1" ] && ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- rootfs + images
build_rootfs() {
    local r="$W/rootfs" applet
    rm -rf "$r"
    mkdir -p "$r/bin" "$r/etc" "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/root" \
             "$r/usr/local/nvidia" "$r/opt/nvlow-image/bin"
    cp "$BUSYBOX" "$r/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$r/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    printf '#!/bin/sh\necho nvlow-image-tool\n' >"$r/opt/nvlow-image/bin/nvlow-image-tool"
    chmod 1777 "$r/tmp"; chmod 755 "$r/opt/nvlow-image/bin/nvlow-image-tool"
    add_glibc "$r"
    tar -C "$r" -cf "$W/rootfs.tar" .
}

# The host's glibc dynamic loader and libc.so.6 (copied, never pulled) plus an ld.so.cache that lists only
# them, so a dynamically linked test program runs in the image with the image's own loader, which must find
# driver libraries without a cache entry (tests/engine/test_engine_cdi.py). Paths are the host's, as ldd
# prints them for a binary linked only against libc (on x86-64 Debian /lib64/ld-linux-x86-64.so.2 and
# /lib/x86_64-linux-gnu/libc.so.6).
add_glibc() {
    local r=$1 bin deps loader libc
    for bin in /usr/bin/env /bin/sh; do
        deps=$(LC_ALL=C ldd "$bin" 2>/dev/null) || continue
        loader=$(printf '%s\n' "$deps" | awk '$1 ~ /^\// { print $1; exit }')
        libc=$(printf '%s\n' "$deps" | awk '$1 == "libc.so.6" && $2 == "=>" { print $3; exit }')
        [ -n "$loader" ] && [ -n "$libc" ] && break
    done
    [ -n "${loader:-}" ] && [ -n "${libc:-}" ] || die "cannot find the host's glibc loader and libc.so.6 with ldd"
    mkdir -p "$r$(dirname "$loader")" "$r$(dirname "$libc")"
    cp -L "$loader" "$r$loader"
    cp -L "$libc" "$r$libc"
    command -v ldconfig >/dev/null || PATH=$PATH:/sbin:/usr/sbin
    ldconfig -r "$r" || die "ldconfig -r $r failed"
}

# Dockerfile-style change lines shared by both engines; $1 = NVIDIA_REQUIRE_CUDA value.
image_changes() {
    printf '%s\n' 'CMD ["/bin/sh"]' \
        "ENV PATH=$IMAGE_PATH" \
        "ENV NVIDIA_REQUIRE_CUDA=$1" \
        'LABEL com.nvidia.volumes.needed=nvidia_driver' \
        'LABEL com.nvidia.cuda.version=12.4'
}

import_images() {
    local name req line args
    for name in "$IMAGE" "$IMAGE_NEWCUDA"; do
        if [ "$name" = "$IMAGE" ]; then req='cuda>=12.0'; else req='cuda>=99.0'; fi
        args=()
        while IFS= read -r line; do args+=(-c "$line"); done < <(image_changes "$req")
        "$DOCKER" import "${args[@]}" "$W/rootfs.tar" "$name" >/dev/null || die "docker import $name failed"
        "$PODMAN" import --quiet "${args[@]}" "$W/rootfs.tar" "$name" >/dev/null || die "podman import $name failed"
    done
}

# ---------------------------------------------------------------- dockerd
# dockerd starts its own containerd under --exec-root, unless a system containerd is running; then the
# private namespaces keep our containers and images apart from the system's.
start_dockerd() {
    mkdir -p "$W/docker" "$W/docker-exec"
    "$DOCKERD" --data-root "$W/docker" --exec-root "$W/docker-exec" --pidfile "$W/dockerd.pid" \
        -H "unix://$W/docker.sock" --bridge=none --iptables=false --ip6tables=false \
        --containerd-namespace nvlow-ci --containerd-plugins-namespace nvlow-ci-plugins \
        >"$W/dockerd.log" 2>&1 </dev/null &
    echo $! >"$W/dockerd.launch.pid"
    export DOCKER_HOST="unix://$W/docker.sock"
    local i
    for i in $(seq 1 150); do
        "$DOCKER" info >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$W/dockerd.launch.pid")" 2>/dev/null || { tail -20 "$W/dockerd.log" >&2; die "dockerd exited"; }
        sleep 0.2
    done
    tail -20 "$W/dockerd.log" >&2
    die "dockerd did not answer within 30 s"
}

# ---------------------------------------------------------------- podman
write_podman_conf() {
    local nofile nproc
    # podman's default ulimits exceed what we may set without CAP_SYS_RESOURCE; podman caps its own nproc at 32768.
    nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    mkdir -p "$W/podman/root" "$W/podman/run" "$W/podman/tmp"
    cat >"$W/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/podman/events.log"
tmp_dir = "$W/podman/tmp"
EOF
    cat >"$W/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$W/podman/root"
runroot = "$W/podman/run"
EOF
    export CONTAINERS_CONF="$W/containers.conf" CONTAINERS_STORAGE_CONF="$W/storage.conf"
}

# ---------------------------------------------------------------- smoke + env
smoke_test() {
    local out
    out=$("$DOCKER" run --rm --pull never --network none "$IMAGE" sh -c 'echo docker-ok') \
        || die "docker smoke run failed"
    [ "$out" = docker-ok ] || die "docker smoke run printed '$out'"
    out=$("$PODMAN" run --rm --pull never --network none "$IMAGE" sh -c 'echo podman-ok') \
        || die "podman smoke run failed"
    [ "$out" = podman-ok ] || die "podman smoke run printed '$out'"
}

write_env() {
    cat >"$W/env.sh" <<EOF
export NVLOW_TEST_WORKDIR='$W'
export NVLOW_TEST_DOCKER_HOST='unix://$W/docker.sock'
export NVLOW_TEST_CONTAINERS_CONF='$W/containers.conf'
export NVLOW_TEST_STORAGE_CONF='$W/storage.conf'
export NVLOW_TEST_IMAGE='$IMAGE'
export NVLOW_TEST_IMAGE_NEWCUDA='$IMAGE_NEWCUDA'
export NVLOW_TEST_IMAGE_PATH='$IMAGE_PATH'
export NVLOW_ENGINES=1
EOF
}

start() {
    [ "$(id -u)" -eq 0 ] || die "engine tests need root (rootful dockerd and podman, mknod)"
    [ ! -e "$W" ] || { log "$W exists: tearing down what it holds first"; stop; }
    ensure_packages
    find_tools
    mkdir -p "$W"
    log "work dir $W"
    build_rootfs
    start_dockerd
    write_podman_conf
    import_images
    smoke_test
    write_env
    log "docker and podman ready ($DOCKER_HOST)"
}

# ---------------------------------------------------------------- teardown (idempotent)
# Mount points at or below $W, deepest first.
mounts_below() {
    awk -v w="$W" '{ p=$2; gsub(/\\040/, " ", p); if (p == w || index(p, w "/") == 1) print p }' /proc/mounts \
        | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

stop() {
    [ -d "$W" ] || return 0
    local docker podman m
    docker=$(command -v docker || true); podman=$(command -v podman || true)
    if [ -S "$W/docker.sock" ] && [ -n "$docker" ]; then
        local ids
        ids=$(DOCKER_HOST="unix://$W/docker.sock" timeout 20 "$docker" ps -aq 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -z "$ids" ] || DOCKER_HOST="unix://$W/docker.sock" timeout 60 "$docker" rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_pidfile "$W/dockerd.launch.pid"
    if [ -f "$W/containers.conf" ] && [ -n "$podman" ]; then
        CONTAINERS_CONF="$W/containers.conf" CONTAINERS_STORAGE_CONF="$W/storage.conf" \
            timeout 60 "$podman" rm -af >/dev/null 2>&1 || true
    fi
    while IFS= read -r m; do
        [ -n "$m" ] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done < <(mounts_below)
    if [ -n "$(mounts_below)" ]; then
        die "mounts remain below $W; not removing it"
    fi
    rm -rf --one-file-system "$W"
}

[ $# -eq 2 ] || usage
W=$2
case "$W" in /*) ;; *) die "WORKDIR must be absolute: $W" ;; esac
[ "$W" != / ] || die "refusing WORKDIR /"
case "$1" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
