"""The CLI as a real subprocess against the compiled fake libnvidia-ml/libcuda, loaded through the real
loader from a fake host root's ld.so.cache (no --simulate involved)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nvlow.simulate.hosttree import build_tree
from nvlow.simulate.presets import get_preset


def make_root(tmp_path, fake, preset_name="dgx-a100"):
    dest = tmp_path / "root"
    dest.mkdir()
    build_tree(str(dest), get_preset(preset_name))
    fake.install(str(dest))  # the compiled fakes replace the tree's stub libnvidia-ml/libcuda
    if os.geteuid() == 0:  # real character devices, as on a host
        from fakes.nodes import make_real_nodes

        make_real_nodes(str(dest))
    return str(dest)


def nvlow(env, *args):
    return subprocess.run([sys.executable, "-m", "nvlow", *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture()
def env_for(tmp_path):
    def make(fake):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NVIDIA_", "NV_"))}
        env.update(fake.root_env)
        env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
        return env
    return make


def test_info_through_the_real_loader(tmp_path, fake_driver, env_for):
    preset = get_preset("dgx-a100")
    fake = fake_driver(preset)
    root = make_root(tmp_path, fake)
    res = nvlow(env_for(fake), "info", "--root", root, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["source"] == "nvml" and doc["driver_version"] == "550.54.15" and doc["cuda_version"] == "12.4"
    assert [g["uuid"] for g in doc["gpus"]] == [g.uuid for g in preset.gpus]
    assert [g["name"] for g in doc["gpus"]] == ["NVIDIA A100-SXM4-40GB"] * 8
    assert doc["gpus"][0]["bus_id"] == "0000:07:00.0"
    if os.geteuid() == 0:
        assert doc["gpus"][3]["device_path"] == f"{root}/dev/nvidia3"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs mknod for real device nodes")
def test_args_with_nvml_equals_args_from_procfs(tmp_path, fake_driver, env_for):
    fake = fake_driver(get_preset("dgx-a100"))
    root = make_root(tmp_path, fake)
    env = env_for(fake)
    with_nvml = nvlow(env, "args", "--root", root, "--gpus", "GPU-" + get_preset("dgx-a100").gpus[5].uuid[4:12])
    procfs = nvlow(env, "args", "--root", root, "--no-nvml", "--gpus", "5")
    assert with_nvml.returncode == 0, with_nvml.stderr
    assert procfs.returncode == 0, procfs.stderr
    assert with_nvml.stdout == procfs.stdout
    assert f"--device={root}/dev/nvidia5:/dev/nvidia5" in with_nvml.stdout


def test_version_mismatch_is_named_with_its_fix(tmp_path, fake_driver, env_for):
    fake = fake_driver(get_preset("dgx-a100"), rc=[("nvmlInit_v2", 18)])
    root = make_root(tmp_path, fake)
    env = env_for(fake)
    info = nvlow(env, "info", "--root", root, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["source"] == "procfs"
    assert "Driver/library version mismatch" in info.stderr
    doctor = nvlow(env, "doctor", "--root", root, "--no-engine")
    assert doctor.returncode == 1
    assert "[fail] driver libraries" in doctor.stdout and "version mismatch" in doctor.stdout.lower()


def test_missing_library_lists_every_candidate(tmp_path, env_for, fake_driver):
    fake = fake_driver(get_preset("dgx-a100"))
    root = make_root(tmp_path, fake)
    os.unlink(os.path.join(root, "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"))
    res = nvlow(env_for(fake), "status", "--root", root)
    assert res.returncode == 1
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("nvlow: error:")][0]
    assert "cannot load libnvidia-ml.so.1" in line and "tried:" in line and root in line
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs mknod for real device nodes")
def test_corrupt_ld_so_cache_is_a_warning_naming_the_file(tmp_path, fake_driver, env_for):
    fake = fake_driver(get_preset("dgx-a100"))
    root = make_root(tmp_path, fake)
    cache = os.path.join(root, "etc/ld.so.cache")
    with open(cache, "rb") as fh:
        head = fh.read(300)
    with open(cache, "wb") as fh:
        fh.write(head)
    res = nvlow(env_for(fake), "args", "--root", root, "--no-nvml", "--gpus", "0")
    assert res.returncode == 0, res.stderr
    assert f"warning: corrupt ld.so.cache {cache}" in res.stderr
    assert "/usr/local/nvidia/lib64/libcuda.so.1" in res.stdout  # found in the usual directories instead
