"""Session fixtures for the real-engine tests: the fake host, the engines, and an ``nvlow`` runner.

The engines come from ``setup_engines.sh start`` (``tests/run.sh`` does it), which exports
NVLOW_TEST_DOCKER_HOST, NVLOW_TEST_CONTAINERS_CONF, NVLOW_TEST_STORAGE_CONF and NVLOW_ENGINES=1.
Every container run uses ``--pull never --network none``: nothing is ever pulled.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Mapping, Optional

import pytest

from . import ENGINES_ENABLED, SKIP_REASON
from .fakehost import FakeHost, build_fake_host
from .helpers import TIMEOUT_S, Engine, NvlowRunner, engine_env, nvlow_command


def _require_engines() -> None:
    if not ENGINES_ENABLED:
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def fake_host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    """The fake NVIDIA host root (2 GPUs, driver 550.54.15, real mknod nodes); built once per session."""
    if os.geteuid() != 0:
        pytest.skip("the fake host needs root (mknod, ldconfig -r)")
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is missing; the fake host's driver libraries are built with it")
        pytest.skip("gcc is missing; the fake host's driver libraries are built with it")
    return build_fake_host(str(tmp_path_factory.mktemp("fakehost")))


@pytest.fixture(scope="session")
def docker_engine() -> Engine:
    """The private dockerd from setup_engines.sh."""
    _require_engines()
    engine = Engine("docker", engine_env())
    engine.cli("info")
    return engine


@pytest.fixture(scope="session")
def podman_engine() -> Engine:
    """Rootful podman with the private containers.conf/storage.conf from setup_engines.sh."""
    _require_engines()
    engine = Engine("podman", engine_env())
    engine.cli("info")
    return engine


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each test runs once per engine."""
    return request.getfixturevalue(f"{request.param}_engine")  # type: ignore[no-any-return]



@pytest.fixture
def nvlow() -> NvlowRunner:
    """``nvlow(*args, env=None)`` runs the console script with the engines' environment (plus ``env``)."""
    _require_engines()
    base = engine_env()
    command = nvlow_command()

    def run(*args: str, env: Optional[Mapping[str, str]] = None,
            timeout: float = TIMEOUT_S) -> "subprocess.CompletedProcess[str]":
        full_env = dict(base)
        full_env.update(env or {})
        return subprocess.run([*command, *args], env=full_env, capture_output=True, text=True, timeout=timeout)

    return run
