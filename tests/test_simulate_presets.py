"""The simulated trees carry what the DRM, MIG config/monitor, IMEX, legacy NVVM and GBM rules need."""
from __future__ import annotations

import os
import stat

import pytest

from nvlow.host.ldcache import parse_ldcache
from nvlow.simulate.drivertree import LIB64, write_driver_tree
from nvlow.simulate.presets import PRESET_NAMES, get_preset
from nvlow.simulate.proctree import (BMC_VGA_BUS, drm_card_minor, drm_render_minor, imex_major, procfs_bus,
                                     write_proc_dev_tree)


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


@pytest.mark.parametrize("name", [n for n in PRESET_NAMES if get_preset(n).driver_loaded])
def test_drm_sysfs_and_nodes(tmp_path: object, name: str) -> None:
    preset = get_preset(name)
    d = str(tmp_path)
    write_proc_dev_tree(d, preset)
    assert preset.drm is (name in ("dgx-a100", "dgx-h100-mig", "workstation"))
    if not preset.drm:
        assert not os.path.exists(os.path.join(d, "sys")) and not os.path.exists(os.path.join(d, "dev/dri"))
        return
    for gpu in preset.gpus:
        bus = procfs_bus(gpu)
        link = os.path.join(d, "sys/bus/pci/devices", bus)
        assert os.readlink(link) == f"../../../devices/pci0000:00/{bus}"  # relative, as sysfs: stays in the root
        card, render = drm_card_minor(preset, gpu), drm_render_minor(gpu)
        assert sorted(os.listdir(os.path.join(link, "drm"))) == [f"card{card}", f"renderD{render}"]
        assert read(os.path.join(link, "drm", f"card{card}", "dev")) == f"226:{card}\n"
        assert read(os.path.join(d, f"dev/dri/renderD{render}")) == f"nvlow-simulated-char 226:{render}\n"
        assert read(os.path.join(d, f"dev/dri/card{card}")) == f"nvlow-simulated-char 226:{card}\n"
    bmc = os.path.join(d, "sys/bus/pci/devices", BMC_VGA_BUS, "drm")
    if preset.drm_first_card:
        assert os.listdir(bmc) == ["card0"]  # the BMC's VGA: a card and no render node
        assert drm_card_minor(preset, preset.gpus[0]) == 1
    else:
        assert not os.path.exists(bmc)


@pytest.mark.parametrize("name", ["dgx-h100-mig", "dgx-a100", "workstation"])
def test_imex_channels_and_mig_control_nodes(tmp_path: object, name: str) -> None:
    preset = get_preset(name)
    d = str(tmp_path)
    write_proc_dev_tree(d, preset)
    imex = os.path.join(d, "dev/nvidia-caps-imex-channels")
    if name == "dgx-h100-mig":
        assert preset.imex_channels == 2
        assert sorted(os.listdir(imex)) == ["channel0", "channel1"]
        assert read(os.path.join(imex, "channel1")) == f"nvlow-simulated-char {imex_major(preset)}:1\n"
        for minor, mode in ((1, 0o400), (2, 0o444)):
            node = os.path.join(d, f"dev/nvidia-caps/nvidia-cap{minor}")
            assert read(node) == f"nvlow-simulated-char {preset.caps_major}:{minor}\n"
            assert stat.S_IMODE(os.stat(node).st_mode) == mode
    else:
        assert not os.path.exists(imex)
        assert not os.path.exists(os.path.join(d, "dev/nvidia-caps"))


def test_workstation_driver_tree_has_the_toolkit_extras(tmp_path: object) -> None:
    d = str(tmp_path)
    preset = get_preset("workstation")
    write_driver_tree(d, preset)
    v = preset.driver_version
    nvvm = d + f"{LIB64}/libnvidia-nvvm70.so.4"
    assert os.path.isfile(nvvm) and not os.path.islink(nvvm)  # the real file: no driver version in its name
    assert os.readlink(d + f"{LIB64}/gbm/nvidia-drm_gbm.so") == "../libnvidia-allocator.so.1"
    assert os.path.realpath(d + f"{LIB64}/gbm/nvidia-drm_gbm.so") == d + f"{LIB64}/libnvidia-allocator.so.{v}"
    assert os.readlink(d + "/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so") == f"libglxserver_nvidia.so.{v}"
    assert os.path.isfile(d + "/usr/lib/xorg/modules/drivers/nvidia_drv.so")
    with open(d + "/etc/ld.so.cache", "rb") as fh:
        keys = {e.key for e in parse_ldcache(fh.read()).entries}
    assert {"libnvidia-nvvm70.so.4", "libnvidia-egl-gbm.so.1", "libnvidia-egl-wayland.so.1"} <= keys


@pytest.mark.parametrize("name", ["dgx-a100", "dgx-h100-mig"])
def test_server_driver_trees_have_no_graphics_extras(tmp_path: object, name: str) -> None:
    d = str(tmp_path)
    write_driver_tree(d, get_preset(name))
    assert not os.path.lexists(d + f"{LIB64}/libnvidia-nvvm70.so.4")
    assert not os.path.lexists(d + f"{LIB64}/gbm")
    assert not os.path.lexists(d + "/usr/lib/xorg")
