#!/usr/bin/env bash
# Download NVIDIA's header wheels listed in tests/data/nvidia-header-wheels.txt into
# .venv/nvidia-headers/<requirement>/ (ignored; never committed: CUDA EULA) for
# tests/test_cdefs_headers.py, which reads them offline. Idempotent: a requirement already
# downloaded is not fetched again. Called by tests/run.sh and tests/ci_matrix.sh.
#
#   bash tests/fetch_headers.sh [PYTHON]       # the interpreter whose pip downloads (default python3)
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${1:-python3}
DEST=${NVLOW_HEADER_WHEELS:-$REPO/.venv/nvidia-headers}
failed=0
while read -r header requirement; do
    case "$header" in ''|'#'*) continue ;; esac
    dir="$DEST/$requirement"
    if ls "$dir"/*.whl >/dev/null 2>&1; then
        continue
    fi
    mkdir -p "$dir"
    if ! "$PY" -m pip download --no-deps --only-binary :all: --disable-pip-version-check -q -d "$dir" \
            "$requirement" >/dev/null 2>"$dir.log"; then
        echo "tests/fetch_headers.sh: cannot download $requirement (for cdefs/$header): $(tail -n 1 "$dir.log")" >&2
        failed=1
    else
        rm -f "$dir.log"
    fi
done <"$REPO/tests/data/nvidia-header-wheels.txt"
exit "$failed"
