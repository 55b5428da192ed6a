"""nvlow benchmark suite: one command, one table, every figure beside a baseline of the same run.

    python bench/run.py [--quick] [--json FILE]

Machines here are noisy, so each figure is a median over repeated fresh
processes and is quoted as a ratio to ``python -c pass`` (or to the named
baseline) measured in the same run, interleaved. No timed assertions live in
the test suite; this script only reports.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def bench_discovery(runs: int, env: Dict[str, str]) -> List[Dict[str, object]]:
    from nvlow.host.discover import discover
    from nvlow.host.root import HostRoot, file_node_reader
    from nvlow.simulate.fakelib import SimulatedLibrary
    from nvlow.simulate.hosttree import ensure_tree
    from nvlow.simulate.presets import scaled_preset

    out: List[Dict[str, object]] = []
    cache = env.get("NVLOW_CACHE_DIR") or tempfile.mkdtemp(prefix="nvlow-bench-")
    for mig in (False, True):
        base_time = None
        for n in (1, 8, 64):
            preset = scaled_preset(n, mig=mig)
            path = ensure_tree(preset, cache)
            root = HostRoot(path, node_reader=file_node_reader, simulated=preset.name)
            lib = SimulatedLibrary(preset)

            def once() -> float:
                t0 = time.perf_counter()
                discover(root, library=lib)
                return time.perf_counter() - t0

            once()
            med = statistics.median(once() for _ in range(runs))
            if base_time is None:
                base_time = med
            out.append({"figure": f"discovery, {n} GPU{'s' if n > 1 else ''}{' + MIG (7 each)' if mig else ''}",
                        "median_ms": round(med * 1000, 2), "ratio": round(med / base_time, 2),
                        "baseline": "discovery, 1 GPU" + (" + MIG" if mig else "")})
    return out


def bench_optional(name: str, module: str, runs: int) -> List[Dict[str, object]]:
    try:
        mod = __import__(module, fromlist=["run"])
    except ImportError:
        return [{"figure": name, "skipped": f"{module} not available"}]
    result = mod.run(runs=runs) if "runs" in mod.run.__code__.co_varnames else mod.run()
    rows = result.get("rows") if isinstance(result, dict) else None
    if rows:
        return list(rows)
    if "parse_ms" in result:  # bench_ldcache
        return [{"figure": f"ld.so.cache parse, {result['entries']} entries (in process)",
                 "median_ms": round(result["parse_ms"], 3),
                 "ratio": round(result["parse_ms"] / result["ldconfig_p_process_ms"], 2),
                 "baseline": "ldconfig -p (process)"},
                {"figure": "ldconfig -p (process)", "median_ms": round(result["ldconfig_p_process_ms"], 3),
                 "ratio": 1.0, "baseline": "ldconfig -p (process)"}]
    if "results" in result:  # bench_serve
        out: List[Dict[str, object]] = []
        base = {(r["clients"]): r for r in result["results"] if r["endpoint"] == "/healthz"}
        for r in result["results"]:
            if r["endpoint"] == "/healthz":
                continue
            b = base.get(r["clients"])
            out.append({"figure": f"serve {r['endpoint']}, {r['clients']} client(s)", "median_ms": r["p50_ms"],
                        "ratio": round(r["p50_ms"] / b["p50_ms"], 2) if b else "",
                        "baseline": "/healthz p50, same clients",
                        "detail": f"{r['rps']:.0f} req/s, p99 {r['p99_ms']} ms, errors {r['errors']:.0f}"})
        return out
    return [{"figure": name, **result}]


def bench_serve_vs_plugin10(runs: int) -> List[Dict[str, object]]:
    """nvlow serve beside nvidia-docker 1.0's own plugin daemon on one fake host (bench_serve.compare),
    when a build of the daemon is named by ``$NVLOW_BENCH_NVIDIA_DOCKER_PLUGIN``: each figure is nvlow's
    p50 with the ratio of its req/s to the daemon's under the same load."""
    try:
        from bench import bench_serve
    except ImportError:
        return [{"figure": "serve vs nvidia-docker 1.0", "skipped": "bench.bench_serve not available"}]
    binary, why = bench_serve.find_plugin10(None)
    if binary is None:
        return [{"figure": "serve vs nvidia-docker 1.0", "skipped": why}]
    result = bench_serve.compare(binary, quick=runs < 21)
    results = result["results"]
    assert isinstance(results, list)
    out: List[Dict[str, object]] = []
    for r in results:
        nv, p10 = r["nvlow"], r["plugin10"]
        out.append({"figure": f"serve {r['endpoint']}, {r['clients']} client(s), vs 1.0 daemon",
                    "median_ms": nv["p50_ms"], "ratio": r["rps_ratio"], "baseline": "req/s of nvidia-docker 1.0",
                    "detail": f"nvlow {nv['rps']:.0f} req/s p99 {nv['p99_ms']} ms; 1.0 {p10['rps']:.0f} req/s "
                              f"p99 {p10['p99_ms']} ms"})
    return out


def print_rows(rows: Sequence[Dict[str, object]]) -> None:
    """The table of ``rows`` (figure, median, ratio, baseline, detail; or figure and why it was skipped),
    as this script and bench/bench_cdi.py print it."""
    width = max(len(str(r.get("figure"))) for r in rows)
    print(f"{'figure':<{width}}  {'median':>10}  {'ratio':>6}  baseline")
    for r in rows:
        if "skipped" in r:
            print(f"{r['figure']:<{width}}  skipped: {r['skipped']}")
            continue
        med = r.get("median_ms")
        detail = f"  ({r['detail']})" if r.get("detail") else ""
        print(f"{r['figure']:<{width}}  {med if med is not None else '':>8}ms  {r.get('ratio', ''):>6}  "
              f"{r.get('baseline', '')}{detail}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    a = ap.parse_args(argv)
    runs = 7 if a.quick else 21
    env = dict(os.environ)
    # measure what users run: byte-compiled modules (pip install compiles them)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    import compileall

    compileall.compile_dir(os.path.join(REPO, "nvlow"), quiet=1)
    env.setdefault("NVLOW_CACHE_DIR", tempfile.mkdtemp(prefix="nvlow-bench-cache-"))
    rows: List[Dict[str, object]] = []
    # every command's start-up in a plain install it makes itself, on the fake 8-GPU host (README table)
    rows += bench_optional("start-up (plain install)", "bench.bench_startup", runs)
    rows += bench_discovery(runs * 5, env)
    rows += bench_optional("ld.so.cache parse", "bench.bench_ldcache", runs)
    rows += bench_optional("argv parse + inject", "bench.bench_argv", runs)
    rows += bench_optional("nvlow serve", "bench.bench_serve", runs)
    rows += bench_serve_vs_plugin10(runs)  # NVLOW_BENCH_NVIDIA_DOCKER_PLUGIN=PATH (root)
    rows += bench_optional("driver volume", "bench.bench_volume", runs)
    rows += bench_optional("cdi generate vs nvidia-ctk", "bench.bench_cdi", runs)  # NVLOW_BENCH_NVIDIA_CTK=PATH
    print_rows(rows)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
