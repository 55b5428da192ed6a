"""Cuda's device attributes, bus-id lookup and peer access against the compiled fake libcuda."""
from __future__ import annotations

import pytest

from nvlow.native import cuda as cuda_mod
from nvlow.native.cuda import MEMORY_ATTRIBUTES, Cuda, CudaError
from nvlow.host.root import HostRoot
from nvlow.simulate.presets import get_preset

NOWHERE = HostRoot("/nonexistent-nvlow-root")


def test_memory_attributes_match_the_preset(fake_driver) -> None:
    p = get_preset("dgx-h100-mig")
    cu = Cuda.open(NOWHERE, fake_driver(p).env)
    cu.init()
    g = p.gpus[5]
    dev = cu.device_by_bus_id(g.bus_id)
    assert dev == 5 and cu.device_by_bus_id("0000:ab:00.0") == 5  # CUDA's own 4-digit domain, lower case
    assert cu.attributes(dev) == {
        "ecc_enabled": 1, "shared_memory_per_multiprocessor": g.shared_memory_per_sm,
        "total_constant_memory": g.constant_memory, "l2_cache_size": g.l2_cache, "memory_clock_rate": g.memory_clock,
        "memory_bus_width": g.memory_bus_width, "multiprocessor_count": g.multiprocessor_count}
    assert cu.attributes(dev, ("ecc_enabled",)) == {"ecc_enabled": 1}


def test_geforce_reports_ecc_off(fake_driver) -> None:
    cu = Cuda.open(NOWHERE, fake_driver(get_preset("workstation")).env)
    cu.init()
    assert cu.attributes(0)["ecc_enabled"] == 0


def test_unknown_attribute_is_none_and_other_errors_raise(fake_driver) -> None:
    text = "driver 550.54.15\ncuda 12040\ngpu 0\nname A\nbus 00000000:07:00.0\nsm 10\n"
    cu = Cuda.open(NOWHERE, fake_driver(text).env)
    cu.init()
    got = cu.attributes(0)
    assert got["multiprocessor_count"] == 10 and got["l2_cache_size"] is None and got["ecc_enabled"] == 0
    with pytest.raises(CudaError) as err:
        cu.device_by_bus_id("00000000:99:00.0")
    assert err.value.name == "CUDA_ERROR_INVALID_DEVICE"


def test_attribute_failure_other_than_invalid_value_raises(fake_driver) -> None:
    cu = Cuda.open(NOWHERE, fake_driver(get_preset("workstation"), rc=[("cuDeviceGetAttribute", 999)]).env)
    cu.init()
    with pytest.raises(CudaError) as err:
        cu.attributes(0)
    assert err.value.name == "CUDA_ERROR_UNKNOWN"


def test_can_access_peer(fake_driver) -> None:
    p = get_preset("dgx-h100-mig")
    cu = Cuda.open(NOWHERE, fake_driver(p).env)
    cu.init()
    assert cu.can_access_peer(2, 7) and cu.can_access_peer(7, 2)
    assert not cu.can_access_peer(0, 7)  # MIG mode: no peer-to-peer
    assert not cu.can_access_peer(3, 3)
    with pytest.raises(CudaError) as err:
        cu.can_access_peer(3, 8)
    assert err.value.name == "CUDA_ERROR_INVALID_DEVICE"


def test_missing_symbols(fake_driver) -> None:
    cu = Cuda.open(NOWHERE, fake_driver(get_preset("dgx-a100"), drop=["cuDeviceCanAccessPeer"]).env)
    cu.init()
    with pytest.raises(CudaError) as err:
        cu.can_access_peer(0, 1)
    assert err.value.code is None and "does not export cuDeviceCanAccessPeer" in str(err.value)


def test_attribute_constants_match_the_cdef() -> None:
    ffi = cuda_mod.ffi
    for name, value in MEMORY_ATTRIBUTES.items():
        cname = {"shared_memory_per_multiprocessor": "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
                 "memory_bus_width": "GLOBAL_MEMORY_BUS_WIDTH"}.get(name, name.upper())
        assert ffi.integer_const("CU_DEVICE_ATTRIBUTE_" + cname) == value
    assert ffi.integer_const("CUDA_ERROR_INVALID_VALUE") == cuda_mod.INVALID_VALUE
