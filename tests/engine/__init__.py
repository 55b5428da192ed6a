"""End-to-end tests against real docker and podman (see tests/engine/setup_engines.sh).

Test modules put ``pytestmark = [pytest.mark.engine, requires_engines]`` so that without
prepared engines they are skipped with a reason instead of failing.
"""
from __future__ import annotations

import os

import pytest

ENGINES_ENABLED = os.environ.get("NVLOW_ENGINES") == "1"

SKIP_REASON = (
    "real-engine test: needs NVLOW_ENGINES=1 with private docker/podman "
    "(run tests/run.sh as root, or `tests/engine/setup_engines.sh start DIR` then `. DIR/env.sh`)"
)

#: skip marker for tests that need the engines prepared by setup_engines.sh
requires_engines = pytest.mark.skipif(not ENGINES_ENABLED, reason=SKIP_REASON)

#: skip marker for tests that need root (mknod, ldconfig -r)
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, ldconfig -r)")
