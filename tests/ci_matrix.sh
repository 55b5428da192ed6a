#!/usr/bin/env bash
# The unit tests on the oldest and the newest Python this machine has (part of .ci/run):
#
#   bash tests/ci_matrix.sh [VERSION...]        # default: 3.9 (requires-python's minimum) and 3.13
#
# For each version it finds an interpreter (pythonX.Y on PATH, else pyenv's newest X.Y.*), keeps a venv
# in .venv/ci/pyX.Y (inside the ignored .venv; reinstalled only when pyproject.toml changes) with nvlow
# and its test extras (the last version: nvlow from its built wheel, not editable), and runs pytest
# without the real-engine tests (NVLOW_ENGINES=0, tests/engine
# ignored): those run once, on the main interpreter, through tests/run.sh. A missing interpreter is
# skipped with a note (CI=true included: the matrix covers what the machine has).
# Exit status: 0 when every run found passed, 1 otherwise.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

say() { printf 'tests/ci_matrix.sh: %s\n' "$*" >&2; }

find_python() {  # VERSION -> path of an interpreter that runs, or nothing
    local v=$1 cand
    for cand in "$(command -v "python$v" 2>/dev/null)" \
                $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v".* 2>/dev/null | sort -V -r | sed 's|$|/bin/python|'); do
        if [ -n "$cand" ] && [ -x "$cand" ] &&
           [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$v" ]; then
            echo "$cand"
            return 0
        fi
    done
}

[ $# -gt 0 ] || set -- 3.9 3.13
wheel_version=${!#}  # the last (newest) version runs against the built wheel
# NVIDIA's header wheels for tests/test_cdefs_headers.py (downloaded here, never by a test)
bash tests/fetch_headers.sh || say "warning: NVIDIA header wheels missing (the cdefs ABI test fails under CI=true)"
failed=0
for v in "$@"; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        say "note: no Python $v on this machine (PATH, pyenv): skipping its run"
        continue
    fi
    venv=.venv/ci/py$v
    stamp=$venv/.nvlow-installed
    want=$(cksum pyproject.toml | cut -d' ' -f1)
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
        say "Python $v ($py): creating $venv"
        rm -rf "$venv"
        "$py" -m venv "$venv" || { say "error: cannot create $venv"; failed=1; continue; }
    fi
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! "$venv/bin/python" -c 'import nvlow, pytest' 2>/dev/null; then
        if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"; then
            say "error: installing nvlow[test] into $venv failed"
            failed=1
            continue
        fi
        echo "$want" >"$stamp"
    fi
    runner=("$venv/bin/python" -m pytest)
    how="editable install"
    if [ "$v" = "$wheel_version" ]; then
        # the newest Python tests nvlow as users get it: built into a wheel and installed (not editable),
        # so packaging (py.typed, the generated ffi modules, package data) is under test; pytest's own
        # script, not `python -m pytest`, so that the checkout is not on sys.path
        dist=$(mktemp -d)
        if "$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
                -w "$dist" . >/dev/null &&
           "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
                "$dist"/nvlow-*.whl; then
            runner=("$venv/bin/pytest")
            how="installed from the wheel $(basename "$dist"/nvlow-*.whl)"
            rm -f "$stamp"  # the next run puts the editable install back first
        else
            say "error: building or installing nvlow's wheel failed"
            failed=1
        fi
        rm -rf "$dist"
    fi
    say "Python $v ($("$venv/bin/python" -c 'import platform; print(platform.python_version())')): unit tests, $how"
    start=$SECONDS
    if NVLOW_ENGINES=0 "${runner[@]}" -x -q -p no:cacheprovider tests --ignore=tests/engine; then
        say "Python $v: passed ($((SECONDS - start)) s)"
    else
        say "Python $v: FAILED ($((SECONDS - start)) s)"
        failed=1
    fi
done
exit "$failed"
