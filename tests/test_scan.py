"""The /proc+/dev scanner on fake roots: presets, broken nodes, UVM loading, no driver, cross-checks."""
from __future__ import annotations

import os
import shutil
import stat
from typing import List

import pytest

from nvlow.errors import DriverNotLoaded, HostError
from nvlow.model import DeviceNode
from nvlow.records import GpuRecord
from nvlow.host.root import HostRoot, file_node_reader
from nvlow.host.scan import MigCap, ProcGpu, ProcScan, cross_check, scan_host
from nvlow.simulate.fakelib import SimulatedLibrary
from nvlow.simulate.presets import PRESET_NAMES, get_preset
from nvlow.simulate.proctree import cap_ci_minor, cap_gi_minor, procfs_bus, write_proc_dev_tree

UVM_MISSING = ("{} is missing: CUDA will fail in containers; run 'nvidia-modprobe -u -c=0' as root "
               "or load nvidia-uvm")


def tree(tmp_path: object, preset: str = "dgx-a100") -> HostRoot:
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset(preset))
    return HostRoot(d, node_reader=file_node_reader)


def put(root: HostRoot, path: str, text: str) -> None:
    real = root.host(path)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    if os.path.lexists(real):
        os.unlink(real)
    with open(real, "w") as fh:
        fh.write(text)


def node_file(root: HostRoot, path: str, major: int, minor: int) -> None:
    put(root, path, f"nvlow-simulated-char {major}:{minor}\n")


def rm(root: HostRoot, path: str) -> None:
    real = root.host(path)
    if os.path.isdir(real):
        shutil.rmtree(real)
    else:
        os.unlink(real)


# ------------------------------------------------------------------ presets

@pytest.mark.parametrize("name", [n for n in PRESET_NAMES if get_preset(n).driver_loaded])
def test_scan_of_every_preset_matches_the_preset(tmp_path: object, name: str) -> None:
    preset = get_preset(name)
    root = tree(tmp_path, name)
    scan = scan_host(root)
    assert scan.warnings == ()
    assert scan.driver_version == preset.driver_version
    assert scan.open_module is preset.open_kernel_module
    assert scan.major("nvidia") == 195 and scan.major("nvidia-uvm") == preset.uvm_major
    assert scan.major("nvidia-caps") == preset.caps_major
    by_index = sorted(preset.gpus, key=lambda g: g.index)
    assert [g.bus_id for g in scan.gpus] == [procfs_bus(g) for g in by_index]
    assert [(g.minor, g.uuid, g.model, g.excluded) for g in scan.gpus] == [
        (g.minor, g.uuid, g.name, False) for g in by_index]
    for pg in scan.gpus:
        assert pg.minor is not None
        assert pg.node == DeviceNode(root.host(f"/dev/nvidia{pg.minor}"), f"/dev/nvidia{pg.minor}", 195,
                                     pg.minor, "gpu")
    kinds = [(n.kind, n.container_path, n.major, n.minor) for n in scan.control_nodes]
    expected = [("ctl", "/dev/nvidiactl", 195, 255), ("uvm", "/dev/nvidia-uvm", preset.uvm_major, 0),
                ("uvm-tools", "/dev/nvidia-uvm-tools", preset.uvm_major, 1)]
    if preset.display:
        expected.append(("modeset", "/dev/nvidia-modeset", 195, 254))
    assert kinds == expected
    assert all(n.host_path == root.host(n.container_path) for n in scan.control_nodes)
    want_caps = sorted(
        {(g.minor, m.gi, None, cap_gi_minor(g.minor, m.gi)) for g in preset.gpus for m in g.migs}
        | {(g.minor, m.gi, m.ci, cap_ci_minor(g.minor, m.gi, m.ci)) for g in preset.gpus for m in g.migs},
        key=lambda c: (c[0], c[1], -1 if c[2] is None else c[2]))
    assert [(c.gpu_minor, c.gi, c.ci, c.cap_minor) for c in scan.mig_caps] == want_caps
    for c in scan.mig_caps:
        assert c.node == DeviceNode(root.host(f"/dev/nvidia-caps/nvidia-cap{c.cap_minor}"),
                                    f"/dev/nvidia-caps/nvidia-cap{c.cap_minor}", preset.caps_major,
                                    c.cap_minor, "cap")
    if want_caps:
        assert scan.config_cap is not None and scan.config_cap.minor == 1
        assert scan.monitor_cap is not None and scan.monitor_cap.minor == 2
    else:
        assert scan.config_cap is None and scan.monitor_cap is None


def test_dgx_h100_mig_caps_are_exact(tmp_path: object) -> None:
    scan = scan_host(tree(tmp_path, "dgx-h100-mig"))
    gpu1 = [(c.gi, c.ci, c.cap_minor) for c in scan.mig_caps if c.gpu_minor == 1]
    assert gpu1 == [(1, None, 147), (1, 0, 148), (2, None, 156), (2, 0, 157), (2, 1, 158)]
    assert len([c for c in scan.mig_caps if c.gpu_minor == 0]) == 14


def test_no_driver(tmp_path: object) -> None:
    root = tree(tmp_path, "no-driver")
    with pytest.raises(DriverNotLoaded) as exc:
        scan_host(root)
    assert str(exc.value) == f"NVIDIA kernel module not loaded (no /proc/driver/nvidia/version under {root.path})"
    assert exc.value.hint and "modprobe nvidia" in exc.value.hint


def test_empty_root_is_driver_not_loaded(tmp_path: object) -> None:
    with pytest.raises(DriverNotLoaded):
        scan_host(HostRoot(str(tmp_path), node_reader=file_node_reader))


# ------------------------------------------------------------------ node checks

def test_wrong_type_node_is_not_used(tmp_path: object) -> None:
    root = tree(tmp_path)
    put(root, "/dev/nvidia0", "just a file\n")
    scan = scan_host(root)
    assert scan.gpus[0].node is None and scan.gpus[1].node is not None
    assert scan.warnings == (f"{root.host('/dev/nvidia0')} is not a character device; not used",)
    assert [n.minor for n in scan.gpu_nodes] == [1, 2, 3, 4, 5, 6, 7]


def test_wrong_numbers_are_reported_and_not_used(tmp_path: object) -> None:
    root = tree(tmp_path)
    node_file(root, "/dev/nvidia1", 195, 7)
    node_file(root, "/dev/nvidiactl", 196, 255)
    scan = scan_host(root)
    assert scan.gpus[1].node is None
    assert [n.kind for n in scan.control_nodes] == ["uvm", "uvm-tools"]
    assert set(scan.warnings) == {
        f"{root.host('/dev/nvidia1')} is 195:7, expected 195:1 from /proc/devices; not used",
        f"{root.host('/dev/nvidiactl')} is 196:255, expected 195:255 from /proc/devices; not used",
    }


def test_stale_uvm_major_counts_as_missing(tmp_path: object) -> None:
    root = tree(tmp_path)  # uvm major 510
    node_file(root, "/dev/nvidia-uvm", 239, 0)
    scan = scan_host(root)
    assert [n.kind for n in scan.control_nodes] == ["ctl"]
    assert scan.warnings == (
        f"{root.host('/dev/nvidia-uvm')} is 239:0, expected 510:0 from /proc/devices; not used",
        UVM_MISSING.format(root.host("/dev/nvidia-uvm")),
    )


def test_missing_gpu_node_and_ctl(tmp_path: object) -> None:
    root = tree(tmp_path)
    rm(root, "/dev/nvidia2")
    rm(root, "/dev/nvidiactl")
    scan = scan_host(root)
    assert scan.gpus[2].minor == 2 and scan.gpus[2].node is None
    assert scan.warnings == (
        f"{root.host('/dev/nvidia2')} is missing for GPU 0000:47:00.0",
        f"{root.host('/dev/nvidiactl')} is missing: run 'nvidia-modprobe -c 0' or 'nvidia-smi' once as root",
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_real_character_devices(tmp_path: object) -> None:
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset("workstation"))
    for path, major, minor in (("dev/nvidia0", 195, 0), ("dev/nvidiactl", 195, 255), ("dev/nvidia-uvm", 234, 0),
                               ("dev/nvidia-uvm-tools", 234, 1), ("dev/nvidia-modeset", 195, 200),
                               ("dev/dri/card0", 226, 0), ("dev/dri/renderD128", 226, 128)):
        os.unlink(os.path.join(d, path))
        os.mknod(os.path.join(d, path), stat.S_IFCHR | 0o666, os.makedev(major, minor))
    root = HostRoot(d)  # the real stat-based node reader
    scan = scan_host(root)
    assert scan.gpus[0].node == DeviceNode(f"{d}/dev/nvidia0", "/dev/nvidia0", 195, 0, "gpu")
    assert [n.kind for n in scan.control_nodes] == ["ctl", "uvm", "uvm-tools"]
    assert scan.warnings == (f"{d}/dev/nvidia-modeset is 195:200, expected 195:254 from /proc/devices; not used",)
    assert [(n.container_path, n.major, n.minor) for n in scan.gpus[0].drm_nodes] == [
        ("/dev/dri/card0", 226, 0), ("/dev/dri/renderD128", 226, 128)]


# ------------------------------------------------------------------ UVM loading

def _fake_modprobe(root: HostRoot, mode: int = 0o755) -> str:
    put(root, "/usr/bin/nvidia-modprobe", "#!/bin/sh\nexit 0\n")
    os.chmod(root.host("/usr/bin/nvidia-modprobe"), mode)
    return "/usr/bin/nvidia-modprobe"


def _no_uvm(tmp_path: object) -> HostRoot:
    root = tree(tmp_path)
    rm(root, "/dev/nvidia-uvm")
    rm(root, "/dev/nvidia-uvm-tools")
    return root


def test_missing_uvm_runs_nvidia_modprobe_and_rescans(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    root = _no_uvm(tmp_path)
    _fake_modprobe(root)
    calls: List[List[str]] = []

    def runner(argv: List[str]) -> int:
        calls.append(argv)
        node_file(root, "/dev/nvidia-uvm", 510, 0)
        node_file(root, "/dev/nvidia-uvm-tools", 510, 1)
        return 0

    scan = scan_host(root, runner=runner)
    assert calls == [["/usr/bin/nvidia-modprobe", "-u", "-c=0"]]
    assert [n.kind for n in scan.control_nodes] == ["ctl", "uvm", "uvm-tools"]
    assert scan.warnings == ()


def test_missing_uvm_major_runs_modprobe_too(tmp_path: object) -> None:
    root = _no_uvm(tmp_path)
    put(root, "/proc/devices", root.read_text("/proc/devices").replace("510 nvidia-uvm\n", ""))
    _fake_modprobe(root, 0o4755)
    calls: List[List[str]] = []

    def runner(argv: List[str]) -> int:
        calls.append(argv)
        return 1

    scan = scan_host(root, runner=runner)
    assert calls == [["/usr/bin/nvidia-modprobe", "-u", "-c=0"]]
    assert scan.major("nvidia-uvm") is None
    assert scan.warnings == ("'/usr/bin/nvidia-modprobe -u -c=0' failed (exit 1)",
                             UVM_MISSING.format(root.host("/dev/nvidia-uvm")))


def test_runner_raising_oserror_is_a_warning(tmp_path: object) -> None:
    root = _no_uvm(tmp_path)
    _fake_modprobe(root)

    def runner(argv: List[str]) -> int:
        raise PermissionError(13, "Permission denied")

    scan = scan_host(root, runner=runner)
    assert scan.warnings[0].startswith("cannot run /usr/bin/nvidia-modprobe: ")
    assert scan.warnings[-1] == UVM_MISSING.format(root.host("/dev/nvidia-uvm"))


@pytest.mark.parametrize("case", ["load_uvm off", "no nvidia-modprobe", "not root, not setuid", "no runner, fake root"])
def test_missing_uvm_without_loading(tmp_path: object, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    root = _no_uvm(tmp_path)
    if case != "no nvidia-modprobe":
        _fake_modprobe(root)
    if case == "not root, not setuid":
        monkeypatch.setattr("nvlow.host.scan.os.geteuid", lambda: 1000)
    calls: List[List[str]] = []

    def runner(argv: List[str]) -> int:
        calls.append(argv)
        return 0

    scan = scan_host(root, load_uvm=case != "load_uvm off", runner=None if case == "no runner, fake root" else runner)
    assert calls == []
    assert scan.warnings == (UVM_MISSING.format(root.host("/dev/nvidia-uvm")),)
    assert [n.kind for n in scan.control_nodes] == ["ctl"]


# ------------------------------------------------------------------ malformed and old files

def test_malformed_information_file_keeps_the_gpu(tmp_path: object) -> None:
    root = tree(tmp_path)
    path = "/proc/driver/nvidia/gpus/0000:0f:00.0/information"
    put(root, path, "\x00\x01 garbage without fields\n")
    scan = scan_host(root)
    gpu = scan.gpus[1]
    # the minor comes back by elimination: /dev/nvidia1 is the only node no other GPU claims
    assert (gpu.bus_id, gpu.minor, gpu.uuid, gpu.model) == ("0000:0f:00.0", 1, None, None)
    assert gpu.node is not None and gpu.node.minor == 1
    assert scan.warnings == (f"{root.host(path)} is malformed (no 'Key: value' lines)",)


def test_missing_information_and_bad_directory_names(tmp_path: object) -> None:
    root = tree(tmp_path)
    rm(root, "/proc/driver/nvidia/gpus/0000:0f:00.0/information")
    os.makedirs(root.host("/proc/driver/nvidia/gpus/not-a-bus"))
    scan = scan_host(root)
    assert len(scan.gpus) == 8
    assert scan.warnings == (
        f"{root.host('/proc/driver/nvidia/gpus/0000:0f:00.0/information')} is missing",
        f"{root.host('/proc/driver/nvidia/gpus/not-a-bus')} is not named by a PCI bus id; skipped",
    )


def test_gpus_are_sorted_by_parsed_bus_id(tmp_path: object) -> None:
    root = tree(tmp_path, "no-gpu")
    for bus, minor in (("10000:01:00.0", 2), ("0000:b7:00.0", 1), ("0000:07:00.0", 0)):
        put(root, f"/proc/driver/nvidia/gpus/{bus}/information",
            f"Model: \t\t X\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n")
        node_file(root, f"/dev/nvidia{minor}", 195, minor)
    scan = scan_host(root)
    assert [(g.bus_id, g.minor) for g in scan.gpus] == [("0000:07:00.0", 0), ("0000:b7:00.0", 1),
                                                         ("10000:01:00.0", 2)]
    assert scan.warnings == ()


def test_bus_location_disagreeing_with_directory(tmp_path: object) -> None:
    root = tree(tmp_path, "workstation")
    path = "/proc/driver/nvidia/gpus/0000:01:00.0/information"
    put(root, path, root.read_text(path).replace("Bus Location: \t 0000:01:00.0", "Bus Location: \t 0000:02:00.0"))
    scan = scan_host(root)
    assert scan.gpus[0].bus_id == "0000:01:00.0"
    assert scan.warnings == (f"{root.host(path)} says Bus Location 0000:02:00.0; using the directory name "
                             "0000:01:00.0",)


def _strip_minor(root: HostRoot, bus: str) -> None:
    path = f"/proc/driver/nvidia/gpus/{bus}/information"
    put(root, path, "".join(l for l in root.read_text(path).splitlines(True) if not l.startswith("Device Minor")))


def test_old_driver_single_gpu_minor_inferred_by_elimination(tmp_path: object) -> None:
    root = tree(tmp_path, "workstation")
    _strip_minor(root, "0000:01:00.0")
    scan = scan_host(root)
    assert scan.gpus[0].minor == 0 and scan.gpus[0].node is not None
    assert scan.warnings == ()


def test_old_driver_many_gpus_minor_not_guessed(tmp_path: object) -> None:
    root = tree(tmp_path)
    _strip_minor(root, "0000:07:00.0")
    _strip_minor(root, "0000:0f:00.0")
    scan = scan_host(root)
    assert [g.minor for g in scan.gpus[:3]] == [None, None, 2]
    assert scan.warnings == ("no Device Minor for GPU(s) 0000:07:00.0, 0000:0f:00.0 (old driver): their "
                             "/dev/nvidiaN node is unknown without NVML",)
    assert [n.minor for n in scan.gpu_nodes] == list(range(8))


def test_duplicate_minor_is_reported(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-a100")
    path = "/proc/driver/nvidia/gpus/0000:0f:00.0/information"
    put(root, path, root.read_text(path).replace("Device Minor: \t 1", "Device Minor: \t 0"))
    scan = scan_host(root)
    assert scan.warnings == ("GPUs 0000:07:00.0 and 0000:0f:00.0 both claim Device Minor 0",)


def test_frontend_major_and_missing_version(tmp_path: object) -> None:
    root = tree(tmp_path, "workstation")
    put(root, "/proc/devices", root.read_text("/proc/devices").replace("195 nvidia\n195 nvidiactl\n",
                                                                       "195 nvidia-frontend\n"))
    rm(root, "/proc/driver/nvidia/version")
    scan = scan_host(root)
    assert scan.driver_version is None and scan.open_module is None
    assert scan.major("nvidia-frontend") == 195 and len(scan.control_nodes) == 4
    assert scan.warnings == (f"{root.host('/proc/driver/nvidia/version')} is missing; the driver version is unknown",)


def test_malformed_version_with_major_is_a_warning(tmp_path: object) -> None:
    root = tree(tmp_path, "no-gpu")
    put(root, "/proc/driver/nvidia/version", "garbage\n")
    scan = scan_host(root)
    assert scan.driver_version is None
    assert scan.warnings == (f"{root.host('/proc/driver/nvidia/version')} is malformed (no NVRM version banner)",)


def test_nothing_usable_is_a_host_error(tmp_path: object) -> None:
    root = tree(tmp_path, "no-gpu")
    put(root, "/proc/driver/nvidia/version", "garbage\n")
    put(root, "/proc/devices", "Character devices:\n  1 mem\n")
    with pytest.raises(HostError) as exc:
        scan_host(root)
    assert not isinstance(exc.value, DriverNotLoaded)
    assert root.host("/proc/driver/nvidia/version") in str(exc.value)


def test_no_proc_devices_assumes_195(tmp_path: object) -> None:
    root = tree(tmp_path, "workstation")
    rm(root, "/proc/devices")
    scan = scan_host(root)
    assert scan.gpus[0].node is not None and [n.kind for n in scan.control_nodes] == ["ctl", "modeset"]
    assert scan.warnings == (f"{root.host('/proc/devices')} is missing; assuming major 195",
                             UVM_MISSING.format(root.host("/dev/nvidia-uvm")))


# ------------------------------------------------------------------ MIG caps

def test_caps_from_mig_minors_when_there_is_no_capabilities_tree(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    full = scan_host(root)
    rm(root, "/proc/driver/nvidia/capabilities")
    scan = scan_host(root)
    assert scan.mig_caps == full.mig_caps and scan.config_cap == full.config_cap
    assert scan.warnings == ()


def test_unusable_access_file_falls_back_to_mig_minors(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    path = "/proc/driver/nvidia/capabilities/gpu1/mig/gi2/ci1/access"
    put(root, path, "DeviceFileMode: 292\n")
    scan = scan_host(root)
    assert (1, 2, 1, 158) in [(c.gpu_minor, c.gi, c.ci, c.cap_minor) for c in scan.mig_caps]
    assert scan.warnings == ()
    rm(root, "/proc/driver/nvidia-caps/mig-minors")
    scan = scan_host(root)
    assert (1, 2, 1) not in [(c.gpu_minor, c.gi, c.ci) for c in scan.mig_caps]
    assert scan.warnings == (f"{root.host(path)} is malformed (no DeviceFileMinor)",)


def test_missing_and_wrong_cap_nodes(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")  # caps major 237
    rm(root, "/dev/nvidia-caps/nvidia-cap147")
    rm(root, "/dev/nvidia-caps/nvidia-cap148")
    node_file(root, "/dev/nvidia-caps/nvidia-cap156", 236, 156)  # the imex major: wrong
    scan = scan_host(root)
    nodes = {(c.gi, c.ci): c.node for c in scan.mig_caps if c.gpu_minor == 1}
    assert nodes[(1, None)] is None and nodes[(1, 0)] is None and nodes[(2, None)] is None
    assert nodes[(2, 0)] is not None
    assert scan.warnings == (
        f"{root.host('/dev/nvidia-caps/nvidia-cap156')} is 236:156, expected 237:156 from /proc/devices; not used",
        f"MIG capability node(s) missing under {root.host('/dev/nvidia-caps')}: nvidia-cap147, nvidia-cap148 "
        "(create them with 'nvidia-modprobe -f /proc/driver/nvidia/capabilities/...')",
    )


def test_proc_style_caps_without_caps_major(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    put(root, "/proc/devices", root.read_text("/proc/devices").replace("237 nvidia-caps\n", ""))
    scan = scan_host(root)
    assert scan.major("nvidia-caps") is None and scan.major("nvidia-caps-imex-channels") == 236
    assert len(scan.mig_caps) == 19 and all(c.node is None for c in scan.mig_caps)
    assert scan.config_cap is None
    assert scan.warnings == ("/proc/devices has no 'nvidia-caps' device: MIG access is controlled through /proc "
                             "(older driver); MIG devices cannot be isolated with device nodes",)


# ------------------------------------------------------------------ cross_check

def _scan_of(*gpus: ProcGpu) -> ProcScan:
    return ProcScan("550.54.15", False, (), tuple(gpus), ())


def test_cross_check_agrees_for_every_preset(tmp_path: object) -> None:
    for name in PRESET_NAMES:
        preset = get_preset(name)
        if not preset.driver_loaded:
            continue
        d = os.path.join(str(tmp_path), name)
        os.makedirs(d)
        write_proc_dev_tree(d, preset)
        scan = scan_host(HostRoot(d, node_reader=file_node_reader))
        assert cross_check(scan, SimulatedLibrary(preset).gpus()) == (), name


def test_cross_check_disagreements() -> None:
    scan = _scan_of(
        ProcGpu("0000:07:00.0", 0, "GPU-aaaa", "A100", False, None, None),
        ProcGpu("0000:b7:00.0", 1, "GPU-bbbb", "A100", False, None, None),
        ProcGpu("0000:c0:00.0", 2, None, "A100", True, None, None),   # excluded: NVML never shows it
        ProcGpu("0000:d0:00.0", 3, None, "A100", None, None, None),
    )
    records = [
        GpuRecord(0, 0, "GPU-AAAA", "A100", "00000000:07:00.0"),       # case only: fine
        GpuRecord(1, 4, "GPU-cccc", "A100", "0000:B7:00.0"),           # legacy spelling, wrong minor+uuid
        GpuRecord(2, 5, "GPU-dddd", "A100", "00000000:E0:00.0"),       # unknown to procfs
        GpuRecord(3, None, None, "A100", None),                        # nothing to match on
    ]
    assert cross_check(scan, records) == (
        "GPU 1 (0000:b7:00.0): NVML minor 4, procfs Device Minor 1",
        "GPU 1 (0000:b7:00.0): NVML UUID GPU-cccc, procfs GPU UUID GPU-bbbb",
        "GPU 2 (0000:e0:00.0): not listed under /proc/driver/nvidia/gpus",
        "GPU 3 (unknown bus id): not listed under /proc/driver/nvidia/gpus",
        "GPU 0000:d0:00.0 is listed under /proc/driver/nvidia/gpus but not reported by NVML",
    )


def test_cross_check_matches_by_uuid_without_bus_id() -> None:
    scan = _scan_of(ProcGpu("0000:07:00.0", 0, "GPU-aaaa", "A100", False, None, None))
    assert cross_check(scan, [GpuRecord(0, 0, "GPU-aaaa", "A100", None)]) == ()


def test_records_are_frozen() -> None:
    cap = MigCap(0, 7, None, 66, None)
    with pytest.raises(AttributeError):
        cap.gi = 8  # type: ignore[misc]


def test_many_instances_use_the_mig_minors_table(tmp_path: object) -> None:
    from nvlow.simulate.presets import scaled_preset

    d = str(tmp_path)
    write_proc_dev_tree(d, scaled_preset(8, mig=True))  # 112 access files: the table is cheaper
    root = HostRoot(d, node_reader=file_node_reader)
    full = scan_host(root)
    assert len(full.mig_caps) == 112 and full.warnings == ()
    access = "/proc/driver/nvidia/capabilities/gpu3/mig/gi7/access"
    put(root, access, "garbage\n")
    assert scan_host(root) == full  # the table answers; the broken file is never read
    table = "/proc/driver/nvidia-caps/mig-minors"
    put(root, table, root.read_text(table).replace(f"gpu3/gi7/access {cap_gi_minor(3, 7)}\n", ""))
    scan = scan_host(root)
    assert (3, 7, None) not in [(c.gpu_minor, c.gi, c.ci) for c in scan.mig_caps]
    assert scan.warnings == (f"{root.host(access)} is malformed (no DeviceFileMinor)",)
    put(root, access, f"DeviceFileMinor: {cap_gi_minor(3, 7)}\n")
    assert scan_host(root) == full
