"""Helpers for the serve/remote tests: a server on a simulated preset, raw HTTP clients.

(No tests here; the other test_serve*/test_remote* modules import these.)
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
from typing import Any, Dict, Iterator, List, Optional, Tuple

from nvlow.host.root import HostRoot, file_node_reader
from nvlow.serve.cache import DiscoveryCache
from nvlow.serve.server import NvlowServer, ServeState
from nvlow.simulate.hosttree import simulated_host


class Log:
    """A stream collecting the server's log lines."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass


def writable_root(tmp_path: Any, preset: str = "dgx-a100") -> Tuple[HostRoot, Any]:
    """A private copy of a simulated host tree (tests may edit its /proc), and its library opener."""
    root, opener = simulated_host(preset)
    dest = os.path.join(str(tmp_path), f"root-{preset}")
    if not os.path.isdir(dest):
        shutil.copytree(root.path, dest, symlinks=True)
    return HostRoot(dest, node_reader=file_node_reader, simulated=preset), opener


@contextlib.contextmanager
def running_server(tmp_path: Any, preset: str = "dgx-a100", *, plugin: bool = False,
                   client_timeout: float = 5.0, verbose: bool = False, max_connections: int = 256,
                   root: Optional[HostRoot] = None, plugin_name: str = "nvidia-docker",
                   engine_root: Optional[str] = None, volumes_dir: Optional[str] = None,
                   ) -> Iterator[Tuple[NvlowServer, ServeState, Log]]:
    """An NvlowServer on 127.0.0.1:<free port> (and a plugin socket ``<plugin_name>.sock`` under tmp_path
    when ``plugin``); ``engine_root`` and ``plugin_name`` as ``serve --engine-root/--plugin-name``."""
    if root is None:
        root, opener = writable_root(tmp_path, preset)
    else:
        _r, opener = simulated_host(preset)
    log = Log()
    cache = DiscoveryCache(root, opener, load_uvm=False)
    state = ServeState(cache, volumes_dir=volumes_dir or os.path.join(str(tmp_path), "volumes"), verbose=verbose,
                       stream=log, plugin_name=plugin_name, engine_root=engine_root)
    sock = None
    if plugin:
        sockdir = os.path.join(str(tmp_path), "plugins")
        os.makedirs(sockdir, mode=0o700, exist_ok=True)
        sock = os.path.join(sockdir, f"{plugin_name}.sock")
    server = NvlowServer(state, ("127.0.0.1", 0), sock, client_timeout=client_timeout,
                         max_connections=max_connections)
    server.start()
    try:
        yield server, state, log
    finally:
        server.stop(grace=2.0)


def get(server: NvlowServer, path: str, method: str = "GET", body: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    """One request on a fresh connection: (status, lower-case headers, body)."""
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(server: NvlowServer, path: str) -> Tuple[int, Any]:
    status, _h, body = get(server, path)
    return status, json.loads(body)


def raw(server: NvlowServer, data: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it."""
    host, port = server.address
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (what dockerd does with the plugin)."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


PLUGIN_ACCEPT = "application/vnd.docker.plugins.v1.2+json"


def trickle(s: socket.socket, data: bytes, interval: float) -> bool:
    """Send ``data`` one byte at a time, waiting up to ``interval`` seconds after each for the server to
    close the connection; True when it did (end of stream or a reset)."""
    for i in range(len(data)):
        try:
            s.sendall(data[i:i + 1])
            s.settimeout(interval)
            if s.recv(1) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def plugin_call(socket_path: str, endpoint: str, payload: Optional[Dict[str, Any]] = None,
                accept: Optional[str] = PLUGIN_ACCEPT, method: str = "POST") -> Tuple[int, Any]:
    """One volume plugin request: (status, decoded JSON or text)."""
    conn = UnixHTTPConnection(socket_path)
    try:
        headers = {"Content-Type": "application/json"}
        if accept is not None:
            headers["Accept"] = accept
        conn.request(method, endpoint, body=json.dumps(payload or {}).encode(), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data.decode()
    finally:
        conn.close()
