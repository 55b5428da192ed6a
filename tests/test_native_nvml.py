"""Nvml and Cuda wrappers against the compiled fakes: error funnel, dropped symbols, buffers."""
from __future__ import annotations

import pytest

from fakes.build import all_declared_functions
from nvlow.errors import LibraryError
from nvlow.native import nvml as nvml_mod
from nvlow.native.cuda import Cuda, CudaError
from nvlow.native.nvml import (
    Nvml, NvmlDriverNotLoaded, NvmlError, NvmlInsufficientSize, NvmlLibRmVersionMismatch, NvmlNoPermission,
    NvmlNotFound, NvmlNotSupported, nvml_error, return_name,
)
from nvlow.native.probe import open_native_library
from nvlow.host.root import HostRoot
from nvlow.simulate.presets import get_preset

NOWHERE = HostRoot("/nonexistent-nvlow-root")


@pytest.mark.parametrize("code,cls,name", [
    (3, NvmlNotSupported, "NVML_ERROR_NOT_SUPPORTED"),
    (4, NvmlNoPermission, "NVML_ERROR_NO_PERMISSION"),
    (6, NvmlNotFound, "NVML_ERROR_NOT_FOUND"),
    (7, NvmlInsufficientSize, "NVML_ERROR_INSUFFICIENT_SIZE"),
    (9, NvmlDriverNotLoaded, "NVML_ERROR_DRIVER_NOT_LOADED"),
    (13, NvmlNotSupported, "NVML_ERROR_FUNCTION_NOT_FOUND"),
    (15, NvmlError, "NVML_ERROR_GPU_IS_LOST"),
    (18, NvmlLibRmVersionMismatch, "NVML_ERROR_LIB_RM_VERSION_MISMATCH"),
    (30, NvmlError, "NVML_ERROR_RESET_TYPE_NOT_SUPPORTED"),
    (999, NvmlError, "NVML_ERROR_UNKNOWN"),
])
def test_injected_codes_map_to_exceptions(fake_driver, code: int, cls: type, name: str) -> None:
    fake = fake_driver(get_preset("workstation"), rc=[("nvmlDeviceGetPowerUsage", code)])
    with Nvml.open(NOWHERE, fake.env) as nv:
        h = nv.handle(0)
        with pytest.raises(NvmlError) as err:
            nv.power_usage(h)
        assert nv.temperature(h) == 41  # the other calls still work
    assert type(err.value) is cls
    assert isinstance(err.value, LibraryError)
    assert (err.value.code, err.value.name, err.value.function) == (code, name, "nvmlDeviceGetPowerUsage")
    assert f"nvmlDeviceGetPowerUsage: {name}" in str(err.value)
    assert "\n" not in str(err.value)


def test_injection_per_device(fake_driver) -> None:
    fake = fake_driver(get_preset("dgx-a100"), rc=[("nvmlDeviceGetPowerUsage", 3, 5)])
    with Nvml.open(NOWHERE, fake.env) as nv:
        assert nv.power_usage(nv.handle(4)) == 61000
        with pytest.raises(NvmlNotSupported):
            nv.power_usage(nv.handle(5))


def test_lib_rm_mismatch_at_init(fake_driver) -> None:
    fake = fake_driver(get_preset("dgx-a100"), rc=[("nvmlInit_v2", 18)])
    with pytest.raises(NvmlLibRmVersionMismatch) as err:
        open_native_library(NOWHERE, fake.env)
    assert str(err.value) == ("NVML: Driver/library version mismatch (nvmlInit_v2: NVML_ERROR_LIB_RM_VERSION_MISMATCH, "
                              "RM has detected an NVML/RM version mismatch.)")
    assert "reboot" in (err.value.hint or "") and "modprobe nvidia" in (err.value.hint or "")


def test_no_scenario_means_driver_not_loaded(fake_driver, monkeypatch) -> None:
    fake = fake_driver(get_preset("workstation"))
    monkeypatch.delenv("NVLOW_FAKE_SCENARIO")
    with pytest.raises(NvmlDriverNotLoaded) as err:
        Nvml.open(NOWHERE, fake.env)
    assert "NVIDIA driver is not loaded" in str(err.value)
    assert err.value.hint == "install the NVIDIA driver and load it: 'modprobe nvidia'"


def test_error_helpers_without_a_library() -> None:
    assert return_name(0) == "NVML_SUCCESS"
    assert return_name(12345) == "NVML_ERROR_12345"
    assert type(nvml_error(6, "f")) is NvmlNotFound
    assert str(nvml_error(2, "nvmlDeviceGetHandleByIndex_v2", "Invalid Argument")) == \
        "NVML call failed (nvmlDeviceGetHandleByIndex_v2: NVML_ERROR_INVALID_ARGUMENT, Invalid Argument)"


def test_dropped_optional_symbol_degrades_to_none(fake_driver) -> None:
    drop = ["nvmlDeviceGetArchitecture", "nvmlDeviceGetNumaNodeId", "nvmlDeviceGetMaxMigDeviceCount"]
    fake = fake_driver(get_preset("dgx-h100-mig"), drop=drop)
    with open_native_library(NOWHERE, fake.env) as lib:
        assert not lib.nvml.has("nvmlDeviceGetArchitecture") and lib.nvml.has("nvmlDeviceGetBrand")
        gpus = lib.gpus()
        assert lib.problems == []
    assert {(g.architecture, g.numa_node, g.mig_devices) for g in gpus} == {(None, None, ())}
    assert gpus[0].mig_enabled is True and gpus[0].brand == "nvidia" and gpus[0].uuid == get_preset("dgx-h100-mig").gpus[0].uuid


def test_missing_symbol_raises_function_not_found(fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"), drop=["nvmlDeviceGetBrand"])
    with Nvml.open(NOWHERE, fake.env) as nv:
        with pytest.raises(NvmlNotSupported) as err:
            nv.brand(nv.handle(0))
    assert err.value.name == "NVML_ERROR_FUNCTION_NOT_FOUND"
    assert "does not export nvmlDeviceGetBrand" in str(err.value)


@pytest.mark.parametrize("drop,expected", [
    (["nvmlDeviceGetTemperatureV"], 41),
    (["nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"], None),
])
def test_temperature_falls_back_to_the_old_call(fake_driver, drop, expected) -> None:
    fake = fake_driver(get_preset("workstation"), drop=drop)
    with open_native_library(NOWHERE, fake.env) as lib:
        assert lib.status()[0].temperature == expected


def test_temperature_v_not_supported_falls_back(fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"), rc=[("nvmlDeviceGetTemperatureV", 3)])
    with Nvml.open(NOWHERE, fake.env) as nv:
        assert nv.temperature(nv.handle(0)) == 41


def test_memory_falls_back_to_the_pre_r510_call(fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"), drop=["nvmlDeviceGetMemoryInfo_v2"])
    with Nvml.open(NOWHERE, fake.env) as nv:
        assert nv.memory(nv.handle(0)) == (24 * 1024 ** 3, 512 * 1024 ** 2, None)


@pytest.mark.parametrize("drop, expected", [
    ((), (24 * 1024 ** 3, 512 * 1024 ** 2, 600 * 1024 ** 2)),
    # the pre-R510 query counts the reserved memory in "used" and has no field of its own
    (("nvmlDeviceGetMemoryInfo_v2",), (24 * 1024 ** 3, 1112 * 1024 ** 2, None)),
])
def test_memory_reserved_by_the_driver(fake_driver, drop, expected) -> None:
    fake = fake_driver(get_preset("workstation"), drop=drop, extra=[f"reserved {600 * 1024 ** 2}"])
    with Nvml.open(NOWHERE, fake.env) as nv:
        assert nv.memory(nv.handle(0)) == expected


@pytest.mark.parametrize("symbol", ["nvmlInit_v2", "nvmlDeviceGetCount_v2"])
def test_dropped_required_symbol_is_a_clear_library_error(fake_driver, symbol: str) -> None:
    fake = fake_driver(get_preset("workstation"), drop=[symbol])
    with pytest.raises(LibraryError) as err:
        open_native_library(NOWHERE, fake.env)
    assert str(err.value) == f"{fake.libs.nvml} does not export {symbol}: the NVIDIA driver is too old for nvlow"
    assert err.value.hint


def test_processes_retry_on_insufficient_size(fake_driver) -> None:
    procs = [f"process {1000 + i} {i * 1048576} /usr/bin/worker-{i}" for i in range(70)]
    text = "driver 550.54.15\ngpu 0\nname G\n" + "\n".join(procs) + "\nprocess 9 -1 /usr/bin/nomem\n"
    with Nvml.open(NOWHERE, fake_driver(text).env) as nv:
        got = nv.processes(nv.handle(0))
        assert got[:2] == [(1000, 0), (1001, 1048576)]
        assert len(got) == 71 and got[-1] == (9, None)
        assert nv.process_name(1069) == "/usr/bin/worker-69"
        with pytest.raises(NvmlNotFound):
            nv.process_name(4242)


def test_processes_that_keep_growing(fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"), rc=[("nvmlDeviceGetComputeRunningProcesses_v3", 7)])
    with Nvml.open(NOWHERE, fake.env) as nv:
        with pytest.raises(NvmlInsufficientSize):
            nv.processes(nv.handle(0))


def test_mig_handle_calls(fake_driver) -> None:
    p = get_preset("dgx-h100-mig")
    with Nvml.open(NOWHERE, fake_driver(p).env) as nv:
        h = nv.handle(1)
        assert nv.mig_mode(h) == (1, 1) and nv.max_mig_device_count(h) == 7
        slots = nv.mig_handles(h)
        assert [s for s, _ in slots] == [0, 1, 2]
        mh = slots[2][1]
        assert (nv.gpu_instance_id(mh), nv.compute_instance_id(mh)) == (2, 1)
        assert nv.uuid(mh) == p.gpus[1].migs[2].uuid
        with pytest.raises(NvmlNotSupported):
            nv.gpu_instance_id(h)
        with pytest.raises(NvmlNotSupported):  # MIG off on GPU 3
            nv.mig_handles(nv.handle(3))


def test_info_calls(fake_driver) -> None:
    text = ("driver 550.54.15\nnvml 12.550.54.15\ncuda 12040\ngpu 0\nname A\nbus 00000000:07:00.0\npcidevid 0x20B010DE\n"
            "numa 0\naffinity 0xF0F\nclocks 1100 1215\nmaxclocks 1410 1593\nbar1 100 40\ngpu 1\nname B\nnuma 1\n")
    with Nvml.open(NOWHERE, fake_driver(text).env) as nv:
        a, b = nv.handle(0), nv.handle(1)
        assert (nv.driver_version(), nv.nvml_version(), nv.cuda_driver_version()) == ("550.54.15", "12.550.54.15", 12040)
        assert nv.device_count() == 2
        assert nv.pci_info(a) == ("00000000:07:00.0", 0x20B010DE)
        assert nv.cpu_affinity(a) == (0, 1, 2, 3, 8, 9, 10, 11)
        assert (nv.clock(a, "sm"), nv.clock(a, "mem"), nv.max_clock(a, "graphics"), nv.max_clock(a, "mem")) == \
            (1100, 1215, 1410, 1593)
        assert nv.bar1_memory(a) == (100, 40)
        assert nv.topology_common_ancestor(a, a) == 0
        assert nv.topology_common_ancestor(a, b) == 50
        with pytest.raises(NvmlNotSupported):
            nv.cpu_affinity(b)
        with pytest.raises(NvmlError) as err:
            nv.handle(2)
        assert err.value.name == "NVML_ERROR_INVALID_ARGUMENT"
        assert nv.error_string(18) == "RM has detected an NVML/RM version mismatch."


def test_the_full_fake_exports_every_declared_function(fake_libs) -> None:
    from nvlow.native._cuda_ffi import ffi as cuda_ffi
    from nvlow.native._nvml_ffi import ffi as nvml_ffi

    declared = all_declared_functions()
    nv = Nvml(nvml_ffi.dlopen(fake_libs.nvml), fake_libs.nvml)
    cu = Cuda(cuda_ffi.dlopen(fake_libs.cuda), fake_libs.cuda)
    assert sorted(n for n in declared if n.startswith("nvml")) == sorted(nv.capabilities)
    assert all(cu.has(n) for n in declared if n.startswith("cu"))
    assert len(declared) == len(set(declared)) > 50


def test_cuda_calls(fake_driver) -> None:
    p = get_preset("dgx-a100")
    cu = Cuda.open(NOWHERE, fake_driver(p).env)
    assert cu.driver_version() == 12040  # before cuInit
    with pytest.raises(CudaError) as err:
        cu.device_count()
    assert (err.value.code, err.value.name) == (3, "CUDA_ERROR_NOT_INITIALIZED")
    assert str(err.value) == "CUDA driver call failed (cuDeviceGetCount: CUDA_ERROR_NOT_INITIALIZED, initialization error)"
    cu.init()
    assert cu.device_count() == 8
    dev = cu.device(3)
    g = p.gpus[3]
    assert (cu.name(dev), cu.uuid(dev), cu.pci_bus_id(dev)) == (g.name, g.uuid, "0000:4E:00.0")
    assert (cu.compute_capability(dev), cu.multiprocessor_count(dev), cu.total_memory(dev)) == ((8, 0), 108, g.memory_total)


def test_cuda_stub_library_hint(fake_driver) -> None:
    cu = Cuda.open(NOWHERE, fake_driver(get_preset("workstation"), rc=[("cuInit", 34)]).env)
    with pytest.raises(CudaError) as err:
        cu.init()
    assert err.value.name == "CUDA_ERROR_STUB_LIBRARY"
    assert "stub" in (err.value.hint or "")


def test_cuda_unknown_code_name(fake_driver) -> None:
    cu = Cuda.open(NOWHERE, fake_driver(get_preset("workstation"), rc=[("cuInit", 222)]).env)
    with pytest.raises(CudaError) as err:
        cu.init()
    assert (err.value.code, err.value.name) == (222, "CUDA_ERROR_222")


def test_module_constants_match_the_cdef() -> None:
    ffi = nvml_mod.ffi
    for const in ("NOT_SUPPORTED", "NOT_FOUND", "INSUFFICIENT_SIZE", "DRIVER_NOT_LOADED", "FUNCTION_NOT_FOUND",
                  "LIB_RM_VERSION_MISMATCH", "ARGUMENT_VERSION_MISMATCH", "NO_PERMISSION", "UNINITIALIZED"):
        assert getattr(nvml_mod, const) == ffi.integer_const("NVML_ERROR_" + const)


def test_ecc_calls(fake_driver) -> None:
    text = ("driver 550.54.15\ngpu 0\nname A\necc 1\neccerrors 1 2 -1\ngpu 1\nname B\necc 0\neccerrors 5 5 5\n"
            "gpu 2\nname C\n")
    with Nvml.open(NOWHERE, fake_driver(text).env) as nv:
        a, b, c = nv.handle(0), nv.handle(1), nv.handle(2)
        assert nv.ecc_mode(a) == (True, True) and nv.ecc_mode(b) == (False, False)
        assert (nv.memory_error_count(a, "l1"), nv.memory_error_count(a, "l2")) == (1, 2)
        assert nv.memory_error_count(a, "l1", corrected=True) == 0 and nv.memory_error_count(a, "sram") == 0
        assert nv.total_ecc_errors(a) == 3
        with pytest.raises(NvmlNotSupported):
            nv.memory_error_count(a, "device")  # -1 in the scenario
        for h in (b, c):  # ECC off, or no ECC at all: counters are not supported
            with pytest.raises(NvmlNotSupported):
                nv.memory_error_count(h, "l1")
            with pytest.raises(NvmlNotSupported):
                nv.total_ecc_errors(h)
        with pytest.raises(NvmlNotSupported):
            nv.ecc_mode(c)


def test_p2p_and_nvlink_calls(fake_driver) -> None:
    text = ("driver 550.54.15\ngpu 0\nname A\nbus 00000000:07:00.0\nnvlink 2\nbuswidth 5120\n"
            "gpu 1\nname B\nbus 00000000:0F:00.0\nnvlink 4\n"
            "gpu 2\nname C\nbus 00000000:87:00.0\nnvlinkpeer 00000000:0f:00.0\n"
            "gpu 3\nname D\nbus 00000000:90:00.0\n"
            "link 0 1 20 1\nlink 1 2 50 1\nlink 0 2 50 0\n")
    with Nvml.open(NOWHERE, fake_driver(text).env) as nv:
        a, b, c, d = (nv.handle(i) for i in range(4))
        assert nv.memory_bus_width(a) == 5120
        with pytest.raises(NvmlNotSupported):
            nv.memory_bus_width(b)
        assert nv.topology_common_ancestor(a, b) == nv.topology_common_ancestor(b, a) == 20
        assert nv.topology_common_ancestor(b, c) == 50
        assert [nv.p2p_status(a, b, cap) for cap in ("read", "write", "nvlink", "atomics", "pci")] == [0] * 5
        assert nv.p2p_status(a, c) == 5  # NVML_P2P_STATUS_NOT_SUPPORTED
        assert nv.p2p_status(b, c, "nvlink") == 0 and nv.p2p_status(c, d) == 5
        assert nv.nvlinks(a) == [(0, "00000000:C0:00.0", 2), (1, "00000000:C0:00.0", 2)]
        assert [(n, kind) for n, _bus, kind in nv.nvlinks(b)] == [(0, 2), (1, 2), (2, 2), (3, 2)]
        assert nv.nvlinks(c) == [(0, "00000000:0f:00.0", 0)]
        assert nv.nvlinks(d) == []  # no NVLink: every link answers NOT_SUPPORTED
        with pytest.raises(NvmlError) as err:
            nv.nvlink_active(a, 36)
        assert err.value.name == "NVML_ERROR_INVALID_ARGUMENT"


def test_new_calls_missing_from_an_older_driver(fake_driver) -> None:
    drop = ["nvmlDeviceGetNvLinkState", "nvmlDeviceGetP2PStatus", "nvmlDeviceGetMemoryErrorCounter"]
    with Nvml.open(NOWHERE, fake_driver(get_preset("dgx-a100"), drop=drop).env) as nv:
        h = nv.handle(0)
        for call in (lambda: nv.nvlinks(h), lambda: nv.p2p_status(h, nv.handle(1)),
                     lambda: nv.memory_error_count(h, "l1")):
            with pytest.raises(NvmlNotSupported) as err:
                call()
            assert err.value.name == "NVML_ERROR_FUNCTION_NOT_FOUND"
        assert nv.total_ecc_errors(h) == 0  # the calls still exported keep working
