"""Benchmark: parse a 1,000-entry ld.so.cache in-process vs ``ldconfig -p`` as a process.

Run ``python bench/bench_ldcache.py`` for a small table; the bench suite calls
:func:`run`, which returns the numbers (milliseconds). No assertions.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nvlow.host.driverfiles import select_driver_files  # noqa: E402
from nvlow.host.ldcache import parse_ldcache, render_ldconfig_p  # noqa: E402
from nvlow.host.root import HostRoot  # noqa: E402
from nvlow.simulate.drivertree import write_driver_tree  # noqa: E402
from nvlow.simulate.ldcache_writer import build_ldcache  # noqa: E402
from nvlow.simulate.presets import get_preset  # noqa: E402


def _entries(n: int) -> List[Any]:
    out: List[Any] = []
    for i in range(n):
        flags = 0x0003 if i % 10 == 0 else 0x0303
        d = "/usr/lib/i386-linux-gnu" if flags == 0x0003 else "/usr/lib/x86_64-linux-gnu"
        out.append((f"libbench{i:04d}-component.so.{i % 7}", f"{d}/libbench{i:04d}-component.so.{i % 7}", flags))
    return out


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def run(entries: int = 1000, runs: int = 200, process_runs: int = 30) -> Dict[str, Any]:
    """Timings in ms (medians): parse, lookup, render, ``ldconfig -p`` process, driver-file selection."""
    data = build_ldcache(_entries(entries), generator="ldconfig (nvlow bench) 2.36")
    result: Dict[str, Any] = {"entries": entries, "cache_bytes": len(data)}
    result["parse_ms"] = _median_ms(lambda: parse_ldcache(data), runs)
    cache = parse_ldcache(data)
    result["prefix_lookup_ms"] = _median_ms(lambda: cache.prefixed("libbench05", "x86-64"), runs)
    result["render_ms"] = _median_ms(lambda: render_ldconfig_p(cache, "/c"), runs)
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ld.so.cache")
        with open(path, "wb") as fh:
            fh.write(data)
        if ldconfig:
            result["ldconfig_p_process_ms"] = _median_ms(
                lambda: subprocess.run([ldconfig, "-p", "-C", path], stdout=subprocess.DEVNULL, check=True),
                process_runs)
        else:
            result["ldconfig_p_process_ms"] = None
        tree = os.path.join(tmp, "tree")
        os.mkdir(tree)
        write_driver_tree(tree, get_preset("workstation"))
        root = HostRoot(tree)
        result["select_all_workstation_ms"] = _median_ms(
            lambda: select_driver_files(root, "560.35.03", {"compute", "utility", "graphics", "video",
                                                             "display", "ngx", "compat32"}, arch="x86-64"),
            max(10, runs // 10))
    return result


def main() -> None:
    r = run()
    print(f"ld.so.cache benchmark ({r['entries']} entries, {r['cache_bytes']} bytes), medians")
    rows = [
        ("parse_ldcache", r["parse_ms"]),
        ("prefixed() lookup", r["prefix_lookup_ms"]),
        ("render_ldconfig_p", r["render_ms"]),
        ("ldconfig -p (process)", r["ldconfig_p_process_ms"]),
        ("select_driver_files(all), workstation tree", r["select_all_workstation_ms"]),
    ]
    for label, ms in rows:
        print(f"  {label:<44} {'n/a' if ms is None else f'{ms:8.3f} ms'}")


if __name__ == "__main__":
    main()
