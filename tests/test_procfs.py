"""Table-driven tests of the pure /proc parsers against real-world style samples."""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import pytest

from nvlow.host.procfs import (
    DriverVersion, normalize_bus_id, parse_bus_id, parse_cap_access, parse_devices, parse_driver_version,
    parse_drm_node_name, parse_gpu_information, parse_imex_channel_name, parse_mig_cap_name, parse_mig_minors,
    parse_params,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "proc")


def sample(rel: str) -> str:
    with open(os.path.join(DATA, rel), encoding="utf-8") as fh:
        return fh.read()


def nvidia_only(majors: Dict[str, int]) -> Dict[str, int]:
    return {k: v for k, v in majors.items() if k.startswith("nvidia")}


# ------------------------------------------------------------------ /proc/devices

@pytest.mark.parametrize("rel, expected", [
    ("devices/server-550.txt", {"nvidia": 195, "nvidiactl": 195, "nvidia-nvswitch": 508, "nvidia-nvlink": 509,
                                "nvidia-uvm": 510, "nvidia-caps": 511}),
    ("devices/imex-before-caps.txt", {"nvidia": 195, "nvidiactl": 195, "nvidia-modeset": 195, "nvidia-uvm": 234,
                                      "nvidia-caps-imex-channels": 235, "nvidia-caps": 236}),
    ("devices/frontend-470.txt", {"nvidia-frontend": 195, "nvidia-uvm": 239, "nvidia-caps": 240}),
    ("devices/duplicates-junk.txt", {"nvidia": 195, "nvidia-uvm": 487, "nvidia-caps": 237}),
    # the block section reuses 195/227/510 with NVIDIA-looking names: ignored
    ("devices/block-reuse.txt", {"nvidia": 195, "nvidiactl": 195, "nvidia-caps": 509}),
])
def test_parse_devices_samples(rel: str, expected: Dict[str, int]) -> None:
    assert nvidia_only(parse_devices(sample(rel))) == expected


def test_parse_devices_keeps_other_names_exactly() -> None:
    majors = parse_devices(sample("devices/server-550.txt"))
    assert majors["/dev/vc/0"] == 4
    assert majors["infiniband_verbs"] == 231 and majors["infiniband_mad"] == 231
    assert "loop" not in majors and "blkext" not in majors


@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("Block devices:\n195 nvidia\n", {}),
    ("Character devices:\n 12\nnvidia 195\n", {}),
    # no header at all: the lines are still character devices
    ("195 nvidia\n510 nvidia-uvm\n", {"nvidia": 195, "nvidia-uvm": 510}),
    # wide majors and trailing spaces
    ("Character devices:\n4095 nvidia-caps   \n", {"nvidia-caps": 4095}),
    # first occurrence of a repeated name wins
    ("Character devices:\n510 nvidia-uvm\n234 nvidia-uvm\n", {"nvidia-uvm": 510}),
    # imex first: nvidia-caps must not take its major
    ("Character devices:\n235 nvidia-caps-imex-channels\n236 nvidia-caps\n",
     {"nvidia-caps-imex-channels": 235, "nvidia-caps": 236}),
    ("Character devices:\n235 nvidia-caps-imex-channels\n", {"nvidia-caps-imex-channels": 235}),
])
def test_parse_devices_table(text: str, expected: Dict[str, int]) -> None:
    assert parse_devices(text) == expected


def test_parse_devices_never_matches_a_prefix() -> None:
    majors = parse_devices("Character devices:\n510 nvidia-uvm\n511 nvidia-caps-imex-channels\n")
    assert "nvidia" not in majors and "nvidia-caps" not in majors


# ------------------------------------------------------------------ version

@pytest.mark.parametrize("rel, version, open_module, arch", [
    ("version/proprietary-384.111.txt", "384.111", False, "x86_64"),
    ("version/proprietary-550.54.15.txt", "550.54.15", False, "x86_64"),
    ("version/open-560.35.03.txt", "560.35.03", True, "x86_64"),
    ("version/aarch64-535.161.08.txt", "535.161.08", False, "aarch64"),
    ("version/open-aarch64-570.124.06.txt", "570.124.06", True, "aarch64"),
    ("version/ppc64le-418.67.txt", "418.67", False, "ppc64le"),
])
def test_parse_driver_version_samples(rel: str, version: str, open_module: bool, arch: str) -> None:
    v = parse_driver_version(sample(rel))
    assert v is not None
    assert (v.version, v.open_module, v.arch) == (version, open_module, arch)
    assert v.banner.startswith("NVIDIA UNIX ") and v.banner == sample(rel).splitlines()[0][len("NVRM version: "):]


@pytest.mark.parametrize("text", [
    "", "this is not a version file\n", sample("version/no-version.txt"),
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
    "NVRM version: \n",
    "NVRM version: something else 550.54.15\n",
])
def test_parse_driver_version_garbage(text: str) -> None:
    assert parse_driver_version(text) is None


def test_parse_driver_version_bare_banner_and_gcc_line_ignored() -> None:
    # GCC's own version never leaks in, even when it comes first
    text = "GCC version:  gcc version 12.2.0\nNVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu May\n"
    assert parse_driver_version(text) == DriverVersion(
        "470.256.02", False, "x86_64", "NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu May")
    bare = parse_driver_version("NVIDIA UNIX Open Kernel Module for x86_64  555.42.02  Release Build")
    assert bare is not None and (bare.version, bare.open_module) == ("555.42.02", True)


def test_parse_driver_version_single_spaces_and_unknown_arch() -> None:
    v = parse_driver_version("NVRM version: NVIDIA UNIX Kernel Module 1.2 date")
    assert v is not None and (v.version, v.arch) == ("1.2", None)


# ------------------------------------------------------------------ information

Info = Tuple[Optional[str], Optional[int], Optional[str], Optional[str], Optional[int], Optional[bool],
             Optional[str]]


@pytest.mark.parametrize("rel, expected", [
    ("information/h100-550-firmware.txt",
     ("NVIDIA H100 80GB HBM3", 582, "GPU-8b3a2c1e-5d4f-4e3a-9b2c-1d0e9f8a7b6c", "0000:18:00.0", 0, False,
      "550.54.15")),
    ("information/v100-418-blacklisted.txt",
     ("Tesla V100-SXM2-16GB", 45, "GPU-2f9a3c8e-7b1d-4c5e-8a6f-0d9e8c7b6a5f", "0000:86:00.0", 5, True, None)),
    ("information/k80-340-no-minor.txt", ("Tesla K80", 38, None, "0000:05:00.0", None, None, None)),
    ("information/t4-passthrough-unknown-uuid.txt", ("Tesla T4", 11, None, "0000:00:05.0", 0, False, None)),
    ("information/a6000-vmd-domain.txt",
     ("NVIDIA RTX A6000", 205, "GPU-aa11bb22-cc33-dd44-ee55-ff6677889900", "10000:e1:00.0", 1, False, None)),
    ("information/spaces-only-excluded.txt",
     ("Unknown", 0, "GPU-0dcea5a6-bfcd-3916-bc92-dc11ea26ecf2", "0000:01:00.0", 3, True, None)),
    ("information/garbage.txt", (None, None, None, None, None, None, None)),
])
def test_parse_gpu_information_samples(rel: str, expected: Info) -> None:
    info = parse_gpu_information(sample(rel))
    assert (info.model, info.irq, info.uuid, info.bus_location, info.minor, info.excluded,
            info.firmware) == expected


def test_parse_gpu_information_keeps_every_field_in_order() -> None:
    info = parse_gpu_information(sample("information/t4-passthrough-unknown-uuid.txt"))
    assert [k for k, _ in info.fields] == ["Model", "IRQ", "GPU UUID", "Video BIOS", "Bus Type", "DMA Size",
                                           "DMA Mask", "Bus Location", "Device Minor", "GPU Excluded"]
    assert dict(info.fields)["GPU UUID"] == "GPU-????????-????-????-????-????????????"
    assert info.video_bios == "??.??.??.??.??" and info.bus_type == "PCIe"


@pytest.mark.parametrize("text, minor, excluded, bus", [
    ("Device Minor: \t x\n", None, None, None),
    ("Device Minor:\t-\nGPU Excluded: maybe\n", None, None, None),
    ("Bus Location: \t nonsense\n", None, None, None),
    ("Bus Location: 0000:0A:00.0\nGPU Excluded: No\nBlacklisted: Yes\n", None, False, "0000:0a:00.0"),
    ("Device Minor: 7\nDevice Minor: 8\n", 7, None, None),
])
def test_parse_gpu_information_odd_values(text: str, minor: Optional[int], excluded: Optional[bool],
                                          bus: Optional[str]) -> None:
    info = parse_gpu_information(text)
    assert (info.minor, info.excluded, info.bus_location) == (minor, excluded, bus)


# ------------------------------------------------------------------ bus ids

@pytest.mark.parametrize("text, parts, normal", [
    ("00000000:07:00.0", (0, 7, 0, 0), "0000:07:00.0"),   # NVML busId
    ("0000:B7:00.0", (0, 0xB7, 0, 0), "0000:b7:00.0"),    # NVML busIdLegacy
    ("0000:b7:00.0", (0, 0xB7, 0, 0), "0000:b7:00.0"),    # procfs / sysfs
    ("0:7:0.0", (0, 7, 0, 0), "0000:07:00.0"),            # NVIDIA_VISIBLE_DEVICES style
    ("10000:e1:00.0", (0x10000, 0xE1, 0, 0), "10000:e1:00.0"),  # VMD domain
    ("0001:02:1f.7", (1, 2, 0x1F, 7), "0001:02:1f.7"),
    (" 0000:07:00.0\n", (0, 7, 0, 0), "0000:07:00.0"),
    ("07:00.0", None, None),
    ("0000:07:00", None, None),
    ("0000:07:00.8", None, None),
    ("000000000:07:00.0", None, None),
    ("0000:107:00.0", None, None),
    ("GPU-1234", None, None),
    ("", None, None),
])
def test_bus_ids(text: str, parts: Optional[Tuple[int, int, int, int]], normal: Optional[str]) -> None:
    assert parse_bus_id(text) == parts
    assert normalize_bus_id(text) == normal


# ------------------------------------------------------------------ capabilities, params

@pytest.mark.parametrize("text, minor", [
    (sample("caps/gpu0-gi7-access.txt"), 66),
    (sample("caps/mig-config.txt"), 1),
    (sample("caps/no-minor.txt"), None),
    ("DeviceFileMinor: -1\n", None),
    ("DeviceFileMinor: abc\n", None),
    ("", None),
])
def test_parse_cap_access(text: str, minor: Optional[int]) -> None:
    assert parse_cap_access(text) == minor


def test_parse_mig_minors_sample() -> None:
    table = parse_mig_minors(sample("caps/mig-minors-excerpt.txt"))
    assert table == {"config": 1, "monitor": 2, "gpu0/gi0/access": 3, "gpu0/gi0/ci0/access": 4,
                     "gpu0/gi0/ci1/access": 5, "gpu0/gi1/access": 12, "gpu1/gi7/access": 201,
                     "gpu1/gi7/ci0/access": 202}
    assert parse_mig_minors("config\nmonitor x\nfabric-mgmt 0 extra\n\n") == {}


@pytest.mark.parametrize("name, key", [
    ("gpu0/gi0/access", (0, 0, None)),
    ("gpu12/gi14/ci7/access", (12, 14, 7)),
    ("gpu1/mig/gi2/ci1/access", (1, 2, 1)),
    ("/gpu1/mig/gi2/access", (1, 2, None)),
    ("config", None),
    ("gpu0/gi0", None),
    ("gpu0/mig/gi0/ci0", None),
    ("gpux/gi0/access", None),
])
def test_parse_mig_cap_name(name: str, key: Optional[Tuple[int, int, Optional[int]]]) -> None:
    assert parse_mig_cap_name(name) == key


def test_parse_params_sample() -> None:
    params = parse_params(sample("params-video-group.txt"))
    assert params["DeviceFileGID"] == "44" and int(params["DeviceFileMode"]) == 0o660
    assert params["RegistryDwords"] == '""' and params["ModifyDeviceFiles"] == "1"
    assert parse_params("no colon\n: empty key\n") == {}


# ------------------------------------------------------------------ DRM and IMEX node names

@pytest.mark.parametrize("name, parsed", [
    ("card0", ("card", 0)),
    ("card1", ("card", 1)),
    ("card12", ("card", 12)),
    ("renderD128", ("renderD", 128)),
    ("renderD191", ("renderD", 191)),
    ("renderD1048575", ("renderD", 1048575)),  # the largest 20-bit minor
    ("renderD1048576", None),
    ("controlD64", None),  # legacy control node
    ("card0-DP-1", None),  # a connector (lives under drm/card0/, never directly under drm/)
    ("card", None),
    ("card01", None),
    ("Card0", None),
    ("renderd128", None),
    ("card-1", None),
    (" card0", None),
    ("version", None),
    ("", None),
])
def test_parse_drm_node_name(name: str, parsed: Optional[Tuple[str, int]]) -> None:
    assert parse_drm_node_name(name) == parsed


@pytest.mark.parametrize("name, channel", [
    ("channel0", 0),
    ("channel1", 1),
    ("channel2047", 2047),
    ("channel1048575", 1048575),
    ("channel1048576", None),
    ("channel01", None),
    ("channel", None),
    ("channel-1", None),
    ("Channel0", None),
    ("channel0.bak", None),
    ("0", None),
])
def test_parse_imex_channel_name(name: str, channel: Optional[int]) -> None:
    assert parse_imex_channel_name(name) == channel
