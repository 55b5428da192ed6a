"""What each NVML query of nvlow's binding costs on this host: the first call and the median of the
next ones, per field method, plus nvmlInit/nvmlShutdown and loading libcuda. On a real GPU some
queries wait in the driver (the PCIe throughput counters sample for 20 ms each, nvml.h); the fakes
answer in nanoseconds, so this is for GPU machines (``bench/gpu-check.sh`` hosts):

    python bench/bench_nvml_calls.py [--root /] [--runs 5] [--json FILE]

Prints one Markdown row per query, slowest first. Uses GPU 0 (and GPU 1 for pair queries when present).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))


def _timed(fn: Callable[[], Any]) -> Tuple[float, str]:
    from nvlow.native.nvml import NvmlError

    start = time.perf_counter()
    try:
        fn()
        outcome = "ok"
    except NvmlError as exc:
        outcome = exc.name
    return time.perf_counter() - start, outcome


def queries(nv: Any) -> Dict[str, Callable[[], Any]]:
    """The field methods nvlow's commands call, bound to GPU 0 (GPU 1 for pairs)."""
    h = nv.handle(0)
    other = nv.handle(1) if nv.device_count() > 1 else h
    out: Dict[str, Callable[[], Any]] = {
        "device_count": nv.device_count, "driver_version": nv.driver_version,
        "cuda_driver_version": nv.cuda_driver_version,
    }
    for name in ("name", "uuid", "minor", "pci_info", "memory", "compute_capability", "brand", "architecture",
                 "persistence_mode", "mig_mode", "power_usage", "power_limit", "enforced_power_limit",
                 "temperature", "utilization", "encoder_utilization", "decoder_utilization",
                 "max_pcie_generation", "max_pcie_width", "bar1_memory", "processes", "numa_node",
                 "cpu_affinity", "ecc_mode", "total_ecc_errors", "memory_bus_width", "nvlinks"):
        out[name] = (lambda m: lambda: m(h))(getattr(nv, name))
    for kind in ("sm", "mem"):
        out[f"clock {kind}"] = (lambda k: lambda: nv.clock(h, k))(kind)
        out[f"max_clock {kind}"] = (lambda k: lambda: nv.max_clock(h, k))(kind)
    for direction in ("rx", "tx"):
        out[f"pcie_throughput {direction}"] = (lambda d: lambda: nv.pcie_throughput(h, d))(direction)
    for location in ("l1", "l2", "device"):
        out[f"memory_error_count {location}"] = (lambda loc: lambda: nv.memory_error_count(h, loc))(location)
    out["topology_common_ancestor"] = lambda: nv.topology_common_ancestor(h, other)
    out["p2p_status"] = lambda: nv.p2p_status(h, other)
    return out


def run(root: str, runs: int) -> List[Dict[str, Any]]:
    """One row per query (``query``, ``first_ms``, ``median_ms`` of ``runs`` more calls, ``outcome``)."""
    from nvlow.host.root import HostRoot
    from nvlow.native.cuda import Cuda
    from nvlow.native.nvml import Nvml

    rows: List[Dict[str, Any]] = []
    host = HostRoot(root)
    start = time.perf_counter()
    nv = Nvml.open(host, os.environ)
    rows.append({"query": "load + nvmlInit_v2", "first_ms": (time.perf_counter() - start) * 1000,
                 "median_ms": None, "outcome": "ok"})
    try:
        for name, fn in queries(nv).items():
            first, outcome = _timed(fn)
            rest = [_timed(fn)[0] for _ in range(runs)]
            rows.append({"query": name, "first_ms": first * 1000, "median_ms": statistics.median(rest) * 1000,
                         "outcome": outcome})
    finally:
        start = time.perf_counter()
        nv.shutdown()
        rows.append({"query": "nvmlShutdown", "first_ms": (time.perf_counter() - start) * 1000,
                     "median_ms": None, "outcome": "ok"})
    start = time.perf_counter()
    try:
        Cuda.open(host, os.environ)
        outcome = "ok"
    except Exception as exc:  # noqa: BLE001 - a bench row, not a failure
        outcome = type(exc).__name__
    rows.append({"query": "load libcuda (no cuInit)", "first_ms": (time.perf_counter() - start) * 1000,
                 "median_ms": None, "outcome": outcome})
    return rows


def main() -> None:
    sys.path.insert(0, os.path.dirname(HERE))  # nvlow from this checkout when it is not installed
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = run(a.root, a.runs)
    print("| query | first ms | median ms | outcome |\n|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -(r["median_ms"] if r["median_ms"] is not None else r["first_ms"])):
        med = f"{r['median_ms']:.3f}" if r["median_ms"] is not None else ""
        print(f"| {r['query']} | {r['first_ms']:.3f} | {med} | {r['outcome']} |")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
