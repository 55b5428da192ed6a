"""1.0 info/status documents, Go tabwriter text, Go JSON encoding, extended tables; golden 1.0 documents
over the presets from the compiled fake NVML/libcuda (regenerate with ``NVLOW_UPDATE_GOLDEN=1``)."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.scenario import samples_under_way
from goldens import check_golden

from nvlow.model import DeviceNode, Gpu, Host
from nvlow.native.probe import open_native_library
from nvlow.records import GpuRecord, GpuStatus, PeerLink, ProcessRecord
from nvlow.host.root import HostRoot, file_node_reader
from nvlow.serve import gpuinfo
from nvlow.serve.cache import DiscoveryCache, complete_records, complete_statuses
from nvlow.simulate.hosttree import build_tree, simulated_host
from nvlow.simulate.presets import get_preset

MIB = 1024 * 1024


@pytest.fixture()
def p100():
    g = Gpu(0, 0, "GPU-1234", "0000:05:00.0", "Tesla P100-PCIE-16GB", compute_capability="6.0",
            memory_total=16 * 1024 * MIB, node=DeviceNode("/r/dev/nvidia0", "/dev/nvidia0", 195, 0, "gpu"))
    r = GpuRecord(0, 0, "GPU-1234", "Tesla P100-PCIE-16GB", "00000000:05:00.0", power_limit=250000,
                  max_clocks_sm=1328, max_clocks_memory=715, multiprocessor_count=56, pcie_max_generation=3,
                  pcie_max_width=16, bar1_total=16 * 1024 * MIB, ecc_enabled=True, shared_memory_per_sm=65536,
                  constant_memory=65536, l2_cache=4 * MIB, memory_clock=715000, memory_bus_width=4096)
    return Host("/", "375.26", "8.0", "nvml", (g,)), r


@pytest.mark.parametrize("arch,fam,per_sm", [
    ("1.3", "Tesla", 8), ("2.1", "Fermi", 48), ("3.5", "Kepler", 192), ("5.2", "Maxwell", 128),
    ("6.0", "Pascal", 64), ("6.1", "Pascal", 128), ("7.0", "Volta", 64), ("7.5", "Turing", 64),
    ("8.0", "Ampere", 64), ("8.6", "Ampere", 128), ("8.9", "Ada", 128), ("9.0", "Hopper", 128),
    ("10.0", "Blackwell", 128), ("12.0", "Blackwell", 128), ("4.0", None, None), (None, None, None),
])
def test_family_and_cores_tables(arch, fam, per_sm):
    assert gpuinfo.family(arch) == fam
    assert gpuinfo.cores_per_sm(arch) == per_sm


@pytest.mark.parametrize("gen,width,mbps", [(1, 16, 4000), (3, 16, 15760), (4, 16, 31504), (5, 16, 63008),
                                            (4, 8, 15752), (9, 16, None), (None, 16, None), (3, None, None)])
def test_pcie_bandwidth(gen, width, mbps):
    assert gpuinfo.pcie_bandwidth(gen, width) == mbps


def test_nvml_bus_id():
    assert gpuinfo.nvml_bus_id("0000:0f:00.0") == "00000000:0F:00.0"
    assert gpuinfo.nvml_bus_id(None) == ""


def test_go_json_escapes_like_encoding_json():
    assert gpuinfo.go_json({"a": "<x&y>", "b": None, "c": [1]}) == \
        b'{"a":"\\u003cx\\u0026y\\u003e","b":null,"c":[1]}\n'


@pytest.mark.parametrize("text,expected", [
    ("\ta:\t1\n\tlong b:\t2\n", "a:     1\nlong b:2\n"),
    ("x\n\ta:\t1\nbreak\n\tlonger:\t2\n\t", "x\na:1\nbreak\nlonger:2\n"),  # blocks end at tab-less lines
    ("\tα:\t1\n\tbb:\t2", "α: 1\nbb:2"),  # widths count runes, as Go does
])
def test_go_tabwriter(text, expected):
    assert gpuinfo.go_tabwrite(text) == expected


def test_info_json_document(p100):
    host, rec = p100
    doc = gpuinfo.info_document(host, (rec,), {0: 1})
    assert list(doc["Devices"][0]) == ["UUID", "Path", "Model", "Power", "CPUAffinity", "PCI", "Clocks",
                                       "Topology", "Family", "Arch", "Cores", "Memory"]
    assert doc == {
        "Version": {"Driver": "375.26", "CUDA": "8.0"},
        "Devices": [{
            "UUID": "GPU-1234", "Path": "/dev/nvidia0", "Model": "Tesla P100-PCIE-16GB", "Power": 250,
            "CPUAffinity": 1, "PCI": {"BusID": "00000000:05:00.0", "BAR1": 16384, "Bandwidth": 15760},
            "Clocks": {"Cores": 1328, "Memory": 715}, "Topology": None, "Family": "Pascal", "Arch": "6.0",
            "Cores": 3584, "Memory": {"ECC": True, "Global": 16384, "Shared": 64, "Constant": 64,
                                      "L2Cache": 4096, "Bandwidth": 732160},
        }],
    }


def test_topology_is_1_0s_p2p_list(p100):
    """Peers with P2P, in index order, with 1.0's link codes; none at all is Go's nil slice."""
    host, rec = p100
    peers = (PeerLink(3, "00000000:85:00.0", 50, True, 0), PeerLink(1, "0000:06:00.0", 10, True, 0),
             PeerLink(2, "00000000:07:00.0", 20, False, 0), PeerLink(4, "00000000:08:00.0", None, True, 4))
    dev = gpuinfo.info_device(host.gpus[0], replace(rec, peers=peers), 0)
    assert dev["Topology"] == [{"BusID": "00000000:06:00.0", "Link": 5}, {"BusID": "00000000:85:00.0", "Link": 1},
                               {"BusID": "00000000:08:00.0", "Link": 0}]
    assert [gpuinfo.p2p_link(level) for level in (0, 10, 20, 30, 40, 50, 60, None)] == [6, 5, 4, 3, 2, 1, 0, 0]
    text = gpuinfo.info_text(gpuinfo.info_document(host, (replace(rec, peers=peers),), {}))
    assert ("  P2P Available\n    00000000:06:00.0 - Single PCI switch\n    00000000:85:00.0 - Cross CPU socket\n"
            "    00000000:08:00.0 - N/A\n") in text
    no_p2p = (PeerLink(1, "00000000:06:00.0", 10, False, 0),)
    assert gpuinfo.info_device(host.gpus[0], replace(rec, peers=no_p2p), 0)["Topology"] is None


def test_global_memory_is_cudas_total(p100):
    """1.0 showed CUDA's totalGlobalMem; NVML's total is larger by the reserved memory (an H200 here:
    143155 MiB against NVML's 143771), and stands in only without libcuda."""
    host, rec = p100
    assert gpuinfo.info_device(host.gpus[0], replace(rec, global_memory=150109880320), 0)["Memory"]["Global"] == 143155
    assert gpuinfo.info_device(host.gpus[0], rec, 0)["Memory"]["Global"] == 16384


def test_unknown_fields_keep_1_0s_types(p100):
    """Without NVML (procfs only) 1.0's always-filled fields are zero values, never null; the ones 1.0
    could leave null stay null."""
    host, _rec = p100
    bare = replace(host.gpus[0], compute_capability=None, memory_total=None)
    dev = gpuinfo.info_device(bare, None, None)
    assert dev["Arch"] == "0.0" and dev["Family"] is None and dev["Cores"] is None
    assert dev["Memory"] == {"ECC": False, "Global": 0, "Shared": 0, "Constant": 0, "L2Cache": 0, "Bandwidth": 0}
    assert (dev["CPUAffinity"], dev["Topology"], dev["Power"], dev["PCI"]["BAR1"], dev["Clocks"]["Cores"]) == (
        0, None, None, None, None)
    status = gpuinfo.status_device(None)
    assert status["Memory"]["ECCErrors"] == {"L1Cache": None, "L2Cache": None, "Global": None}
    assert status["PCI"]["BAR1Used"] is None and status["Processes"] is None
    text = gpuinfo.info_text({"Version": {"Driver": "", "CUDA": ""}, "Devices": [dev]})
    assert "    ECC:        false\n    Global:     0 MiB\n" in text and "  Arch:          0.0\n" in text


def test_numa_minus_one_and_unknown_become_node_zero(p100):
    host, rec = p100
    assert gpuinfo.info_document(host, (rec,), {0: -1})["Devices"][0]["CPUAffinity"] == 0
    assert gpuinfo.info_document(host, (), {})["Devices"][0]["CPUAffinity"] == 0


INFO_TEXT = (
    "\nDriver version:          375.26\nSupported CUDA version:  8.0\n\nDevice #0\n"
    "  Model:         Tesla P100-PCIE-16GB\n  UUID:          GPU-1234\n  Path:          /dev/nvidia0\n"
    "  Family:        Pascal\n  Arch:          6.0\n  Cores:         3584\n  Power:         250 W\n"
    "  CPU Affinity:  NUMA node1\n  PCI\n    Bus ID:     00000000:05:00.0\n    BAR1:       16384 MiB\n"
    "    Bandwidth:  15760 MB/s\n  Memory\n    ECC:        true\n    Global:     16384 MiB\n"
    "    Constant:   64 KiB\n    Shared:     64 KiB\n    L2 Cache:   4096 KiB\n    Bandwidth:  732160 MB/s\n  Clocks\n"
    "    Cores:        1328 MHz\n    Memory:       715 MHz\n  P2P Available:  None\n\n"
)


def test_info_text_matches_1_0_template(p100):
    host, rec = p100
    assert gpuinfo.info_text(gpuinfo.info_document(host, (rec,), {0: 1})) == INFO_TEXT


def test_status_documents_and_text(p100):
    host, rec = p100
    s = GpuStatus(0, power_usage=30123, temperature=40, utilization_gpu=5, utilization_memory=1,
                  memory_used=300 * MIB, clock_sm=405, clock_memory=715, pcie_rx=2000, pcie_tx=999,
                  processes=(ProcessRecord(42, "python", 256 * MIB),), ecc_errors_l2=3, ecc_errors_device=0)
    sd = gpuinfo.status_document(host, (s,))
    assert json.loads(gpuinfo.go_json(sd)) == {"Devices": [{
        "Power": 30, "Temperature": 40,
        "Utilization": {"GPU": 5, "Memory": 1, "Encoder": None, "Decoder": None},
        "Memory": {"GlobalUsed": 300, "ECCErrors": {"L1Cache": None, "L2Cache": 3, "Global": 0}},
        "Clocks": {"Cores": 405, "Memory": 715},
        "PCI": {"BAR1Used": None, "Throughput": {"RX": 2, "TX": 0}},
        "Processes": [{"PID": 42, "Name": "python", "MemoryUsed": 256}],
    }]}
    info = gpuinfo.info_document(host, (rec,), {})
    assert gpuinfo.status_text(info, sd) == (
        "\nDevice #0\n  Power:        30 / 250 W\n  Temperature:  40 °C\n  Utilization\n    GPU:      5 %\n"
        "    Memory:   1 %\n    Encoder:  N/A\n    Decoder:  N/A\n  Memory\n    Global:  300 / 16384 MiB\n"
        "    ECC Errors\n      L1 Cache:  N/A\n      L2 Cache:  3\n      Global:    0\n  PCI\n"
        "    BAR1:  N/A\n    Throughput\n      RX:  2 MB/s\n      TX:  0 MB/s\n  Clocks\n"
        "    Cores:   405 MHz\n    Memory:  715 MHz\n  Processes\n    - PID:     42\n      Name:    python\n"
        "      Memory:  256 MiB\n\n")
    # no processes: Go's nil slice is null, the text says None
    empty = gpuinfo.status_document(host, ())
    assert empty["Devices"][0]["Processes"] is None and empty["Devices"][0]["Power"] is None
    assert "  Processes:  None\n" in gpuinfo.status_text(info, empty)


# --- the compiled fakes behind a DiscoveryCache: golden 1.0 documents ------------------------

GOLDEN_PRESETS = ["dgx-a100", "dgx-h100-mig", "workstation", "no-gpu"]


def fake_root(tmp_path, preset_name: str) -> HostRoot:
    dest = tmp_path / f"root-{preset_name}"
    if not dest.is_dir():
        dest.mkdir()
        build_tree(str(dest), get_preset(preset_name))
    return HostRoot(str(dest), node_reader=file_node_reader)


def native_cache(tmp_path, fake, preset_name: str, **kwargs) -> DiscoveryCache:
    """A DiscoveryCache over the preset's tree with the compiled fakes as the driver libraries."""
    return DiscoveryCache(fake_root(tmp_path, preset_name), lambda r: open_native_library(r, fake.env),
                          load_uvm=False, **kwargs)


def documents(cache: DiscoveryCache):
    snap, statuses = cache.status()
    info = gpuinfo.info_document(snap.host, snap.records, snap.numa_nodes)
    status = gpuinfo.status_document(snap.host, statuses)
    return info, status


def rendered(cache: DiscoveryCache):
    info, status = documents(cache)
    return {"gpu-info.json": gpuinfo.go_json(info).decode(), "gpu-info.txt": gpuinfo.info_text(info),
            "gpu-status.json": gpuinfo.go_json(status).decode(), "gpu-status.txt": gpuinfo.status_text(info, status)}


@pytest.mark.parametrize("name", GOLDEN_PRESETS)
def test_golden_1_0_documents_from_the_compiled_fakes(tmp_path, fake_driver, name: str) -> None:
    fake = fake_driver(get_preset(name), complete=True)
    cache = native_cache(tmp_path, fake, name)
    try:
        out = rendered(cache)
        problems = list(cache.snapshot().library.problems)  # type: ignore[union-attr]
    finally:
        cache.close()
    assert problems == []
    for suffix, text in out.items():
        check_golden(f"{name}--{suffix}", text)


@pytest.mark.parametrize("name", GOLDEN_PRESETS)
def test_the_simulated_library_answers_what_the_compiled_fakes_do(tmp_path, fake_driver, name: str) -> None:
    """--simulate serves the same 1.0 documents, byte for byte, as the C fakes through the native path."""
    fake = fake_driver(get_preset(name), complete=True)
    cache = native_cache(tmp_path, fake, name)
    root, opener = simulated_host(name)
    simulated = DiscoveryCache(root, opener, load_uvm=False)
    try:
        assert rendered(simulated) == rendered(cache)
    finally:
        cache.close()
        simulated.close()


def test_golden_procfs_only(tmp_path) -> None:
    """Without NVML: the fields 1.0 always filled hold zero values, the rest are null."""
    cache = DiscoveryCache(fake_root(tmp_path, "dgx-a100"), None, use_nvml=False, load_uvm=False)
    out = rendered(cache)
    info = json.loads(out["gpu-info.json"])
    assert info["Devices"][0]["Memory"] == {"ECC": False, "Global": 0, "Shared": 0, "Constant": 0, "L2Cache": 0,
                                            "Bandwidth": 0}
    check_golden("dgx-a100--gpu-info--procfs-only.json", out["gpu-info.json"])
    check_golden("dgx-a100--gpu-status--procfs-only.json", out["gpu-status.json"])


def test_dgx_topology_from_nvml_and_cuda(tmp_path, fake_driver) -> None:
    fake = fake_driver(get_preset("dgx-a100"), complete=True)
    cache = native_cache(tmp_path, fake, "dgx-a100")
    try:
        info, status = documents(cache)
        records = cache.snapshot().records
    finally:
        cache.close()
    buses = [d["PCI"]["BusID"] for d in info["Devices"]]
    for i, dev in enumerate(info["Devices"]):
        assert [t["BusID"] for t in dev["Topology"]] == [b for j, b in enumerate(buses) if j != i]
    assert [t["Link"] for t in info["Devices"][0]["Topology"]] == [4, 2, 2, 1, 1, 1, 1]
    assert [(p.index, p.topology, p.p2p, p.nvlinks) for p in records[5].peers] == [
        (0, 50, True, 12), (1, 50, True, 12), (2, 50, True, 12), (3, 50, True, 12), (4, 20, True, 12),
        (6, 40, True, 12), (7, 40, True, 12)]
    d0 = info["Devices"][0]
    assert (d0["Cores"], d0["PCI"]["BAR1"], d0["Memory"]) == (6912, 65536, {
        "ECC": True, "Global": 40960, "Shared": 164, "Constant": 64, "L2Cache": 40960, "Bandwidth": 1555200})
    s0 = status["Devices"][0]
    assert (s0["PCI"]["BAR1Used"], s0["Memory"]["ECCErrors"]) == (2, {"L1Cache": 0, "L2Cache": 0, "Global": 0})


def test_without_libcuda_nvml_answers_what_it_can(tmp_path, fake_driver) -> None:
    """No libcuda: ECC from the ECC mode, bandwidth from NVML's peak memory clock and bus width, P2P from
    NVML's P2P status; shared/constant/L2 and the SM count only CUDA knows are 0/null."""
    fake = fake_driver(get_preset("dgx-a100"), complete=True)
    env = dict(fake.env, NVLOW_CUDA_LIBRARY=str(tmp_path / "missing" / "libcuda.so.1"))
    cache = DiscoveryCache(fake_root(tmp_path, "dgx-a100"), lambda r: open_native_library(r, env), load_uvm=False)
    try:
        info, _status = documents(cache)
    finally:
        cache.close()
    d0 = info["Devices"][0]
    assert d0["Memory"] == {"ECC": True, "Global": 40960, "Shared": 0, "Constant": 0, "L2Cache": 0,
                            "Bandwidth": 1555200}
    assert d0["Cores"] is None and d0["Arch"] == "8.0"
    assert [t["Link"] for t in d0["Topology"]] == [4, 2, 2, 1, 1, 1, 1]


def test_use_cuda_false_never_calls_cuinit(tmp_path, fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"), complete=True, rc=[("cuInit", 999)])
    cache = native_cache(tmp_path, fake, "workstation", use_cuda=False)
    try:
        info, _status = documents(cache)
        problems = list(cache.snapshot().library.problems)  # type: ignore[union-attr]
    finally:
        cache.close()
    assert problems == []  # cuInit would have failed
    assert info["Devices"][0]["Memory"]["Bandwidth"] == 1008096 and info["Devices"][0]["Memory"]["ECC"] is False


def test_failures_are_per_field(tmp_path, fake_driver) -> None:
    """A failing cuInit, a lost GPU pair and unsupported ECC counters cost only their own fields."""
    fake = fake_driver(get_preset("dgx-a100"), complete=True, rc=[
        ("cuInit", 999), ("nvmlDeviceGetTopologyCommonAncestor", 15, 1),
        ("nvmlDeviceGetMemoryErrorCounter", 3, 2), ("nvmlDeviceGetBAR1MemoryInfo", 3, 3)])
    cache = native_cache(tmp_path, fake, "dgx-a100")
    try:
        info, status = documents(cache)
        problems = list(cache.snapshot().library.problems)  # type: ignore[union-attr]
    finally:
        cache.close()
    assert "cuda cuInit: CUDA_ERROR_UNKNOWN" in problems
    assert "GPU 1/2 nvmlDeviceGetTopologyCommonAncestor: NVML_ERROR_GPU_IS_LOST" in problems
    # the pairs (1, 2..7) lost their PCIe level (link 0, "N/A"), not their P2P (from NVML without cuInit)
    assert [t["Link"] for t in info["Devices"][1]["Topology"]] == [4, 0, 0, 0, 0, 0, 0]
    assert [t["Link"] for t in info["Devices"][0]["Topology"]] == [4, 2, 2, 1, 1, 1, 1]
    assert [t["Link"] for t in info["Devices"][7]["Topology"]] == [1, 0, 1, 1, 2, 2, 4]
    # GPU 2: no per-location counters; Global falls back to the total over all locations
    assert status["Devices"][2]["Memory"]["ECCErrors"] == {"L1Cache": None, "L2Cache": None, "Global": 0}
    assert status["Devices"][3]["PCI"]["BAR1Used"] is None and status["Devices"][4]["PCI"]["BAR1Used"] == 2


def test_ecc_errors_and_direct_nvlinks(tmp_path, fake_driver) -> None:
    """Counters are the scenario's; two GPUs joined by an NVLink bridge (no switch) across sockets."""
    text = ("driver 550.54.15\ncuda 12040\n"
            "gpu 0\nname A\nuuid GPU-a\nbus 00000000:07:00.0\nminor 0\nnuma 0\necc 1\neccerrors 1 2 3\n"
            "nvlinkpeer 00000000:87:00.0\nnvlinkpeer 00000000:87:00.0\n"
            "gpu 1\nname B\nuuid GPU-b\nbus 00000000:87:00.0\nminor 1\nnuma 1\necc 1\neccerrors 4 0 -1\n"
            "nvlinkpeer 00000000:07:00.0\nnvlinkpeer 00000000:07:00.0\n"
            "link 0 1 50 1\n")
    with open_native_library(HostRoot("/nonexistent"), fake_driver(text).env) as lib:
        recs = complete_records(lib, lib.gpus())
        stats = complete_statuses(lib, lib.status())
        assert lib.problems == []
    assert [(p.index, p.topology, p.p2p, p.nvlinks) for p in recs[0].peers] == [(1, 50, True, 2)]
    assert [(p.index, p.nvlinks) for p in recs[1].peers] == [(0, 2)]
    # GPU 1 cannot count device memory alone: the total over all locations stands in
    assert [(s.ecc_errors_l1, s.ecc_errors_l2, s.ecc_errors_device) for s in stats] == [(1, 2, 3), (4, 0, 4)]


def test_other_libraries_pass_through() -> None:
    root, opener = simulated_host("workstation")
    lib = opener(root)
    recs, stats = lib.gpus(), lib.status()
    assert complete_records(lib, recs) is recs and complete_statuses(lib, stats) is stats


def test_status_readings_run_side_by_side(tmp_path, fake_driver, monkeypatch) -> None:
    # NVML is thread-safe and a reading waits 20 ms per PCIe counter: two readings (two workers,
    # e.g. /gpu/status/json and /v2/status) sample at the same time instead of one after the other
    fake = fake_driver(get_preset("workstation"), complete=True, extra=["sample_ms 300"])
    log = tmp_path / "calls.log"
    monkeypatch.setenv("NVLOW_FAKE_CALL_LOG", str(log))
    cache = native_cache(tmp_path, fake, "workstation")
    try:
        cache.snapshot()
        assert not cache.readings_wait()  # not known before a reading
        log.write_text("")
        results = []
        threads = [threading.Thread(target=lambda: results.append(cache.status()[1])) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        waits = cache.readings_wait()
    finally:
        cache.close()
    assert len(results) == 2 and results[0] == results[1] and results[0][0].pcie_rx is not None
    assert waits
    assert max(samples_under_way(log.read_text())) == 4  # both readings' rx and tx


class _StepClock:
    """A clock that moves ``step`` seconds at every look (a reading's measured time is one step)."""

    def __init__(self) -> None:
        self.now, self.step = 0.0, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_readings_are_quick_after_a_quick_reading_of_the_kept_snapshot(tmp_path, fake_driver) -> None:
    from nvlow.serve.cache import QUICK_READING_SECONDS

    fake = fake_driver(get_preset("workstation"), complete=True)
    clock = _StepClock()
    cache = native_cache(tmp_path, fake, "workstation", clock=clock)
    try:
        cache.snapshot()
        assert not cache.readings_quick()  # not known before a reading
        clock.step = QUICK_READING_SECONDS / 10
        cache.status()
        assert cache.readings_quick()
        clock.step = QUICK_READING_SECONDS * 2
        cache.status()
        assert not cache.readings_quick()  # slow (a real GPU's PCIe samples, a busy machine): the workers
        clock.step = QUICK_READING_SECONDS / 10
        cache.status()
        assert cache.readings_quick()
        version = tmp_path / "root-workstation" / "proc" / "driver" / "nvidia" / "version"
        version.write_text(version.read_text().replace(".", "-", 1))
        assert not cache.readings_quick()  # a reading now would discover first
    finally:
        cache.close()
    no_nvml = DiscoveryCache(fake_root(tmp_path, "workstation"), None, use_nvml=False, load_uvm=False)
    assert not no_nvml.readings_quick()  # no discovery yet
    no_nvml.snapshot()
    assert no_nvml.readings_quick()  # nothing to read from a library


def test_library_use_readings_together_discovery_alone() -> None:
    from nvlow.serve.cache import _LibraryUse

    use = _LibraryUse()
    use.begin_reading()
    use.begin_reading()  # a second reading does not wait for the first
    alone = threading.Event()

    def discovery() -> None:
        with use:
            alone.set()

    t = threading.Thread(target=discovery)
    t.start()
    assert not alone.wait(0.2)  # waits for both readings
    late = threading.Event()
    reader = threading.Thread(target=lambda: (use.begin_reading(), late.set(), use.end_reading()))
    reader.start()
    assert not late.wait(0.2)  # a reading that comes while discovery waits queues behind it
    use.end_reading()
    assert not alone.wait(0.2)  # one reading still under way
    use.end_reading()
    assert alone.wait(10)
    t.join(10)
    assert late.wait(10)
    reader.join(10)


def test_1_0_global_used_counts_reserved_memory_as_1_0_read_it(tmp_path, fake_driver) -> None:
    # nvidia-docker 1.0 read nvmlDeviceGetMemoryInfo, whose "used" counts the memory the driver sets
    # aside (an H200 on driver 580: 618 MiB used with nothing running); nvlow's own status keeps
    # nvidia-smi's "Used" (allocations only, from the _v2 query)
    p = get_preset("workstation")
    reserved = 616 * MIB
    fake = fake_driver(p, complete=True, extra=[f"reserved {reserved}"])
    cache = native_cache(tmp_path, fake, "workstation")
    try:
        snap, (status,) = cache.status()
        doc = gpuinfo.status_document(snap.host, (status,))
    finally:
        cache.close()
    used = p.gpus[0].memory_used
    assert (status.memory_used, status.memory_reserved) == (used, reserved)
    assert doc["Devices"][0]["Memory"]["GlobalUsed"] == (used + reserved) // MIB
