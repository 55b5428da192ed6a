"""1.0 info/status documents, Go tabwriter text, Go JSON encoding, extended tables."""
from __future__ import annotations

import json

import pytest

from nvlow.model import DeviceNode, Gpu, Host
from nvlow.records import GpuRecord, GpuStatus, ProcessRecord
from nvlow.serve import gpuinfo

MIB = 1024 * 1024


@pytest.fixture()
def p100():
    g = Gpu(0, 0, "GPU-1234", "0000:05:00.0", "Tesla P100-PCIE-16GB", compute_capability="6.0",
            memory_total=16 * 1024 * MIB, node=DeviceNode("/r/dev/nvidia0", "/dev/nvidia0", 195, 0, "gpu"))
    r = GpuRecord(0, 0, "GPU-1234", "Tesla P100-PCIE-16GB", "00000000:05:00.0", power_limit=250000,
                  max_clocks_sm=1328, max_clocks_memory=715, multiprocessor_count=56, pcie_max_generation=3,
                  pcie_max_width=16, bar1_total=16 * 1024 * MIB)
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
            "Cores": 3584, "Memory": {"ECC": None, "Global": 16384, "Shared": None, "Constant": None,
                                      "L2Cache": None, "Bandwidth": None},
        }],
    }


def test_numa_minus_one_and_unknown_become_node_zero(p100):
    host, rec = p100
    assert gpuinfo.info_document(host, (rec,), {0: -1})["Devices"][0]["CPUAffinity"] == 0
    assert gpuinfo.info_document(host, (), {})["Devices"][0]["CPUAffinity"] == 0


INFO_TEXT = (
    "\nDriver version:          375.26\nSupported CUDA version:  8.0\n\nDevice #0\n"
    "  Model:         Tesla P100-PCIE-16GB\n  UUID:          GPU-1234\n  Path:          /dev/nvidia0\n"
    "  Family:        Pascal\n  Arch:          6.0\n  Cores:         3584\n  Power:         250 W\n"
    "  CPU Affinity:  NUMA node1\n  PCI\n    Bus ID:     00000000:05:00.0\n    BAR1:       16384 MiB\n"
    "    Bandwidth:  15760 MB/s\n  Memory\n    ECC:        N/A\n    Global:     16384 MiB\n"
    "    Constant:   N/A\n    Shared:     N/A\n    L2 Cache:   N/A\n    Bandwidth:  N/A\n  Clocks\n"
    "    Cores:        1328 MHz\n    Memory:       715 MHz\n  P2P Available:  None\n\n"
)


def test_info_text_matches_1_0_template(p100):
    host, rec = p100
    assert gpuinfo.info_text(gpuinfo.info_document(host, (rec,), {0: 1})) == INFO_TEXT


def test_status_documents_and_text(p100):
    host, rec = p100
    s = GpuStatus(0, power_usage=30123, temperature=40, utilization_gpu=5, utilization_memory=1,
                  memory_used=300 * MIB, clock_sm=405, clock_memory=715, pcie_rx=2000, pcie_tx=999,
                  processes=(ProcessRecord(42, "python", 256 * MIB),))
    sd = gpuinfo.status_document(host, (s,))
    assert json.loads(gpuinfo.go_json(sd)) == {"Devices": [{
        "Power": 30, "Temperature": 40,
        "Utilization": {"GPU": 5, "Memory": 1, "Encoder": None, "Decoder": None},
        "Memory": {"GlobalUsed": 300, "ECCErrors": {"L1Cache": None, "L2Cache": None, "Global": None}},
        "Clocks": {"Cores": 405, "Memory": 715},
        "PCI": {"BAR1Used": None, "Throughput": {"RX": 2, "TX": 0}},
        "Processes": [{"PID": 42, "Name": "python", "MemoryUsed": 256}],
    }]}
    info = gpuinfo.info_document(host, (rec,), {})
    assert gpuinfo.status_text(info, sd) == (
        "\nDevice #0\n  Power:        30 / 250 W\n  Temperature:  40 °C\n  Utilization\n    GPU:      5 %\n"
        "    Memory:   1 %\n    Encoder:  N/A\n    Decoder:  N/A\n  Memory\n    Global:  300 / 16384 MiB\n"
        "    ECC Errors\n      L1 Cache:  N/A\n      L2 Cache:  N/A\n      Global:    N/A\n  PCI\n"
        "    BAR1:  N/A\n    Throughput\n      RX:  2 MB/s\n      TX:  0 MB/s\n  Clocks\n"
        "    Cores:   405 MHz\n    Memory:  715 MHz\n  Processes\n    - PID:     42\n      Name:    python\n"
        "      Memory:  256 MiB\n\n")
    # no processes: Go's nil slice is null, the text says None
    empty = gpuinfo.status_document(host, ())
    assert empty["Devices"][0]["Processes"] is None and empty["Devices"][0]["Power"] is None
    assert "  Processes:  None\n" in gpuinfo.status_text(info, empty)
