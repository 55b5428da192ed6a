#!/usr/bin/env bash
# The real-GPU check (issue 7): nvlow beside nvidia-smi (and pynvml, when installed) on a host
# with an NVIDIA GPU and driver; no container engine and no network needed. Finishes within
# 5 minutes and writes one report file (markdown with an embedded JSON block).
#
#   bash bench/gpu-check.sh [REPORT]
#
# 1. finds libnvidia-ml.so.1 (ld.so.cache, else /usr/local/nvidia/lib64 and the usual dirs;
#    then NVLOW_NVML_LIBRARY/NVLOW_CUDA_LIBRARY and LD_LIBRARY_PATH are exported) and nvidia-smi
#    (PATH, else /usr/local/nvidia/bin);
# 2. creates a venv in a temp dir (--system-site-packages: an installed cffi, typer-slim or
#    nvidia-ml-py is reused) and installs nvlow from a copy of this checkout (nothing is
#    written into it) without network: pip --no-index --find-links bench/wheels (see
#    bench/wheels/README.md), else --no-deps -e, else PYTHONPATH when cffi and typer import;
# 3. runs bench/gpu_check.py under `timeout`: nvlow info/list/args/doctor, the comparisons,
#    the timings, the report. Exit 0 PASS, 1 FAIL (see the report), 2 could not run, 124 timeout.
#
# Environment: NVLOW_GPU_CHECK_PYTHON (interpreter for the venv; default python3),
# NVLOW_GPU_CHECK_REPORT (report path; default bench/results/gpu-check-HOST-TIME.md),
# NVLOW_GPU_CHECK_RUNS (timing runs, default 5), NVLOW_GPU_CHECK_WHEELS (default bench/wheels),
# NVLOW_GPU_CHECK_FAKE=1 (no GPU: nvlow --simulate NVLOW_GPU_CHECK_PRESET, default dgx-a100,
# against a fake nvidia-smi generated from the same preset; tests use it).
set -euo pipefail

START=$SECONDS
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FAKE=${NVLOW_GPU_CHECK_FAKE:-0}
PRESET=${NVLOW_GPU_CHECK_PRESET:-dgx-a100}
RUNS=${NVLOW_GPU_CHECK_RUNS:-5}
PYTHON=${NVLOW_GPU_CHECK_PYTHON:-python3}
WHEELS=${NVLOW_GPU_CHECK_WHEELS:-$REPO/bench/wheels}
HOST=$(hostname -s 2>/dev/null || hostname 2>/dev/null || echo host)
REPORT=${1:-${NVLOW_GPU_CHECK_REPORT:-$REPO/bench/results/gpu-check-$HOST-$(date -u +%Y%m%dT%H%M%SZ).md}}
SETUP=()

say() { printf 'gpu-check: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvlow-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------------------------ driver and nvidia-smi
nvml_in_ldcache() {
    # captured, not piped into grep -q: with pipefail an early-exiting grep fails the pipeline
    local ldconfig cache
    ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
    [ -x "$ldconfig" ] || return 1
    cache=$("$ldconfig" -p 2>/dev/null || true)
    case "$cache" in *"libnvidia-ml.so.1 "*) return 0 ;; esac
    return 1
}

find_driver() {
    if [ -n "${NVLOW_NVML_LIBRARY:-}" ]; then
        SETUP+=(--setup "nvml=NVLOW_NVML_LIBRARY=$NVLOW_NVML_LIBRARY (given)")
        return
    fi
    if nvml_in_ldcache; then
        SETUP+=(--setup "nvml=found by ld.so.cache")
        return
    fi
    local dir found=""
    for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib64 /usr/lib/x86_64-linux-gnu \
               /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu/nvidia/current /usr/lib/nvidia \
               /usr/lib /lib64 /usr/local/lib /opt/nvidia/lib64; do
        if [ -e "$dir/libnvidia-ml.so.1" ]; then found=$dir; break; fi
    done
    [ -n "$found" ] || die "libnvidia-ml.so.1 is neither in ld.so.cache nor in the usual driver directories; set NVLOW_NVML_LIBRARY=/path/to/libnvidia-ml.so.1"
    # nvlow's loader takes absolute real paths; nvidia-smi and pynvml need the directory on LD_LIBRARY_PATH
    export NVLOW_NVML_LIBRARY
    NVLOW_NVML_LIBRARY=$(readlink -f "$found/libnvidia-ml.so.1")
    if [ -e "$found/libcuda.so.1" ] && [ -z "${NVLOW_CUDA_LIBRARY:-}" ]; then
        export NVLOW_CUDA_LIBRARY
        NVLOW_CUDA_LIBRARY=$(readlink -f "$found/libcuda.so.1")
    fi
    export LD_LIBRARY_PATH="$found${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    SETUP+=(--setup "nvml=not in ld.so.cache; using $found (NVLOW_NVML_LIBRARY, NVLOW_CUDA_LIBRARY, LD_LIBRARY_PATH exported)")
}

find_smi() {
    local smi
    smi=$(command -v nvidia-smi || true)
    if [ -z "$smi" ]; then
        for smi in /usr/local/nvidia/bin/nvidia-smi /usr/bin/nvidia-smi /opt/nvidia/bin/nvidia-smi ""; do
            [ -n "$smi" ] && [ -x "$smi" ] && break
        done
    fi
    [ -n "$smi" ] || die "nvidia-smi not found on PATH nor in /usr/local/nvidia/bin"
    SMI=$smi
    SETUP+=(--setup "nvidia-smi=$SMI")
}

# ------------------------------------------------------------------ venv and nvlow
make_venv() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set NVLOW_GPU_CHECK_PYTHON)"
    "$PYTHON" -m venv --system-site-packages "$WORK/venv" || die "$PYTHON -m venv failed"
    VPY=$WORK/venv/bin/python
    # When PYTHON is itself a venv's, --system-site-packages reaches only its base interpreter:
    # a .pth line keeps that venv's packages (cffi, typer) importable, as for a system python.
    local parent
    parent=$("$PYTHON" -c 'import sys, sysconfig
if sys.prefix != sys.base_prefix:
    print("\n".join(sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})))')
    if [ -n "$parent" ]; then
        local site
        site=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        printf '%s\n' "$parent" >"$site/zz-nvlow-gpu-check-parent.pth"
        SETUP+=(--setup "python=$PYTHON (a venv; its site-packages reused)")
    else
        SETUP+=(--setup "python=$PYTHON")
    fi
}

# seconds one pip step may take: the install and the check together stay within 5 minutes
pip_budget() {
    local left=$((200 - (SECONDS - START)))
    [ "$left" -le 120 ] || left=120
    [ "$left" -ge 10 ] || left=10
    echo "$left"
}

deps_importable() { "$VPY" -c 'import cffi, typer' >/dev/null 2>&1; }

pip_error() {
    local line
    line=$(grep -E '^ *(error|ERROR)' "$WORK/pip.log" 2>/dev/null \
        | grep -vE 'subprocess-exited-with-error|metadata-generation-failed' | head -n 1 || true)
    printf '%s' "${line#"${line%%[! ]*}"}"
}

install_nvlow() {
    local pip=("$VPY" -m pip --disable-pip-version-check --no-input --quiet)
    local src=$WORK/src have_wheels=0
    NVLOW=$WORK/venv/bin/nvlow
    : >"$WORK/pip.log"
    # Build from a copy: nothing is written into the checkout, which may be read-only.
    mkdir -p "$src"
    cp -R "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/nvlow" "$src/"
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    compgen -G "$WHEELS/*.whl" >/dev/null && have_wheels=1
    # A build backend that can make wheels: setuptools < 70.1 needs the wheel package beside it.
    if [ "$have_wheels" = 1 ]; then
        timeout "$(pip_budget)" "${pip[@]}" install --no-index --find-links "$WHEELS" --upgrade setuptools wheel \
            >>"$WORK/pip.log" 2>&1 || true
    fi
    if timeout "$(pip_budget)" "${pip[@]}" install --no-index --find-links "$WHEELS" --no-build-isolation "$src" \
            >>"$WORK/pip.log" 2>&1; then
        SETUP+=(--setup "install=pip install --no-index --find-links $WHEELS --no-build-isolation .")
    elif ! deps_importable && [ "$have_wheels" = 1 ] \
            && ! timeout "$(pip_budget)" "${pip[@]}" install --no-index --find-links "$WHEELS" "cffi>=1.15" \
                 "typer-slim>=0.12,<0.21" >>"$WORK/pip.log" 2>&1; then
        sed 's/^/gpu-check: pip: /' "$WORK/pip.log" >&2 || true
        die "cannot install nvlow offline: neither nvlow nor its dependencies install from $WHEELS"
    elif deps_importable && timeout "$(pip_budget)" "${pip[@]}" install --no-index --no-deps --no-build-isolation -e "$src" \
            >>"$WORK/pip.log" 2>&1; then
        SETUP+=(--setup "install=pip install --no-deps -e . (dependencies already importable)")
    elif deps_importable; then
        export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
        SETUP+=(--setup "install=PYTHONPATH=a copy of the checkout (pip could not build nvlow: $(pip_error); cffi and typer importable)")
        # the console script pip would have written
        printf '#!%s\nimport sys\nfrom nvlow.cli import main\nsys.exit(main())\n' "$VPY" >"$NVLOW"
        chmod +x "$NVLOW"
    else
        sed 's/^/gpu-check: pip: /' "$WORK/pip.log" >&2 || true
        die "cannot install nvlow offline: cffi and typer-slim are not importable and bench/wheels lacks them (see bench/wheels/README.md)"
    fi
    [ -x "$NVLOW" ] || die "pip installed nvlow but wrote no $NVLOW"
    "$NVLOW" --version >/dev/null || die "the installed nvlow does not run"
}

# ------------------------------------------------------------------ main
CHECK_ARGS=()
if [ "$FAKE" = 1 ]; then
    say "FAKE mode: nvlow --simulate $PRESET against a generated nvidia-smi (no GPU is used)"
else
    find_driver
    find_smi
fi
make_venv
install_nvlow
say "nvlow installed ($((SECONDS - START))s): $NVLOW"
if [ "$FAKE" = 1 ]; then
    SMI=$("$VPY" "$REPO/bench/gpu_check.py" --write-fake-smi "$WORK/fake-bin" --preset "$PRESET")
    CHECK_ARGS+=(--simulate "$PRESET" --no-pynvml)
    SETUP+=(--setup "nvidia-smi=generated from preset $PRESET")
fi
if ! mkdir -p "$(dirname "$REPORT")" 2>/dev/null || [ ! -w "$(dirname "$REPORT")" ]; then
    say "cannot write to $(dirname "$REPORT"); the report goes to ${TMPDIR:-/tmp} instead"
    REPORT=${TMPDIR:-/tmp}/$(basename "$REPORT")
fi

# Whatever the install took, the whole run stays within 5 minutes.
BUDGET=$((290 - (SECONDS - START)))
[ "$BUDGET" -ge 30 ] || BUDGET=30
rc=0
timeout --kill-after=5 "$BUDGET" "$VPY" "$REPO/bench/gpu_check.py" --report "$REPORT" --nvlow "$NVLOW" \
    --smi "$SMI" --runs "$RUNS" ${CHECK_ARGS[@]+"${CHECK_ARGS[@]}"} "${SETUP[@]}" || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "error: the check did not finish within ${BUDGET}s"
fi
say "done in $((SECONDS - START))s (exit $rc); report: $REPORT"
exit "$rc"
