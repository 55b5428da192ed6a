"""The simulated driver library against the preset data, for every preset."""
from __future__ import annotations

import pytest

from nvlow.errors import LibraryError
from nvlow.records import DriverLibrary, GpuRecord, MigRecord, PeerLink, ProcessRecord, SystemInfo
from nvlow.simulate.fakelib import (
    ARCH_NAMES, BRAND_NAMES, SimulatedLibrary, arch_name, brand_name, cuda_version_text, open_simulated_library,
)
from nvlow.simulate.presets import (
    PRESET_NAMES, Preset, get_preset, nvlink_count, p2p_supported, scaled_preset, topology_level,
)

LOADABLE = [n for n in PRESET_NAMES if get_preset(n).libraries_present and get_preset(n).driver_loaded]


def test_enum_tables_follow_nvml() -> None:
    assert BRAND_NAMES == {
        0: "unknown", 1: "quadro", 2: "tesla", 3: "nvs", 4: "grid", 5: "geforce", 6: "titan", 7: "nvidia_vapps",
        8: "nvidia_vpc", 9: "nvidia_vcs", 10: "nvidia_vws", 11: "nvidia_cloud_gaming", 12: "quadro_rtx",
        13: "nvidia_rtx", 14: "nvidia", 15: "geforce_rtx", 16: "titan_rtx"}
    assert ARCH_NAMES == {2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada",
                          9: "hopper", 10: "blackwell"}
    assert (brand_name(99), brand_name(None), arch_name(1), arch_name(9)) == (None, None, None, "hopper")


@pytest.mark.parametrize("value, text", [(12040, "12.4"), (12060, "12.6"), (11080, "11.8"), (10010, "10.1"),
                                         (13000, "13.0"), (0, None), (None, None)])
def test_cuda_version_text(value: object, text: object) -> None:
    assert cuda_version_text(value) == text  # type: ignore[arg-type]


def _check_against_preset(preset: Preset, lib: DriverLibrary) -> None:
    assert lib.system() == SystemInfo(preset.driver_version, preset.nvml_version,
                                      cuda_version_text(preset.cuda_version))
    records = lib.gpus()
    assert [r.index for r in records] == list(range(len(preset.gpus)))
    for rec, g in zip(records, preset.gpus):
        assert rec == GpuRecord(
            index=g.index, minor=g.minor, uuid=g.uuid, name=g.name, bus_id=g.bus_id, pci_device_id=g.pci_device_id,
            brand=BRAND_NAMES[g.brand], architecture=ARCH_NAMES[g.architecture],
            compute_capability=f"{g.cc_major}.{g.cc_minor}", memory_total=g.memory_total,
            persistence_mode=g.persistence_mode, mig_enabled=g.mig_mode, mig_pending=g.mig_mode,
            mig_devices=tuple(MigRecord(m.slot, m.uuid, m.gi, m.ci, f"{g.name} MIG {m.profile}", m.memory_total)
                              for m in g.migs),
            power_limit=g.power_limit, max_clocks_sm=g.max_clock_sm, max_clocks_memory=g.max_clock_memory,
            multiprocessor_count=None if g.mig_mode else g.multiprocessor_count, numa_node=g.numa_node,
            pcie_max_generation=g.pcie_gen, pcie_max_width=g.pcie_width, bar1_total=g.bar1_total,
            ecc_enabled=g.ecc is True, global_memory=None if g.mig_mode else g.memory_total,
            shared_memory_per_sm=None if g.mig_mode else g.shared_memory_per_sm,
            constant_memory=None if g.mig_mode else g.constant_memory, l2_cache=None if g.mig_mode else g.l2_cache,
            memory_clock=g.memory_clock, memory_bus_width=g.memory_bus_width,
            peers=tuple(PeerLink(o.index, o.bus_id, topology_level(g, o), p2p_supported(g, o), nvlink_count(g, o))
                        for o in preset.gpus if o.index != g.index))
    statuses = lib.status()
    assert [s.index for s in statuses] == [g.index for g in preset.gpus]
    for st, g in zip(statuses, preset.gpus):
        assert (st.power_usage, st.power_limit, st.temperature, st.memory_used, st.memory_total, st.clock_sm,
                st.clock_memory) == (g.power_usage, g.power_limit, g.temperature, g.memory_used, g.memory_total,
                                     g.clock_sm, g.clock_memory)
        want_util = (None, None) if g.mig_mode else (g.utilization_gpu, g.utilization_memory)
        assert (st.utilization_gpu, st.utilization_memory) == want_util
        assert st.processes == tuple(ProcessRecord(p.pid, p.name, p.used_memory) for p in g.processes)
        want_ecc = g.ecc_errors if g.ecc else (None, None, None)
        assert (st.ecc_errors_l1, st.ecc_errors_l2, st.ecc_errors_device) == want_ecc
        assert (st.bar1_used, st.pcie_rx, st.pcie_tx, st.utilization_encoder) == (
            g.bar1_used, g.pcie_rx, g.pcie_tx, g.utilization_encoder)


@pytest.mark.parametrize("name", LOADABLE)
def test_library_matches_every_preset(name: str) -> None:
    preset = get_preset(name)
    lib = open_simulated_library(preset)
    _check_against_preset(preset, lib)
    lib.close()


def test_specific_values() -> None:
    a100 = open_simulated_library(get_preset("dgx-a100")).gpus()
    assert (a100[2].bus_id, a100[2].brand, a100[2].architecture, a100[2].compute_capability) == (
        "00000000:47:00.0", "nvidia", "ampere", "8.0")
    h100 = open_simulated_library(get_preset("dgx-h100-mig")).gpus()
    assert h100[0].architecture == "hopper" and h100[0].mig_enabled is True and h100[2].mig_enabled is False
    assert [(m.index, m.gpu_instance_id, m.compute_instance_id) for m in h100[1].mig_devices] == [
        (0, 1, 0), (1, 2, 0), (2, 2, 1)]
    assert h100[1].mig_devices[0].name == "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    ws = open_simulated_library(get_preset("workstation"))
    assert ws.gpus()[0].brand == "geforce" and ws.status()[0].processes[0].name == "/usr/lib/xorg/Xorg"
    assert ws.loaded_paths == ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.560.35.03",
                               "/usr/lib/x86_64-linux-gnu/libcuda.so.560.35.03")
    assert open_simulated_library(get_preset("no-gpu")).gpus() == ()


def _p2p_peers(lib: SimulatedLibrary) -> list:
    return [[p.index for p in r.peers if p.p2p] for r in lib.gpus()]


def test_dgx_topology() -> None:
    """NVLink through the NVSwitches joins every pair of a DGX; PCIe levels follow the switches and sockets."""
    a100 = SimulatedLibrary(get_preset("dgx-a100"))
    assert _p2p_peers(a100) == [[j for j in range(8) if j != i] for i in range(8)]
    g0 = a100.gpus()[0]
    assert [(p.index, p.topology, p.nvlinks) for p in g0.peers] == [
        (1, 20, 12), (2, 40, 12), (3, 40, 12), (4, 50, 12), (5, 50, 12), (6, 50, 12), (7, 50, 12)]
    assert g0.peers[0].bus_id == "00000000:0F:00.0"
    # MIG mode turns peer-to-peer off for GPUs 0 and 1; the others keep their 18 NVLinks
    h100 = SimulatedLibrary(get_preset("dgx-h100-mig"))
    assert _p2p_peers(h100) == [[], []] + [[j for j in range(2, 8) if j != i] for i in range(2, 8)]
    assert {p.nvlinks for p in h100.gpus()[3].peers} == {0, 18}
    # one PCIe GPU: nobody to talk to
    assert SimulatedLibrary(get_preset("workstation")).gpus()[0].peers == ()


def test_scaled_presets() -> None:
    preset = scaled_preset(64, mig=True)
    lib = SimulatedLibrary(preset)
    _check_against_preset(preset, lib)
    assert len(lib.gpus()) == 64 and len(lib.gpus()[63].mig_devices) == 7


def test_no_driver_preset_fails_like_the_loader() -> None:
    with pytest.raises(LibraryError) as exc:
        open_simulated_library(get_preset("no-driver"))
    assert str(exc.value) == ("cannot load libnvidia-ml.so.1: libnvidia-ml.so.1: cannot open shared object file: "
                              "No such file or directory")
    assert exc.value.hint


def test_libraries_without_kernel_module() -> None:
    from dataclasses import replace

    preset = replace(get_preset("no-driver"), libraries_present=True)
    with pytest.raises(LibraryError, match="Driver Not Loaded"):
        open_simulated_library(preset)


def test_close_is_idempotent_and_final() -> None:
    lib = open_simulated_library(get_preset("dgx-a100"))
    lib.close()
    lib.close()
    for call in (lib.system, lib.gpus, lib.status):
        with pytest.raises(LibraryError):
            call()
