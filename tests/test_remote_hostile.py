"""A hostile remote host cannot widen what a container gets, nor hold nvlow past its deadline.

Fake servers on 127.0.0.1 answer ``POST /v2/plan`` (as a remote ``nvlow serve`` would) or the 1.0
``/v1.0/docker/cli`` with dangerous content; nvlow must refuse each item by name, never pass it to
the engine, and give up on a slow server within the one budget of the exchange.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional

import pytest

import nvlow
from nvlow.errors import RemoteError
from nvlow.remote.client import remote_plan
from nvlow.remote.answer import check_v1_args, checked_args
from nvlow.plan.render import plan_document
from nvlow.plan.request import PlanRequest

HOST = nvlow.load_host(simulate="dgx-a100")
GOOD = plan_document(nvlow.plan_for(HOST, PlanRequest(gpus="0", capabilities="all")), HOST)


def _doc(**changes: Any) -> Dict[str, Any]:
    doc = json.loads(json.dumps(GOOD))
    doc.update(changes)
    return doc


class _Hostile(BaseHTTPRequestHandler):
    answer: bytes = b""
    status: int = 200
    headers_extra: List[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply()

    def do_GET(self) -> None:  # noqa: N802
        self._reply()

    def _reply(self) -> None:
        self.send_response(self.status)
        for h in self.headers_extra:
            key, _, value = h.partition(":")
            self.send_header(key, value.strip())
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def hostile(answer: Any, status: int = 200, headers: Optional[List[str]] = None) -> Iterator[str]:
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    handler = type("H", (_Hostile,), {"answer": body, "status": status, "headers_extra": headers or []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_good_plan_passes_and_its_args_are_rebuilt() -> None:
    with hostile(_doc(args=["--privileged"])) as url:
        plan = remote_plan(url, PlanRequest(gpus="0"), env={}, timeout=5)
    assert "--privileged" not in plan.args and plan.args == tuple(GOOD["args"])
    assert "--env=VDPAU_DRIVER_PATH=/usr/local/nvidia/lib64" in plan.args  # its one value passes


@pytest.mark.parametrize("doc, message", [
    (_doc(devices=[{"host_path": "/dev/kmsg", "container_path": "/dev/kmsg"}]), "not an NVIDIA device node"),
    (_doc(devices=[{"host_path": "/dev/kmsg", "container_path": "/dev/nvidia0"}]), "not an NVIDIA device node"),
    (_doc(devices=[{"host_path": "/dev/../dev/mem", "container_path": "/dev/nvidia0"}]), "refuses"),
    (_doc(mounts=[{"host_path": "/", "container_path": "/host", "read_only": False, "kind": "bind"}]),
     r"mount nvlow refuses: /:/host \(writable\)"),
    (_doc(mounts=[{"host_path": "/", "container_path": "/usr/local/nvidia/lib64/libcuda.so.1", "read_only": True,
                   "kind": "bind"}]), "mount nvlow refuses"),
    (_doc(mounts=[{"host_path": "/etc/shadow", "container_path": "/etc/OpenCL/vendors/nvidia.icd",
                   "read_only": True, "kind": "bind"}]), "mount nvlow refuses"),
    (_doc(mounts=[{"host_path": "/var/run/docker.sock", "container_path": "/run/nvidia-persistenced/socket",
                   "read_only": False, "kind": "bind"}]), "mount nvlow refuses"),
    (_doc(mounts=[{"host_path": "/usr/lib/libcuda.so.1", "container_path": "/usr/local/nvidia/lib64/libcuda.so.1",
                   "read_only": False, "kind": "bind"}]), "writable"),
    (_doc(mounts=[{"host_path": "/usr/bin/bash", "container_path": "/usr/local/nvidia/bin/nvidia-smi",
                   "read_only": True, "kind": "bind"}]), "mount nvlow refuses"),
    (_doc(mounts=[{"host_path": "a:b", "container_path": "/usr/local/nvidia", "read_only": True, "kind": "volume"}]),
     "volume nvlow refuses"),
    (_doc(env={"LD_PRELOAD": "/tmp/x.so"}), "environment variable nvlow never sets: 'LD_PRELOAD'"),
    (_doc(env={"PATH": "/bin\n--privileged"}), "invalid PATH"),
    (_doc(env={"VDPAU_DRIVER_PATH": "/tmp"}), "environment variable nvlow never sets: 'VDPAU_DRIVER_PATH'"),
    (_doc(volume_driver="local --privileged"), "volume driver nvlow refuses"),
    (_doc(devices="all"), "valid 'devices' list"),
    ([1, 2], "not a plan document"),
])
def test_hostile_v2_answers_are_refused(doc: Any, message: str) -> None:
    with hostile(doc) as url:
        with pytest.raises(RemoteError, match=message):
            remote_plan(url, PlanRequest(gpus="0"), env={}, timeout=5)


@pytest.mark.parametrize("line", [
    "--volume-driver=nvidia-docker --privileged",
    "--volume-driver=nvidia-docker --volume=/:/host --device=/dev/nvidia0",
    "--volume-driver=nvidia-docker --cap-add=ALL",
    "--volume-driver=local --device=/dev/nvidia0",
    "--device=/dev/sda",
    "--volume-driver=nvidia-docker --volume=nvidia_driver_375.26:/usr/local/nvidia:rw",
    "--pid=host",
])
def test_hostile_v1_answers_are_refused(line: str) -> None:
    with pytest.raises(RemoteError, match="option nvlow never passes on"):
        check_v1_args(tuple(line.split()), "plugin")

    class V1(_Hostile):
        def do_POST(self) -> None:  # noqa: N802 - a 1.0 plugin has no /v2/plan
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    V1.answer = line.encode()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), V1)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with pytest.raises(RemoteError, match="never passes on"):
            remote_plan(f"http://127.0.0.1:{srv.server_address[1]}", PlanRequest(), env={}, timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()


def test_nvidia_docker_1_answer_is_accepted() -> None:
    line = ("--volume-driver=nvidia-docker --volume=nvidia_driver_375.26:/usr/local/nvidia:ro "
            "--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia0")
    assert check_v1_args(tuple(line.split()), "plugin") == tuple(line.split())


def test_every_local_plan_passes_the_remote_check(tmp_path) -> None:
    """What a real nvlow serve answers is never refused: every preset, mode and capability set."""
    for preset in ("dgx-a100", "dgx-h100-mig", "workstation", "no-gpu"):
        h = nvlow.load_host(simulate=preset)
        for mode in ("bind", "volume", "plugin"):
            for caps in ("all", "compute,utility", "graphics,display"):
                plan = nvlow.plan_for(h, PlanRequest(capabilities=caps, driver_files=mode), volumes_dir=str(tmp_path))
                doc = plan_document(plan, h)
                assert checked_args(doc, "x") == doc["args"], (preset, mode, caps)


@pytest.mark.parametrize("answer, headers, message", [
    (b"", ["Location: http://evil.example/"], "redirect"),
    (b"{}", ["Content-Length: 2"], "invalid Content-Length"),
])
def test_redirects_and_duplicate_lengths(answer: bytes, headers: List[str], message: str) -> None:
    status = 302 if "redirect" in message else 200
    with hostile(answer, status=status, headers=headers) as url:
        with pytest.raises(RemoteError, match=message):
            remote_plan(url, PlanRequest(), env={}, timeout=5)


@contextlib.contextmanager
def dripping(interval: float) -> Iterator[str]:
    """A server that answers one byte every ``interval`` seconds, forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000:
                    if stop.is_set():
                        break
                    with contextlib.suppress(OSError):
                        conn.sendall(bytes([byte]))
                    time.sleep(interval)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        listener.close()


def test_a_dripping_server_cannot_hold_nvlow() -> None:
    with dripping(0.05) as url:
        started = time.monotonic()
        with pytest.raises(RemoteError, match="did not answer within 1 s"):
            remote_plan(url, PlanRequest(), env={}, timeout=1.0)
        assert time.monotonic() - started < 3.0


def test_exec_against_a_hostile_host_runs_nothing(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "NV_", "NVLOW_"))}
    with hostile(_doc(mounts=[{"host_path": "/", "container_path": "/host", "read_only": True, "kind": "bind"}])) as url:
        res = subprocess.run([sys.executable, "-m", "nvlow", "exec", "--host", url, "--dry-run", "--", "docker",
                              "run", "img"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.startswith("nvlow: error")]
    assert len(lines) == 1 and "mount nvlow refuses: /:/host" in lines[0] and "Traceback" not in res.stderr
