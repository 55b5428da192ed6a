"""nvlow exec on real-world command-line shapes: env files, --runtime=nvidia, CDI device names."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nvlow.engine.environ import container_environment, parse_env_file


def run(tmp_path, *argv, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "NV_", "NVLOW_SIMULATE"))}
    env.update({"NVLOW_CACHE_DIR": str(tmp_path / "cache"), "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    env.update(extra_env or {})
    res = subprocess.run([sys.executable, "-m", "nvlow", "exec", "--simulate", "dgx-a100", "--dry-run", "--json",
                          "--", *argv], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["argv"], res.stderr


def gpu_nodes(argv):
    return [a.rsplit(":", 1)[1] for a in argv if a.startswith("--device=") and a.rsplit("/", 1)[1][6:].isdigit()]


def test_env_file_selects_gpus_and_later_e_wins(tmp_path):
    envfile = tmp_path / "gpu.env"
    envfile.write_text("# which GPUs\nNVIDIA_VISIBLE_DEVICES=2,3\nNVIDIA_DRIVER_CAPABILITIES=utility\n")
    argv, _ = run(tmp_path, "docker", "run", "--env-file", str(envfile), "--rm", "busybox", "true")
    assert gpu_nodes(argv) == ["/dev/nvidia2", "/dev/nvidia3"]
    assert not any("nvidia-uvm" in a for a in argv)  # utility only
    argv, _ = run(tmp_path, "docker", "run", "-e", "NVIDIA_VISIBLE_DEVICES=5", "--env-file", str(envfile),
                  "busybox")
    assert gpu_nodes(argv) == ["/dev/nvidia5"]


def test_runtime_nvidia_is_removed_with_a_note(tmp_path):
    argv, err = run(tmp_path, "docker", "run", "--runtime=nvidia", "--rm", "-e", "NVIDIA_VISIBLE_DEVICES=1",
                    "nvidia/cuda:12.4.1-base-ubuntu22.04", "nvidia-smi")
    assert "--runtime=nvidia" not in argv and "removed --runtime=nvidia" in err
    assert gpu_nodes(argv) == ["/dev/nvidia1"]
    argv, _ = run(tmp_path, "docker", "run", "--runtime", "runc", "busybox")
    assert argv[2:4] == ["--runtime", "runc"]


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_cdi_device_names_become_the_selection(tmp_path, engine):
    argv, err = run(tmp_path, engine, "run", "--device", "nvidia.com/gpu=3", "--device", "/dev/fuse",
                    "--device=nvidia.com/gpu=6", "--rm", "busybox", "true")
    assert "nvidia.com/gpu=3" not in argv and "--device=nvidia.com/gpu=6" not in argv
    assert argv[2:4] == ["--device", "/dev/fuse"]
    assert gpu_nodes(argv) == ["/dev/nvidia3", "/dev/nvidia6"]
    assert "replaced CDI device(s)" in err
    argv, _ = run(tmp_path, engine, "run", "--device", "nvidia.com/gpu=all", "busybox")
    assert len(gpu_nodes(argv)) == 8


def test_gpus_zero_gives_no_gpu(tmp_path):
    argv, _ = run(tmp_path, "docker", "run", "--gpus", "0", "busybox")
    assert gpu_nodes(argv) == [] and "--gpus" not in argv


def test_env_file_parsing_rules():
    assert parse_env_file("  A=1\n#B=2\n\nC\nD=x=y\n=bad\n", {"C": "3"}) == {"A": "1", "C": "3", "D": "x=y"}
    reads = {"/a": "X=1\nY=1\n", "/b": "Y=2\n"}
    assert container_environment(["/a", "/b", "/missing"], ["X=9"], {}, read=reads.get) == {"X": "9", "Y": "2"}


# -- the table: every path gives the same answer ------------------------------------
def _nvlow(tmp_path, *argv, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "NV_", "NVLOW_"))}
    env.update({"NVLOW_CACHE_DIR": str(tmp_path / "cache"), "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "nvlow", *argv], env=env, capture_output=True, text=True,
                          timeout=60)


def test_void_needs_no_driver_and_no_remote(tmp_path):
    """NVIDIA_VISIBLE_DEVICES= / void: the container runs as under runc, on a host without a driver too,
    and a configured remote host is not asked (nothing listens on its port here)."""
    for extra in (["--root", str(tmp_path / "no-such-root")], ["--host", "http://127.0.0.1:1"]):
        res = _nvlow(tmp_path, "exec", *extra, "--dry-run", "--json", "--", "docker", "run", "--runtime=nvidia",
                     "-e", "NVIDIA_VISIBLE_DEVICES=", "img", "true")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["argv"] == ["docker", "run", "-e", "NVIDIA_VISIBLE_DEVICES=", "img", "true"]
        assert doc["plan"]["selection"]["mode"] == "void" and doc["plan"]["devices"] == []
    # a real selection on the missing root is an error (exit 1, one line)
    res = _nvlow(tmp_path, "exec", "--root", str(tmp_path / "no-such-root"), "--dry-run", "--", "docker", "run",
                 "-e", "NVIDIA_VISIBLE_DEVICES=0", "img")
    assert res.returncode == 2 and "is not a directory" in res.stderr


def test_list_honours_driver_capabilities_like_args(tmp_path):
    env = {"NVIDIA_DRIVER_CAPABILITIES": "all"}
    listed = json.loads(_nvlow(tmp_path, "list", "--simulate", "workstation", "--json", extra_env=env).stdout)
    args = json.loads(_nvlow(tmp_path, "args", "--simulate", "workstation", "--json", extra_env=env).stdout)
    assert listed["capabilities"] == args["capabilities"] == ["compat32", "compute", "display", "graphics", "ngx",
                                                              "utility", "video"]
    mounted = {m["host_path"] for m in args["mounts"]}
    assert set(listed["libraries64"]) <= mounted and set(listed["libraries32"]) <= mounted
    assert listed["devices"] == [d["host_path"] for d in args["devices"]]
    plain = json.loads(_nvlow(tmp_path, "list", "--simulate", "workstation", "--json").stdout)
    assert plain["capabilities"] == ["compute", "utility"] and len(plain["libraries64"]) < len(listed["libraries64"])


def test_disable_require_on_the_command_line(tmp_path, monkeypatch):
    """-e NVIDIA_DISABLE_REQUIRE=1 and -e NVIDIA_REQUIRE_CUDA=... count (the container's final environment)."""
    res = _nvlow(tmp_path, "exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run",
                 "-e", "NVIDIA_REQUIRE_CUDA=cuda>=99.0", "img")
    assert res.returncode == 3 and "unsatisfied condition: cuda>=99.0" in res.stderr
    res = _nvlow(tmp_path, "exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run",
                 "-e", "NVIDIA_REQUIRE_CUDA=cuda>=99.0", "-e", "NVIDIA_DISABLE_REQUIRE=1", "img")
    assert res.returncode == 0, res.stderr


def test_mig_config_needs_privileged(tmp_path):
    res = _nvlow(tmp_path, "exec", "--simulate", "dgx-h100-mig", "--dry-run", "--", "docker", "run",
                 "-e", "NVIDIA_MIG_CONFIG_DEVICES=all", "img")
    assert res.returncode == 2 and "needs --privileged" in res.stderr
    assert "Traceback" not in res.stderr
