"""NativeDriverLibrary against the compiled fakes: records equal the preset data."""
from __future__ import annotations

from typing import List, Tuple

import pytest

from fakes.scenario import mig_capable, mig_name, samples_under_way
from nvlow.native.probe import (SAMPLE_SECONDS, NativeDriverLibrary, architecture_token, brand_token,
                               open_native_library)
from nvlow.records import GpuRecord, GpuStatus, MigRecord, ProcessRecord, SystemInfo
from nvlow.host.root import HostRoot
from nvlow.simulate.presets import PRESET_NAMES, Preset, get_preset, scaled_preset

NOWHERE = HostRoot("/nonexistent-nvlow-root")
WITH_DRIVER = [n for n in PRESET_NAMES if get_preset(n).libraries_present]


def expected_gpus(p: Preset, *, sm: bool) -> Tuple[GpuRecord, ...]:
    out = []
    for g in p.gpus:
        capable = mig_capable(g)
        out.append(GpuRecord(
            index=g.index, minor=g.minor, uuid=g.uuid, name=g.name, bus_id=g.bus_id,
            pci_device_id=g.pci_device_id, brand=brand_token(g.brand),
            architecture=architecture_token(g.architecture), compute_capability=f"{g.cc_major}.{g.cc_minor}",
            memory_total=g.memory_total, persistence_mode=g.persistence_mode,
            mig_enabled=g.mig_mode if capable else None, mig_pending=False if capable else None,
            mig_devices=tuple(MigRecord(index=m.slot, uuid=m.uuid, gpu_instance_id=m.gi, compute_instance_id=m.ci,
                                        name=mig_name(g, m.profile), memory_total=m.memory_total)
                              for m in g.migs),
            power_limit=g.power_limit, max_clocks_sm=g.max_clock_sm, max_clocks_memory=g.max_clock_memory,
            multiprocessor_count=g.multiprocessor_count if sm else None, numa_node=g.numa_node,
            pcie_max_generation=g.pcie_gen, pcie_max_width=g.pcie_width, bar1_total=None,
        ))
    return tuple(out)


def expected_status(p: Preset) -> Tuple[GpuStatus, ...]:
    return tuple(GpuStatus(
        index=g.index, power_usage=g.power_usage, power_limit=g.power_limit, temperature=g.temperature,
        utilization_gpu=g.utilization_gpu, utilization_memory=g.utilization_memory,
        memory_used=g.memory_used, memory_total=g.memory_total, memory_reserved=0, clock_sm=g.clock_sm,
        clock_memory=g.clock_memory, processes=tuple(ProcessRecord(pid=pr.pid, name=pr.name, used_memory=pr.used_memory) for pr in g.processes),
    ) for g in p.gpus)


@pytest.mark.parametrize("name", WITH_DRIVER)
@pytest.mark.parametrize("sm", [False, True], ids=["nvml-only", "cuda-devices"])
def test_every_preset_round_trips(fake_driver, name: str, sm: bool) -> None:
    p = get_preset(name)
    fake = fake_driver(p)
    with open_native_library(NOWHERE, fake.env, cuda_devices=sm) as lib:
        assert lib.loaded_paths == (fake.libs.nvml, fake.libs.cuda)
        assert lib.system() == SystemInfo(p.driver_version, p.nvml_version, "12.6" if p.cuda_version == 12060 else "12.4")
        assert lib.gpus() == expected_gpus(p, sm=sm)
        assert lib.status() == expected_status(p)
        assert lib.problems == []


def test_scaled_mig_preset(fake_driver) -> None:
    p = scaled_preset(24, mig=True)
    with open_native_library(NOWHERE, fake_driver(p).env) as lib:
        assert lib.gpus() == expected_gpus(p, sm=False)


def test_optional_fields_from_extra_lines(fake_driver) -> None:
    text = ("driver 550.54.15\ngpu 0\nname X\nbar1 268435456 1048576\nencoder 7\ndecoder 9\n"
            "throughput 300 200\nmig 0 1\nmigmax 7\n")
    with open_native_library(NOWHERE, fake_driver(text).env) as lib:
        (g,) = lib.gpus()
        assert (g.name, g.bar1_total, g.mig_enabled, g.mig_pending, g.mig_devices) == ("X", 268435456, False, True, ())
        assert (g.uuid, g.minor, g.brand, g.compute_capability) == (None, None, None, None)
        (s,) = lib.status()
        assert (s.utilization_encoder, s.utilization_decoder, s.pcie_rx, s.pcie_tx) == (7, 9, 300, 200)
        assert (s.power_usage, s.temperature, s.processes) == (None, None, ())
        assert lib.system() == SystemInfo("550.54.15", None, None)
        assert lib.problems == ["system cuDriverGetVersion: CUDA_ERROR_UNKNOWN",
                                "system nvmlSystemGetCudaDriverVersion_v2: NVML_ERROR_LIBRARY_NOT_FOUND"]


def test_empty_mig_slot_is_skipped(fake_driver) -> None:
    text = ("driver 550.90.07\ngpu 0\nname H\nmig 1 1\nmigmax 7\n"
            "migdev 0 3 0 10 MIG-aaaa H MIG 1g.10gb\nmigdev 4 5 0 20 MIG-bbbb H MIG 2g.20gb\n")
    with open_native_library(NOWHERE, fake_driver(text).env) as lib:
        migs = lib.gpus()[0].mig_devices
    assert migs == (MigRecord(0, "MIG-aaaa", 3, 0, "H MIG 1g.10gb", 10), MigRecord(4, "MIG-bbbb", 5, 0, "H MIG 2g.20gb", 20))


def test_one_bad_field_and_one_bad_device_keep_the_rest(fake_driver) -> None:
    p = get_preset("dgx-a100")
    fake = fake_driver(p, rc=[("nvmlDeviceGetPowerUsage", 15, 1), ("nvmlDeviceGetHandleByIndex_v2", 15, 2),
                              ("nvmlDeviceGetUUID", 3, 3)])
    with open_native_library(NOWHERE, fake.env) as lib:
        gpus, status = lib.gpus(), lib.status()
        problems = list(lib.problems)
    want = expected_gpus(p, sm=False)
    assert gpus[2] == GpuRecord(index=2, minor=None, uuid=None, name=None, bus_id=None)
    assert gpus[3].uuid is None and gpus[3].name == want[3].name
    assert [g for i, g in enumerate(gpus) if i not in (2, 3)] == [g for i, g in enumerate(want) if i not in (2, 3)]
    assert status[1].power_usage is None and status[1].temperature == 33
    assert status[2] == GpuStatus(index=2)
    assert status[0].power_usage == 61000
    # NOT_SUPPORTED is quiet; a lost GPU is reported
    assert "GPU 1 nvmlDeviceGetPowerUsage: NVML_ERROR_GPU_IS_LOST" in problems
    assert "GPU 2 nvmlDeviceGetHandleByIndex_v2: NVML_ERROR_GPU_IS_LOST" in problems
    assert not any("nvmlDeviceGetUUID" in x for x in problems)


def test_a_failure_read_again_and_again_is_one_problem_line(fake_driver) -> None:
    """serve reads status on every request: a field that keeps failing is reported once, not once per
    reading (the list would grow for as long as the server runs)."""
    fake = fake_driver(get_preset("dgx-a100"), rc=[("nvmlDeviceGetPowerUsage", 15, 1)])
    with open_native_library(NOWHERE, fake.env) as lib:
        for _ in range(3):
            assert lib.status()[1].power_usage is None
        assert lib.problems == ["GPU 1 nvmlDeviceGetPowerUsage: NVML_ERROR_GPU_IS_LOST"]


def test_cuda_version_falls_back_to_nvml(fake_driver, tmp_path) -> None:
    fake = fake_driver(get_preset("workstation"))
    env = dict(fake.env, NVLOW_CUDA_LIBRARY=str(tmp_path / "missing" / "libcuda.so.1"))
    with open_native_library(NOWHERE, env, cuda_devices=True) as lib:
        assert lib.loaded_paths == (fake.libs.nvml,)
        assert lib.system().cuda_version == "12.6"
        assert lib.gpus()[0].multiprocessor_count is None


def test_no_cuda_version_anywhere(fake_driver, tmp_path) -> None:
    fake = fake_driver(get_preset("workstation"), rc=[("nvmlSystemGetCudaDriverVersion_v2", 12)])
    env = dict(fake.env, NVLOW_CUDA_LIBRARY=str(tmp_path / "libcuda.so.1"))
    with open_native_library(NOWHERE, env) as lib:
        assert lib.system() == SystemInfo("560.35.03", "12.560.35.03", None)
        assert lib.problems == ["system nvmlSystemGetCudaDriverVersion_v2: NVML_ERROR_LIBRARY_NOT_FOUND"]


def test_cuda_init_failure_leaves_sm_count_empty(fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"), rc=[("cuInit", 999)])
    with open_native_library(NOWHERE, fake.env, cuda_devices=True) as lib:
        assert lib.gpus()[0].multiprocessor_count is None
        assert lib.system().cuda_version == "12.6"
        assert lib.problems == ["cuda cuInit: CUDA_ERROR_UNKNOWN"]


def test_no_gpu_preset_with_cuda_devices(fake_driver) -> None:
    with open_native_library(NOWHERE, fake_driver(get_preset("no-gpu")).env, cuda_devices=True) as lib:
        assert (lib.gpus(), lib.status(), lib.problems) == ((), (), [])


def test_close_is_idempotent_and_shuts_nvml_down(fake_driver) -> None:
    lib = NativeDriverLibrary.open(NOWHERE, fake_driver(get_preset("workstation")).env)
    lib.close()
    lib.close()
    from nvlow.native.nvml import NvmlError

    with pytest.raises(NvmlError) as err:
        lib.gpus()
    assert err.value.name == "NVML_ERROR_UNINITIALIZED"


@pytest.mark.parametrize("value,token", [(0, "unknown"), (2, "tesla"), (11, "cloudgaming"), (13, "nvidiartx"),
                                         (16, "titanrtx"), (19, "npu"), (20, "unknown"), (-1, "unknown")])
def test_brand_tokens(value: int, token: str) -> None:
    assert brand_token(value) == token


@pytest.mark.parametrize("value,token", [(2, "kepler"), (7, "ampere"), (8, "ada"), (10, "blackwell"),
                                         (13, "rubin"), (0xFFFFFFFF, "unknown"), (14, "unknown")])
def test_architecture_tokens(value: int, token: str) -> None:
    assert architecture_token(value) == token


@pytest.mark.parametrize("sample_ms", [200, 1])
def test_pcie_counters_are_sampled_at_once(fake_driver, tmp_path, monkeypatch, sample_ms: int) -> None:
    # NVML samples each PCIe counter for 20 ms: rx and tx of every GPU are read at once on threads.
    # Samples quicker than SAMPLE_SECONDS (a stand-in that does not sample) are read in turn after
    # the first reading.
    p = scaled_preset(4)
    fake = fake_driver(p, complete=True, extra=[f"sample_ms {sample_ms}"])
    log = tmp_path / "calls.log"
    monkeypatch.setenv("NVLOW_FAKE_CALL_LOG", str(log))
    with open_native_library(NOWHERE, fake.env) as lib:
        for reading in range(2):
            log.write_text("")
            got = lib.status()
            assert [(s.index, s.pcie_rx, s.pcie_tx) for s in got] == [
                (g.index, g.pcie_rx, g.pcie_tx) for g in p.gpus]
            depth = samples_under_way(log.read_text())
            assert len(depth) == 2 * 2 * len(p.gpus)
            if sample_ms > SAMPLE_SECONDS * 1000:
                assert max(depth) == 2 * len(p.gpus), f"reading {reading}: {depth}"
            elif reading == 1:
                assert depth == [1, 0] * 2 * len(p.gpus)
        assert lib.samples_wait is (sample_ms > SAMPLE_SECONDS * 1000)  # serve's readings side by side
        assert lib.problems == []


def test_a_failing_pcie_sample_is_one_problem_line(fake_driver) -> None:
    # sampled on threads, each counter's failure reported once
    fake = fake_driver(get_preset("dgx-a100"), complete=True, rc=[("nvmlDeviceGetPcieThroughput", 999, 2)])
    with open_native_library(NOWHERE, fake.env) as lib:
        for _ in range(3):
            got = lib.status()
            assert (got[2].pcie_rx, got[2].pcie_tx) == (None, None)
            assert got[1].pcie_rx is not None
        assert lib.problems == ["GPU 2 nvmlDeviceGetPcieThroughput: NVML_ERROR_UNKNOWN"]
