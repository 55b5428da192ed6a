"""The ``nvlow`` Docker volume plugin against the real dockerd of the test setup.

``nvlow serve`` runs on the fake host (procfs only, no uvm load); its socket lives in a private
0700 directory and the spec file ``/etc/docker/plugins/nvlow.spec`` makes dockerd find it as the
volume driver ``nvlow``. Skipped when a real ``nvlow`` plugin is already installed on this machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Iterator, List, Tuple

import pytest

from . import requires_engines, requires_root
from .fakehost import DRIVER_VERSION, FakeHost
from .helpers import IMAGE, Engine, engine_env, nvlow_command

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

SPEC = "/etc/docker/plugins/nvlow.spec"
VOLUME = f"nvidia_driver_{DRIVER_VERSION}"
LAUNCH = ("import sys, typer; from nvlow.cli.servecmd import register; app = typer.Typer(); "
          "register(app); app.command('noop')(lambda: None); app(sys.argv[1:], prog_name='nvlow')")


def _serve_command() -> List[str]:
    cmd = nvlow_command()
    probe = subprocess.run([*cmd, "serve", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:
        return [*cmd, "serve"]
    return [sys.executable, "-c", LAUNCH, "serve"]  # before the lead wires `serve` into the app


@pytest.fixture(scope="module")
def plugin(fake_host: FakeHost, docker_engine: Engine, tmp_path_factory) -> Iterator[Tuple[str, str, str]]:
    # one server for the module: dockerd keeps the plugin's socket address once it has found it
    tmp_path = tmp_path_factory.mktemp("plugin")
    if os.path.exists(SPEC) or os.path.exists("/run/docker/plugins/nvlow.sock"):
        pytest.skip("a real 'nvlow' volume plugin is installed here; not touching it")
    # a fixed socket path: dockerd keeps a plugin's address once found (even across test runs)
    sockdir = "/run/nvlow-enginetest"
    volumes = str(tmp_path / "volumes")
    proc = subprocess.Popen([*_serve_command(), "--root", fake_host.root, "--no-nvml", "--no-uvm-load",
                             "--listen", "127.0.0.1:0", "--plugin-socket-dir", sockdir,
                             "--plugin-spec-dir", "/etc/docker/plugins", "--volumes-dir", volumes, "--verbose"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=engine_env())
    addr = None
    for _ in range(50):
        line = proc.stderr.readline()
        if not line:
            break
        if "serving remote API at " in line:
            addr = line.rsplit(" ", 1)[1].strip()
            break
    if addr is None:
        proc.kill()
        pytest.fail("nvlow serve did not start: " + proc.stderr.read()[-2000:])
    try:
        yield addr, volumes, sockdir
    finally:
        docker_engine.cli("volume", "rm", "-f", VOLUME, check=False)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.path.exists(SPEC):
            os.unlink(SPEC)


def test_docker_run_with_the_plugin_volume(plugin, docker_engine: Engine):
    addr, volumes, _sockdir = plugin
    run = docker_engine.run("--volume-driver=nvlow", "-v", f"{VOLUME}:/usr/local/nvidia:ro", IMAGE, "sh", "-c",
                            "ls /usr/local/nvidia/lib64; /usr/local/nvidia/bin/nvidia-smi; "
                            "touch /usr/local/nvidia/x 2>/dev/null && echo WRITABLE || echo READONLY")
    out = run.stdout.split()
    assert "libcuda.so.1" in out and f"libcuda.so.{DRIVER_VERSION}" in out and "libnvidia-ml.so.1" in out
    assert "nvlow-fake-nvidia-smi" in run.stdout and "READONLY" in run.stdout

    listing = docker_engine.cli("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.splitlines()
    assert f"nvlow {VOLUME}" in listing
    inspect = json.loads(docker_engine.cli("volume", "inspect", VOLUME).stdout)[0]
    assert inspect["Driver"] == "nvlow"
    assert inspect["Mountpoint"] == os.path.join(volumes, "nvidia_driver", DRIVER_VERSION)

    docker_engine.cli("volume", "rm", VOLUME)
    assert not os.path.exists(os.path.join(volumes, "nvidia_driver", DRIVER_VERSION))


def test_docker_cli_endpoint_output_runs(plugin, docker_engine: Engine):
    addr, _volumes, _sockdir = plugin
    with urllib.request.urlopen(f"http://{addr}/v1.0/docker/cli?dev=0&vol=nvidia_driver", timeout=30) as r:
        args = r.read().decode().split(" ")
    assert args[0] == "--volume-driver=nvlow"
    run = docker_engine.run(*args, IMAGE, "sh", "-c", "ls /dev | grep '^nvidia[0-9]'; ls /usr/local/nvidia/bin")
    assert any(a.startswith("--device=") and a.endswith(":/dev/nvidia0") for a in args)  # --root: host:container
    assert run.stdout.split()[0] == "nvidia0" and "nvidia1" not in run.stdout.split()
    assert "nvidia-smi" in run.stdout


def test_other_driver_version_is_refused(plugin, docker_engine: Engine):
    proc = docker_engine.run("--volume-driver=nvlow", "-v", "nvidia_driver_1.2.3:/usr/local/nvidia:ro", IMAGE,
                             "true", check=False)
    assert proc.returncode != 0
    assert f"the running driver is {DRIVER_VERSION}, the volume is for 1.2.3" in proc.stderr
