"""nvlow serve: requests per second and p50/p99 latency of /docker/cli and /v2/args at 1, 8 and 64 clients.

The server runs in this process on a simulated dgx-a100 (127.0.0.1, free
port); each client is a thread with its own keep-alive connection. The
clients share the interpreter with the server, so absolute figures are a floor
(a real deployment runs the server alone); ``healthz`` is the baseline of the
same run (cost of the HTTP layer alone).

    python bench/bench_serve.py [--quick]
"""
from __future__ import annotations

import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

ENDPOINTS = ("/healthz", "/docker/cli", "/v2/args")
CONCURRENCY = (1, 8, 64)


def _load(host: str, port: int, path: str, clients: int, per_client: int) -> Dict[str, float]:
    latencies: List[List[float]] = [[] for _ in range(clients)]
    errors = [0]
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        start.wait()
        for _ in range(per_client):
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            latencies[i].append(time.perf_counter() - t0)
            if resp.status != 200:
                errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = sorted(x for lst in latencies for x in lst)
    return {
        "requests": float(len(flat)),
        "rps": round(len(flat) / wall, 1),
        "p50_ms": round(statistics.median(flat) * 1000, 3),
        "p99_ms": round(flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000, 3),
        "errors": float(errors[0]),
    }


def run(quick: bool = False, concurrency: Sequence[int] = CONCURRENCY) -> Dict[str, object]:
    """Measure every endpoint at every concurrency; returns {"results": [...], "notes": ...}."""
    from nvlow.serve.cache import DiscoveryCache
    from nvlow.serve.server import NvlowServer, ServeState
    from nvlow.simulate.hosttree import simulated_host

    total = 400 if quick else 2000
    work = tempfile.mkdtemp(prefix="nvlow-bench-serve-")
    root, opener = simulated_host("dgx-a100")

    class _Quiet:
        def write(self, _text: str) -> None:
            pass

        def flush(self) -> None:
            pass

    state = ServeState(DiscoveryCache(root, opener, load_uvm=False), volumes_dir=os.path.join(work, "v"),
                       stream=_Quiet())
    server = NvlowServer(state, ("127.0.0.1", 0), None)
    server.start()
    host, port = server.address
    results: List[Dict[str, object]] = []
    try:
        for path in ENDPOINTS:  # warm: discovery and driver-file selection are cached after this
            _load(host, port, path, 1, 5)
        for clients in concurrency:
            per_client = max(5, total // clients)
            for path in ENDPOINTS:
                row: Dict[str, object] = {"endpoint": path, "clients": clients}
                row.update(_load(host, port, path, clients, per_client))
                results.append(row)
    finally:
        server.stop(grace=2.0)
        shutil.rmtree(work, ignore_errors=True)
    return {"results": results, "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "notes": "clients and server share one process; /healthz is the HTTP-layer baseline"}


def main() -> None:
    out = run(quick="--quick" in sys.argv)
    print(f"{'endpoint':<14}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for r in out["results"]:  # type: ignore[union-attr]
        print(f"{r['endpoint']:<14}{r['clients']:>8}{r['rps']:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}"
              f"{int(r['errors']):>8}")


if __name__ == "__main__":
    main()
