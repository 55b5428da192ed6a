"""The real ``nvidia-docker-compose`` (PyPI) in its generate mode against ``nvlow serve``.

nvidia-docker-compose asks nvidia-docker-plugin's ``/docker/cli/json`` (``-n HOST:PORT``, default
``localhost:3476``) and writes a compose file: every service gets the devices (those matching
``/dev/nvidia<digits>`` count as GPUs), the driver volume as a read-only volume, and the volume is
declared ``external`` (created beforehand with ``docker volume create -d <VolumeDriver>``).

The package comes from the test extra (``tests/run.sh`` installs it). Release 0.1.2 is pinned: from 0.1.3
on it depends on docker-compose 1.x, which needs PyYAML < 6, a version with no wheel for Python 3.10+
that no longer builds from source; the generate mode is the same code in 0.1.2 and 0.1.6. The script
calls ``yaml.load(stream)`` without a Loader, which PyYAML 6 refused; the runner below gives it PyYAML
5's behaviour back (safe loading) and otherwise runs the script unchanged. Only loopback is used:
``nvlow serve`` listens on 127.0.0.1 on a free port.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import urllib.request
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

GPU_RE = re.compile(r"/dev/nvidia\d+")  # nvidia-docker-compose's own GPU_DEVICE_PATTERN, used with .match

#: runs the installed script as it is, with PyYAML 5's yaml.load(stream) (no Loader argument) restored
RUNNER = """
import runpy, sys, yaml
_load = yaml.load
def load(stream, Loader=None):
    return _load(stream, Loader=Loader or yaml.SafeLoader)
yaml.load = load
script = sys.argv.pop(1)
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
"""

COMPOSE = """\
version: "2"
services:
  train:
    image: nvidia/cuda:8.0-runtime
    command: nvidia-smi
  notebook:
    image: nvidia/cuda:8.0-runtime
    ports:
      - "8888:8888"
    volumes:
      - ./work:/work
"""


def _script() -> str:
    """The installed ``nvidia-docker-compose`` script; skip (fail in CI) when the test extra is missing."""
    candidates = [os.path.join(sysconfig.get_path("scripts"), "nvidia-docker-compose"),
                  os.path.join(os.path.dirname(sys.executable), "nvidia-docker-compose")]
    for path in candidates:
        if os.path.isfile(path):
            try:
                import yaml  # noqa: F401 - the script's own dependency
            except ImportError:
                break
            return path
    reason = ("nvidia-docker-compose is not installed in this interpreter; run `bash tests/run.sh`, which installs "
              "the test extras (pip install -e '.[test]')")
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
    raise AssertionError  # unreachable


def _clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """No proxy (the client must reach 127.0.0.1 itself) and none of nvlow's variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("NVLOW_", "NVIDIA_", "NV_"))}
    env.update(extra or {})
    return env


def _serve(args: List[str]) -> Tuple["subprocess.Popen[str]", str]:
    proc = subprocess.Popen([sys.executable, "-m", "nvlow", "serve", "--listen", "127.0.0.1:0", "--no-plugin", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_clean_env())
    lines = []
    assert proc.stderr is not None
    for _ in range(50):
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "serving remote API at " in line:
            return proc, line.rsplit(" ", 1)[1].strip()
    proc.kill()
    proc.wait()
    pytest.fail("nvlow serve did not start: " + "".join(lines))
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def script() -> str:
    return _script()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """``nvlow serve`` (REST only) with the parametrized arguments; its 127.0.0.1:PORT address."""
    proc, addr = _serve(list(request.param))
    try:
        yield addr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _generate(script: str, addr: str, tmp_path, *extra: str, compose: str = COMPOSE) -> Dict:
    import yaml

    src = tmp_path / "docker-compose.yml"
    src.write_text(compose)
    out = tmp_path / "nvidia-docker-compose.yml"
    r = subprocess.run([sys.executable, "-c", RUNNER, script, "-G", "-n", addr, "-f", str(src), "-o", str(out),
                        *extra], cwd=str(tmp_path), capture_output=True, text=True, timeout=60, env=_clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return yaml.safe_load(out.read_text())  # type: ignore[no-any-return]


def _cli_json(addr: str) -> Dict:
    with urllib.request.urlopen(f"http://{addr}/docker/cli/json", timeout=10) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


CONTROL = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]


@pytest.mark.parametrize("server", [("--simulate", "dgx-a100", "--engine-root", "/")], indirect=True)
def test_generated_compose_file_on_dgx(script, server, tmp_path):
    doc = _generate(script, server, tmp_path)
    volume = "nvidia_driver_550.54.15"
    assert doc["volumes"] == {volume: {"external": True}}
    gpus = [f"/dev/nvidia{i}" for i in range(8)]
    for name in ("train", "notebook"):
        service = doc["services"][name]
        devices = service["devices"]
        assert [d for d in devices if GPU_RE.match(d)] == gpus  # the GPUs nvidia-docker-compose counted
        assert [d for d in devices if not GPU_RE.match(d)] == CONTROL
        assert f"{volume}:/usr/local/nvidia:ro" in service["volumes"]
    assert doc["services"]["notebook"]["volumes"][0] == "./work:/work"  # the service's own volumes are kept
    assert doc["services"]["train"]["image"] == "nvidia/cuda:8.0-runtime"
    # the external volume is the one the plugin serves: `docker volume create -d nvidia-docker --name ...`
    cli = _cli_json(server)
    assert cli["VolumeDriver"] == "nvidia-docker"
    assert cli["Volumes"] == [f"{volume}:/usr/local/nvidia:ro"]


@pytest.mark.parametrize("server", [("--simulate", "workstation", "--engine-root", "/", "--plugin-name", "site-gpu")],
                         indirect=True)
def test_generated_compose_file_on_a_workstation_with_another_plugin_name(script, server, tmp_path):
    doc = _generate(script, server, tmp_path)
    (volume,) = doc["volumes"]
    assert re.fullmatch(r"nvidia_driver_[0-9.]+", volume) and doc["volumes"][volume] == {"external": True}
    devices = doc["services"]["train"]["devices"]
    assert [d for d in devices if GPU_RE.match(d)] == ["/dev/nvidia0"]
    assert _cli_json(server)["VolumeDriver"] == "site-gpu"


@pytest.mark.parametrize("server", [("--simulate", "dgx-a100", "--engine-root", "/")], indirect=True)
def test_template_mode_sees_the_gpu_count(script, server, tmp_path):
    template = tmp_path / "compose.jinja"
    template.write_text('version: "2"\nservices:\n  job:\n    image: cuda\n    environment:\n'
                        '      GPUS: "{{ N_GPU }}"\n      FIRST: "{{ GPU_DEVICES[0] }}"\n')
    doc = _generate(script, server, tmp_path, "-t", str(template))
    assert doc["services"]["job"]["environment"] == {"GPUS": "8", "FIRST": "/dev/nvidia0"}
    assert len([d for d in doc["services"]["job"]["devices"] if GPU_RE.match(d)]) == 8


@pytest.mark.parametrize("server", [("--simulate", "dgx-a100")], indirect=True)
def test_without_engine_root_a_simulated_root_is_host_paths(script, server, tmp_path):
    """Why --engine-root exists: under --root/--simulate the engine needs HOST:CONTAINER device strings,
    and nvidia-docker-compose counts none of them as a GPU."""
    doc = _generate(script, server, tmp_path)
    devices = doc["services"]["train"]["devices"]
    assert len(devices) == 11 and not [d for d in devices if GPU_RE.match(d)]
    assert all(d.endswith(":" + d.split(":")[-1]) and ":/dev/nvidia" in d for d in devices)


def test_gpu_pattern_is_the_scripts_own(script):
    assert "GPU_DEVICE_PATTERN = re.compile(r'/dev/nvidia\\d+')" in open(script).read()
    assert "'http://{0}/docker/cli/json'.format(args.nvidia_docker_host)" in open(script).read()
