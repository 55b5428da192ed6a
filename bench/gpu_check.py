"""The real-GPU check: nvlow's view of the host beside nvidia-smi's (and pynvml's), one report.

    python bench/gpu_check.py --report FILE [--nvlow CMD] [--smi PATH] [--runs N]
                              [--simulate PRESET] [--no-pynvml] [--setup KEY=VALUE ...]
    python bench/gpu_check.py --write-fake-smi DIR --preset PRESET

Normally started by ``bench/gpu-check.sh``, which installs nvlow offline and finds the
driver first. Standard library only: nvidia-smi and pynvml are oracles here, never
dependencies of nvlow. The comparison is pure functions (parse text -> view dict,
compare two views -> rows) so ``tests/test_gpu_check.py`` checks it without a GPU.

A *view* is ``{"driver_version", "cuda_version", "count", "gpus": [{field: value}]}``;
a GPU field an oracle does not report is absent or None and is not compared.
Exit status: 0 every identity field matches and every path nvlow names exists,
1 something mismatched or is missing, 2 the check could not run (no nvidia-smi).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import socket
import stat
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

View = Dict[str, Any]
Row = Dict[str, Any]

#: fields whose mismatch fails the check; the others are reported only
IDENTITY_FIELDS = ("count", "driver_version", "cuda_version", "name", "uuid", "bus_id", "minor",
                   "memory_total_mib", "compute_capability", "mig_mode", "mig_instances", "mig_uuids")
INFO_FIELDS = ("persistence_mode", "brand", "architecture", "mig_names")
SYSTEM_FIELDS = ("count", "driver_version", "cuda_version")

#: per-oracle GPU fields (what that oracle can tell)
ORACLE_FIELDS: Dict[str, Tuple[str, ...]] = {
    "nvidia-smi -q -x": ("name", "uuid", "bus_id", "minor", "memory_total_mib", "compute_capability",
                         "mig_mode", "mig_instances", "persistence_mode", "brand", "architecture"),
    "nvidia-smi -L": ("name", "uuid", "mig_uuids", "mig_names"),
    "nvidia-smi --query-gpu": ("compute_capability",),
    "pynvml": ("name", "uuid", "bus_id", "minor", "memory_total_mib", "compute_capability", "mig_mode",
               "mig_instances", "mig_uuids", "persistence_mode", "brand", "architecture"),
}

MiB = 1024 * 1024
QUERY_CC_ARGS = ("--query-gpu=index,compute_cap", "--format=csv,noheader")


# ----------------------------------------------------------------------------- normalisers
def norm_bus_id(text: Optional[str]) -> Optional[str]:
    """PCI bus id in one spelling, whatever the domain width and case.

    >>> [norm_bus_id(t) for t in ("00000000:0F:00.0", "0000:0f:00.0", "0F:00.0", "junk")]
    ['0000:0f:00.0', '0000:0f:00.0', '0000:0f:00.0', 'junk']
    """
    if text is None:
        return None
    raw = text.strip()
    m = re.fullmatch(r"(?:([0-9A-Fa-f]{1,8}):)?([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-7])", raw)
    if not m:
        return raw.lower()
    domain, bus, dev, fn = m.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{fn}"


def norm_brand(text: Optional[str]) -> Optional[str]:
    """Brand as one token: nvidia-smi's "NVIDIA RTX", pynvml's NVML_BRAND_NVIDIA_RTX and nvlow's
    "nvidiartx" all become "nvidiartx"; NVML's NVIDIA_V* virtualisation brands lose the prefix."""
    if text is None:
        return None
    token = re.sub(r"[\s_\-]", "", text.lower())
    if token.startswith("nvmlbrand"):
        token = token[len("nvmlbrand"):]
    if token.startswith("nvidia") and token[6:] in ("vapps", "vpc", "vcs", "vws", "cloudgaming"):
        token = token[6:]
    return token


def norm_architecture(text: Optional[str]) -> Optional[str]:
    """First word, lower case: "Ada Lovelace" -> "ada", NVML_DEVICE_ARCH_HOPPER -> "hopper"."""
    if text is None:
        return None
    token = text.strip().lower()
    if token.startswith("nvml_device_arch_"):
        token = token[len("nvml_device_arch_"):]
    return token.split()[0] if token.split() else None


def norm_mig_mode(value: Any) -> Optional[str]:
    """"enabled"/"disabled"; N/A (a GPU without MIG) counts as disabled, unknown is None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "enabled" if value else "disabled"
    text = str(value).strip().lower()
    if text in ("enabled", "1", "true"):
        return "enabled"
    if text in ("disabled", "0", "false", "n/a", "not supported"):
        return "disabled"
    return text


def _text(el: Optional[ET.Element], path: str) -> Optional[str]:
    """Stripped text at ``path`` under ``el``; None when absent, empty or N/A."""
    if el is None:
        return None
    child = el.find(path)
    if child is None or child.text is None:
        return None
    text = child.text.strip()
    return None if text in ("", "N/A", "Not Supported", "[N/A]") else text


def _mib(text: Optional[str]) -> Optional[int]:
    m = re.match(r"(\d+)\s*MiB", text or "")
    return int(m.group(1)) if m else None


def mig_instances(pairs: Any) -> List[str]:
    """"GI/CI" strings in numeric order: [(7, 0), (10, 0)] -> ["7/0", "10/0"]."""
    def key(pair: Tuple[Any, Any]) -> Tuple[int, int]:
        return tuple(int(v) if str(v).isdigit() else -1 for v in pair)  # type: ignore[return-value]
    return [f"{gi}/{ci}" for gi, ci in sorted(pairs, key=key)]


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# ----------------------------------------------------------------------------- parsers (pure)
def parse_smi_xml(text: str) -> View:
    """The view of ``nvidia-smi -q -x`` output (GPUs in document order = NVML index order)."""
    root = ET.fromstring(text)  # expat never fetches the external DTD the document names
    gpus = []
    for index, g in enumerate(root.findall("gpu")):
        migs_el = g.find("mig_devices")
        instances = []
        if migs_el is not None:
            for m in migs_el.findall("mig_device"):
                instances.append((_text(m, "gpu_instance_id"), _text(m, "compute_instance_id")))
        persistence = _text(g, "persistence_mode")
        gpu: Dict[str, Any] = {
            "index": index,
            "name": _text(g, "product_name"),
            "uuid": _text(g, "uuid"),
            "bus_id": norm_bus_id(_text(g, "pci/pci_bus_id") or g.get("id")),
            "minor": _int(_text(g, "minor_number")),
            "memory_total_mib": _mib(_text(g, "fb_memory_usage/total")),
            "memory_reserved_mib": _mib(_text(g, "fb_memory_usage/reserved")),
            "mig_mode": norm_mig_mode(_text(g, "mig_mode/current_mig") or "N/A"),
            "mig_instances": mig_instances(instances),
            "persistence_mode": None if persistence is None else persistence.lower() == "enabled",
            "brand": norm_brand(_text(g, "product_brand")),
            "architecture": norm_architecture(_text(g, "product_architecture")),
        }
        # not in the documents of the drivers seen so far (R535-R575); compared when it appears
        cc = _text(g, "compute_cap") or _text(g, "compute_capability")
        if cc is not None:
            gpu["compute_capability"] = cc
        gpus.append(gpu)
    return {"source": "nvidia-smi -q -x", "driver_version": _text(root, "driver_version"),
            "cuda_version": _text(root, "cuda_version"),
            "count": _int(_text(root, "attached_gpus")) if root.find("attached_gpus") is not None else len(gpus),
            "gpus": gpus}


_GPU_LINE = re.compile(r"^GPU (\d+): (.*?) \(UUID: ([^)]+)\)\s*$")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]+)\)\s*$")


def parse_smi_list(text: str) -> View:
    """The view of ``nvidia-smi -L``: names and UUIDs of GPUs and their MIG devices."""
    gpus: List[Dict[str, Any]] = []
    for line in text.splitlines():
        m = _GPU_LINE.match(line)
        if m:
            gpus.append({"index": int(m.group(1)), "name": m.group(2), "uuid": m.group(3),
                         "mig_uuids": [], "mig_names": []})
            continue
        m = _MIG_LINE.match(line)
        if m and gpus:
            gpus[-1]["mig_uuids"].append(m.group(3))
            gpus[-1]["mig_names"].append(m.group(1))
    for g in gpus:
        g["mig_uuids"] = sorted(g["mig_uuids"])
        g["mig_names"] = sorted(g["mig_names"])
    return {"source": "nvidia-smi -L", "count": len(gpus), "gpus": gpus}


def parse_smi_query_cc(text: str) -> View:
    """The view of ``nvidia-smi --query-gpu=index,compute_cap --format=csv,noheader``."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and re.fullmatch(r"\d+\.\d+", parts[1]):
            gpus.append({"index": int(parts[0]), "compute_capability": parts[1]})
    return {"source": "nvidia-smi --query-gpu", "gpus": gpus}


def view_from_nvlow_info(doc: Mapping[str, Any]) -> View:
    """The view of ``nvlow info --json``."""
    gpus = []
    for g in doc.get("gpus", []):
        migs = g.get("mig_devices") or []
        mem = g.get("memory_total")
        gpus.append({
            "index": g.get("index"),
            "name": g.get("name"),
            "uuid": g.get("uuid"),
            "bus_id": norm_bus_id(g.get("bus_id")),
            "minor": g.get("minor"),
            "memory_total_mib": mem // MiB if isinstance(mem, int) else None,
            "compute_capability": g.get("compute_capability"),
            "mig_mode": norm_mig_mode(g.get("mig_enabled")),
            "mig_instances": mig_instances((m.get("gpu_instance_id"), m.get("compute_instance_id")) for m in migs),
            "mig_uuids": sorted(str(m.get("uuid")) for m in migs),
            "mig_names": sorted(str(m.get("name")) for m in migs),
            "persistence_mode": g.get("persistence_mode"),
            "brand": norm_brand(g.get("brand")),
            "architecture": norm_architecture(g.get("architecture")),
        })
    return {"source": "nvlow info", "driver_version": doc.get("driver_version"),
            "cuda_version": doc.get("cuda_version"), "count": len(gpus), "gpus": gpus}


def _constant_name(module: Any, prefix: str, value: int) -> Optional[str]:
    for name in dir(module):
        if name.startswith(prefix) and getattr(module, name) == value and not name.endswith("_COUNT"):
            return name[len(prefix):]
    return None


def view_from_pynvml(nv: Any) -> View:
    """The view NVML gives through pynvml (``nv`` is the imported module). Calls nvmlInit and
    nvmlShutdown; a field the driver refuses is None (not compared)."""

    def s(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def opt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: not reported
            return None

    nv.nvmlInit()
    try:
        cuda = opt(nv.nvmlSystemGetCudaDriverVersion)
        gpus = []
        for index in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(index)
            cc = opt(lambda: nv.nvmlDeviceGetCudaComputeCapability(h))
            mig = opt(lambda: nv.nvmlDeviceGetMigMode(h))
            mem = opt(lambda: nv.nvmlDeviceGetMemoryInfo(h).total)
            brand = opt(lambda: nv.nvmlDeviceGetBrand(h))
            arch = opt(lambda: nv.nvmlDeviceGetArchitecture(h))
            persistence = opt(lambda: nv.nvmlDeviceGetPersistenceMode(h))
            instances, uuids = [], []
            if mig is not None and mig[0] == 1:
                for slot in range(opt(lambda: nv.nvmlDeviceGetMaxMigDeviceCount(h)) or 0):
                    mh = opt(lambda: nv.nvmlDeviceGetMigDeviceHandleByIndex(h, slot))
                    if mh is None:
                        continue
                    instances.append((opt(lambda: nv.nvmlDeviceGetGpuInstanceId(mh)),
                                      opt(lambda: nv.nvmlDeviceGetComputeInstanceId(mh))))
                    uuids.append(s(opt(lambda: nv.nvmlDeviceGetUUID(mh))))
            gpus.append({
                "index": index,
                "name": opt(lambda: s(nv.nvmlDeviceGetName(h))),
                "uuid": opt(lambda: s(nv.nvmlDeviceGetUUID(h))),
                "bus_id": opt(lambda: norm_bus_id(s(nv.nvmlDeviceGetPciInfo(h).busId))),
                "minor": opt(lambda: int(nv.nvmlDeviceGetMinorNumber(h))),
                "memory_total_mib": int(mem) // MiB if mem is not None else None,
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
                "mig_mode": None if mig is None else norm_mig_mode(mig[0] == 1),
                "mig_instances": mig_instances(instances),
                "mig_uuids": sorted(uuids),
                "persistence_mode": None if persistence is None else bool(persistence),
                "brand": None if brand is None else norm_brand(_constant_name(nv, "NVML_BRAND_", brand)),
                "architecture": None if arch is None else norm_architecture(
                    _constant_name(nv, "NVML_DEVICE_ARCH_", arch)),
            })
        return {"source": "pynvml", "driver_version": opt(lambda: s(nv.nvmlSystemGetDriverVersion())),
                "cuda_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
                "count": len(gpus), "gpus": gpus}
    finally:
        opt(nv.nvmlShutdown)


# ----------------------------------------------------------------------------- comparison (pure)
def _equal(field: str, mine: Any, theirs: Any, oracle_gpu: Mapping[str, Any]) -> Tuple[bool, str]:
    """Whether nvlow's value matches the oracle's, and a note when a convention was applied."""
    if field == "memory_total_mib" and isinstance(mine, int) and isinstance(theirs, int):
        if abs(mine - theirs) <= 1:
            return True, ""
        reserved = oracle_gpu.get("memory_reserved_mib")
        # nvidia-smi >= 510 prints the total including the driver-reserved part; NVML's
        # v1 total may exclude it, depending on the driver branch: both are the same memory.
        if isinstance(reserved, int) and abs(mine - (theirs - reserved)) <= 1:
            return True, f"nvidia-smi total minus reserved {reserved} MiB"
        return False, ""
    if field == "mig_names":
        # -L shows the profile ("1c.3g.40gb"), nvlow the NVML name ("... MIG 1c.3g.40gb")
        return (len(mine) == len(theirs)
                and all(any(m.endswith(" " + t) or m == t for m in mine) for t in theirs)), ""
    if field == "cuda_version" and isinstance(mine, str) and isinstance(theirs, str):
        return mine.split(".")[:2] == theirs.split(".")[:2], ""
    return mine == theirs, ""


def _row(oracle: str, gpu: Optional[int], field: str, mine: Any, theirs: Any,
         oracle_gpu: Mapping[str, Any]) -> Row:
    if theirs is None:
        status, note = "n/a", "oracle does not report it"
    else:
        same, note = _equal(field, mine, theirs, oracle_gpu)
        status = "match" if same else "mismatch"
    return {"oracle": oracle, "gpu": gpu, "field": field, "nvlow": mine, "oracle_value": theirs,
            "status": status, "identity": field in IDENTITY_FIELDS, "note": note}


def compare_views(mine: View, theirs: View, fields: Optional[Sequence[str]] = None) -> List[Row]:
    """Rows comparing nvlow's view with one oracle's, GPU by GPU in index order."""
    oracle = str(theirs.get("source", "oracle"))
    fields = tuple(fields if fields is not None else ORACLE_FIELDS.get(oracle, ()))
    rows: List[Row] = []
    for field in SYSTEM_FIELDS:
        if field in theirs:
            rows.append(_row(oracle, None, field, mine.get(field), theirs.get(field), theirs))
    by_index = {g.get("index"): g for g in mine.get("gpus", [])}
    for tg in theirs.get("gpus", []):
        mg = by_index.get(tg.get("index"), {})
        for field in fields:
            if field in tg:
                rows.append(_row(oracle, tg.get("index"), field, mg.get(field), tg.get(field), tg))
    return rows


def identity_failures(rows: Sequence[Row]) -> List[Row]:
    """The rows that fail the check."""
    return [r for r in rows if r["identity"] and r["status"] == "mismatch"]


def missing_paths(paths: Sequence[str], *, want_char_devices: bool = False) -> List[str]:
    """Paths that do not exist (or, with ``want_char_devices``, are not character devices)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            if not os.path.lexists(p):
                out.append(f"{p}: missing")
                continue
            out.append(f"{p}: dangling or unreadable")
            continue
        if want_char_devices and not stat.S_ISCHR(st.st_mode):
            out.append(f"{p}: not a character device")
    return out


def args_paths(doc: Mapping[str, Any]) -> Tuple[List[str], List[str]]:
    """(device host paths, bind-mount host paths) named by ``nvlow args --json``."""
    devices = [d["host_path"] for d in doc.get("devices", [])]
    mounts = [m["host_path"] for m in doc.get("mounts", []) if m.get("kind", "bind") == "bind"]
    return devices, mounts


def timing_table(medians_s: Mapping[str, Optional[float]], baseline: str) -> List[Dict[str, Any]]:
    """One row per figure: median in ms and the ratio to ``baseline`` (None when unmeasured)."""
    base = medians_s.get(baseline)
    out = []
    for name, value in medians_s.items():
        out.append({"figure": name, "median_ms": None if value is None else round(value * 1000, 2),
                    "ratio": None if value is None or not base else round(value / base, 2),
                    "baseline": baseline})
    return out


# ----------------------------------------------------------------------------- report (pure)
def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
    return text.replace("|", "\\|")


def render_report(result: Mapping[str, Any]) -> str:
    """The markdown report, ending with the whole result as a JSON block."""
    lines = [f"# nvlow GPU check: {result['hostname']}, {result['date']}", ""]
    lines += [f"- Result: **{result['verdict']}** ({result['verdict_reason']})",
              f"- Mode: {result['mode']}",
              f"- GPUs: {result['gpu_summary']}",
              f"- Driver: {result['driver_version']}, CUDA {result['cuda_version']}",
              f"- nvlow data source: {result.get('info_source')}, CUDA version from {result.get('cuda_source')}",
              f"- nvlow {result['nvlow_version']}, Python {result['python']}, kernel {result['kernel']}"]
    for key, value in sorted(result.get("setup", {}).items()):
        lines.append(f"- setup {key}: `{value}`")
    lines += ["", "## Identity: nvlow info against the oracles", "",
              "| oracle | GPU | field | nvlow | oracle | result |", "|---|---|---|---|---|---|"]
    for r in result["comparisons"]:
        status = r["status"] if r["identity"] or r["status"] != "mismatch" else "differs (info)"
        if r["note"] and r["status"] == "match":
            status += f" ({r['note']})"
        gpu = "" if r["gpu"] is None else r["gpu"]
        lines.append(f"| {r['oracle']} | {gpu} | {r['field']} | {_cell(r['nvlow'])} | "
                     f"{_cell(r['oracle_value'])} | {status} |")
    for name, note in result.get("oracles_skipped", {}).items():
        lines.append(f"\n{name}: skipped ({note})")
    lines += ["", "## Commands", ""]
    for c in result["commands"]:
        lines.append(f"- `{c['argv']}`: exit {c['rc']}" + (f"; {c['problem']}" if c.get("problem") else ""))
    lines += ["", "## Paths nvlow names", ""]
    for what, info in result["paths"].items():
        missing = info["missing"]
        lines.append(f"- {what}: {info['count']} paths, " + ("all present" if not missing else
                                                              f"{len(missing)} bad: " + "; ".join(missing)))
    lines += ["", "## nvlow doctor", "", "| check | status | message |", "|---|---|---|"]
    for c in result.get("doctor", []):
        lines.append(f"| {c.get('check')} | {c.get('status')} | {_cell(c.get('message'))} |")
    lines += ["", f"## Timings (median of {result['runs']} interleaved runs)", "",
              "| figure | median ms | x nvidia-smi -L |", "|---|---|---|"]
    for t in result["timings"]:
        lines.append(f"| {t['figure']} | {_cell(t['median_ms'])} | {_cell(t['ratio'])} |")
    for name, note in result.get("timing_notes", {}).items():
        lines.append(f"\n{name}: {note}")
    lines += ["", "## Raw result", "", "```json", json.dumps(result, indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def result_from_report(text: str) -> Dict[str, Any]:
    """The JSON block of a report written by :func:`render_report`."""
    start = text.index("```json\n") + len("```json\n")
    return json.loads(text[start:text.index("\n```", start)])


# ----------------------------------------------------------------------------- fake nvidia-smi
_BRAND_NAMES = {1: "Quadro", 2: "Tesla", 3: "NVS", 4: "GRID", 5: "GeForce", 6: "Titan", 12: "Quadro RTX",
                13: "NVIDIA RTX", 14: "NVIDIA", 15: "GeForce RTX", 16: "Titan RTX"}
_ARCH_NAMES = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere",
               8: "Ada Lovelace", 9: "Hopper", 10: "Blackwell"}


def smi_outputs_from_preset(preset: Any) -> Dict[str, str]:
    """What ``nvidia-smi`` would print on an nvlow simulation preset: ``{"xml", "list", "cc"}``.

    Used by the fake mode of gpu-check.sh and by the tests (a preset's XML against
    ``nvlow info --simulate``)."""
    esc = lambda v: str(v).replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
    cuda = preset.cuda_version
    x = ['<?xml version="1.0" ?>', '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">',
         "<nvidia_smi_log>", "\t<timestamp>Mon Jan  1 00:00:00 2024</timestamp>",
         f"\t<driver_version>{preset.driver_version}</driver_version>",
         f"\t<cuda_version>{cuda // 1000}.{cuda % 1000 // 10}</cuda_version>" if cuda else "",
         f"\t<attached_gpus>{len(preset.gpus)}</attached_gpus>"]
    listing, cc = [], []
    for g in preset.gpus:
        mig_capable = g.architecture >= 7 and g.brand != 5
        mig = ("Enabled" if g.mig_mode else "Disabled") if mig_capable else "N/A"
        domain, bus, rest = g.bus_id.split(":")
        x += [f'\t<gpu id="{g.bus_id}">', f"\t\t<product_name>{esc(g.name)}</product_name>",
              f"\t\t<product_brand>{_BRAND_NAMES.get(g.brand, 'Unknown')}</product_brand>",
              f"\t\t<product_architecture>{_ARCH_NAMES.get(g.architecture, 'Unknown')}</product_architecture>",
              f"\t\t<persistence_mode>{'Enabled' if g.persistence_mode else 'Disabled'}</persistence_mode>",
              f"\t\t<mig_mode>\n\t\t\t<current_mig>{mig}</current_mig>\n\t\t\t<pending_mig>{mig}</pending_mig>"
              "\n\t\t</mig_mode>", "\t\t<mig_devices>"]
        x += [f"\t\t\t<mig_device>\n\t\t\t\t<index>{m.slot}</index>\n\t\t\t\t<gpu_instance_id>{m.gi}"
              f"</gpu_instance_id>\n\t\t\t\t<compute_instance_id>{m.ci}</compute_instance_id>\n"
              f"\t\t\t</mig_device>" for m in g.migs] or ["\t\t\tNone"]
        x += ["\t\t</mig_devices>", f"\t\t<uuid>{g.uuid}</uuid>", f"\t\t<minor_number>{g.minor}</minor_number>",
              f"\t\t<pci>\n\t\t\t<pci_bus>{bus}</pci_bus>\n\t\t\t<pci_domain>{domain[-4:]}</pci_domain>\n"
              f"\t\t\t<pci_device_id>{g.pci_device_id:08X}</pci_device_id>\n"
              f"\t\t\t<pci_bus_id>{g.bus_id}</pci_bus_id>\n\t\t</pci>",
              f"\t\t<fb_memory_usage>\n\t\t\t<total>{g.memory_total // MiB} MiB</total>\n"
              f"\t\t\t<reserved>0 MiB</reserved>\n\t\t\t<used>{g.memory_used // MiB} MiB</used>\n"
              f"\t\t</fb_memory_usage>", "\t</gpu>"]
        listing.append(f"GPU {g.index}: {g.name} (UUID: {g.uuid})")
        listing += [f"  MIG {m.profile:<13} Device {m.slot:>2}: (UUID: {m.uuid})" for m in g.migs]
        cc.append(f"{g.index}, {g.cc_major}.{g.cc_minor}")
    x.append("</nvidia_smi_log>")
    return {"xml": "\n".join(line for line in x if line) + "\n", "list": "\n".join(listing) + "\n",
            "cc": "\n".join(cc) + ("\n" if cc else "")}


FAKE_SMI = """#!/bin/sh
# A fake nvidia-smi written by bench/gpu_check.py from nvlow's simulation preset {preset}.
here=$(dirname "$0")
case "$*" in
  "-q -x") exec cat "$here/smi-q-x.xml" ;;
  "-L") exec cat "$here/smi-L.txt" ;;
  "{query}") exec cat "$here/smi-cc.csv" ;;
  *) echo "fake nvidia-smi: unsupported arguments: $*" >&2; exit 2 ;;
esac
"""


def write_fake_smi(directory: str, preset: Any) -> str:
    """Write a fake ``nvidia-smi`` (and its data files) for ``preset`` into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    out = smi_outputs_from_preset(preset)
    for name, key in (("smi-q-x.xml", "xml"), ("smi-L.txt", "list"), ("smi-cc.csv", "cc")):
        with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
            fh.write(out[key])
    path = os.path.join(directory, "nvidia-smi")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(FAKE_SMI.format(preset=preset.name, query=" ".join(QUERY_CC_ARGS)))
    os.chmod(path, 0o755)
    return path


# ----------------------------------------------------------------------------- running (impure)
def _run(argv: Sequence[str], timeout: float = 60.0) -> Tuple[int, str, str]:
    try:
        p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           check=False)
    except FileNotFoundError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f}s"
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _time_process(argv: Sequence[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
    return time.perf_counter() - t0


def _nvml_cycle() -> float:
    """One load + nvmlInit_v2 + nvmlShutdown through nvlow's own binding, in seconds."""
    from nvlow.native.nvml import Nvml
    from nvlow.root import HostRoot

    t0 = time.perf_counter()
    nv = Nvml.open(HostRoot("/"), os.environ)
    nv.shutdown()
    return time.perf_counter() - t0


def _pynvml_cycle(nv: Any) -> Callable[[], float]:
    def cycle() -> float:
        t0 = time.perf_counter()
        nv.nvmlInit()
        nv.nvmlShutdown()
        return time.perf_counter() - t0
    return cycle


def measure(cases: Mapping[str, Callable[[], float]], runs: int) -> Dict[str, Optional[float]]:
    """Median seconds per case, runs interleaved; a case that raises is None from then on."""
    samples: Dict[str, List[float]] = {k: [] for k in cases}
    dead: Dict[str, bool] = {}
    for _ in range(runs):
        for name, fn in cases.items():
            if dead.get(name):
                continue
            try:
                samples[name].append(fn())
            except Exception:  # noqa: BLE001 - reported as unmeasured
                dead[name] = True
    return {k: (statistics.median(v) if v and not dead.get(k) else None) for k, v in samples.items()}


class Checker:
    """Runs everything once and collects the result dict :func:`render_report` prints."""

    def __init__(self, nvlow: List[str], smi: str, simulate: Optional[str], runs: int, use_pynvml: bool):
        self.nvlow = nvlow
        self.smi = smi
        self.sim = ["--simulate", simulate] if simulate else []
        self.simulate = simulate
        self.runs = runs
        self.use_pynvml = use_pynvml
        self.commands: List[Dict[str, Any]] = []
        self.problems: List[str] = []

    def cmd(self, argv: List[str], *, want_json: bool = False, ok_codes: Tuple[int, ...] = (0,)) -> Any:
        rc, out, err = _run(argv)
        entry: Dict[str, Any] = {"argv": " ".join(shlex.quote(a) for a in argv), "rc": rc}
        value: Any = out
        if want_json:
            try:
                value = json.loads(out)
            except ValueError:
                value = None
                entry["problem"] = "no JSON on stdout: " + (err.strip().splitlines() or ["(nothing)"])[-1]
        if rc not in ok_codes and "problem" not in entry:
            entry["problem"] = (err.strip().splitlines() or ["(no message)"])[-1]
        self.commands.append(entry)
        if "problem" in entry:
            self.problems.append(f"{entry['argv']}: {entry['problem']}")
        return value

    def run(self) -> Dict[str, Any]:
        info = self.cmd(self.nvlow + ["info", "--json"] + self.sim, want_json=True) or {}
        mine = view_from_nvlow_info(info)
        comparisons: List[Row] = []
        skipped: Dict[str, str] = {}
        xml = self.cmd([self.smi, "-q", "-x"])
        try:
            comparisons += compare_views(mine, parse_smi_xml(xml))
        except ET.ParseError as exc:
            self.problems.append(f"nvidia-smi -q -x: not XML ({exc})")
        comparisons += compare_views(mine, parse_smi_list(self.cmd([self.smi, "-L"])))
        rc, out, err = _run([self.smi, *QUERY_CC_ARGS])
        if rc == 0 and parse_smi_query_cc(out)["gpus"]:
            comparisons += compare_views(mine, parse_smi_query_cc(out))
        else:
            skipped["nvidia-smi --query-gpu=compute_cap"] = (err.strip() or out.strip() or f"exit {rc}")[:200]
        pynvml = self._pynvml(skipped)
        if pynvml is not None:
            try:
                comparisons += compare_views(mine, view_from_pynvml(pynvml))
            except Exception as exc:  # noqa: BLE001 - the oracle failing is reported, not fatal
                skipped["pynvml"] = f"{type(exc).__name__}: {exc}"
        paths = self._paths()
        doctor = self.cmd(self.nvlow + ["doctor", "--json"] + self.sim, want_json=True, ok_codes=(0, 1))
        timings, notes = self._timings(pynvml)
        failures = identity_failures(comparisons)
        bad_paths = sum(len(p["missing"]) for p in paths.values())
        reasons = []
        if failures:
            reasons.append(f"{len(failures)} identity mismatch(es): " + ", ".join(
                f"{r['oracle']} GPU {r['gpu']} {r['field']}" if r["gpu"] is not None else f"{r['oracle']} {r['field']}"
                for r in failures[:5]))
        if bad_paths:
            reasons.append(f"{bad_paths} path(s) missing")
        reasons += self.problems
        names: Dict[str, int] = {}
        for g in mine["gpus"]:
            names[str(g["name"])] = names.get(str(g["name"]), 0) + 1
        compared = sum(1 for r in comparisons if r["status"] != "n/a")
        return {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "hostname": socket.gethostname(), "kernel": platform.release(), "python": platform.python_version(),
            "nvlow_version": self._nvlow_version(),
            "mode": f"FAKE: simulated preset {self.simulate} with a generated nvidia-smi (no GPU used)"
                    if self.simulate else "real GPU",
            "verdict": "FAIL" if reasons else "PASS",
            "verdict_reason": "; ".join(reasons) if reasons else f"{compared} comparisons, all identity fields match",
            "driver_version": info.get("driver_version"), "cuda_version": info.get("cuda_version"),
            "info_source": info.get("source"), "cuda_source": info.get("cuda_version_source"),
            "info_warnings": info.get("warnings", []),
            "gpu_summary": ", ".join(f"{n} x {name}" for name, n in names.items()) or "none",
            "comparisons": comparisons, "oracles_skipped": skipped, "commands": self.commands,
            "paths": paths, "doctor": (doctor or {}).get("checks", []), "runs": self.runs,
            "timings": timings, "timing_notes": notes,
        }

    def _pynvml(self, skipped: Dict[str, str]) -> Any:
        if not self.use_pynvml:
            skipped["pynvml"] = "turned off (--no-pynvml)"
            return None
        try:
            import pynvml  # type: ignore[import-not-found]
        except ImportError:
            skipped["pynvml"] = "not installed (the nvidia-ml-py package)"
            return None
        return pynvml

    def _paths(self) -> Dict[str, Dict[str, Any]]:
        listed = [line for line in self.cmd(self.nvlow + ["list"] + self.sim).splitlines() if line.strip()]
        doc = self.cmd(self.nvlow + ["args", "--json"] + self.sim, want_json=True) or {}
        devices, mounts = args_paths(doc)
        real = not self.simulate  # simulated nodes are regular files
        return {
            "nvlow list": {"count": len(listed), "missing": missing_paths(listed)},
            "nvlow args --json devices": {"count": len(devices),
                                          "missing": missing_paths(devices, want_char_devices=real)},
            "nvlow args --json mounts": {"count": len(mounts), "missing": missing_paths(mounts)},
        }

    def _timings(self, pynvml: Any) -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
        notes: Dict[str, str] = {}
        cases: Dict[str, Callable[[], float]] = {
            "nvidia-smi -L": lambda: _time_process([self.smi, "-L"]),
            "nvlow args": lambda: _time_process(self.nvlow + ["args"] + self.sim),
            "python -c pass": lambda: _time_process([sys.executable, "-c", "pass"]),
        }
        try:
            first = _nvml_cycle()
            notes["NVML init+shutdown (nvlow binding)"] = (
                f"first call {first * 1000:.2f} ms (cffi import and dlopen included)")
            cases["NVML init+shutdown (nvlow binding, in-process)"] = _nvml_cycle
        except Exception as exc:  # noqa: BLE001 - no loadable NVML: reported
            notes["NVML init+shutdown (nvlow binding)"] = f"unavailable: {type(exc).__name__}: {exc}"
        if pynvml is not None:
            cases["NVML init+shutdown (pynvml, in-process)"] = _pynvml_cycle(pynvml)
        for fn in cases.values():  # warm caches (the simulated host tree, the page cache)
            try:
                fn()
            except Exception:  # noqa: BLE001 - measure() records it
                pass
        return timing_table(measure(cases, self.runs), "nvidia-smi -L"), notes

    def _nvlow_version(self) -> str:
        rc, out, _ = _run(self.nvlow + ["--version"])
        if rc == 0 and out.strip():
            return out.strip().split()[-1]
        try:
            import nvlow
            return str(nvlow.__version__)
        except Exception:  # noqa: BLE001
            return "unknown"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Compare nvlow with nvidia-smi/pynvml on a GPU host; write a report.")
    ap.add_argument("--report", help="the report file to write (markdown with a JSON block)")
    ap.add_argument("--nvlow", default=None, help="the nvlow command (default: nvlow beside this python)")
    ap.add_argument("--smi", default="nvidia-smi", help="nvidia-smi to use as the oracle")
    ap.add_argument("--runs", type=int, default=5, help="timing runs per figure (median)")
    ap.add_argument("--simulate", default=None, help="run nvlow on a simulation preset (fake mode)")
    ap.add_argument("--no-pynvml", action="store_true", help="do not use pynvml even when importable")
    ap.add_argument("--setup", action="append", default=[], metavar="KEY=VALUE",
                    help="a fact about the setup to record in the report")
    ap.add_argument("--write-fake-smi", metavar="DIR", help="write a fake nvidia-smi for --preset and exit")
    ap.add_argument("--preset", default="dgx-a100")
    opts = ap.parse_args(argv)
    if opts.write_fake_smi:
        from nvlow.simulate.presets import get_preset

        print(write_fake_smi(opts.write_fake_smi, get_preset(opts.preset)))
        return 0
    if not opts.report:
        ap.error("--report FILE is required")
    if opts.nvlow:
        nvlow = shlex.split(opts.nvlow)
    else:
        exe = os.path.join(os.path.dirname(sys.executable), "nvlow")
        nvlow = [exe] if os.path.exists(exe) else [sys.executable, "-m", "nvlow"]
    if _run([opts.smi, "-L"], timeout=30)[0] == 127:
        print(f"gpu_check: {opts.smi}: not found (put nvidia-smi on PATH or pass --smi)", file=sys.stderr)
        return 2
    result = Checker(nvlow, opts.smi, opts.simulate, max(1, opts.runs), not opts.no_pynvml).run()
    result["setup"] = dict(s.split("=", 1) if "=" in s else (s, "") for s in opts.setup)
    report_dir = os.path.dirname(os.path.abspath(opts.report))
    os.makedirs(report_dir, exist_ok=True)
    with open(opts.report, "w", encoding="utf-8") as fh:
        fh.write(render_report(result))
    print(f"gpu_check: {result['verdict']}: {result['verdict_reason']}")
    print(f"gpu_check: {result['gpu_summary']}; driver {result['driver_version']}, CUDA {result['cuda_version']}")
    for t in result["timings"]:
        print(f"gpu_check: {t['figure']}: {t['median_ms']} ms ({t['ratio']} x nvidia-smi -L)")
    print(f"gpu_check: report written to {opts.report}")
    return 0 if result["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
