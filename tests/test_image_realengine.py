"""nvlow.engine.client and nvlow.engine.image against the private dockerd and podman of tests/engine/setup_engines.sh.

These check what the fakes cannot: the real Engine API answers, that the API and the CLI give the
same config, and the real "image absent" messages of docker (API and CLI) and podman.
"""
from __future__ import annotations

import os

import pytest
from engine import ENGINES_ENABLED, SKIP_REASON
from engine.helpers import IMAGE, IMAGE_PATH

from nvlow.engine.client import EngineClient
from nvlow.engine.image import _inspect_cli, inspect_image
from nvlow.plan.require import HostFacts, check_image

pytestmark = [pytest.mark.engine, pytest.mark.skipif(not ENGINES_ENABLED, reason=SKIP_REASON)]

ABSENT = "nvlow-absent-image:never"


@pytest.fixture
def docker_host(monkeypatch: pytest.MonkeyPatch) -> str:
    host = os.environ.get("NVLOW_TEST_DOCKER_HOST", "")
    if not host.startswith("unix://"):
        pytest.fail("NVLOW_TEST_DOCKER_HOST must be a unix:// socket (source WORKDIR/env.sh)")
    monkeypatch.setenv("DOCKER_HOST", host)  # for the docker CLI subprocesses
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return host


@pytest.fixture
def podman_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for dst, src in (("CONTAINERS_CONF", "NVLOW_TEST_CONTAINERS_CONF"),
                     ("CONTAINERS_STORAGE_CONF", "NVLOW_TEST_STORAGE_CONF")):
        monkeypatch.setenv(dst, os.environ[src])


def test_engine_client_calls(docker_host: str) -> None:
    client = EngineClient(docker_host, timeout=5)
    version = client.version()
    assert isinstance(version.get("Version"), str) and isinstance(version.get("ApiVersion"), str)
    info = client.info()
    assert "runc" in (info.get("Runtimes") or {})
    doc = client.inspect_image(IMAGE)
    assert doc is not None and doc["Config"]["Labels"]["com.nvidia.cuda.version"] == "12.4"
    assert client.inspect_image(ABSENT) is None


def test_docker_api_and_cli_agree(docker_host: str) -> None:
    api, reason = inspect_image(IMAGE, engine="docker", engine_argv=["docker"], docker_host=docker_host, env={})
    assert reason is None and api is not None and api.source == "api"
    cli, reason = _inspect_cli(IMAGE, ["docker"], 30)
    assert reason is None and cli is not None and cli.source == "cli"
    assert (api.env, api.labels) == (cli.env, cli.labels)
    assert api.env_value("PATH") == IMAGE_PATH
    assert api.env_value("NVIDIA_REQUIRE_CUDA") == "cuda>=12.0"
    assert api.labels_dict() == {"com.nvidia.cuda.version": "12.4", "com.nvidia.volumes.needed": "nvidia_driver"}


def test_docker_absent(docker_host: str) -> None:
    expected = (None, f"image {ABSENT} is not present locally")
    assert inspect_image(ABSENT, engine="docker", engine_argv=["docker"], docker_host=docker_host, env={}) == expected
    assert _inspect_cli(ABSENT, ["docker"], 30) == expected


def test_docker_context_routing(docker_host: str) -> None:
    # the default context keeps the API; a named one sends nvlow to the CLI (which here still
    # reaches the private engine through DOCKER_HOST, as the context is only in nvlow's view)
    cfg, reason = inspect_image(IMAGE, engine="docker", engine_argv=["docker", "--context", "default"],
                                docker_host=docker_host, env={}, timeout=30)
    assert reason is None and cfg is not None and cfg.source == "api"
    cfg, reason = inspect_image(IMAGE, engine="docker", engine_argv=["docker"], docker_host=None,
                                env={"DOCKER_CONTEXT": "elsewhere"}, timeout=30)
    assert reason is None and cfg is not None and cfg.source == "cli"


def test_podman(podman_env: None) -> None:
    cfg, reason = inspect_image(IMAGE, engine="podman", engine_argv=["podman"], docker_host=None, timeout=30)
    assert reason is None and cfg is not None and cfg.source == "cli"
    assert cfg.env_value("PATH") == IMAGE_PATH
    assert cfg.env_value("NVIDIA_REQUIRE_CUDA") == "cuda>=12.0"
    assert cfg.label("com.nvidia.cuda.version") == "12.4"
    assert inspect_image(ABSENT, engine="podman", engine_argv=["podman"], docker_host=None, timeout=30) == (
        None, f"image {ABSENT} is not present locally")


def test_requirements_of_the_real_image(docker_host: str) -> None:
    cfg, _ = inspect_image(IMAGE, engine="docker", engine_argv=["docker"], docker_host=docker_host, env={})
    assert cfg is not None
    assert check_image(cfg.env_dict(), cfg.labels_dict(), HostFacts("12.4", "550.54.15")) == ()
    assert check_image(cfg.env_dict(), cfg.labels_dict(), HostFacts("11.8", "520.61.05")) == (
        "unsatisfied condition: cuda>=12.0 (host CUDA 11.8)",)
