"""Live GPU status (what nvidia-docker-plugin's ``gpu/status`` showed) as a document and a table.

Unsupported readings are ``None`` in JSON and ``N/A`` in the table, never errors.

Example:
    >>> from nvlow.records import GpuRecord, GpuStatus
    >>> doc = status_document((GpuRecord(0, 0, "GPU-x", "T4", None),), (GpuStatus(0, temperature=40),))
    >>> doc["gpus"][0]["temperature_c"], doc["gpus"][0]["power_w"]
    (40, None)
"""
from __future__ import annotations

from ..records import DriverLibrary, GpuRecord, GpuStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence


MIB = 1024 * 1024


def _w(mw: Optional[int]) -> Optional[float]:
    return None if mw is None else round(mw / 1000.0, 1)


def _mib(b: Optional[int]) -> Optional[int]:
    return None if b is None else b // MIB


def status_document(records: Sequence[GpuRecord], statuses: Sequence[GpuStatus]) -> Dict[str, Any]:
    """The ``nvlow status --json`` document (schema_version 1)."""
    by_index = {r.index: r for r in records}
    gpus: List[Dict[str, Any]] = []
    for s in statuses:
        rec = by_index.get(s.index)
        gpus.append({
            "index": s.index,
            "name": rec.name if rec else None,
            "uuid": rec.uuid if rec else None,
            "power_w": _w(s.power_usage),
            "power_limit_w": _w(s.power_limit),
            "temperature_c": s.temperature,
            "utilization": {"gpu": s.utilization_gpu, "memory": s.utilization_memory,
                            "encoder": s.utilization_encoder, "decoder": s.utilization_decoder},
            "memory_used_mib": _mib(s.memory_used),
            "memory_total_mib": _mib(s.memory_total),
            "clocks_mhz": {"sm": s.clock_sm, "memory": s.clock_memory},
            "pcie_kbps": {"rx": s.pcie_rx, "tx": s.pcie_tx},
            "processes": [{"pid": p.pid, "name": p.name, "memory_used_mib": _mib(p.used_memory)}
                          for p in s.processes],
        })
    return {"schema_version": 1, "gpus": gpus}


def read_status(library: DriverLibrary) -> Dict[str, Any]:
    """Read records and live status from an open library."""
    return status_document(library.gpus(), library.status())


def _na(v: object, unit: str = "") -> str:
    return "N/A" if v is None else f"{v}{unit}"


def _pair(a: object, b: object, unit: str) -> str:
    if a is None and b is None:
        return "N/A"
    return f"{_na(a)}/{_na(b)}{unit}"


def format_status(doc: Dict[str, Any]) -> str:
    """A compact table, one line per GPU and one per process."""
    header = ("GPU", "Name", "Temp", "Power/Limit", "GPU%", "Mem%", "Enc%", "Dec%", "Memory", "SM/Mem clk",
              "PCIe RX/TX")
    rows: List[Sequence[str]] = [header]
    procs: Dict[int, List[str]] = {}
    for g in doc["gpus"]:
        u = g["utilization"]
        rows.append((
            str(g["index"]), _na(g["name"]), _na(g["temperature_c"], "C"),
            _pair(g["power_w"], g["power_limit_w"], " W"),
            _na(u["gpu"], "%"), _na(u["memory"], "%"), _na(u["encoder"], "%"), _na(u["decoder"], "%"),
            _pair(g["memory_used_mib"], g["memory_total_mib"], " MiB"),
            _pair(g["clocks_mhz"]["sm"], g["clocks_mhz"]["memory"], " MHz"),
            _pair(g["pcie_kbps"]["rx"], g["pcie_kbps"]["tx"], " KB/s"),
        ))
        procs[g["index"]] = [
            f"  GPU {g['index']}  pid {p['pid']:<8} {_na(p['memory_used_mib'], ' MiB'):>10}  {_na(p['name'])}"
            for p in g["processes"]
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    all_procs = [line for g in doc["gpus"] for line in procs[g["index"]]]
    lines.append("Processes:" + ("" if all_procs else " none"))
    lines.extend(all_procs)
    return "\n".join(lines) + "\n"
