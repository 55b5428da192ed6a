"""nvlow.plan.slurm and ``nvlow slurm gres|allocation`` without a cluster: the allocation parser on the
environments Slurm 22.05 really sets (recorded from tests/slurm's cluster), the GRES order of a host,
gres.conf rendering, CPU affinity from a sysfs tree, the CLI, goldens and a fuzz target.

The real-cluster tests are tests/test_slurm_real.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import pytest
from goldens import check_golden
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvlow
from nvlow.errors import HostError, NvlowError, SelectionError
from nvlow.host.root import HostRoot
from nvlow.model import DeviceNode, Gpu, Host, MigDevice
from nvlow.plan.slurm import (SlurmAllocation, allocated_devices, allocation_spec, check_selection, cores_for_cpus,
                         format_ranges, gpu_type, gres_devices, gres_document, gres_line, logical_cores, mig_type,
                         parse_cpu_list, parse_gres_indices, read_cpu_topology, read_gpu_cores, render_gres_conf,
                         slurm_allocation)

# ----------------------------------------------------------------------------- the job's allocation

#: environments recorded with Slurm 22.05.8 (tests/slurm/setup_slurm.sh, task/none), SLURM_* GPU variables only
REAL_ENVS: Dict[str, Tuple[Dict[str, str], Optional[Tuple[int, ...]], str]] = {
    "srun --gres=gpu:1": ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_GPUS": "0",
                           "CUDA_VISIBLE_DEVICES": "0", "SLURM_GPUS_ON_NODE": "1"}, (0,), "SLURM_STEP_GPUS"),
    "srun --gres=gpu:2": ({"SLURM_JOB_ID": "2", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0,1",
                           "CUDA_VISIBLE_DEVICES": "0,1"}, (0, 1), "SLURM_STEP_GPUS"),
    "sbatch --gres=gpu:3 (batch step)": ({"SLURM_JOB_ID": "3", "SLURM_JOB_GPUS": "0,1,2", "SLURM_GPUS_ON_NODE": "3",
                                          "CUDA_VISIBLE_DEVICES": "0,1,2"}, (0, 1, 2), "SLURM_JOB_GPUS"),
    "srun in that batch job": ({"SLURM_JOB_ID": "3", "SLURM_JOB_GPUS": "0,1,2", "SLURM_STEP_ID": "0",
                                "SLURM_STEP_GPUS": "0,1,2"}, (0, 1, 2), "SLURM_STEP_GPUS"),
    "srun --gres=gpu:1 in it": ({"SLURM_JOB_ID": "3", "SLURM_JOB_GPUS": "0,1,2", "SLURM_STEP_ID": "1",
                                 "SLURM_STEP_GPUS": "0"}, (0,), "SLURM_STEP_GPUS"),
    # a step that asked for no GPU inherits the batch step's SLURM_JOB_GPUS but has none
    "srun --gres=none in it": ({"SLURM_JOB_ID": "3", "SLURM_JOB_GPUS": "0,1,2", "SLURM_STEP_ID": "3"},
                               (), "SLURM_STEP_GPUS"),
    "srun --gpus-per-task=1 task 1": ({"SLURM_JOB_ID": "4", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "1",
                                       "SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "1"}, (1,), "SLURM_STEP_GPUS"),
    "salloc shell (no GPU variable)": ({"SLURM_JOB_ID": "5"}, (), "SLURM_JOB_GPUS"),
    "not in a job": ({"SLURM_STEP_GPUS": "0", "CUDA_VISIBLE_DEVICES": "3"}, None, ""),
    "prolog-style ranges": ({"SLURM_JOB_ID": "6", "SLURM_JOB_GPUS": "0-2,5"}, (0, 1, 2, 5), "SLURM_JOB_GPUS"),
}


@pytest.mark.parametrize("name", list(REAL_ENVS))
def test_allocation_of_real_environments(name: str) -> None:
    env, indices, variable = REAL_ENVS[name]
    alloc = slurm_allocation(env)
    if indices is None:
        assert alloc is None
        return
    assert alloc is not None
    assert (alloc.indices, alloc.variable) == (indices, variable)
    assert alloc.job_id == int(env["SLURM_JOB_ID"])


def test_cuda_visible_devices_is_never_read() -> None:
    """Under task/cgroup with ConstrainDevices=yes CUDA_VISIBLE_DEVICES is renumbered from 0."""
    env = {"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert slurm_allocation(env).indices == (2, 3)  # type: ignore[union-attr]


@pytest.mark.parametrize("value,want", [
    ("0", (0,)), ("3,1", (1, 3)), ("0-3", (0, 1, 2, 3)), ("0-1,4,6-7", (0, 1, 4, 6, 7)), ("", ()),
    ("5\n", (5,)), ("007", (7,)), ("1023", (1023,)),
])
def test_parse_gres_indices(value: str, want: Tuple[int, ...]) -> None:
    assert parse_gres_indices(value) == want


@pytest.mark.parametrize("value,needle", [
    ("0,,1", "'' is not a GRES index"), ("a", "'a' is not a GRES index"), ("-1", "'' is not a GRES index"),
    ("+1", "'+1' is not a GRES index"), ("1 2", "'1 2' is not a GRES index"), ("²", "'²' is not a GRES index"),
    ("٣", "'٣' is not a GRES index"), ("3-1", "range '3-1' is reversed"), ("0,0", "GRES index 0 named twice"),
    ("0-2,1", "GRES index 1 named twice"), ("1024", "Slurm's limit"), ("0-99999999", "Slurm's limit"),
    ("9" * 5000, "is not a GRES index"), ("NoDevFiles", "is not a GRES index"), ("0\n1", "is not a GRES index"),
    ("1-2-3", "is not a GRES index"),
])
def test_hostile_gpu_lists_are_one_line_selection_errors(value: str, needle: str) -> None:
    with pytest.raises(SelectionError) as info:
        parse_gres_indices(value, "SLURM_STEP_GPUS")
    msg = str(info.value)
    assert needle in msg and "SLURM_STEP_GPUS" in msg
    assert "\n" not in msg and len(msg) < 300
    assert info.value.exit_code == 2


@pytest.mark.parametrize("env,needle", [
    ({"SLURM_JOB_ID": "x"}, "invalid SLURM_JOB_ID 'x'"),
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "batch"}, "invalid SLURM_STEP_ID 'batch'"),
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "0,zz"}, "invalid SLURM_JOB_GPUS"),
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0", "SLURM_JOB_GPUS": "x"}, "SLURM_JOB_GPUS"),
    # a step cannot have GPUs its job does not
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "3", "SLURM_JOB_GPUS": "0,1"},
     "SLURM_STEP_GPUS=3 is not within the job's SLURM_JOB_GPUS=0,1"),
])
def test_hostile_environments(env: Dict[str, str], needle: str) -> None:
    with pytest.raises(SelectionError) as info:
        slurm_allocation(env)
    assert needle in str(info.value) and info.value.exit_code == 2 and info.value.hint


def test_empty_job_id_is_not_a_job() -> None:
    assert slurm_allocation({"SLURM_JOB_ID": "", "SLURM_STEP_GPUS": "1"}) is None


# ----------------------------------------------------------------------------- GRES order of a host

def _node(root: str, path: str, major: int, minor: int, kind: str) -> DeviceNode:
    return DeviceNode(root + path, path, major, minor, kind)


def make_host(root: str = "/r") -> Host:
    """Four GPUs in bus (nvlow index) order whose minors are 2, 0, 3, 1; the minor-1 GPU is in MIG mode
    with two MIG devices, the minor-3 GPU in MIG mode without any."""
    def gpu(index: int, minor: int, bus: str, migs: Tuple[MigDevice, ...] = (), mig: Optional[bool] = None) -> Gpu:
        return Gpu(index=index, minor=minor, uuid=f"GPU-{minor}", bus_id=bus, name="NVIDIA A100-SXM4-40GB",
                   mig_enabled=mig, mig_devices=migs, node=_node(root, f"/dev/nvidia{minor}", 195, minor, "gpu"))

    migs = tuple(MigDevice(uuid=f"MIG-{gi}", parent_index=3, index=slot, gpu_instance_id=gi, compute_instance_id=0,
                           name="NVIDIA A100-SXM4-40GB MIG 3g.20gb",
                           cap_nodes=(_node(root, f"/dev/nvidia-caps/nvidia-cap{gi * 10}", 500, gi * 10, "cap"),
                                      _node(root, f"/dev/nvidia-caps/nvidia-cap{gi * 10 + 1}", 500, gi * 10 + 1,
                                            "cap")))
                 for slot, gi in enumerate((2, 1)))
    gpus = (gpu(0, 2, "0000:01:00.0"), gpu(1, 0, "0000:02:00.0"), gpu(2, 3, "0000:41:00.0", mig=True),
            gpu(3, 1, "0000:81:00.0", migs, True))
    return Host(root=root, driver_version="550.54.15", cuda_version="12.4", source="nvml", gpus=gpus)


def test_gres_order_is_minor_order_with_mig_devices_in_place() -> None:
    devices = gres_devices(make_host())
    # minor 0 (GPU 1), minor 1's two MIG devices, minor 2 (GPU 0); minor 3 is in MIG mode without MIG devices
    assert [(d.index, d.token, d.gpu.minor) for d in devices] == [
        (0, "1", 0), (1, "3:0", 1), (2, "3:1", 1), (3, "0", 2)]
    assert devices[1].files == ("/r/dev/nvidia1", "/r/dev/nvidia-caps/nvidia-cap20", "/r/dev/nvidia-caps/nvidia-cap21")


def test_allocation_maps_through_the_gres_order() -> None:
    host = make_host()
    alloc = slurm_allocation({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0,2-3"})
    assert alloc is not None
    assert [d.token for d in allocated_devices(host, alloc)] == ["1", "3:1", "0"]
    assert allocation_spec(host, alloc) == "0,1,3:1"  # nvlow's order
    none = slurm_allocation({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "1"})
    assert none is not None and allocation_spec(host, none) == "none"


def test_an_index_beyond_the_host_is_an_error_naming_the_allocation() -> None:
    alloc = SlurmAllocation(7, 0, "SLURM_STEP_GPUS", "3-4", (3, 4))
    with pytest.raises(SelectionError) as info:
        allocated_devices(make_host(), alloc)
    assert str(info.value) == ("SLURM_STEP_GPUS=3-4 (Slurm job 7, step 0) names GRES index 4, "
                               "but this host has 4 GPU records (indices 0-3)")
    assert "nvlow slurm gres" in (info.value.hint or "")


def test_check_selection() -> None:
    host = make_host()
    gpus = {g.index: g for g in host.gpus}
    alloc = slurm_allocation({"SLURM_JOB_ID": "4", "SLURM_STEP_ID": "2", "SLURM_STEP_GPUS": "0,1"})
    assert alloc is not None
    mig0, mig1 = gpus[3].mig_devices
    check_selection(host, alloc, [gpus[1]], [mig0])  # both allocated
    with pytest.raises(SelectionError) as info:
        check_selection(host, alloc, [gpus[1], gpus[0]], [mig1])
    assert str(info.value) == ("GPUs 0, 3:1 are not allocated to this Slurm step: SLURM_STEP_GPUS=0,1 "
                               "(Slurm job 4, step 2) gives it GPU 1, 3:0")
    with pytest.raises(SelectionError, match="MIG|GPU 3 is not allocated"):
        check_selection(host, alloc, [gpus[3]])  # the parent of an allocated MIG device is not allocated
    batch = slurm_allocation({"SLURM_JOB_ID": "4", "SLURM_JOB_GPUS": "3"})
    assert batch is not None
    check_selection(host, batch, [gpus[0]])
    empty = slurm_allocation({"SLURM_JOB_ID": "4", "SLURM_STEP_ID": "3"})
    assert empty is not None
    with pytest.raises(SelectionError, match="job 4, step 3.* gives it GPU none"):
        check_selection(host, empty, [gpus[0]])
    check_selection(host, empty, [])  # selecting nothing is always within


def test_mig_devices_of_another_gpu_are_refused() -> None:
    host = make_host()
    alloc = SlurmAllocation(1, None, "SLURM_JOB_GPUS", "0", (0,))
    check_selection(host, alloc, [], [])
    with pytest.raises(SelectionError):
        check_selection(host, alloc, [], [host.gpus[3].mig_devices[0]])


# ----------------------------------------------------------------------------- gres.conf

@pytest.mark.parametrize("name,want", [
    ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA A100 80GB PCIe", "a100_80gb_pcie"),
    ("NVIDIA H100 80GB HBM3", "h100_80gb_hbm3"), ("NVIDIA GeForce RTX 4090", "geforce_rtx_4090"),
    ("Tesla V100-SXM2-16GB", "tesla_v100"), ("NVIDIA RTX A6000", "rtx_a6000"), ("Quadro RTX 8000", "quadro_rtx_8000"),
    ("NVIDIA H100 NVL", "h100_nvl"), ("NVIDIA", "nvidia"), ("  ", None), ("", None), (None, None),
    ("NVIDIA Ä:1,x#y", "1_x_y"),
])
def test_gpu_type(name: Optional[str], want: Optional[str]) -> None:
    got = gpu_type(name)
    assert got == want
    if got:
        assert set(got) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.") and not got.startswith("_")


def test_gpu_type_is_a_substring_of_slurms_autodetected_name() -> None:
    """gres.conf(5): with AutoDetect the Type must match or be a substring of the detected name, which is the
    NVML name in lower case with '_' for spaces."""
    for name in ("NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090", "Tesla T4"):
        assert gpu_type(name) in name.lower().replace(" ", "_")


def test_mig_type() -> None:
    gpu = Gpu(0, 0, None, None, "NVIDIA H100 80GB HBM3")
    assert mig_type(gpu, MigDevice(None, 0, 0, 1, 0, name="NVIDIA H100 80GB HBM3 MIG 1c.3g.40gb")) == \
        "h100_80gb_hbm3_1c.3g.40gb"
    assert mig_type(gpu, MigDevice(None, 0, 0, 1, 0)) == "h100_80gb_hbm3_mig"  # procfs only: no profile
    assert mig_type(Gpu(0, 0, None, None, None), MigDevice(None, 0, 0, 1, 0)) is None


def test_gres_lines() -> None:
    devices = gres_devices(make_host())
    assert gres_line(devices[0], "0-15") == "Name=gpu Type=a100 File=/r/dev/nvidia0 Cores=0-15"
    assert gres_line(devices[1]) == ("Name=gpu Type=a100_3g.20gb MultipleFiles=/r/dev/nvidia1,"
                                     "/r/dev/nvidia-caps/nvidia-cap20,/r/dev/nvidia-caps/nvidia-cap21")


def test_render_gres_conf() -> None:
    text = render_gres_conf(make_host(), {"0000:02:00.0": "0-7", "0000:01:00.0": "8-15"})
    assert text.splitlines()[1:] == [
        "# slurm.conf: Gres=gpu:a100:2,gpu:a100_3g.20gb:2",
        "AutoDetect=off",
        "Name=gpu Type=a100 File=/r/dev/nvidia0 Cores=0-7",
        "Name=gpu Type=a100_3g.20gb MultipleFiles=/r/dev/nvidia1,/r/dev/nvidia-caps/nvidia-cap20,"
        "/r/dev/nvidia-caps/nvidia-cap21",
        "Name=gpu Type=a100_3g.20gb MultipleFiles=/r/dev/nvidia1,/r/dev/nvidia-caps/nvidia-cap10,"
        "/r/dev/nvidia-caps/nvidia-cap11",
        "Name=gpu Type=a100 File=/r/dev/nvidia2 Cores=8-15",
    ]


def test_unwritable_hosts_are_host_errors() -> None:
    no_node = Gpu(index=1, minor=0, uuid=None, bus_id="0000:02:00.0", name="NVIDIA A100")
    bad = Host(root="/r", driver_version=None, cuda_version=None, source="procfs", gpus=(no_node,))
    with pytest.raises(HostError, match="0000:02:00.0 has no usable /dev/nvidiaN"):
        render_gres_conf(bad)
    spaced = make_host("/with space")
    with pytest.raises(HostError, match="cannot be written in gres.conf"):
        render_gres_conf(spaced)
    lone_mig = MigDevice(None, 0, 0, 1, 0, cap_nodes=())
    gpu = Gpu(0, 0, None, "0000:01:00.0", "A100", mig_enabled=True, mig_devices=(lone_mig,),
              node=_node("/r", "/dev/nvidia0", 195, 0, "gpu"))
    with pytest.raises(HostError, match="lacks its /dev/nvidia-caps access nodes"):
        render_gres_conf(Host(root="/r", driver_version=None, cuda_version=None, source="procfs", gpus=(gpu,)))


def test_json_document() -> None:
    doc = gres_document(make_host(), {"0000:02:00.0": "0-7"})
    assert doc["schema_version"] == 1 and doc["node_gres"] == "gpu:a100:2,gpu:a100_3g.20gb:2"
    first, mig = doc["gres"][0], doc["gres"][1]  # type: ignore[index]
    assert first["line"] == "Name=gpu Type=a100 File=/r/dev/nvidia0 Cores=0-7" and first["selection"] == "1"
    assert mig["mig"] == {"index": 0, "uuid": "MIG-2", "gpu_instance_id": 2, "compute_instance_id": 0}
    json.dumps(doc)


# ----------------------------------------------------------------------------- CPU affinity

@pytest.mark.parametrize("text,want", [("0-3", (0, 1, 2, 3)), ("0,2,4-5\n", (0, 2, 4, 5)), ("", ()), ("\n", ()),
                                       ("7", (7,))])
def test_parse_cpu_list(text: str, want: Tuple[int, ...]) -> None:
    assert parse_cpu_list(text) == want


@pytest.mark.parametrize("text", ["a", "3-1", "0,,1", "-1", "0-99999", "1.5", "²"])
def test_bad_cpu_lists(text: str) -> None:
    with pytest.raises(HostError, match="malformed"):
        parse_cpu_list(text, "/sys/x/local_cpulist")


def test_format_ranges() -> None:
    assert format_ranges([3, 1, 2, 7, 9, 10]) == "1-3,7,9-10"
    assert format_ranges([0]) == "0"


def test_logical_cores_follow_sockets_not_cpu_numbers() -> None:
    # 2 sockets x 2 cores x 2 threads, CPUs interleaved between the sockets (0 on socket 0, 1 on socket 1, ...)
    topo = {0: (0, 0, 0), 1: (1, 0, 0), 2: (0, 0, 1), 3: (1, 0, 1),
            4: (0, 0, 0), 5: (1, 0, 0), 6: (0, 0, 1), 7: (1, 0, 1)}
    assert logical_cores(topo) == {0: 0, 4: 0, 2: 1, 6: 1, 1: 2, 5: 2, 3: 3, 7: 3}
    assert cores_for_cpus([1, 3, 5, 7], topo) == "2-3"  # socket 1's CPUs are its cores 2-3
    assert cores_for_cpus(range(8), topo) is None  # every core: no Cores=
    assert cores_for_cpus([99], topo) is None


def test_core_ids_repeat_across_dies() -> None:
    topo = {0: (0, 0, 0), 1: (0, 1, 0), 2: (0, 0, 1), 3: (0, 1, 1)}
    assert sorted(set(logical_cores(topo).values())) == [0, 1, 2, 3]


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def write_sys(root: str, cpulists: Dict[str, str], cpus: int = 4) -> None:
    for cpu in range(cpus):
        base = f"{root}/sys/devices/system/cpu/cpu{cpu}/topology"
        _write(f"{base}/physical_package_id", f"{cpu // 2}\n")
        _write(f"{base}/core_id", f"{cpu % 2}\n")
        _write(f"{base}/die_id", "-1\n" if cpu == 0 else "0\n")
    os.makedirs(f"{root}/sys/devices/system/cpu/cpufreq", exist_ok=True)  # not a CPU
    for bus, text in cpulists.items():
        device = f"{root}/sys/devices/pci0000:00/{bus}"
        _write(f"{device}/local_cpulist", text)
        os.makedirs(f"{root}/sys/bus/pci/devices", exist_ok=True)
        os.symlink(f"../../../devices/pci0000:00/{bus}", f"{root}/sys/bus/pci/devices/{bus}")


def test_read_gpu_cores_through_the_root(tmp_path) -> None:
    root = str(tmp_path)
    write_sys(root, {"0000:01:00.0": "2-3\n", "0000:02:00.0": "0-1\n", "0000:41:00.0": "0-3\n",
                     "0000:81:00.0": "zz\n"})
    assert read_cpu_topology(HostRoot(root)) == {0: (0, -1, 0), 1: (0, 0, 1), 2: (1, 0, 0), 3: (1, 0, 1)}
    cores, warnings = read_gpu_cores(HostRoot(root), make_host())
    assert cores == {"0000:01:00.0": "2-3", "0000:02:00.0": "0-1"}  # 0000:41:00.0 is near every core
    assert len(warnings) == 1 and "0000:81:00.0" in warnings[0] and "local_cpulist is malformed" in warnings[0]


def test_read_gpu_cores_without_sysfs(tmp_path) -> None:
    assert read_gpu_cores(HostRoot(str(tmp_path)), make_host()) == ({}, ())


def test_read_gpu_cores_never_leaves_the_root(tmp_path) -> None:
    """A local_cpulist that is a FIFO or a link out of the tree is a warning, not a hang or a host read."""
    root = str(tmp_path)
    write_sys(root, {"0000:02:00.0": "0-1\n"})
    os.unlink(f"{root}/sys/devices/pci0000:00/0000:02:00.0/local_cpulist")
    os.mkfifo(f"{root}/sys/devices/pci0000:00/0000:02:00.0/local_cpulist")
    cores, warnings = read_gpu_cores(HostRoot(root), make_host())
    assert cores == {} and "FIFO" in warnings[0]


# ----------------------------------------------------------------------------- CLI

def nvlow_cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "NVLOW_SIMULATE", "NVLOW_ROOT"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "nvlow", *args], capture_output=True, text=True, timeout=120,
                          env=full)


def tree_of(preset: str) -> str:
    return nvlow.load_host(simulate=preset).root


GOLDEN_CASES = [("dgx-a100", ()), ("dgx-h100-mig", ()), ("dgx-h100-mig", ("--json",)), ("workstation", ()),
                ("no-gpu", ())]


@pytest.mark.parametrize("preset,args", GOLDEN_CASES, ids=[f"{p}-{'_'.join(a)}" for p, a in GOLDEN_CASES])
def test_gres_golden(preset: str, args: Tuple[str, ...]) -> None:
    res = nvlow_cli("slurm", "gres", "--simulate", preset, *args)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    name = f"{preset}--slurm_gres{''.join('_' + a.strip('-') for a in args)}.txt"
    check_golden(name, res.stdout.replace(tree_of(preset), "$ROOT"))


def test_gres_golden_matches_the_gres_order() -> None:
    """The golden's Nth gpu line is gres_devices(host)[N] (what SLURM_STEP_GPUS=N maps to)."""
    host = nvlow.load_host(simulate="dgx-h100-mig")
    res = nvlow_cli("slurm", "gres", "--simulate", "dgx-h100-mig")
    lines = [line for line in res.stdout.splitlines() if line.startswith("Name=gpu")]
    devices = gres_devices(host)
    assert len(lines) == len(devices) == 16
    for line, d in zip(lines, devices):
        assert d.files[-1] in line


def test_global_options_before_the_group() -> None:
    first = nvlow_cli("--simulate", "dgx-a100", "--json", "slurm", "gres")
    last = nvlow_cli("slurm", "gres", "--simulate", "dgx-a100", "--json")
    assert first.returncode == 0 and first.stdout == last.stdout
    assert json.loads(first.stdout)["node_gres"] == "gpu:a100:8"


@pytest.mark.parametrize("cmd", [["slurm", "gres"], ["slurm", "allocation"]])
def test_slurm_commands_take_the_common_options(cmd: List[str]) -> None:
    res = nvlow_cli(*cmd, "--help")
    assert res.returncode == 0
    for opt in ("--root", "--simulate", "--no-nvml", "--json", "--debug"):
        assert opt in res.stdout, (cmd, opt)


def test_allocation_command() -> None:
    env = {"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "1,3"}
    res = nvlow_cli("slurm", "allocation", "--simulate", "dgx-a100", "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["allocation"] == {"job_id": 12, "step_id": 0, "variable": "SLURM_STEP_GPUS", "value": "1,3",
                                 "indices": [1, 3]}
    assert doc["selection"] == "1,3" and [g["minor"] for g in doc["gpus"]] == [1, 3]
    text = nvlow_cli("slurm", "allocation", "--simulate", "dgx-a100", env=env).stdout
    assert text.splitlines()[0] == "SLURM_STEP_GPUS=1,3 (Slurm job 12, step 0): selection 1,3"
    outside = nvlow_cli("slurm", "allocation", "--json")
    assert outside.returncode == 0 and json.loads(outside.stdout)["allocation"] is None


@pytest.mark.parametrize("env,code,needle", [
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0,x"}, 2, "invalid SLURM_STEP_GPUS '0,x'"),
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "8"}, 2, "names GRES index 8"),
])
def test_allocation_errors_are_one_line(env: Dict[str, str], code: int, needle: str) -> None:
    res = nvlow_cli("slurm", "allocation", "--simulate", "dgx-a100", env=env)
    assert res.returncode == code and needle in res.stderr
    assert "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.startswith("nvlow: error:")]) == 1
    assert any(line.startswith("nvlow: hint:") for line in res.stderr.splitlines())


def test_gres_without_a_driver_is_one_error_line() -> None:
    res = nvlow_cli("slurm", "gres", "--simulate", "no-driver")
    assert res.returncode == 1 and "NVIDIA kernel module not loaded" in res.stderr and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- fuzz

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ALPHABET = "0123456789,- \n\t+xX²٣\x00abc"


@FUZZ
@given(st.text(alphabet=_ALPHABET, max_size=40), st.one_of(st.none(), st.text(alphabet=_ALPHABET, max_size=12)),
       st.one_of(st.none(), st.text(alphabet=_ALPHABET, max_size=40)),
       st.one_of(st.none(), st.text(alphabet=_ALPHABET, max_size=6)))
def test_fuzz_environment(step_gpus: str, job_gpus: Optional[str], job_id: Optional[str],
                          step_id: Optional[str]) -> None:
    env = {"SLURM_STEP_GPUS": step_gpus}
    for key, value in (("SLURM_JOB_GPUS", job_gpus), ("SLURM_JOB_ID", job_id), ("SLURM_STEP_ID", step_id)):
        if value is not None:
            env[key] = value
    try:
        alloc = slurm_allocation(env)
    except NvlowError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    if alloc is not None:
        assert list(alloc.indices) == sorted(set(alloc.indices)) and all(0 <= i < 1024 for i in alloc.indices)
        assert "\n" not in alloc.describe()


@FUZZ
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_fuzz_cpu_list(text: str) -> None:
    try:
        cpus = parse_cpu_list(text)
    except NvlowError as exc:
        assert "\n" not in str(exc)
        return
    assert list(cpus) == sorted(set(cpus))


# ----------------------------------------------------------------------------- the decision inside a job
from nvlow.errors import SelectionError as _SelectionError  # noqa: E402
from nvlow.plan.decide import plan_for as _plan_for  # noqa: E402
from nvlow.plan.request import PlanRequest as _PlanRequest, request_from_dict as _from_dict  # noqa: E402

_JOB = (("SLURM_JOB_ID", "7"), ("SLURM_JOB_GPUS", "1,3"))
_STEP = (("SLURM_JOB_ID", "7"), ("SLURM_STEP_ID", "0"), ("SLURM_JOB_GPUS", "1,3,5"), ("SLURM_STEP_GPUS", "5,1"))


@pytest.mark.parametrize("request_kw,env,want", [
    ({}, _JOB, [1, 3]),                                              # the default: the allocation
    ({"gpus": "all"}, _JOB, [1, 3]),                                 # all: the allocation
    ({"docker_gpus": ("all",)}, _JOB, [1, 3]),
    ({"docker_gpus": ("1",)}, _JOB, [1]),                            # docker --gpus N: the first N allocated
    ({"gpus": "3"}, _JOB, [3]),                                      # inside: as asked
    ({}, _STEP, [1, 5]),                                             # a step: its own GPUs, not the job's
    ({"process_env_extra": (("NVIDIA_VISIBLE_DEVICES", "all"),)}, _JOB, [1, 3]),
    ({}, (("SLURM_JOB_ID", "7"), ("SLURM_STEP_ID", "1")), []),      # a step given no GPU: none
    ({"gpus": "2"}, (), [2]),                                        # outside a job: anything
])
def test_selection_inside_a_slurm_job(request_kw, env, want):
    host = nvlow.load_host(simulate="dgx-a100")
    extra = request_kw.pop("process_env_extra", ())
    plan = _plan_for(host, _PlanRequest(process_env=env + extra, **request_kw))
    assert [g.index for g in plan.selection.gpus] == want


@pytest.mark.parametrize("request_kw,message", [
    ({"gpus": "0"}, "SLURM_JOB_GPUS=1,3"),
    ({"gpus": "1,2"}, "SLURM_JOB_GPUS=1,3"),
    ({"docker_gpus": ("3",)}, "more GPUs than the Slurm allocation holds (2"),
    ({"process_env_extra": (("NV_GPU", "0"),)}, "Slurm"),
])
def test_selection_outside_the_allocation_is_refused(request_kw, message):
    host = nvlow.load_host(simulate="dgx-a100")
    extra = request_kw.pop("process_env_extra", ())
    with pytest.raises(_SelectionError) as info:
        _plan_for(host, _PlanRequest(process_env=_JOB + extra, **request_kw))
    assert message in str(info.value) and info.value.exit_code == 2


def test_a_remote_request_carries_no_slurm_job():
    """A request that arrives over the network is for another machine: its Slurm variables are dropped."""
    req = _from_dict({"process_env": [["SLURM_JOB_ID", "7"], ["SLURM_JOB_GPUS", "1"], ["NV_GPU", "2"]]})
    assert req.process_env == (("NV_GPU", "2"),)
