"""``nvlow exec`` / ``nvlow args`` against real docker and podman, with the fake host as ``--root``.

Each container is busybox; what it sees is read with a probe script (see helpers.probe_script).
The fake libraries are not loadable as NVML, so nvlow runs on procfs (``--no-nvml`` forces it).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import pytest

from . import requires_engines, requires_root
from .fakehost import FakeHost, host_has_nvidia_driver
from .helpers import IMAGE, IMAGE_NEWCUDA, IMAGE_PATH, Engine, NvlowRunner, Section, device_args, probe_script, sections

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

NVIDIA_BIN = "/usr/local/nvidia/bin"
NVIDIA_LIB64 = "/usr/local/nvidia/lib64"
# Options every run gets, so the tests do not depend on nvlow's default selection or capabilities.
ALL_GPUS = ("--gpus", "all", "--capabilities", "compute,utility")
CONTAINER_LISTING = "ls /dev | grep '^nvidia[0-9]' | sort"
REAL_DRIVER_REASON = "this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs"


def nvlow_exec(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost, *options: str,
               run_args: Sequence[str] = (), image: str = IMAGE, command: Sequence[str] = ("true",),
               env: Optional[Mapping[str, str]] = None):  # type: ignore[no-untyped-def]
    """``nvlow exec --root <fake> --no-nvml <options> -- <engine> run --rm --pull never --network none ...``."""
    argv = engine.run_argv(*run_args, image, *command)
    return nvlow("exec", "--root", fake_host.root, "--no-nvml", *options, "--", *argv, env=env)


def visible_gpu_nodes(stdout: str) -> List[str]:
    return [line for line in stdout.splitlines() if re.fullmatch(r"nvidia[0-9]+", line)]


def ok(proc) -> str:  # type: ignore[no-untyped-def]
    """stdout of a run that must have succeeded (the failure message shows nvlow's stderr)."""
    assert proc.returncode == 0, f"rc {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout  # type: ignore[no-any-return]


# ---------------------------------------------------------------- bind mode, all GPUs

BIND_PROBE = {
    "stat": "stat -c '%n|%F|%t:%T' /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl /dev/nvidia-uvm",
    "open": "cat /dev/nvidia0",
    "md5": f"md5sum {NVIDIA_LIB64}/libcuda.so.1 {NVIDIA_LIB64}/libcuda.so",
    # Bind mode mounts single files: the directory around them is the container's own (writable), so
    # the read-only check writes to a mounted file.
    "readonly": f"touch {NVIDIA_LIB64}/libcuda.so.1",
    "readonly_bin": f"touch {NVIDIA_BIN}/nvidia-smi",
    "smi": f"{NVIDIA_BIN}/nvidia-smi",
    "smi_on_path": "nvidia-smi",
    "image_tool": "nvlow-image-tool",
    "path": 'echo "$PATH"',
    "ld_library_path": 'echo "$LD_LIBRARY_PATH"',
}

_probe_cache: Dict[Tuple[str, str], Dict[str, Section]] = {}


@pytest.fixture
def bind_probe(engine: Engine, fake_host: FakeHost, nvlow: NvlowRunner) -> Dict[str, Section]:
    """The probe's sections from one ``nvlow exec`` run per engine (bind mode, all GPUs, compute+utility)."""
    key = (engine.name, fake_host.root)
    if key not in _probe_cache:
        proc = nvlow_exec(nvlow, engine, fake_host, *ALL_GPUS, command=("sh", "-c", probe_script(BIND_PROBE)))
        _probe_cache[key] = sections(ok(proc))
    return _probe_cache[key]


def test_device_nodes_are_character_devices(bind_probe: Dict[str, Section], fake_host: FakeHost) -> None:
    nodes = fake_host.nodes
    assert bind_probe["stat"].rc == 0, bind_probe["stat"].out
    assert bind_probe["stat"].out.splitlines() == [
        f"/dev/{name}|character special file|{nodes[name].hex}"
        for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm")
    ]


@pytest.mark.skipif(host_has_nvidia_driver(), reason=REAL_DRIVER_REASON)
def test_gpu_node_is_a_device_not_a_bind_mount(bind_probe: Dict[str, Section]) -> None:
    # ENXIO: the devices cgroup allows the node and no driver answers. A plain bind mount gives EPERM.
    assert bind_probe["open"].rc != 0
    assert "No such device or address" in bind_probe["open"].out


def test_libcuda_is_the_current_driver_copy(bind_probe: Dict[str, Section], fake_host: FakeHost) -> None:
    current = fake_host.md5(fake_host.libraries["libcuda.so.1"])
    assert fake_host.md5(fake_host.stale_library) != current
    assert bind_probe["md5"].rc == 0, bind_probe["md5"].out
    assert bind_probe["md5"].out.splitlines() == [
        f"{current}  {NVIDIA_LIB64}/libcuda.so.1",
        f"{current}  {NVIDIA_LIB64}/libcuda.so",
    ]


@pytest.mark.parametrize("section", ["readonly", "readonly_bin"])
def test_driver_files_are_read_only(bind_probe: Dict[str, Section], section: str) -> None:
    assert bind_probe[section].rc != 0
    assert "Read-only file system" in bind_probe[section].out


def test_nvidia_smi_runs(bind_probe: Dict[str, Section], fake_host: FakeHost) -> None:
    marker = fake_host.marker("nvidia-smi")
    assert (bind_probe["smi"].rc, bind_probe["smi"].out) == (0, marker)
    assert (bind_probe["smi_on_path"].rc, bind_probe["smi_on_path"].out) == (0, marker)


def test_path_keeps_the_image_entries(bind_probe: Dict[str, Section]) -> None:
    path = bind_probe["path"].out.split(":")
    assert NVIDIA_BIN in path
    image_entries = IMAGE_PATH.split(":")
    assert [p for p in path if p in image_entries] == image_entries  # all of them, in order
    assert (bind_probe["image_tool"].rc, bind_probe["image_tool"].out) == (0, "nvlow-image-tool")


def test_ld_library_path_has_the_driver_dirs(bind_probe: Dict[str, Section]) -> None:
    entries = bind_probe["ld_library_path"].out.split(":")
    assert "/usr/local/nvidia/lib64" in entries
    assert "/usr/local/nvidia/lib" in entries


# ---------------------------------------------------------------- GPU selection

@pytest.mark.parametrize(
    ("gpus", "expected"),
    [("device=1", ["nvidia1"]), ("device=0", ["nvidia0"]), ('"device=0,1"', ["nvidia0", "nvidia1"]),
     ("all", ["nvidia0", "nvidia1"])],
)
def test_gpus_flag_in_the_engine_argv(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost,
                                      gpus: str, expected: List[str]) -> None:
    proc = nvlow_exec(nvlow, engine, fake_host, run_args=("--gpus", gpus),
                      command=("sh", "-c", CONTAINER_LISTING))
    assert visible_gpu_nodes(ok(proc)) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"NVIDIA_VISIBLE_DEVICES": "0"}, ["nvidia0"]), ({"NVIDIA_VISIBLE_DEVICES": "1"}, ["nvidia1"]),
     ({"NV_GPU": "1"}, ["nvidia1"]), ({"NV_GPU": "0,1"}, ["nvidia0", "nvidia1"])],
)
def test_selection_from_the_environment(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost,
                                        env: Dict[str, str], expected: List[str]) -> None:
    proc = nvlow_exec(nvlow, engine, fake_host, command=("sh", "-c", CONTAINER_LISTING), env=env)
    assert visible_gpu_nodes(ok(proc)) == expected


# ---------------------------------------------------------------- image requirements

def _container_exists(engine: Engine, name: str) -> bool:
    return engine.cli("container", "inspect", name, check=False).returncode == 0


def test_unsatisfied_requirement_stops_before_the_engine(nvlow: NvlowRunner, engine: Engine,
                                                         fake_host: FakeHost) -> None:
    name = f"nvlow-req-{uuid.uuid4().hex[:12]}"
    try:
        proc = nvlow_exec(nvlow, engine, fake_host, run_args=("--name", name), image=IMAGE_NEWCUDA,
                          command=("sh", "-c", "echo started"))
        assert proc.returncode == 3, proc.stderr
        assert "unsatisfied condition" in proc.stderr
        assert "started" not in proc.stdout
        assert not _container_exists(engine, name)
    finally:
        engine.cli("rm", "-f", name, check=False)


def test_no_require_runs_the_image_anyway(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost) -> None:
    proc = nvlow_exec(nvlow, engine, fake_host, "--no-require", image=IMAGE_NEWCUDA,
                      command=("sh", "-c", "echo started"))
    assert ok(proc) == "started\n"


# ---------------------------------------------------------------- volume mode

def test_volume_mode(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost, tmp_path) -> None:  # type: ignore[no-untyped-def]
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    probe = probe_script({
        "smi": f"{NVIDIA_BIN}/nvidia-smi",
        "md5": f"md5sum {NVIDIA_LIB64}/libcuda.so.1",
        "readonly": "touch /usr/local/nvidia/x",
        "stat": "stat -c '%n|%F|%t:%T' /dev/nvidia0",
    })
    proc = nvlow_exec(nvlow, engine, fake_host, *ALL_GPUS, "--driver-files", "volume",
                      "--volumes-dir", str(volumes), command=("sh", "-c", probe))
    got = sections(ok(proc))
    assert (got["smi"].rc, got["smi"].out) == (0, fake_host.marker("nvidia-smi"))
    current = fake_host.md5(fake_host.libraries["libcuda.so.1"])
    assert got["md5"].out == f"{current}  {NVIDIA_LIB64}/libcuda.so.1"
    assert got["readonly"].rc != 0 and "Read-only file system" in got["readonly"].out
    assert got["stat"].out == f"/dev/nvidia0|character special file|{fake_host.nodes['nvidia0'].hex}"
    version_dir = volumes / "nvidia_driver" / fake_host.driver_version
    assert (version_dir / "bin").is_dir()
    assert (version_dir / "lib64").is_dir()
    assert (version_dir / "bin" / "nvidia-smi").is_file()


# ---------------------------------------------------------------- exit codes, dry run, args

@pytest.mark.parametrize("code", [0, 1, 7, 42])
def test_exit_code_passes_through(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost, code: int) -> None:
    proc = nvlow_exec(nvlow, engine, fake_host, command=("sh", "-c", f"exit {code}"))
    assert proc.returncode == code, proc.stderr


def test_dry_run_json_prints_the_argv_and_starts_nothing(nvlow: NvlowRunner, engine: Engine,
                                                         fake_host: FakeHost) -> None:
    name = f"nvlow-dry-{uuid.uuid4().hex[:12]}"
    proc = nvlow_exec(nvlow, engine, fake_host, *ALL_GPUS, "--dry-run", "--json",
                      run_args=("--name", name), command=("sh", "-c", "echo hi"))
    argv = json.loads(ok(proc))["argv"]
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert os.path.basename(argv[0]) == engine.name and argv[1] == "run"
    image_at = argv.index(IMAGE)
    assert argv[image_at:] == [IMAGE, "sh", "-c", "echo hi"]
    devices = device_args(argv[:image_at])
    assert device_args(argv[image_at:]) == []
    targets = {d.split(":")[1]: d.split(":")[0] for d in devices}
    for node in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        assert targets.get(f"/dev/{node}") == fake_host.host(f"/dev/{node}"), devices
    for flag in ("--rm", "--pull", "--network", "--name"):
        assert flag in argv[:image_at]
    assert not _container_exists(engine, name)


def test_args_output_works_in_a_plain_run(nvlow: NvlowRunner, engine: Engine, fake_host: FakeHost) -> None:
    proc = nvlow("args", "--root", fake_host.root, "--no-nvml", "--gpus", "1")
    args = shlex.split(ok(proc))
    devices = device_args(args)
    container_paths = {d.split(":")[1] for d in devices}
    assert "/dev/nvidia1" in container_paths and "/dev/nvidia0" not in container_paths
    run = engine.run(*args, IMAGE, "sh", "-c", CONTAINER_LISTING)
    assert visible_gpu_nodes(run.stdout) == ["nvidia1"]


# ---------------------------------------------------------------- MIG: all gets the access nodes

@pytest.fixture(scope="module")
def mig_host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    """The fake host with GPU 0 in MIG mode (two MIG devices, mknod'd /dev/nvidia-caps nodes)."""
    from .fakehost import build_fake_host

    return build_fake_host(str(tmp_path_factory.mktemp("mighost")), mig=True)


def test_mig_all_gets_every_access_node(podman_engine: Engine, mig_host: FakeHost, nvlow: NvlowRunner) -> None:
    """``all`` on a MIG host (the default, and NVIDIA_VISIBLE_DEVICES=all) gives the container each MIG
    device's /dev/nvidia-caps access nodes, as libnvidia-container does; GPU 0 by index gives none."""
    from .fakehost import cap_ci_minor, cap_gi_minor

    if host_has_nvidia_driver():
        pytest.skip(REAL_DRIVER_REASON)
    want = sorted(f"nvidia-cap{m}" for g, gi, ci in mig_host.mig_instances
                  for m in (cap_gi_minor(g, gi), cap_ci_minor(g, gi, ci)))
    listing = "ls /dev/nvidia-caps 2>/dev/null | sort; stat -c '%n|%F' /dev/nvidia-caps/* 2>/dev/null; true"
    for run_args in ((), ("-e", "NVIDIA_VISIBLE_DEVICES=all")):
        out = ok(nvlow_exec(nvlow, podman_engine, mig_host, "--capabilities", "utility", run_args=run_args,
                            command=("sh", "-c", listing)))
        names = [line for line in out.splitlines() if line.startswith("nvidia-cap")]
        assert names == want, out
        assert out.count("character special file") == len(want), out
    out = ok(nvlow_exec(nvlow, podman_engine, mig_host, "--capabilities", "utility",
                        run_args=("-e", "NVIDIA_VISIBLE_DEVICES=0"), command=("sh", "-c", listing)))
    assert not [line for line in out.splitlines() if line.startswith("nvidia-cap")], out
