#!/usr/bin/env bash
# The test command: `bash tests/run.sh [pytest args...]` (CI runs exactly this through .ci/run).
#
# 1. creates/uses the venv .venv and installs nvlow with its test extras;
# 2. as root (unless NVLOW_ENGINES=0), starts private docker and podman engines with
#    tests/engine/setup_engines.sh (installing Debian's packages when missing) so that the
#    real-engine tests run; otherwise those tests skip with a reason;
# 3. as root (unless NVLOW_SLURM=0), starts a private Slurm cluster with tests/slurm/setup_slurm.sh for
#    tests/test_slurm_real.py (the "slurm (begin)" block);
# 4. runs pytest over tests/ and always tears the engines and the cluster down.
# With NVLOW_LINT=1 (.ci/run) it runs `ruff check .` before the tests, and a lint failure (or one that
# .ci/run names in NVLOW_CI_FAILED) makes the exit status non-zero after the tests ran.
# In CI (CI=true) a missing gcc or a failed engine setup is an error instead of a skip.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

in_ci() { [ "${CI:-}" = true ]; }
say() { printf 'tests/run.sh: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- venv
PYTHON=${PYTHON:-python3}
# .venv may hold only tests/ci_matrix.sh's .venv/ci/ (a clean clone under .ci/run): that is no venv yet
if [ -e .venv/bin/python ] && ! .venv/bin/python -c '' 2>/dev/null; then
    say "error: .venv exists but its python does not run for $(id -un); remove .venv or fix its permissions"
    exit 1
fi
if [ ! -e .venv/bin/python ]; then
    say "creating .venv"
    "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed: an editable install needs no reinstall for source
# edits, and skipping it keeps repeated runs fast (and working offline).
STAMP=.venv/.nvlow-installed
WANT=$(cksum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ] || ! .venv/bin/python -c 'import nvlow, pytest' 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    echo "$WANT" >"$STAMP"
fi
# NVIDIA's header wheels for tests/test_cdefs_headers.py (downloaded here, never by a test)
bash tests/fetch_headers.sh .venv/bin/python || say "warning: NVIDIA header wheels missing (the cdefs ABI test skips, and fails under CI=true)"

# ---------------------------------------------------------------- lint (.ci/run sets NVLOW_LINT=1)
LINT_FAILED=""
if [ "${NVLOW_LINT:-}" = 1 ]; then
    if .venv/bin/python -m ruff check .; then
        say "lint (ruff check .): ok"
    else
        say "error: lint (ruff check .) failed; the tests run anyway"
        LINT_FAILED=1
    fi
fi

# ---------------------------------------------------------------- compiler
if ! command -v gcc >/dev/null 2>&1; then
    if in_ci; then
        say "error: gcc is missing (the native tests and the fake host's driver libraries need it)"
        exit 1
    fi
    say "warning: gcc is missing; tests that build C code will be skipped"
fi

# ---------------------------------------------------------------- engines
ENGINE_WORKDIR=""
SLURM_WORKDIR=""  # the Slurm block below
cleanup() {
    local rc=$?
    if [ -n "$ENGINE_WORKDIR" ]; then
        bash tests/engine/setup_engines.sh stop "$ENGINE_WORKDIR" || say "warning: engine teardown failed"
    fi
    if [ -n "$SLURM_WORKDIR" ]; then
        bash tests/slurm/setup_slurm.sh stop "$SLURM_WORKDIR" || say "warning: Slurm teardown failed"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_harness WHAT FLAG SCRIPT WORKDIR_VAR WORKDIR [NAME=VALUE ...]: as root, SCRIPT start WORKDIR (with the
# NAME=VALUE environment) and source its env.sh, which exports FLAG=1; WORKDIR_VAR names it for cleanup().
# FLAG=0 disables it; not root or a failed start skips its tests (FLAG=0), except in CI, where both are errors.
start_harness() {
    local what=$1 flag=$2 script=$3 var=$4 dir=$5
    shift 5
    if [ "${!flag:-}" = 0 ]; then
        say "$flag=0: real-$what tests disabled"
        export "$flag=0"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if in_ci; then
            say "error: CI runs the real-$what tests, which need root"
            exit 1
        fi
        say "not root: real-$what tests will be skipped"
        export "$flag=0"
        return 0
    fi
    printf -v "$var" '%s' "$dir"
    if env "$@" bash "$script" start "$dir"; then
        # shellcheck disable=SC1090,SC1091
        . "$dir/env.sh"
    else
        say "$what setup failed (see the lines above)"
        in_ci && exit 1
        bash "$script" stop "$dir" || true
        printf -v "$var" '%s' ""
        say "continuing without real-$what tests"
        export "$flag=0"
    fi
}

start_harness engine NVLOW_ENGINES tests/engine/setup_engines.sh ENGINE_WORKDIR "/tmp/nvlow-ci-$$"

# ---------------------------------------------------------------- slurm (begin)
# tests/test_slurm_real.py: as root (unless NVLOW_SLURM=0), a private one-node Slurm cluster from
# tests/slurm/setup_slurm.sh (installing Debian's slurmctld, slurmd, slurm-client and munge when missing),
# stopped by cleanup(). Without it those tests skip with a reason; in CI a failed setup is an error.
start_harness Slurm NVLOW_SLURM tests/slurm/setup_slurm.sh SLURM_WORKDIR "/tmp/nvlow-slurm-$$" \
    PYTHON="$REPO/.venv/bin/python"
# ---------------------------------------------------------------- slurm (end)

# ---------------------------------------------------------------- tests
set +e
.venv/bin/python -m pytest tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    say "error: pytest collected no tests"
    rc=1
fi
if [ -n "$LINT_FAILED" ] || [ -n "${NVLOW_CI_FAILED:-}" ]; then
    say "error: failed before the tests: ${NVLOW_CI_FAILED:-}${NVLOW_CI_FAILED:+${LINT_FAILED:+, }}${LINT_FAILED:+lint (ruff check .)}"
    [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
