"""nvidia-docker-plugin 1.0's ``gpu/info`` and ``gpu/status`` documents, JSON and text.

The JSON keeps 1.0's field names, order and units (Go structs encoded by
``encoding/json``: a trailing newline, ``<>&`` escaped). The text forms
reproduce 1.0's Go templates run through a Go ``tabwriter`` (minwidth 0,
tabwidth 4, padding 0, pad ' '), so scripts that scrape them keep working. The
Family and Cores-per-SM tables continue past Pascal (1.0 stopped at 6.2, and
read "10.0" as Tesla because it looked at the first character only); PCIe
bandwidth continues past gen4.

``null`` appears exactly where 1.0 could answer ``null`` (NVML said "not
supported"). The fields 1.0 always filled (``Arch``, ``CPUAffinity`` and the
whole ``Memory`` object, which came from ``cudaGetDeviceProperties``) are
never ``null``: when nvlow cannot know them (procfs-only mode, no libcuda)
they hold the zero value of 1.0's Go type, ``"0.0"`` for ``Arch`` (for which
1.0's own tables give ``Family`` and ``Cores`` null). docs/nvidia-docker-1-fields.md
lists every field and where it comes from.

``Topology`` lists, in index order, the GPUs this one has peer-to-peer access
to (1.0 asked ``cudaDeviceCanAccessPeer``), each with the PCIe relation NVML's
``nvmlDeviceGetTopologyCommonAncestor`` gives, numbered as 1.0's ``P2PLinkType``
(:data:`P2P_LINKS`). NVLink makes peer access work but has no code of its own
in 1.0: NVIDIA's later libraries numbered it from 7 up, which 1.0 clients
(KubeGPU) would read as "no link", so nvlow keeps 1.0's numbers.

Example:
    >>> family("8.0"), cores_per_sm("9.0"), pcie_bandwidth(4, 16)
    ('Ampere', 128, 31504)
    >>> memory_bandwidth(1215000, 5120), p2p_link(20), p2p_link(None)
    (1555200, 4, 0)
    >>> go_tabwrite("\\ta:\\t1\\n\\tlong b:\\t2\\n")
    'a:     1\\nlong b:2\\n'
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from ..model import Gpu, Host
from ..records import GpuRecord, GpuStatus, PeerLink

MIB = 1024 * 1024
KIB = 1024

#: compute capability -> family. 1.0 keyed on the first digit and stopped at Pascal.
_FAMILY_BY_MAJOR = {"1": "Tesla", "2": "Fermi", "3": "Kepler", "5": "Maxwell", "6": "Pascal"}
_FAMILY_BY_ARCH = {
    "7.0": "Volta", "7.2": "Volta", "7.5": "Turing",
    "8.0": "Ampere", "8.6": "Ampere", "8.7": "Ampere", "8.8": "Ampere", "8.9": "Ada",
    "9.0": "Hopper",
    "10.0": "Blackwell", "10.1": "Blackwell", "10.3": "Blackwell", "11.0": "Blackwell",
    "12.0": "Blackwell", "12.1": "Blackwell",
}
#: CUDA cores per SM (1.0's table, then the CUDA samples' _ConvertSMVer2Cores values)
_CORES_PER_SM = {
    "1.0": 8, "1.1": 8, "1.2": 8, "1.3": 8, "2.0": 32, "2.1": 48,
    "3.0": 192, "3.2": 192, "3.5": 192, "3.7": 192, "5.0": 128, "5.2": 128, "5.3": 128,
    "6.0": 64, "6.1": 128, "6.2": 128,
    "7.0": 64, "7.2": 64, "7.5": 64, "8.0": 64, "8.6": 128, "8.7": 128, "8.8": 128, "8.9": 128,
    "9.0": 128, "10.0": 128, "10.1": 128, "10.3": 128, "11.0": 128, "12.0": 128, "12.1": 128,
}
#: MB/s per lane by PCIe generation (gen5 32 GT/s 128b/130b; gen6 64 GT/s FLIT 242/256)
_PCIE_LANE_MBPS = {1: 250, 2: 500, 3: 985, 4: 1969, 5: 3938, 6: 7563}
#: 1.0's P2P link names by JSON code (nvidia-smi topo -m calls them SYS, NODE, PHB, PXB, PIX, and
#: the on-board switch of a dual-GPU card PSB)
P2P_LINKS = {0: "N/A", 1: "Cross CPU socket", 2: "Same CPU socket", 3: "Host PCI bridge",
             4: "Multiple PCI switches", 5: "Single PCI switch", 6: "Same board"}
#: nvmlGpuTopologyLevel_t -> 1.0's P2PLinkType (1.0's GetP2PLink)
_LINK_BY_LEVEL = {0: 6, 10: 5, 20: 4, 30: 3, 40: 2, 50: 1}
#: what 1.0 showed for a GPU whose compute capability nvlow cannot know (procfs-only mode)
UNKNOWN_ARCH = "0.0"


def family(arch: Optional[str]) -> Optional[str]:
    """GPU family of a compute capability ("6.1" -> "Pascal"), None when unknown."""
    if not arch:
        return None
    if arch in _FAMILY_BY_ARCH:
        return _FAMILY_BY_ARCH[arch]
    major = arch.split(".", 1)[0]
    return _FAMILY_BY_MAJOR.get(major)


def cores_per_sm(arch: Optional[str]) -> Optional[int]:
    """CUDA cores per streaming multiprocessor, None when unknown."""
    return _CORES_PER_SM.get(arch or "")


def pcie_bandwidth(generation: Optional[int], width: Optional[int]) -> Optional[int]:
    """Maximum PCIe bandwidth in MB/s (per-lane rate x width), None when unknown."""
    if generation is None or width is None or generation not in _PCIE_LANE_MBPS:
        return None
    return _PCIE_LANE_MBPS[generation] * width


def memory_bandwidth(clock_khz: Optional[int], bus_width: Optional[int]) -> Optional[int]:
    """Peak memory bandwidth in MB/s as 1.0 computed it from the peak memory clock (kHz) and the
    bus width (bits): 2 x MHz x bytes, in integers."""
    if clock_khz is None or bus_width is None:
        return None
    return 2 * (clock_khz // 1000) * (bus_width // 8)


def p2p_link(level: Optional[int]) -> int:
    """1.0's ``P2PLinkType`` code of an nvmlGpuTopologyLevel_t (0, "N/A", when unknown)."""
    return _LINK_BY_LEVEL.get(level, 0) if level is not None else 0


def topology(peers: Sequence[PeerLink]) -> Optional[List[Dict[str, Any]]]:
    """1.0's ``Topology``: ``{"BusID","Link"}`` of every peer-to-peer capable GPU, in index order;
    None (Go's nil slice) when there is none."""
    links = [{"BusID": nvml_bus_id(p.bus_id), "Link": p2p_link(p.topology)}
             for p in sorted(peers, key=lambda p: p.index) if p.p2p]
    return links or None


def nvml_bus_id(bus_id: Optional[str]) -> str:
    """NVML's spelling of a bus id (``00000000:07:00.0``), which is what 1.0 clients saw."""
    if not bus_id:
        return ""
    domain, _, rest = bus_id.partition(":")
    if not rest:
        return bus_id.upper()
    return f"{domain.upper():0>8}:{rest.upper()}"


def go_json(obj: Any) -> bytes:
    """``json.NewEncoder(w).Encode(obj)`` of Go: compact, ``<>&`` escaped, trailing newline."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return (text + "\n").encode("utf-8")


def _div(value: Optional[int], by: int) -> Optional[int]:
    return None if value is None else value // by


def _device_path(gpu: Gpu) -> str:
    if gpu.node is not None:
        return gpu.node.container_path
    return f"/dev/nvidia{gpu.minor}" if gpu.minor is not None else ""


def _or0(value: Optional[int]) -> int:
    return 0 if value is None else value


def info_device(gpu: Gpu, rec: Optional[GpuRecord], numa_node: Optional[int]) -> Dict[str, Any]:
    """One ``Devices[]`` entry of ``/gpu/info/json`` (1.0 field order and units)."""
    arch = gpu.compute_capability or (rec.compute_capability if rec else None) or UNKNOWN_ARCH
    sms = rec.multiprocessor_count if rec else None
    per_sm = cores_per_sm(arch)
    power_limit = rec.power_limit if rec else None
    node = numa_node if numa_node is not None and numa_node >= 0 else 0  # 1.0: no NUMA -> node 0
    # 1.0: CUDA's totalGlobalMem, a little less than NVML's total (which counts reserved memory)
    memory_total = rec.global_memory if rec and rec.global_memory is not None else gpu.memory_total
    if memory_total is None and rec:
        memory_total = rec.memory_total
    return {
        "UUID": gpu.uuid or "",
        "Path": _device_path(gpu),
        "Model": gpu.name,
        "Power": _div(power_limit, 1000),
        "CPUAffinity": node,
        "PCI": {
            "BusID": nvml_bus_id(rec.bus_id if rec and rec.bus_id else gpu.bus_id),
            "BAR1": _div(rec.bar1_total if rec else None, MIB),
            "Bandwidth": pcie_bandwidth(rec.pcie_max_generation, rec.pcie_max_width) if rec else None,
        },
        "Clocks": {"Cores": rec.max_clocks_sm if rec else None, "Memory": rec.max_clocks_memory if rec else None},
        "Topology": topology(rec.peers) if rec else None,
        "Family": family(arch),
        "Arch": arch,
        "Cores": per_sm * sms if per_sm is not None and sms is not None else None,
        "Memory": {  # 1.0 always filled these (cudaGetDeviceProperties): 0/false when unknown
            "ECC": bool(rec.ecc_enabled) if rec else False,
            "Global": _or0(_div(memory_total, MIB)),
            "Shared": _or0(_div(rec.shared_memory_per_sm, KIB) if rec else None),
            "Constant": _or0(_div(rec.constant_memory, KIB) if rec else None),
            "L2Cache": _or0(_div(rec.l2_cache, KIB) if rec else None),
            "Bandwidth": _or0(memory_bandwidth(rec.memory_clock, rec.memory_bus_width) if rec else None),
        },
    }


def info_document(host: Host, records: Sequence[GpuRecord], numa_nodes: Dict[int, Optional[int]]
                  ) -> Dict[str, Any]:
    """The ``/gpu/info/json`` document: ``{"Version":{"Driver","CUDA"},"Devices":[...]}``."""
    by_index = {r.index: r for r in records}
    devices = [info_device(g, by_index.get(g.index), numa_nodes.get(g.index)) for g in host.gpus]
    return {"Version": {"Driver": host.driver_version or "", "CUDA": host.cuda_version or ""},
            "Devices": devices}


def _used_with_reserved(s: GpuStatus) -> Optional[int]:
    """Used memory as nvidia-docker 1.0 read it: nvmlDeviceGetMemoryInfo's ``used``, which counts what
    the driver reserves too (nvml.h, nvmlMemory_t; ~616 MiB on an H200 with driver 580)."""
    if s.memory_used is None or s.memory_reserved is None:
        return s.memory_used
    return s.memory_used + s.memory_reserved


def status_device(status: Optional[GpuStatus]) -> Dict[str, Any]:
    """One ``Devices[]`` entry of ``/gpu/status/json``."""
    s = status or GpuStatus(index=-1)
    procs = [{"PID": p.pid, "Name": p.name or "", "MemoryUsed": (p.used_memory or 0) // MIB}
             for p in s.processes]
    return {
        "Power": _div(s.power_usage, 1000),
        "Temperature": s.temperature,
        "Utilization": {"GPU": s.utilization_gpu, "Memory": s.utilization_memory,
                        "Encoder": s.utilization_encoder, "Decoder": s.utilization_decoder},
        "Memory": {"GlobalUsed": _div(_used_with_reserved(s), MIB),
                   "ECCErrors": {"L1Cache": s.ecc_errors_l1, "L2Cache": s.ecc_errors_l2,
                                 "Global": s.ecc_errors_device}},
        "Clocks": {"Cores": s.clock_sm, "Memory": s.clock_memory},
        "PCI": {"BAR1Used": _div(s.bar1_used, MIB),
                "Throughput": {"RX": _div(s.pcie_rx, 1000), "TX": _div(s.pcie_tx, 1000)}},
        "Processes": procs or None,  # Go's nil slice
    }


def status_document(host: Host, statuses: Sequence[GpuStatus]) -> Dict[str, Any]:
    """The ``/gpu/status/json`` document: ``{"Devices":[...]}`` in GPU index order."""
    by_index = {s.index: s for s in statuses}
    return {"Devices": [status_device(by_index.get(g.index)) for g in host.gpus]}


# --- text forms -----------------------------------------------------------

def go_tabwrite(text: str) -> str:
    """Go's ``text/tabwriter`` with minwidth 0, tabwidth 4, padding 0, padchar ' ', no flags.

    Cells are tab-terminated; the last cell of a line is not part of a
    column; a column is padded to its widest cell within each run of
    consecutive lines that have a cell in it.
    """
    lines: List[List[str]] = [line.split("\t") for line in text.split("\n")]
    if len(lines[-1]) > 1 and lines[-1][-1] == "":
        lines[-1].pop()  # Flush never terminates an empty trailing cell
    out: List[str] = []

    def write_lines(first: int, last: int, widths: List[int]) -> None:
        for i in range(first, last):
            parts: List[str] = []
            for j, cell in enumerate(lines[i]):
                parts.append(cell)
                if j < len(widths):
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def fmt(line0: int, line1: int, widths: List[int]) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this, widths)
            line0 = this
            width = 0
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]))
                this += 1
            fmt(line0, this, widths + [width])
            line0 = this
        write_lines(line0, line1, widths)

    fmt(0, len(lines), [])
    return "\n".join(out)


def _na(value: Any, unit: str = "") -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value}{unit}"


def _pair(used: Any, total: Any, unit: str) -> str:
    return "N/A" if used is None or total is None else f"{used} / {total}{unit}"


def info_text(doc: Dict[str, Any]) -> str:
    """``/gpu/info``: 1.0's text summary of an info document."""
    parts = [f"\n\tDriver version:  \t{doc['Version']['Driver']}\n"
             f"\tSupported CUDA version:  \t{doc['Version']['CUDA']}\n\t"]
    for i, d in enumerate(doc["Devices"]):
        pci, mem, clk = d["PCI"], d["Memory"], d["Clocks"]
        if d["Topology"]:
            p2p = "".join(f"\n\t    {t['BusID']} - {P2P_LINKS.get(t['Link'], 'N/A')}" for t in d["Topology"])
        else:
            p2p = ":  \tNone"
        parts.append(
            f"\n\tDevice #{i}\n"
            f"\t  Model:  \t{_na(d['Model'])}\n"
            f"\t  UUID:  \t{d['UUID']}\n"
            f"\t  Path:  \t{d['Path']}\n"
            f"\t  Family: \t{_na(d['Family'])}\n"
            f"\t  Arch:  \t{_na(d['Arch'])}\n"
            f"\t  Cores:  \t{_na(d['Cores'])}\n"
            f"\t  Power:  \t{_na(d['Power'], ' W')}\n"
            f"\t  CPU Affinity:  \t{'N/A' if d['CPUAffinity'] is None else 'NUMA node' + str(d['CPUAffinity'])}\n"
            f"\t  PCI\n"
            f"\t    Bus ID:  \t{pci['BusID']}\n"
            f"\t    BAR1:  \t{_na(pci['BAR1'], ' MiB')}\n"
            f"\t    Bandwidth:  \t{_na(pci['Bandwidth'], ' MB/s')}\n"
            f"\t  Memory\n"
            f"\t    ECC:  \t{_na(mem['ECC'])}\n"
            f"\t    Global:  \t{_na(mem['Global'], ' MiB')}\n"
            f"\t    Constant:  \t{_na(mem['Constant'], ' KiB')}\n"
            f"\t    Shared:  \t{_na(mem['Shared'], ' KiB')}\n"
            f"\t    L2 Cache:  \t{_na(mem['L2Cache'], ' KiB')}\n"
            f"\t    Bandwidth:  \t{_na(mem['Bandwidth'], ' MB/s')}\n"
            f"\t  Clocks\n"
            f"\t    Cores:  \t{_na(clk['Cores'], ' MHz')}\n"
            f"\t    Memory:  \t{_na(clk['Memory'], ' MHz')}\n"
            f"\t  P2P Available{p2p}\n\t"
        )
    parts.append("\n\t")
    return go_tabwrite("".join(parts))


def status_text(info: Dict[str, Any], status: Dict[str, Any]) -> str:
    """``/gpu/status``: 1.0's text form (live values next to the info totals)."""
    parts: List[str] = []
    for i, (d, s) in enumerate(zip(info["Devices"], status["Devices"])):
        u, m, pci, clk = s["Utilization"], s["Memory"], s["PCI"], s["Clocks"]
        ecc = m["ECCErrors"]
        if s["Processes"]:
            procs = "".join(f"\n\t    - PID:  \t{p['PID']}\n\t      Name:  \t{p['Name']}\n"
                            f"\t      Memory:  \t{p['MemoryUsed']} MiB" for p in s["Processes"])
        else:
            procs = ":  \tNone"
        parts.append(
            f"\n\tDevice #{i}\n"
            f"\t  Power:  \t{_pair(s['Power'], d['Power'], ' W')}\n"
            f"\t  Temperature:  \t{_na(s['Temperature'], ' °C')}\n"
            f"\t  Utilization\n"
            f"\t    GPU:  \t{_na(u['GPU'], ' %')}\n"
            f"\t    Memory:  \t{_na(u['Memory'], ' %')}\n"
            f"\t    Encoder:  \t{_na(u['Encoder'], ' %')}\n"
            f"\t    Decoder:  \t{_na(u['Decoder'], ' %')}\n"
            f"\t  Memory\n"
            f"\t    Global:  \t{_pair(m['GlobalUsed'], d['Memory']['Global'], ' MiB')}\n"
            f"\t    ECC Errors\n"
            f"\t      L1 Cache:  \t{_na(ecc['L1Cache'])}\n"
            f"\t      L2 Cache:  \t{_na(ecc['L2Cache'])}\n"
            f"\t      Global:  \t{_na(ecc['Global'])}\n"
            f"\t  PCI\n"
            f"\t    BAR1:  \t{_pair(pci['BAR1Used'], d['PCI']['BAR1'], ' MiB')}\n"
            f"\t    Throughput\n"
            f"\t      RX:  \t{_na(pci['Throughput']['RX'], ' MB/s')}\n"
            f"\t      TX:  \t{_na(pci['Throughput']['TX'], ' MB/s')}\n"
            f"\t  Clocks\n"
            f"\t    Cores:  \t{_na(clk['Cores'], ' MHz')}\n"
            f"\t    Memory:  \t{_na(clk['Memory'], ' MHz')}\n"
            f"\t  Processes{procs}\n\t"
        )
    parts.append("\n\t")
    return go_tabwrite("".join(parts))
