"""Discovery of the device nodes beyond /dev/nvidia*: DRM nodes per GPU, MIG config/monitor caps, IMEX channels.

Each rule is table-tested on a simulated tree (nodes are marked regular files read by
``file_node_reader``) for both outcomes: the node is used, or it is not (absent, wrong major or minor,
a regular file or a symbolic link where the node should be, no sysfs directory, no /proc/devices line).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Callable, List, Optional, Tuple

import pytest

from nvlow.host.discover import discover
from nvlow.model import DeviceNode, Host
from nvlow.host.root import HostRoot, file_node_reader
from nvlow.host.scan import ProcScan, scan_host
from nvlow.simulate.fakelib import SimulatedLibrary
from nvlow.simulate.presets import get_preset
from nvlow.simulate.proctree import BMC_VGA_BUS, imex_major, procfs_bus, write_proc_dev_tree

Edit = Callable[[HostRoot], None]
Nodes = List[Tuple[str, int, int]]


from test_scan import node_file, put, tree  # noqa: E402 - the shared fake-tree helpers


def link(root: HostRoot, path: str, target: str) -> None:
    real = root.host(path)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    if os.path.lexists(real):
        os.unlink(real)
    os.symlink(target, real)


def rm(root: HostRoot, path: str) -> None:
    real = root.host(path)
    if os.path.isdir(real) and not os.path.islink(real):
        shutil.rmtree(real)
    else:
        os.unlink(real)


def drop_devices_line(root: HostRoot, line: str) -> None:
    text = root.read_text("/proc/devices")
    assert line + "\n" in text
    put(root, "/proc/devices", text.replace(line + "\n", ""))


def numbers(nodes: Tuple[DeviceNode, ...]) -> Nodes:
    return [(n.container_path, n.major, n.minor) for n in nodes]


def check_paths(root: HostRoot, nodes: Tuple[DeviceNode, ...], kind: str) -> None:
    for n in nodes:
        assert n.host_path == root.host(n.container_path) and n.kind == kind


# ------------------------------------------------------------------ DRM nodes

WS_BUS = "0000:01:00.0"  # the workstation's RTX 4090
WS_DRM = [("/dev/dri/card0", 226, 0), ("/dev/dri/renderD128", 226, 128)]


def _nothing(root: HostRoot) -> None:
    pass


def _no_sysfs_dir(root: HostRoot) -> None:
    rm(root, f"/sys/devices/pci0000:00/{WS_BUS}/drm")


def _no_sys_at_all(root: HostRoot) -> None:
    rm(root, "/sys")


def _card_missing(root: HostRoot) -> None:
    rm(root, "/dev/dri/card0")


def _card_wrong_major(root: HostRoot) -> None:
    node_file(root, "/dev/dri/card0", 227, 0)


def _render_wrong_minor(root: HostRoot) -> None:
    node_file(root, "/dev/dri/renderD128", 226, 129)


def _card_regular_file(root: HostRoot) -> None:
    put(root, "/dev/dri/card0", "not a device\n")


def _card_symlink(root: HostRoot) -> None:
    node_file(root, "/dev/dri/card7", 226, 0)
    link(root, "/dev/dri/card0", "card7")  # would pass the node check if followed


def _other_entries(root: HostRoot) -> None:
    sysdir = f"/sys/devices/pci0000:00/{WS_BUS}/drm"
    put(root, f"{sysdir}/controlD64/dev", "226:64\n")  # legacy control node: not for containers
    put(root, f"{sysdir}/card00/dev", "226:0\n")  # not a kernel spelling
    node_file(root, "/dev/dri/controlD64", 226, 64)


def _drm_major_elsewhere(root: HostRoot) -> None:
    text = root.read_text("/proc/devices").replace("226 drm\n", "")
    put(root, "/proc/devices", text.replace("Character devices:\n", "Character devices:\n 99 drm\n"))


def _no_drm_line(root: HostRoot) -> None:
    drop_devices_line(root, "226 drm")


def _second_card(root: HostRoot) -> None:
    put(root, f"/sys/devices/pci0000:00/{WS_BUS}/drm/card10/dev", "226:10\n")
    node_file(root, "/dev/dri/card10", 226, 10)


DRM_CASES: List[Tuple[str, Edit, Nodes, List[str]]] = [
    ("present", _nothing, WS_DRM, []),
    ("no-sysfs-dir", _no_sysfs_dir, [], []),
    ("no-sys", _no_sys_at_all, [], []),
    ("card-missing", _card_missing, WS_DRM[1:],
     ["{dev}/dri/card0 is missing for GPU 0000:01:00.0 ({sys}/bus/pci/devices/0000:01:00.0/drm lists card0)"]),
    ("wrong-major", _card_wrong_major, WS_DRM[1:],
     ["{dev}/dri/card0 is 227:0, expected 226:0 from /proc/devices; not used"]),
    ("wrong-minor", _render_wrong_minor, WS_DRM[:1],
     ["{dev}/dri/renderD128 is 226:129, expected 226:128 from /proc/devices; not used"]),
    ("regular-file", _card_regular_file, WS_DRM[1:], ["{dev}/dri/card0 is not a character device; not used"]),
    ("symlink", _card_symlink, WS_DRM[1:], ["{dev}/dri/card0 is a symbolic link, not a character device; not used"]),
    ("other-entries", _other_entries, WS_DRM, []),
    ("drm-major-from-proc-devices", _drm_major_elsewhere, [],
     ["{dev}/dri/card0 is 226:0, expected 99:0 from /proc/devices; not used",
      "{dev}/dri/renderD128 is 226:128, expected 99:128 from /proc/devices; not used"]),
    ("no-drm-line-means-226", _no_drm_line, WS_DRM, []),
    ("cards-by-minor", _second_card, [WS_DRM[0], ("/dev/dri/card10", 226, 10), WS_DRM[1]], []),
]


@pytest.mark.parametrize("edit,want,warnings", [c[1:] for c in DRM_CASES], ids=[c[0] for c in DRM_CASES])
def test_drm_nodes_rule(tmp_path: object, edit: Edit, want: Nodes, warnings: List[str]) -> None:
    root = tree(tmp_path, "workstation")
    edit(root)
    scan = scan_host(root)
    assert numbers(scan.gpus[0].drm_nodes) == want
    check_paths(root, scan.gpus[0].drm_nodes, "drm")
    assert list(scan.warnings) == [w.format(dev=root.host("/dev"), sys=root.host("/sys")) for w in warnings]


def test_drm_nodes_of_a_server_skip_the_bmc_card(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-a100")
    scan = scan_host(root)
    assert scan.warnings == ()
    assert [numbers(g.drm_nodes) for g in scan.gpus] == [
        [(f"/dev/dri/card{i + 1}", 226, i + 1), (f"/dev/dri/renderD{128 + i}", 226, 128 + i)] for i in range(8)]
    assert BMC_VGA_BUS not in [g.bus_id for g in scan.gpus]
    assert "/dev/dri/card0" not in [n.container_path for g in scan.gpus for n in g.drm_nodes]


def test_drm_nodes_reach_the_host_with_and_without_nvml(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    preset = get_preset("dgx-h100-mig")
    for library in (SimulatedLibrary(preset), None):
        host = discover(root, library=library, use_nvml=library is not None)
        assert host.source == ("nvml" if library else "procfs")
        by_bus = {g.bus_id: g for g in host.gpus}
        for sim in preset.gpus:
            gpu = by_bus[procfs_bus(sim)]
            assert numbers(gpu.drm_nodes) == [(f"/dev/dri/card{sim.index + 1}", 226, sim.index + 1),
                                              (f"/dev/dri/renderD{128 + sim.index}", 226, 128 + sim.index)]


def test_nvml_gpu_unknown_to_procfs_has_no_drm_nodes(tmp_path: object) -> None:
    root = tree(tmp_path, "workstation")
    rm(root, f"/proc/driver/nvidia/gpus/{WS_BUS}")
    host = discover(root, library=SimulatedLibrary(get_preset("workstation")))
    assert host.gpus[0].bus_id == WS_BUS and host.gpus[0].drm_nodes == ()


# ------------------------------------------------------------------ MIG config / monitor

CAPS = "/proc/driver/nvidia/capabilities"
H100_CAPS_MAJOR = 237


def _config_node_missing(root: HostRoot) -> None:
    rm(root, "/dev/nvidia-caps/nvidia-cap1")


def _config_wrong_major(root: HostRoot) -> None:
    node_file(root, "/dev/nvidia-caps/nvidia-cap1", 236, 1)


def _config_regular_file(root: HostRoot) -> None:
    put(root, "/dev/nvidia-caps/nvidia-cap1", "x\n")


def _config_malformed(root: HostRoot) -> None:
    put(root, f"{CAPS}/mig/config", "DeviceFileMode: 256\n")


def _config_other_minor(root: HostRoot) -> None:
    put(root, f"{CAPS}/mig/config", "DeviceFileMinor: 9\nDeviceFileMode: 256\nDeviceFileModify: 1\n")
    node_file(root, "/dev/nvidia-caps/nvidia-cap9", H100_CAPS_MAJOR, 9)


def _monitor_file_missing(root: HostRoot) -> None:
    rm(root, f"{CAPS}/mig/monitor")


def _no_caps_major(root: HostRoot) -> None:
    drop_devices_line(root, f"{H100_CAPS_MAJOR} nvidia-caps")


def _only_mig_minors(root: HostRoot) -> None:
    rm(root, CAPS)  # no capabilities tree: the mig-minors table names config 1 and monitor 2


CAP1 = ("/dev/nvidia-caps/nvidia-cap1", H100_CAPS_MAJOR, 1)
CAP2 = ("/dev/nvidia-caps/nvidia-cap2", H100_CAPS_MAJOR, 2)
NO_ISOLATION = ("/proc/devices has no 'nvidia-caps' device: MIG access is controlled through /proc (older driver); "
                "MIG devices cannot be isolated with device nodes")

MIG_CASES: List[Tuple[str, Edit, Optional[Tuple[str, int, int]], Optional[Tuple[str, int, int]], List[str]]] = [
    ("present", _nothing, CAP1, CAP2, []),
    ("config-node-missing", _config_node_missing, None, CAP2, []),
    ("config-wrong-major", _config_wrong_major, None, CAP2,
     ["{dev}/nvidia-caps/nvidia-cap1 is 236:1, expected 237:1 from /proc/devices; not used"]),
    ("config-regular-file", _config_regular_file, None, CAP2,
     ["{dev}/nvidia-caps/nvidia-cap1 is not a character device; not used"]),
    ("config-malformed", _config_malformed, CAP1, CAP2, []),  # the mig-minors table answers
    ("config-other-minor", _config_other_minor, ("/dev/nvidia-caps/nvidia-cap9", H100_CAPS_MAJOR, 9), CAP2, []),
    ("monitor-file-missing", _monitor_file_missing, CAP1, None, []),
    ("no-caps-major", _no_caps_major, None, None, [NO_ISOLATION]),
    ("only-mig-minors", _only_mig_minors, CAP1, CAP2, []),
]


@pytest.mark.parametrize("edit,config,monitor,warnings", [c[1:] for c in MIG_CASES], ids=[c[0] for c in MIG_CASES])
def test_mig_config_and_monitor_rule(tmp_path: object, edit: Edit, config: Optional[Tuple[str, int, int]],
                                     monitor: Optional[Tuple[str, int, int]], warnings: List[str]) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    edit(root)
    host = discover(root, use_nvml=False)
    assert numbers(tuple(n for n in (host.mig_config_node,) if n)) == ([config] if config else [])
    assert numbers(tuple(n for n in (host.mig_monitor_node,) if n)) == ([monitor] if monitor else [])
    check_paths(root, tuple(n for n in (host.mig_config_node, host.mig_monitor_node) if n), "cap")
    assert [w for w in host.warnings if "nvidia-cap1" in w or "nvidia-caps'" in w] == [
        w.format(dev=root.host("/dev")) for w in warnings]


def test_mig_config_file_without_minor_and_without_table_is_malformed(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    _config_malformed(root)
    rm(root, "/proc/driver/nvidia-caps/mig-minors")
    host = discover(root, use_nvml=False)
    assert host.mig_config_node is None and host.mig_monitor_node is not None
    assert f"{root.host(CAPS + '/mig/config')} is malformed (no DeviceFileMinor)" in host.warnings


def test_no_mig_config_nodes_on_a_host_without_mig(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-a100")  # the proc files exist; nvidia-modprobe never made the nodes
    host = discover(root, library=SimulatedLibrary(get_preset("dgx-a100")))
    assert (host.mig_config_node, host.mig_monitor_node, host.warnings) == (None, None, ())


# ------------------------------------------------------------------ IMEX channels

IMEX_DIR = "/dev/nvidia-caps-imex-channels"


def _imex(root: HostRoot) -> int:
    return int(next(line.split()[0] for line in root.read_text("/proc/devices").splitlines()
                    if line.endswith(" nvidia-caps-imex-channels")))


def _more_channels(root: HostRoot) -> None:
    for n in (10, 2, 2047):
        node_file(root, f"{IMEX_DIR}/channel{n}", _imex(root), n)


def _channel_wrong_minor(root: HostRoot) -> None:
    node_file(root, f"{IMEX_DIR}/channel1", _imex(root), 5)


def _channel_caps_major(root: HostRoot) -> None:
    node_file(root, f"{IMEX_DIR}/channel1", H100_CAPS_MAJOR, 1)  # the nvidia-caps major: the classic mix-up


def _channel_regular_file(root: HostRoot) -> None:
    put(root, f"{IMEX_DIR}/channel1", "x\n")


def _channel_symlink(root: HostRoot) -> None:
    node_file(root, "/dev/imex-spare", _imex(root), 1)
    link(root, f"{IMEX_DIR}/channel1", "../imex-spare")


def _channel_other_names(root: HostRoot) -> None:
    node_file(root, f"{IMEX_DIR}/channel01", _imex(root), 1)
    node_file(root, f"{IMEX_DIR}/channel9999999", _imex(root), 9999999 & 0xFFFFF)
    put(root, f"{IMEX_DIR}/README", "x\n")


def _no_imex_dir(root: HostRoot) -> None:
    rm(root, IMEX_DIR)


def _no_imex_major(root: HostRoot) -> None:
    drop_devices_line(root, f"{_imex(root)} nvidia-caps-imex-channels")


def channels(*ns: int) -> List[Tuple[str, int, int]]:
    major = imex_major(get_preset("dgx-h100-mig"))
    return [(f"{IMEX_DIR}/channel{n}", major, n) for n in ns]


IMEX_CASES: List[Tuple[str, Edit, Nodes, List[str]]] = [
    ("present", _nothing, channels(0, 1), []),
    ("numeric-order", _more_channels, channels(0, 1, 2, 10, 2047), []),
    ("wrong-minor", _channel_wrong_minor, channels(0),
     ["{imex}/channel1 is {major}:5, expected {major}:1 from /proc/devices; not used"]),
    ("caps-major", _channel_caps_major, channels(0),
     ["{imex}/channel1 is 237:1, expected {major}:1 from /proc/devices; not used"]),
    ("regular-file", _channel_regular_file, channels(0), ["{imex}/channel1 is not a character device; not used"]),
    ("symlink", _channel_symlink, channels(0),
     ["{imex}/channel1 is a symbolic link, not a character device; not used"]),
    ("other-names", _channel_other_names, channels(0, 1), []),
    ("no-dir", _no_imex_dir, [], []),
    ("no-major", _no_imex_major, [],
     ["/proc/devices has no 'nvidia-caps-imex-channels' device; the IMEX channel nodes under {imex} are not used"]),
]


@pytest.mark.parametrize("edit,want,warnings", [c[1:] for c in IMEX_CASES], ids=[c[0] for c in IMEX_CASES])
def test_imex_channels_rule(tmp_path: object, edit: Edit, want: Nodes, warnings: List[str]) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    edit(root)
    scan: ProcScan = scan_host(root)
    assert numbers(scan.imex_channels) == want
    check_paths(root, scan.imex_channels, "imex")
    major = imex_major(get_preset("dgx-h100-mig"))
    assert list(scan.warnings) == [w.format(imex=root.host(IMEX_DIR), major=major) for w in warnings]
    host = discover(root, use_nvml=False)
    assert host.imex_channels == scan.imex_channels


def test_imex_channels_absent_on_other_presets(tmp_path: object) -> None:
    assert discover(tree(tmp_path, "dgx-a100"), use_nvml=False).imex_channels == ()


# ------------------------------------------------------------------ info --json

def test_host_document_has_the_new_fields(tmp_path: object) -> None:
    root = tree(tmp_path, "dgx-h100-mig")
    host: Host = discover(root, library=SimulatedLibrary(get_preset("dgx-h100-mig")))
    doc = json.loads(json.dumps(host.to_dict()))
    assert doc["mig_config_node"] == {"host_path": root.host("/dev/nvidia-caps/nvidia-cap1"),
                                      "container_path": "/dev/nvidia-caps/nvidia-cap1", "major": 237, "minor": 1,
                                      "kind": "cap"}
    assert doc["mig_monitor_node"]["container_path"] == "/dev/nvidia-caps/nvidia-cap2"
    assert [c["container_path"] for c in doc["imex_channels"]] == [f"{IMEX_DIR}/channel0", f"{IMEX_DIR}/channel1"]
    assert [n["container_path"] for n in doc["gpus"][0]["drm_nodes"]] == ["/dev/dri/card1", "/dev/dri/renderD128"]
    assert list(doc).index("control_nodes") < list(doc).index("mig_config_node") < list(doc).index("warnings")
    plain = discover(tree(os.path.join(str(tmp_path), "ws"), "workstation"), use_nvml=False).to_dict()
    assert (plain["mig_config_node"], plain["mig_monitor_node"], plain["imex_channels"]) == (None, None, [])
