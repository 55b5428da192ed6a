"""The /proc parsers against real pastes (tests/data/realworld, each with its source)."""
from __future__ import annotations

from typing import Optional

import pytest

from nvlow.host.procfs import parse_devices, parse_driver_version, parse_gpu_information, parse_mig_minors
from test_realworld_data import keyvals, samples

VERSIONS = samples("version")
INFORMATION = samples("information")
DEVICES = samples("devices")
MIG_MINORS = samples("mig-minors")


def test_enough_samples() -> None:
    assert len(VERSIONS) >= 10 and len(INFORMATION) >= 10 and len(DEVICES) >= 4 and len(MIG_MINORS) >= 2


@pytest.mark.parametrize("sample", VERSIONS, ids=lambda s: s.name)
def test_version_banner(sample) -> None:
    want = keyvals(sample.expect)
    got = parse_driver_version(sample.body)
    assert got is not None, sample.source
    assert got.version == want["version"]
    assert got.open_module is (want["open"] == "yes")
    assert got.arch == want["arch"]


def _none(value: str) -> Optional[str]:
    return None if value == "None" else value


@pytest.mark.parametrize("sample", INFORMATION, ids=lambda s: s.name)
def test_gpu_information(sample) -> None:
    want = keyvals(sample.expect, sep=" | ")
    info = parse_gpu_information(sample.body)
    assert info.model == want["model"]
    assert info.uuid == _none(want["uuid"])
    assert info.bus_location == want["bus"]
    minor = _none(want["minor"])
    assert info.minor == (int(minor) if minor is not None else None)
    assert info.excluded == {"None": None, "True": True, "False": False}[want["excluded"]]
    if "firmware" in want:
        assert info.firmware == want["firmware"]


@pytest.mark.parametrize("sample", DEVICES, ids=lambda s: s.name)
def test_proc_devices(sample) -> None:
    want = {k: int(v) for k, v in keyvals(sample.expect).items()}
    majors = parse_devices(sample.body)
    got = {k: v for k, v in majors.items() if k.startswith("nvidia")}
    assert got == want
    # the five names nvlow needs are found exactly or absent, never confused with each other
    for name in ("nvidia", "nvidiactl", "nvidia-uvm", "nvidia-caps", "nvidia-caps-imex-channels"):
        assert majors.get(name) == want.get(name)


@pytest.mark.parametrize("sample", MIG_MINORS, ids=lambda s: s.name)
def test_mig_minors(sample) -> None:
    want = {k: int(v) for k, v in keyvals(sample.expect).items()}
    got = parse_mig_minors(sample.body)
    for key, minor in want.items():
        assert got[key] == minor
    assert "..." not in got
