"""nvlow status: document, table, unsupported fields as N/A/null, --watch, through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from nvlow.records import GpuRecord, GpuStatus, ProcessRecord
from nvlow.simulate.fakelib import SimulatedLibrary
from nvlow.simulate.presets import get_preset
from nvlow.host.status import format_status, read_status, status_document

MIB = 1024 * 1024


def test_document_fields_and_units():
    records = (GpuRecord(0, 0, "GPU-a", "NVIDIA A100", "00000000:07:00.0"),)
    statuses = (GpuStatus(0, power_usage=61500, power_limit=400000, temperature=33, utilization_gpu=5,
                          utilization_memory=1, utilization_encoder=0, utilization_decoder=0,
                          memory_used=512 * MIB, memory_total=40960 * MIB, clock_sm=1410, clock_memory=1215,
                          pcie_rx=100, pcie_tx=200,
                          processes=(ProcessRecord(4242, "python3", 300 * MIB), ProcessRecord(7, None, None))),)
    doc = status_document(records, statuses)
    g = doc["gpus"][0]
    assert doc["schema_version"] == 1
    assert (g["name"], g["uuid"], g["power_w"], g["power_limit_w"], g["temperature_c"]) == \
        ("NVIDIA A100", "GPU-a", 61.5, 400.0, 33)
    assert g["utilization"] == {"gpu": 5, "memory": 1, "encoder": 0, "decoder": 0}
    assert (g["memory_used_mib"], g["memory_total_mib"]) == (512, 40960)
    assert g["clocks_mhz"] == {"sm": 1410, "memory": 1215} and g["pcie_kbps"] == {"rx": 100, "tx": 200}
    assert g["processes"] == [{"pid": 4242, "name": "python3", "memory_used_mib": 300},
                              {"pid": 7, "name": None, "memory_used_mib": None}]
    text = format_status(doc)
    assert text.splitlines()[0].split() == ["GPU", "Name", "Temp", "Power/Limit", "GPU%", "Mem%", "Enc%", "Dec%",
                                            "Memory", "SM/Mem", "clk", "PCIe", "RX/TX"]
    assert "61.5/400.0 W" in text and "512/40960 MiB" in text and "1410/1215 MHz" in text
    assert "pid 4242" in text and "python3" in text and "pid 7" in text


def test_unsupported_fields_are_null_and_na():
    doc = status_document((GpuRecord(0, 0, None, None, None),), (GpuStatus(0),))
    g = doc["gpus"][0]
    assert g["power_w"] is None and g["temperature_c"] is None and g["utilization"]["gpu"] is None
    text = format_status(doc)
    row = text.splitlines()[1]
    assert row.split()[:4] == ["0", "N/A", "N/A", "N/A"]
    assert text.rstrip().endswith("Processes: none")


def test_simulated_workstation_status_matches_the_preset():
    preset = get_preset("workstation")
    doc = read_status(SimulatedLibrary(preset))
    g = doc["gpus"][0]
    sim = preset.gpus[0]
    assert g["temperature_c"] == sim.temperature
    assert g["power_limit_w"] == sim.power_limit / 1000
    assert [p["pid"] for p in g["processes"]] == [p.pid for p in sim.processes]


def _nvlow(tmp_path, *args):
    env = dict(os.environ, NVLOW_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "nvlow", *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli_json_watch_and_errors(tmp_path):
    res = _nvlow(tmp_path, "status", "--simulate", "dgx-a100", "--json", "--watch", "0.05", "--count", "3")
    assert res.returncode == 0, res.stderr
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(docs) == 3 and all(len(d["gpus"]) == 8 for d in docs)
    res = _nvlow(tmp_path, "status", "--simulate", "dgx-a100")
    assert res.returncode == 0 and res.stdout.count("NVIDIA A100-SXM4-40GB") == 8
    res = _nvlow(tmp_path, "status", "--simulate", "no-driver")
    assert res.returncode == 1 and "nvlow: error: cannot load libnvidia-ml.so.1" in res.stderr
    assert "Traceback" not in res.stderr
    res = _nvlow(tmp_path, "status", "--simulate", "dgx-a100", "--watch", "0")
    assert res.returncode == 2 and "--watch needs a positive number" in res.stderr
