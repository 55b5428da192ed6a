"""nvlow serve under load: req/s and p50/p99 latency per endpoint at 1, 8 and 64 keep-alive clients.

The server is a separate process, ``nvlow serve --simulate dgx-a100`` on
127.0.0.1 (a free port, no plugin socket), started as a user would. The load
comes from other processes: by default this file's own client (``--client``
mode: one selector loop per process driving its share of keep-alive
connections, each sending the next request when the last answer is complete,
so a slow server is measured, not hidden behind a queue), or ``wrk`` with
``--wrk`` when it is installed. Every request's latency is kept, so p50/p99
are exact over the measured window (after a short warm-up). ``/healthz`` is the
baseline of the same run: the HTTP layer's cost with a near-empty handler.

    python bench/bench_serve.py [--quick] [--wrk] [--seconds S] [--clients 1,8,64] [--json FILE]
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

ENDPOINTS = ("/healthz", "/docker/cli", "/docker/cli/json", "/gpu/info/json", "/gpu/status/json", "/v2/args")
CONCURRENCY = (1, 8, 64)
WARMUP_S = 0.3

# -- the load generator (runs in its own process: ``bench_serve.py --client ...``) ---------------


def _client_loop(host: str, port: int, path: str, conns: int, seconds: float, warmup: float) -> Dict[str, Any]:
    """Drive ``conns`` keep-alive connections for ``warmup + seconds``; latencies of the measured part."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: nvlow-bench\r\n\r\n".encode("ascii")
    sel = selectors.DefaultSelector()
    started: Dict[socket.socket, float] = {}
    buffers: Dict[socket.socket, bytearray] = {}
    latencies: List[float] = []
    errors = 0
    reconnects = 0
    t_begin = time.perf_counter()
    t_measure = t_begin + warmup
    t_end = t_measure + seconds

    def connect() -> None:
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        buffers[s] = bytearray()
        sel.register(s, selectors.EVENT_READ)
        started[s] = time.perf_counter()
        s.send(request)

    def drop(s: socket.socket) -> None:
        sel.unregister(s)
        s.close()
        buffers.pop(s, None)
        started.pop(s, None)

    for _ in range(conns):
        connect()
    while started:
        now = time.perf_counter()
        if now > t_end + 30:  # a server that stopped answering: report what came back
            errors += len(started)
            break
        for key, _ev in sel.select(1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                errors += 1
                reconnects += 1
                drop(s)
                if time.perf_counter() < t_end:
                    connect()
                continue
            buf = buffers[s]
            buf += data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = bytes(buf[:head_end]).lower()
            length = 0
            cl = head.find(b"\ncontent-length:")
            if cl >= 0:
                eol = head.find(b"\r\n", cl + 1)
                length = int(head[cl + 16:eol if eol >= 0 else len(head)])
            if len(buf) < head_end + 4 + length:
                continue
            done = time.perf_counter()
            if done >= t_measure and started[s] >= t_measure and done <= t_end:
                latencies.append(done - started[s])
                if not head.startswith(b"http/1.1 200"):
                    errors += 1
            del buf[:head_end + 4 + length]
            if b"\nconnection: close" in head:
                drop(s)
                reconnects += 1
                if done < t_end:
                    connect()
                continue
            if done < t_end:
                started[s] = time.perf_counter()
                s.send(request)
            else:
                drop(s)
    for s in list(started):
        drop(s)
    return {"latencies": latencies, "errors": errors, "reconnects": reconnects, "seconds": seconds}


def _summary(latencies: List[float], errors: int, seconds: float) -> Dict[str, float]:
    flat = sorted(latencies)
    if not flat:
        return {"requests": 0.0, "rps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "errors": float(errors)}
    return {
        "requests": float(len(flat)),
        "rps": round(len(flat) / seconds, 1),
        "p50_ms": round(flat[len(flat) // 2] * 1000, 3),
        "p99_ms": round(flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000, 3),
        "errors": float(errors),
    }


def _python_load(host: str, port: int, path: str, clients: int, seconds: float, procs: int) -> Dict[str, float]:
    """``clients`` connections spread over ``procs`` client processes of this file."""
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    children = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", host, str(port), path,
                                  str(n), str(seconds), str(WARMUP_S)], stdout=subprocess.PIPE)
                for n in shares]
    latencies: List[float] = []
    errors = 0
    for child in children:
        out, _ = child.communicate(timeout=seconds + WARMUP_S + 120)
        doc = json.loads(out)
        latencies += doc["latencies"]
        errors += doc["errors"]
    return _summary(latencies, errors, seconds)


_WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("NVLOW %d %d %d %.3f %.3f\\n", summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    + summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk_load(host: str, port: int, path: str, clients: int, seconds: float, work: str) -> Dict[str, float]:
    script = os.path.join(work, "report.lua")
    with open(script, "w") as fh:
        fh.write(_WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                          "-s", script, f"http://{host}:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("NVLOW "))
    requests, duration_us, errors, p50_us, p99_us = line.split()[1:]
    return {"requests": float(requests), "rps": round(int(requests) / (int(duration_us) / 1e6), 1),
            "p50_ms": round(float(p50_us) / 1000, 3), "p99_ms": round(float(p99_us) / 1000, 3),
            "errors": float(errors)}


# -- the server process ----------------------------------------------------------------------


def _start_server(work: str, preset: str) -> Tuple[subprocess.Popen, str, int]:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVLOW_") or k == "NVLOW_CACHE_DIR"}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "nvlow", "serve", "--simulate", preset, "--listen", "127.0.0.1:0",
                             "--no-plugin", "--volumes-dir", os.path.join(work, "volumes")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    lines = []
    for _ in range(50):
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "serving remote API at " in line:
            addr = line.rsplit(" ", 1)[1].strip()
            host, _, port = addr.rpartition(":")
            # keep draining its log so the pipe never fills
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, host, int(port)
    proc.kill()
    proc.wait()
    raise RuntimeError("nvlow serve did not start:\n" + "\n".join(lines))


def _stop_server(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(quick: bool = False, concurrency: Sequence[int] = CONCURRENCY, endpoints: Sequence[str] = ENDPOINTS,
        seconds: Optional[float] = None, use_wrk: bool = False, preset: str = "dgx-a100",
        client_procs: Optional[int] = None) -> Dict[str, object]:
    """Measure every endpoint at every concurrency; returns {"results": [...], ...}."""
    seconds = seconds if seconds is not None else (1.0 if quick else 4.0)
    if use_wrk and shutil.which("wrk") is None:
        raise RuntimeError("--wrk: wrk is not installed")
    cpus = os.cpu_count() or 2
    procs = client_procs or max(1, cpus // 2)
    work = tempfile.mkdtemp(prefix="nvlow-bench-serve-")
    proc, host, port = _start_server(work, preset)
    results: List[Dict[str, object]] = []
    try:
        for clients in concurrency:
            for path in endpoints:
                row: Dict[str, object] = {"endpoint": path, "clients": clients}
                if use_wrk:
                    row.update(_wrk_load(host, port, path, clients, seconds, work))
                else:
                    row.update(_python_load(host, port, path, clients, seconds, procs))
                results.append(row)
    finally:
        _stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
    generator = "wrk -t1" if use_wrk else f"bench_serve.py --client in {procs} process(es)"
    return {"results": results, "python": sys.version.split()[0], "cpus": cpus, "generator": generator,
            "seconds": seconds,
            "notes": f"server: nvlow serve --simulate {preset} in its own process; load: {generator}; "
                     "/healthz is the HTTP-layer baseline"}


def _arg(argv: List[str], name: str) -> Optional[str]:
    if name in argv:
        i = argv.index(name)
        if i + 1 < len(argv):
            return argv[i + 1]
    return None


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--client":
        host, port, path, conns, seconds, warmup = argv[1:7]
        doc = _client_loop(host, int(port), path, int(conns), float(seconds), float(warmup))
        json.dump(doc, sys.stdout)
        return
    clients = _arg(argv, "--clients")
    secs = _arg(argv, "--seconds")
    procs = _arg(argv, "--client-procs")
    out = run(quick="--quick" in argv, use_wrk="--wrk" in argv,
              concurrency=tuple(int(c) for c in clients.split(",")) if clients else CONCURRENCY,
              seconds=float(secs) if secs else None, client_procs=int(procs) if procs else None)
    print(f"# {out['notes']}; {out['seconds']} s per figure, {out['cpus']} CPUs, Python {out['python']}")
    print(f"{'endpoint':<18}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for r in out["results"]:  # type: ignore[union-attr]
        print(f"{r['endpoint']:<18}{r['clients']:>8}{r['rps']:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}"
              f"{int(r['errors']):>8}")
    path = _arg(argv, "--json")
    if path:
        with open(path, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
