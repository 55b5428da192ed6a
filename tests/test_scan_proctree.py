"""The simulated /proc and /dev tree: exact file contents the scanner and others rely on."""
from __future__ import annotations

import os

import pytest

from nvlow.host.procfs import parse_devices, parse_driver_version, parse_gpu_information, parse_mig_minors
from nvlow.host.root import file_node_reader
from nvlow.simulate.presets import PRESET_NAMES, get_preset, scaled_preset
from nvlow.simulate.proctree import (
    cap_ci_minor, cap_gi_minor, imex_major, mig_minors_text, proc_devices_text, write_proc_dev_tree,
)


def read(d: str, rel: str) -> str:
    with open(os.path.join(d, rel)) as fh:
        return fh.read()


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_proc_devices_lists_imex_before_caps(name: str) -> None:
    preset = get_preset(name)
    text = proc_devices_text(preset)
    lines = text.splitlines()
    assert lines[0] == "Character devices:" and "Block devices:" in lines
    if not preset.driver_loaded:
        assert not [n for n in parse_devices(text) if n.startswith("nvidia")]
        return
    imex = lines.index(f"{imex_major(preset):3d} nvidia-caps-imex-channels")
    caps = lines.index(f"{preset.caps_major:3d} nvidia-caps")
    assert imex < caps
    majors = parse_devices(text)
    assert (majors["nvidia"], majors["nvidiactl"], majors["nvidia-uvm"], majors["nvidia-caps"]) == (
        195, 195, preset.uvm_major, preset.caps_major)
    assert ("nvidia-modeset" in majors) is preset.display
    dynamic = [m for n, m in majors.items() if n.startswith("nvidia") and m != 195]
    others = {m for n, m in majors.items() if not n.startswith("nvidia")}
    assert len(set(dynamic)) == len(dynamic) and not set(dynamic) & others  # no clashes


def test_version_banners() -> None:
    assert read_banner("workstation") == ("560.35.03", True, "x86_64")
    assert read_banner("dgx-a100") == ("550.54.15", False, "x86_64")


def read_banner(name: str) -> object:
    from nvlow.simulate.proctree import version_text

    v = parse_driver_version(version_text(get_preset(name)))
    assert v is not None
    return v.version, v.open_module, v.arch


def test_dgx_h100_tree_files(tmp_path: object) -> None:
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset("dgx-h100-mig"))
    info = parse_gpu_information(read(d, "proc/driver/nvidia/gpus/0000:2a:00.0/information"))
    assert (info.bus_location, info.minor, info.firmware, info.excluded) == ("0000:2a:00.0", 1, "550.90.07", False)
    assert read(d, "proc/driver/nvidia/capabilities/gpu1/mig/gi2/ci1/access") == (
        "DeviceFileMinor: 158\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
    assert read(d, "proc/driver/nvidia/capabilities/mig/config") == (
        "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n")
    assert sorted(os.listdir(os.path.join(d, "proc/driver/nvidia/capabilities"))) == [
        "fabric-imex-mgmt", "gpu0", "gpu1", "mig"]
    assert read(d, "dev/nvidia-caps/nvidia-cap158") == "nvlow-simulated-char 237:158\n"
    assert read(d, "proc/driver/nvidia/params").count("DeviceFileMode: 438\n") == 1
    cap = file_node_reader(os.path.join(d, "dev/nvidia-caps/nvidia-cap1"))
    assert cap is not None and (cap.is_char, cap.major, cap.minor, cap.mode) == (True, 237, 1, 0o400)
    node = file_node_reader(os.path.join(d, "dev/nvidia7"))
    assert node is not None and (node.major, node.minor, node.mode) == (195, 7, 0o666)


def test_mig_minors_table_matches_the_formula() -> None:
    table = parse_mig_minors(mig_minors_text(0))
    assert len(table) == 2 + 32 * 15 * 9
    assert (table["config"], table["monitor"]) == (1, 2)
    assert table["gpu0/gi0/access"] == 3 and table["gpu0/gi0/ci0/access"] == 4
    assert table["gpu0/gi1/access"] == 12
    assert table["gpu31/gi14/ci7/access"] == cap_ci_minor(31, 14, 7) == 4322
    assert all(table[f"gpu{n}/gi{g}/access"] == cap_gi_minor(n, g) for n in range(32) for g in range(15))
    assert len(set(table.values())) == len(table)


def test_workstation_has_display_nodes_and_no_caps(tmp_path: object) -> None:
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset("workstation"))
    assert read(d, "dev/nvidia-modeset") == "nvlow-simulated-char 195:254\n"
    assert read(d, "dev/dri/renderD128") == "nvlow-simulated-char 226:128\n"
    assert not os.path.exists(os.path.join(d, "dev/nvidia-caps"))
    assert "Open Kernel Module for x86_64  560.35.03  Release Build" in read(d, "proc/driver/nvidia/version")


def test_no_driver_tree_has_nothing_under_proc_driver(tmp_path: object) -> None:
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset("no-driver"))
    assert not os.path.exists(os.path.join(d, "proc/driver"))
    assert sorted(os.listdir(os.path.join(d, "dev"))) == []
    assert "mem" in parse_devices(read(d, "proc/devices"))


def test_rewriting_a_tree_over_itself_works(tmp_path: object) -> None:
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset("dgx-h100-mig"))
    write_proc_dev_tree(d, get_preset("dgx-h100-mig"))
    assert read(d, "dev/nvidia0") == "nvlow-simulated-char 195:0\n"


def test_scaled_preset_tree(tmp_path: object) -> None:
    d = str(tmp_path)
    write_proc_dev_tree(d, scaled_preset(40, mig=True))
    assert os.path.isdir(os.path.join(d, "proc/driver/nvidia/gpus/0000:05:07.0"))
    table = parse_mig_minors(read(d, "proc/driver/nvidia-caps/mig-minors"))
    assert table["gpu39/gi7/access"] == cap_gi_minor(39, 7)
