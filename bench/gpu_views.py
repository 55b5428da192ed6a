"""The real-GPU check's comparison logic: what nvlow, nvidia-smi and pynvml say, as plain views.

A *view* is ``{"source", "driver_version", "cuda_version", "count", "gpus": [{field: value}]}``,
GPUs in index order. Parsers are pure functions of the tools' text; :func:`compare_views`
turns nvlow's view and one oracle's into rows (match / mismatch / n/a, both values kept).
A GPU field an oracle does not report is absent (not compared) or None (an ``n/a`` row).
Standard library only: pynvml is passed in as a module, never imported here.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
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
                # NOT_SUPPORTED: a GPU without MIG, what nvidia-smi prints as N/A
                "mig_mode": norm_mig_mode(mig is not None and mig[0] == 1),
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
    if mine is None:
        return False, "nvlow does not report it"
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
