"""bench/gpu_check.py (the real-GPU check's comparison logic) and bench/gpu-check.sh in fake mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from benchscripts import load
from nvlow.simulate.presets import get_preset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data", "nvidia-smi")
SCRIPT = os.path.join(REPO, "bench", "gpu-check.sh")
MiB = 1024 * 1024


gc = load("gpu_check")


def _read(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8") as fh:
        return fh.read()


def _nvlow_info(preset: str) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "nvlow", "info", "--json", "--simulate", preset],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, timeout=120)
    return json.loads(out.stdout)


def _all_rows(mine: Dict[str, Any], outputs: Dict[str, str]) -> List[Dict[str, Any]]:
    return (gc.compare_views(mine, gc.parse_smi_xml(outputs["xml"]))
            + gc.compare_views(mine, gc.parse_smi_list(outputs["list"]))
            + gc.compare_views(mine, gc.parse_smi_query_cc(outputs["cc"])))


# ----------------------------------------------------------------------------- normalisers
@pytest.mark.parametrize("text, want", [
    ("00000000:0F:00.0", "0000:0f:00.0"),
    ("0000:0f:00.0", "0000:0f:00.0"),
    ("0F:00.0", "0000:0f:00.0"),
    ("f:0.0", "0000:0f:00.0"),
    ("00000001:C1:00.1", "0001:c1:00.1"),
    (" 0000:07:00.0\n", "0000:07:00.0"),
    ("GPU-abc", "gpu-abc"),
    (None, None),
])
def test_norm_bus_id(text: Any, want: Any) -> None:
    assert gc.norm_bus_id(text) == want


@pytest.mark.parametrize("text, want", [
    ("NVIDIA", "nvidia"), ("NVIDIA RTX", "nvidiartx"), ("Quadro RTX", "quadrortx"), ("GeForce", "geforce"),
    ("GEFORCE_RTX", "geforcertx"), ("NVIDIA_VAPPS", "vapps"), ("Tesla", "tesla"), (None, None),
])
def test_norm_brand(text: Any, want: Any) -> None:
    assert gc.norm_brand(text) == want


@pytest.mark.parametrize("text, want", [
    ("Ada Lovelace", "ada"), ("Hopper", "hopper"), ("ADA", "ada"), ("ampere", "ampere"), (None, None),
])
def test_norm_architecture(text: Any, want: Any) -> None:
    assert gc.norm_architecture(text) == want


@pytest.mark.parametrize("value, want", [
    (True, "enabled"), (False, "disabled"), ("Enabled", "enabled"), ("Disabled", "disabled"),
    ("N/A", "disabled"), (None, None),
])
def test_norm_mig_mode(value: Any, want: Any) -> None:
    assert gc.norm_mig_mode(value) == want


def test_mig_instances_sort_numerically() -> None:
    assert gc.mig_instances([(10, 0), (7, 0), (2, 1), (2, 0)]) == ["2/0", "2/1", "7/0", "10/0"]


# ----------------------------------------------------------------------------- parsers
def test_parse_h100_sample() -> None:
    view = gc.parse_smi_xml(_read("h100-sxm5-550.54.15.xml"))
    assert (view["driver_version"], view["cuda_version"], view["count"]) == ("550.54.15", "12.4", 2)
    assert view["gpus"][1] == {
        "index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-8b41d7e2-0c5f-4e93-a61d-7f2e9c3b5a14",
        "bus_id": "0000:3b:00.0", "minor": 1, "memory_total_mib": 81559, "memory_reserved_mib": 328,
        "mig_mode": "disabled", "mig_instances": [], "persistence_mode": True, "brand": "nvidia",
        "architecture": "hopper",
    }


def test_parse_a100_mig_sample() -> None:
    view = gc.parse_smi_xml(_read("a100-sxm4-mig-535.129.03.xml"))
    assert (view["driver_version"], view["cuda_version"], view["count"]) == ("535.129.03", "12.2", 2)
    g0, g1 = view["gpus"]
    assert (g0["mig_mode"], g0["mig_instances"], g0["bus_id"], g0["minor"]) == (
        "enabled", ["1/0", "2/0"], "0000:07:00.0", 0)
    assert (g1["mig_mode"], g1["mig_instances"], g1["memory_total_mib"], g1["memory_reserved_mib"]) == (
        "disabled", [], 40960, 634)
    assert "compute_capability" not in g0  # these drivers do not print it in -q -x


def test_parse_compute_cap_when_the_xml_has_it() -> None:
    text = _read("h100-sxm5-550.54.15.xml").replace(
        "<product_name>", "<compute_cap>9.0</compute_cap>\n\t\t<product_name>", 1)
    assert gc.parse_smi_xml(text)["gpus"][0]["compute_capability"] == "9.0"


def test_parse_smi_list_with_mig() -> None:
    view = gc.parse_smi_list(_read("a100-sxm4-mig-535.129.03.L.txt"))
    assert view["count"] == 2
    assert view["gpus"][0] == {
        "index": 0, "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-6d1e4c0b-2f8a-4e5d-b3c7-9a0f1e2d3c4b",
        "mig_uuids": ["MIG-4a9f0e1d-7c2b-5e8a-b6d3-0f1e2a3b4c5d", "MIG-e7b3c1a9-0d4f-5b2e-8a6c-1f3d5b7a9c0e"],
        "mig_names": ["3g.20gb", "3g.20gb"],
    }
    assert view["gpus"][1]["mig_uuids"] == []


def test_parse_smi_list_r470_mig_uuid_form() -> None:
    text = ("GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n"
            "  MIG 3g.20gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0)\n")
    assert gc.parse_smi_list(text)["gpus"][0]["mig_uuids"] == ["MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0"]


def test_parse_query_cc_ignores_errors() -> None:
    assert gc.parse_smi_query_cc("0, 9.0\n1, 9.0\n")["gpus"] == [
        {"index": 0, "compute_capability": "9.0"}, {"index": 1, "compute_capability": "9.0"}]
    assert gc.parse_smi_query_cc('Field "compute_cap" is not a valid field to query.\n')["gpus"] == []


# ----------------------------------------------------------------------------- comparisons on the samples
def _a100_info() -> Dict[str, Any]:
    """What nvlow info --json says on the A100 sample's host (NVML's v1 total for GPU 1 excludes
    the reserved memory; GPU 0's equals nvidia-smi's total)."""
    def gpu(i: int, uuid: str, bus: str, mem_mib: int, migs: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"index": i, "minor": i, "uuid": uuid, "bus_id": bus, "name": "NVIDIA A100-SXM4-40GB",
                "brand": "nvidia", "architecture": "ampere", "compute_capability": "8.0",
                "memory_total": mem_mib * MiB, "persistence_mode": True, "mig_enabled": bool(migs),
                "mig_devices": migs}
    migs = [{"uuid": "MIG-4a9f0e1d-7c2b-5e8a-b6d3-0f1e2a3b4c5d", "index": 0, "gpu_instance_id": 1,
             "compute_instance_id": 0, "name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb"},
            {"uuid": "MIG-e7b3c1a9-0d4f-5b2e-8a6c-1f3d5b7a9c0e", "index": 1, "gpu_instance_id": 2,
             "compute_instance_id": 0, "name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb"}]
    return {"schema_version": 1, "driver_version": "535.129.03", "cuda_version": "12.2", "source": "nvml",
            "gpus": [gpu(0, "GPU-6d1e4c0b-2f8a-4e5d-b3c7-9a0f1e2d3c4b", "0000:07:00.0", 40960, migs),
                     gpu(1, "GPU-c2a7e9f1-5b3d-4a6c-8e0f-2d4b6a8c0e1f", "0000:0f:00.0", 40960 - 634, [])]}


def _sample_rows(info: Dict[str, Any]) -> List[Dict[str, Any]]:
    mine = gc.view_from_nvlow_info(info)
    return (gc.compare_views(mine, gc.parse_smi_xml(_read("a100-sxm4-mig-535.129.03.xml")))
            + gc.compare_views(mine, gc.parse_smi_list(_read("a100-sxm4-mig-535.129.03.L.txt"))))


def test_matching_info_has_no_mismatch_on_the_a100_sample() -> None:
    rows = _sample_rows(_a100_info())
    assert [r for r in rows if r["status"] != "match"] == []
    fields = {(r["oracle"], r["gpu"], r["field"]) for r in rows}
    assert ("nvidia-smi -q -x", None, "count") in fields
    assert ("nvidia-smi -q -x", 0, "mig_instances") in fields
    assert ("nvidia-smi -L", 0, "mig_uuids") in fields
    assert ("nvidia-smi -L", 0, "mig_names") in fields
    mem = [r for r in rows if r["field"] == "memory_total_mib"]
    assert [(r["gpu"], r["nvlow"], r["oracle_value"], r["note"]) for r in mem] == [
        (0, 40960, 40960, ""), (1, 40326, 40960, "nvidia-smi total minus reserved 634 MiB")]


def test_altered_uuid_is_an_identity_mismatch_with_both_values() -> None:
    info = _a100_info()
    info["gpus"][1]["uuid"] = "GPU-00000000-0000-0000-0000-000000000000"
    failures = gc.identity_failures(_sample_rows(info))
    assert [(r["oracle"], r["gpu"], r["field"], r["nvlow"], r["oracle_value"]) for r in failures] == [
        ("nvidia-smi -q -x", 1, "uuid", "GPU-00000000-0000-0000-0000-000000000000",
         "GPU-c2a7e9f1-5b3d-4a6c-8e0f-2d4b6a8c0e1f"),
        ("nvidia-smi -L", 1, "uuid", "GPU-00000000-0000-0000-0000-000000000000",
         "GPU-c2a7e9f1-5b3d-4a6c-8e0f-2d4b6a8c0e1f"),
    ]


@pytest.mark.parametrize("change, field", [
    (lambda i: i["gpus"][0].update(bus_id="0000:08:00.0"), "bus_id"),
    (lambda i: i["gpus"][0].update(minor=5), "minor"),
    (lambda i: i["gpus"][0].update(memory_total=20000 * MiB), "memory_total_mib"),
    (lambda i: i["gpus"][0].update(mig_enabled=False), "mig_mode"),
    (lambda i: i["gpus"][0]["mig_devices"].pop(), "mig_instances"),
    (lambda i: i.update(driver_version="535.129.04"), "driver_version"),
    (lambda i: i.update(cuda_version="12.3"), "cuda_version"),
    (lambda i: i["gpus"].pop(), "count"),
])
def test_each_identity_field_fails_when_it_differs(change: Any, field: str) -> None:
    info = _a100_info()
    change(info)
    assert field in {r["field"] for r in gc.identity_failures(_sample_rows(info))}


def test_info_fields_are_reported_but_do_not_fail() -> None:
    info = _a100_info()
    info["gpus"][0]["persistence_mode"] = False
    info["gpus"][0]["brand"] = "tesla"
    rows = _sample_rows(info)
    assert gc.identity_failures(rows) == []
    assert {(r["field"], r["status"]) for r in rows if r["status"] == "mismatch"} == {
        ("persistence_mode", "mismatch"), ("brand", "mismatch")}


def test_mig_na_on_a_gpu_without_mig_matches_disabled() -> None:
    mine = {"gpus": [{"index": 0, "mig_mode": gc.norm_mig_mode(None)}]}
    assert gc.compare_views(mine, {"source": "x", "gpus": [{"index": 0, "mig_mode": "disabled"}]},
                            ["mig_mode"])[0]["status"] == "mismatch"  # nvlow not knowing is a mismatch
    mine = {"gpus": [{"index": 0, "mig_mode": gc.norm_mig_mode(False)}]}
    assert gc.compare_views(mine, {"source": "x", "gpus": [{"index": 0, "mig_mode": gc.norm_mig_mode("N/A")}]},
                            ["mig_mode"])[0]["status"] == "match"


def test_oracle_without_a_value_is_not_compared() -> None:
    rows = gc.compare_views({"gpus": [{"index": 0, "minor": 3}]},
                            {"source": "x", "gpus": [{"index": 0, "minor": None}]}, ["minor"])
    assert [(r["status"], r["note"]) for r in rows] == [("n/a", "oracle does not report it")]


# ----------------------------------------------------------------------------- simulated presets
@pytest.mark.parametrize("preset", ["dgx-a100", "dgx-h100-mig", "workstation"])
def test_simulated_preset_matches_its_generated_nvidia_smi(preset: str) -> None:
    mine = gc.view_from_nvlow_info(_nvlow_info(preset))
    rows = _all_rows(mine, gc.smi_outputs_from_preset(get_preset(preset)))
    assert [r for r in rows if r["status"] != "match"] == []
    gpus = len(get_preset(preset).gpus)
    fields_per_gpu = 10 + 4 + 1  # -q -x (no compute cap), -L, --query-gpu
    assert len(rows) == 3 + 1 + gpus * fields_per_gpu  # driver, CUDA, count twice (-q -x and -L)


def test_simulated_preset_with_an_altered_uuid_mismatches() -> None:
    preset = get_preset("dgx-a100")
    outputs = gc.smi_outputs_from_preset(preset)
    outputs["xml"] = outputs["xml"].replace(preset.gpus[3].uuid, "GPU-deadbeef-0000-0000-0000-000000000000")
    failures = gc.identity_failures(_all_rows(gc.view_from_nvlow_info(_nvlow_info("dgx-a100")), outputs))
    assert [(r["oracle"], r["gpu"], r["field"], r["nvlow"], r["oracle_value"]) for r in failures] == [
        ("nvidia-smi -q -x", 3, "uuid", preset.gpus[3].uuid, "GPU-deadbeef-0000-0000-0000-000000000000")]


# ----------------------------------------------------------------------------- pynvml (a stand-in module)
class _NVMLError(Exception):
    pass


def _fake_pynvml(preset_name: str) -> Any:
    """A stand-in for the pynvml module (nvidia-ml-py), answering from a preset; the string
    functions return bytes, as older nvidia-ml-py releases do."""
    p = get_preset(preset_name)
    calls: List[str] = []

    def dev(h: Any) -> Any:
        return p.gpus[h[1]] if h[0] == "gpu" else None

    def mig(h: Any) -> Any:
        return p.gpus[h[1]].migs[h[2]]

    def max_mig(h: Any) -> int:
        return 7

    def mig_handle(h: Any, slot: int) -> Any:
        if slot >= len(dev(h).migs):
            raise _NVMLError("NVML_ERROR_NOT_FOUND")
        return ("mig", h[1], slot)

    def mig_mode(h: Any) -> List[int]:
        g = dev(h)
        if g.brand == 5:
            raise _NVMLError("NVML_ERROR_NOT_SUPPORTED")
        return [int(g.mig_mode), int(g.mig_mode)]

    return SimpleNamespace(
        calls=calls,
        NVML_BRAND_NVIDIA=14, NVML_BRAND_GEFORCE=5, NVML_BRAND_COUNT=18,
        NVML_DEVICE_ARCH_AMPERE=7, NVML_DEVICE_ARCH_ADA=8, NVML_DEVICE_ARCH_HOPPER=9,
        nvmlInit=lambda: calls.append("init"), nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: p.driver_version.encode(),
        nvmlSystemGetCudaDriverVersion=lambda: p.cuda_version,
        nvmlDeviceGetCount=lambda: len(p.gpus),
        nvmlDeviceGetHandleByIndex=lambda i: ("gpu", i),
        nvmlDeviceGetName=lambda h: dev(h).name.encode(),
        nvmlDeviceGetUUID=lambda h: (dev(h).uuid if h[0] == "gpu" else mig(h).uuid).encode(),
        nvmlDeviceGetPciInfo=lambda h: SimpleNamespace(busId=dev(h).bus_id.encode()),
        nvmlDeviceGetMinorNumber=lambda h: dev(h).minor,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=dev(h).memory_total),
        nvmlDeviceGetCudaComputeCapability=lambda h: (dev(h).cc_major, dev(h).cc_minor),
        nvmlDeviceGetMigMode=mig_mode,
        nvmlDeviceGetBrand=lambda h: dev(h).brand,
        nvmlDeviceGetArchitecture=lambda h: dev(h).architecture,
        nvmlDeviceGetPersistenceMode=lambda h: int(dev(h).persistence_mode),
        nvmlDeviceGetMaxMigDeviceCount=max_mig,
        nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
        nvmlDeviceGetGpuInstanceId=lambda h: mig(h).gi,
        nvmlDeviceGetComputeInstanceId=lambda h: mig(h).ci,
    )


@pytest.mark.parametrize("preset", ["dgx-h100-mig", "workstation"])
def test_pynvml_view_matches_nvlow(preset: str) -> None:
    module = _fake_pynvml(preset)
    theirs = gc.view_from_pynvml(module)
    assert module.calls == ["init", "shutdown"]
    rows = gc.compare_views(gc.view_from_nvlow_info(_nvlow_info(preset)), theirs)
    assert [r for r in rows if r["status"] != "match"] == []
    assert len(rows) == 3 + len(get_preset(preset).gpus) * 12


def test_pynvml_view_of_a_mig_gpu() -> None:
    g1 = gc.view_from_pynvml(_fake_pynvml("dgx-h100-mig"))["gpus"][1]
    assert (g1["mig_mode"], g1["mig_instances"], g1["brand"], g1["architecture"], g1["bus_id"]) == (
        "enabled", ["1/0", "2/0", "2/1"], "nvidia", "hopper", "0000:2a:00.0")


def test_pynvml_shuts_down_when_a_call_raises() -> None:
    module = _fake_pynvml("dgx-a100")

    def broken() -> int:
        raise _NVMLError("NVML_ERROR_UNKNOWN")

    module.nvmlDeviceGetCount = broken
    with pytest.raises(_NVMLError):
        gc.view_from_pynvml(module)
    assert module.calls == ["init", "shutdown"]


# ----------------------------------------------------------------------------- paths, timings, report
def test_missing_paths(tmp_path: Any) -> None:
    present = tmp_path / "lib.so"
    present.write_text("x")
    dangling = tmp_path / "dangling"
    os.symlink(str(tmp_path / "nowhere"), str(dangling))
    assert gc.missing_paths([str(present), str(tmp_path / "gone"), str(dangling), "/dev/null"]) == [
        f"{tmp_path}/gone: missing", f"{dangling}: dangling or unreadable"]
    assert gc.missing_paths([str(present), "/dev/null"], want_char_devices=True) == [
        f"{present}: not a character device"]


def test_args_paths_skip_named_volumes() -> None:
    doc = {"devices": [{"host_path": "/dev/nvidiactl", "container_path": "/dev/nvidiactl"}],
           "mounts": [{"host_path": "/usr/bin/nvidia-smi", "kind": "bind"},
                      {"host_path": "nvidia_driver_550.54.15", "kind": "volume"}]}
    assert gc.args_paths(doc) == (["/dev/nvidiactl"], ["/usr/bin/nvidia-smi"])


def test_timing_table_ratios() -> None:
    table = gc.timing_table({"nvidia-smi -L": 0.040, "nvlow args": 0.030, "NVML": None}, "nvidia-smi -L")
    assert table == [
        {"figure": "nvidia-smi -L", "median_ms": 40.0, "ratio": 1.0, "baseline": "nvidia-smi -L"},
        {"figure": "nvlow args", "median_ms": 30.0, "ratio": 0.75, "baseline": "nvidia-smi -L"},
        {"figure": "NVML", "median_ms": None, "ratio": None, "baseline": "nvidia-smi -L"},
    ]


def test_measure_takes_medians_and_drops_failing_cases() -> None:
    values = iter([1.0, 5.0, 3.0])

    def fails() -> float:
        raise OSError("no library")

    assert gc.measure({"a": lambda: next(values), "b": fails}, 3) == {"a": 3.0, "b": None}


def _result(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"hostname": "gpu-box", "date": "2024-03-19 10:12 UTC", "verdict": "FAIL", "verdict_reason": "x",
            "mode": "real GPU", "gpu_summary": "2 x NVIDIA A100-SXM4-40GB", "driver_version": "535.129.03",
            "cuda_version": "12.2", "nvlow_version": "0.1.0", "python": "3.11.7", "kernel": "6.1.0",
            "setup": {"install": "pip"}, "comparisons": rows, "oracles_skipped": {"pynvml": "not installed"},
            "commands": [{"argv": "nvlow info --json", "rc": 0}],
            "paths": {"nvlow list": {"count": 2, "missing": ["/dev/nvidia9: missing"]}},
            "doctor": [{"check": "kernel module", "status": "ok", "message": "nvidia 535.129.03 loaded"}],
            "runs": 5, "timings": gc.timing_table({"nvidia-smi -L": 0.04, "nvlow args": 0.03}, "nvidia-smi -L"),
            "timing_notes": {}}


def test_report_shows_both_values_and_round_trips() -> None:
    info = _a100_info()
    info["gpus"][1]["uuid"] = "GPU-00000000-0000-0000-0000-000000000000"
    info["gpus"][0]["brand"] = "tesla"
    result = _result(_sample_rows(info))
    text = gc.render_report(result)
    assert text.startswith("# nvlow GPU check: gpu-box, 2024-03-19 10:12 UTC\n")
    assert ("| nvidia-smi -q -x | 1 | uuid | GPU-00000000-0000-0000-0000-000000000000 | "
            "GPU-c2a7e9f1-5b3d-4a6c-8e0f-2d4b6a8c0e1f | mismatch |") in text
    assert "| nvidia-smi -q -x | 0 | brand | tesla | nvidia | differs (info) |" in text
    assert ("| nvidia-smi -q -x | 1 | memory_total_mib | 40326 | 40960 | "
            "match (nvidia-smi total minus reserved 634 MiB) |") in text
    assert "- nvlow list: 2 paths, 1 bad: /dev/nvidia9: missing" in text
    assert "| nvlow args | 30.0 | 0.75 |" in text
    assert "pynvml: skipped (not installed)" in text
    assert gc.result_from_report(text) == json.loads(json.dumps(result))


# ----------------------------------------------------------------------------- the fake nvidia-smi and the CLI
def test_fake_smi_answers_like_nvidia_smi(tmp_path: Any) -> None:
    smi = gc.write_fake_smi(str(tmp_path / "bin"), get_preset("dgx-h100-mig"))

    def run(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run([smi, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)

    listing = run("-L").stdout.splitlines()
    assert listing[:2] == [
        f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {get_preset('dgx-h100-mig').gpus[0].uuid})",
        f"  MIG 1g.10gb       Device  0: (UUID: {get_preset('dgx-h100-mig').gpus[0].migs[0].uuid})"]
    assert gc.parse_smi_xml(run("-q", "-x").stdout)["count"] == 8
    assert run(*gc.QUERY_CC_ARGS).stdout.splitlines()[0] == "0, 9.0"
    bad = run("--query-gpu=power.draw")
    assert (bad.returncode, bad.stderr) == (2, "fake nvidia-smi: unsupported arguments: --query-gpu=power.draw\n")


def _gpu_check_cli(tmp_path: Any, smi: str, *extra: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "gpu_check.py"), "--report", str(tmp_path / "r.md"),
         "--smi", smi, "--runs", "1", "--simulate", "dgx-a100", "--no-pynvml", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)


def test_cli_fails_on_an_altered_uuid(tmp_path: Any) -> None:
    preset = get_preset("dgx-a100")
    smi = gc.write_fake_smi(str(tmp_path / "bin"), preset)
    xml = tmp_path / "bin" / "smi-q-x.xml"
    xml.write_text(xml.read_text().replace(preset.gpus[5].uuid, "GPU-feedface-0000-0000-0000-000000000000"))
    proc = _gpu_check_cli(tmp_path, smi, "--setup", "install=test")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[0] == ("gpu_check: FAIL: 1 identity mismatch(es): "
                                           "nvidia-smi -q -x GPU 5 uuid")
    result = gc.result_from_report((tmp_path / "r.md").read_text())
    assert (result["verdict"], result["setup"]) == ("FAIL", {"install": "test"})
    assert {c["argv"].split()[1] for c in result["commands"] if "nvlow" in c["argv"]} >= {
        "info", "list", "args", "doctor"}


def test_cli_without_nvidia_smi_exits_2(tmp_path: Any) -> None:
    proc = _gpu_check_cli(tmp_path, str(tmp_path / "no-such-nvidia-smi"))
    assert proc.returncode == 2
    assert proc.stderr == (f"gpu_check: {tmp_path}/no-such-nvidia-smi: not found "
                           "(put nvidia-smi on PATH or pass --smi)\n")
    assert not (tmp_path / "r.md").exists()


# ----------------------------------------------------------------------------- gpu-check.sh end to end
def _script(tmp_path: Any, extra_env: Dict[str, str]) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    env = dict(os.environ, NVLOW_GPU_CHECK_FAKE="1", NVLOW_GPU_CHECK_RUNS="2", TMPDIR=str(tmp_path),
               NVLOW_GPU_CHECK_PYTHON=sys.executable)
    env.update(extra_env)
    return subprocess.run(["bash", SCRIPT, str(tmp_path / "report.md")], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)


@pytest.mark.slow
def test_script_fake_mode_end_to_end(tmp_path: Any, fake_driver: Any) -> None:
    # the compiled fake NVML stands in for the driver in the in-process NVML timing
    driver = fake_driver(get_preset("dgx-a100"))
    proc = _script(tmp_path, driver.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("gpu_check: PASS: ")
    result = gc.result_from_report((tmp_path / "report.md").read_text())
    assert result["verdict"] == "PASS"
    assert result["mode"].startswith("FAKE: simulated preset dgx-a100")
    assert result["gpu_summary"] == "8 x NVIDIA A100-SXM4-40GB"
    assert result["setup"]["install"]  # how nvlow got installed is on record
    assert result["setup"]["nvidia-smi"] == "generated from preset dgx-a100"
    assert gc.identity_failures(result["comparisons"]) == []
    assert {r["oracle"] for r in result["comparisons"]} == {
        "nvidia-smi -q -x", "nvidia-smi -L", "nvidia-smi --query-gpu"}
    assert all(not p["missing"] and p["count"] > 0 for p in result["paths"].values())
    assert {c["check"] for c in result["doctor"]} >= {"kernel module", "device nodes"}
    timings = {t["figure"]: t for t in result["timings"]}
    assert set(timings) == {"nvidia-smi -L", "nvlow args", "python -c pass",
                            "NVML init+shutdown (nvlow binding, in-process)"}
    assert all(t["median_ms"] is not None and t["ratio"] is not None for t in timings.values())
    assert timings["nvidia-smi -L"]["ratio"] == 1.0
    # the temporary venv is gone
    assert [p for p in os.listdir(str(tmp_path)) if p.startswith("nvlow-gpu-check.")] == []


@pytest.mark.slow
def test_script_without_dependencies_or_wheels_exits_2(tmp_path: Any) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # a venv's python with --system-site-packages sees only the base interpreter's packages:
    # make sure typer is not among them, or this case cannot happen here
    probe = subprocess.run([str(bare / "bin" / "python"), "-c", "import typer"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("the base interpreter has typer installed")
    proc = _script(tmp_path, {"NVLOW_GPU_CHECK_PYTHON": str(bare / "bin" / "python"),
                              "NVLOW_GPU_CHECK_WHEELS": str(wheels)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "gpu-check: error: cannot install nvlow offline: cffi and typer-slim are not importable and "
        "bench/wheels lacks them (see bench/wheels/README.md)")


@pytest.mark.slow
def test_script_real_mode_reports_what_nvlow_cannot_see(tmp_path: Any, fake_driver: Any) -> None:
    """Real mode (no NVLOW_GPU_CHECK_FAKE) on this GPU-less machine: the compiled fake NVML is
    given through NVLOW_NVML_LIBRARY and a generated nvidia-smi is first on PATH, but /proc has no
    nvidia driver, so nvlow refuses; the script still writes the report, with nvidia-smi's facts,
    the reason once (not a mismatch per field) and exit 1."""
    if os.path.exists("/proc/driver/nvidia/version"):
        pytest.skip("this machine has a real NVIDIA driver")
    driver = fake_driver(get_preset("dgx-a100"))
    smi = gc.write_fake_smi(str(tmp_path / "fake-bin"), get_preset("dgx-a100"))
    env = dict(driver.env, NVLOW_GPU_CHECK_FAKE="0", PATH=f"{tmp_path / 'fake-bin'}:{os.environ['PATH']}")
    proc = _script(tmp_path, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = gc.result_from_report((tmp_path / "report.md").read_text())
    assert (result["mode"], result["gpu_summary"], result["driver_version"]) == (
        "real GPU", "8 x NVIDIA A100-SXM4-40GB", "550.54.15")
    assert result["setup"]["nvml"] == f"NVLOW_NVML_LIBRARY={driver.env['NVLOW_NVML_LIBRARY']} (given)"
    assert result["setup"]["nvidia-smi"] == smi
    assert result["comparisons"] == []
    info = result["commands"][0]
    assert info["argv"].endswith("nvlow info --json") and info["rc"] == 1
    assert info["problem"].startswith("no JSON on stdout: nvlow: error: NVIDIA kernel module not loaded")
    assert result["verdict_reason"].startswith(info["argv"] + ": no JSON on stdout")
    kernel = [c for c in result["doctor"] if c["check"] == "kernel module"]
    assert [c["status"] for c in kernel] == ["fail"]
    timings = {t["figure"]: t["median_ms"] for t in result["timings"]}
    assert timings["NVML init+shutdown (nvlow binding, in-process)"] is not None
    assert timings["nvlow args"] is None
    assert result["timing_notes"]["nvlow args"] == "not measured: it failed (see Commands)"
