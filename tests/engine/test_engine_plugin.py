"""The ``nvidia-docker`` volume plugin of ``nvlow serve`` against the real dockerd of the test setup.

``nvlow serve`` runs on the fake host (procfs only, no uvm load) under nvidia-docker 1.0's plugin name;
its socket lives in a private 0700 directory and the spec file ``/etc/docker/plugins/nvidia-docker.spec``
makes dockerd find it. The 1.0 command lines work as they are: ``docker volume create -d nvidia-docker
--name nvidia_driver_<v>`` and ``docker run --volume-driver=nvidia-docker -v nvidia_driver_<v>:...``,
also for a volume dockerd got from an earlier plugin of that name (another volumes directory, as a
switch from nvidia-docker-plugin 1.0 leaves it). Skipped when another plugin already has the name here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Iterator, List, Optional

import pytest

from . import requires_engines, requires_root
from .fakehost import DRIVER_VERSION, FakeHost
from .helpers import IMAGE, SAFE_RUN_FLAGS, Engine, engine_env, nvlow_command

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

PLUGIN = "nvidia-docker"
SPEC_DIR = "/etc/docker/plugins"
SPEC = f"{SPEC_DIR}/{PLUGIN}.spec"
VOLUME = f"nvidia_driver_{DRIVER_VERSION}"
MOUNT = f"{VOLUME}:/usr/local/nvidia:ro"
#: a fixed socket path: dockerd keeps a legacy plugin's address once found (until it restarts), so every
#: instance of the server in this module must answer on the same socket
SOCKET_DIR = "/run/nvlow-enginetest"
LIST_DRIVER = "ls /usr/local/nvidia/lib64 /usr/local/nvidia/bin"
LAUNCH = ("import sys, typer; from nvlow.cli.servecmd import register; app = typer.Typer(); "
          "register(app); app.command('noop')(lambda: None); app(sys.argv[1:], prog_name='nvlow')")


def _serve_command() -> List[str]:
    cmd = nvlow_command()
    probe = subprocess.run([*cmd, "serve", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:
        return [*cmd, "serve"]
    return [sys.executable, "-c", LAUNCH, "serve"]  # before the lead wires `serve` into the app


class PluginServer:
    """One ``nvlow serve`` at a time on the module's fixed socket; ``restart`` switches volumes directories."""

    def __init__(self, fake_host: FakeHost) -> None:
        self.fake_host = fake_host
        self.proc: Optional["subprocess.Popen[str]"] = None
        self.addr = ""
        self.volumes = ""

    def start(self, volumes: str) -> None:
        proc = subprocess.Popen([*_serve_command(), "--root", self.fake_host.root, "--no-nvml", "--no-uvm-load",
                                 "--listen", "127.0.0.1:0", "--plugin-socket-dir", SOCKET_DIR,
                                 "--plugin-spec-dir", SPEC_DIR, "--volumes-dir", volumes, "--verbose"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=engine_env())
        lines = []
        assert proc.stderr is not None
        for _ in range(50):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "serving remote API at " in line:
                self.proc, self.addr, self.volumes = proc, line.rsplit(" ", 1)[1].strip(), volumes
                return
        proc.kill()
        proc.wait()
        text = "".join(lines) + (proc.stderr.read() or "")
        claims = [line for line in text.splitlines() if "already registers a Docker plugin named" in line]
        if claims:
            pytest.skip(f"another '{PLUGIN}' volume plugin is registered on this machine; not touching it "
                        f"({claims[0].strip()})")
        pytest.fail("nvlow serve did not start: " + text[-2000:])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, volumes: str) -> None:
        self.stop()
        self.start(volumes)


@pytest.fixture(scope="module")
def plugin(fake_host: FakeHost, docker_engine: Engine, tmp_path_factory) -> Iterator[PluginServer]:
    server = PluginServer(fake_host)
    server.start(str(tmp_path_factory.mktemp("plugin") / "volumes"))
    try:
        yield server
    finally:
        docker_engine.cli("rm", "-f", "nvlow-enginetest-prev", check=False)
        docker_engine.cli("volume", "rm", "-f", VOLUME, check=False)
        server.stop()
        if os.path.exists(SPEC):
            with open(SPEC) as fh:
                ours = fh.read().strip() == f"unix://{SOCKET_DIR}/{PLUGIN}.sock"
            if ours:
                os.unlink(SPEC)


def _driver_listing(stdout: str) -> None:
    out = stdout.split()
    assert "libcuda.so.1" in out and f"libcuda.so.{DRIVER_VERSION}" in out and "libnvidia-ml.so.1" in out
    assert "nvidia-smi" in out


def test_docker_run_with_the_plugin_volume(plugin: PluginServer, docker_engine: Engine):
    run = docker_engine.run(f"--volume-driver={PLUGIN}", "-v", MOUNT, IMAGE, "sh", "-c",
                            "ls /usr/local/nvidia/lib64; /usr/local/nvidia/bin/nvidia-smi; "
                            "touch /usr/local/nvidia/x 2>/dev/null && echo WRITABLE || echo READONLY")
    out = run.stdout.split()
    assert "libcuda.so.1" in out and f"libcuda.so.{DRIVER_VERSION}" in out and "libnvidia-ml.so.1" in out
    assert "nvlow-fake-nvidia-smi" in run.stdout and "READONLY" in run.stdout

    listing = docker_engine.cli("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.splitlines()
    assert f"{PLUGIN} {VOLUME}" in listing
    inspect = json.loads(docker_engine.cli("volume", "inspect", VOLUME).stdout)[0]
    assert inspect["Driver"] == PLUGIN
    assert inspect["Mountpoint"] == os.path.join(plugin.volumes, "nvidia_driver", DRIVER_VERSION)

    docker_engine.cli("volume", "rm", VOLUME)
    assert not os.path.exists(os.path.join(plugin.volumes, "nvidia_driver", DRIVER_VERSION))


def test_the_1_0_commands_work_as_typed(plugin: PluginServer, docker_engine: Engine):
    """What 1.0 users and scripts type: create the volume with the driver named, then run with it."""
    docker_engine.cli("volume", "create", "-d", PLUGIN, "--name", VOLUME)
    assert json.loads(docker_engine.cli("volume", "inspect", VOLUME).stdout)[0]["Driver"] == PLUGIN
    run = docker_engine.run(f"--volume-driver={PLUGIN}", "-v", MOUNT, IMAGE, "sh", "-c", LIST_DRIVER)
    _driver_listing(run.stdout)
    # and `nvlow args --driver-files plugin` emits the same driver name
    cmd = [*nvlow_command(), "args", "--root", plugin.fake_host.root, "--no-nvml", "--no-uvm-load", "--gpus", "0",
           "--driver-files", "plugin"]
    args = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=engine_env())
    assert args.returncode == 0, args.stderr
    assert f"--volume-driver={PLUGIN}" in args.stdout.split() and f"--volume={MOUNT}" in args.stdout.split()


def test_docker_cli_endpoint_output_runs(plugin: PluginServer, docker_engine: Engine):
    with urllib.request.urlopen(f"http://{plugin.addr}/v1.0/docker/cli?dev=0&vol=nvidia_driver", timeout=30) as r:
        args = r.read().decode().split(" ")
    assert args[0] == f"--volume-driver={PLUGIN}"
    run = docker_engine.run(*args, IMAGE, "sh", "-c", "ls /dev | grep '^nvidia[0-9]'; ls /usr/local/nvidia/bin")
    assert any(a.startswith("--device=") and a.endswith(":/dev/nvidia0") for a in args)  # --root: host:container
    assert run.stdout.split()[0] == "nvidia0" and "nvidia1" not in run.stdout.split()
    assert "nvidia-smi" in run.stdout


def test_other_driver_version_is_refused(plugin: PluginServer, docker_engine: Engine):
    proc = docker_engine.run(f"--volume-driver={PLUGIN}", "-v", "nvidia_driver_1.2.3:/usr/local/nvidia:ro", IMAGE,
                             "true", check=False)
    assert proc.returncode != 0
    assert f"the running driver is {DRIVER_VERSION}, the volume is for 1.2.3" in proc.stderr


def test_volume_left_by_a_previous_plugin_keeps_working(plugin: PluginServer, docker_engine: Engine,
                                                        tmp_path_factory):
    """dockerd keeps nvidia_driver_<v> (driver nvidia-docker) and the containers that reference it when the
    plugin behind the name changes: here an earlier plugin with its own volumes directory, as a switch from
    nvidia-docker-plugin 1.0 (/var/lib/nvidia-docker/volumes) to nvlow leaves things. The new server has
    nothing on disk; dockerd asks it (Get) before it lets a new container use the volume."""
    docker_engine.cli("volume", "rm", "-f", VOLUME, check=False)
    docker_engine.cli("volume", "create", "-d", PLUGIN, "--name", VOLUME)
    docker_engine.cli("create", "--name", "nvlow-enginetest-prev", *SAFE_RUN_FLAGS, f"--volume-driver={PLUGIN}",
                      "-v", MOUNT, IMAGE, "sh", "-c", LIST_DRIVER)
    old = plugin.volumes
    new = str(tmp_path_factory.mktemp("plugin-next") / "volumes")
    plugin.restart(new)
    assert not os.path.exists(os.path.join(new, "nvidia_driver"))

    inspect = json.loads(docker_engine.cli("volume", "inspect", VOLUME).stdout)[0]
    assert (inspect["Driver"], inspect["Mountpoint"]) == (PLUGIN, os.path.join(new, "nvidia_driver", DRIVER_VERSION))
    # a new container with the volume, while the old container still references it
    run = docker_engine.run(f"--volume-driver={PLUGIN}", "-v", MOUNT, IMAGE, "sh", "-c", LIST_DRIVER)
    _driver_listing(run.stdout)
    # the container created under the previous plugin starts too
    start = docker_engine.cli("start", "-a", "nvlow-enginetest-prev")
    _driver_listing(start.stdout)
    assert os.path.isdir(os.path.join(new, "nvidia_driver", DRIVER_VERSION, "lib64"))
    assert old != new
    docker_engine.cli("rm", "-f", "nvlow-enginetest-prev")
    docker_engine.cli("volume", "rm", VOLUME)
