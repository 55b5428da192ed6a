"""serve against slow and malformed clients: a request deadline, a per-client connection cap, and one
Content-Length. Every client is on loopback (127.0.0.1 and 127.0.0.2); loops are bounded."""
from __future__ import annotations

import contextlib
import socket
import time
from typing import Iterator, List

from test_serve_support import get, raw, running_server, trickle


def _slow_client(address, source: str = "127.0.0.1") -> socket.socket:
    """A connection that has sent only part of a request line."""
    s = socket.create_connection(address, timeout=5, source_address=(source, 0))
    s.sendall(b"GET /healthz HT")
    return s


def _get_from(address, source: str) -> bytes:
    with socket.create_connection(address, timeout=5, source_address=(source, 0)) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        chunks: List[bytes] = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@contextlib.contextmanager
def _closing(socks: List[socket.socket]) -> Iterator[None]:
    try:
        yield
    finally:
        for s in socks:
            s.close()


def test_a_trickling_client_is_dropped_at_the_deadline(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        server.rest.request_deadline = 1.0
        s = _slow_client(server.address)
        with _closing([s]):
            started = time.monotonic()
            # one byte every 0.2 s: each read succeeds, so only the whole-request deadline ends it
            closed = trickle(s, b"T" * 40, 0.2)
            assert closed and time.monotonic() - started < 4.0


def test_slow_clients_of_one_address_do_not_lock_out_others(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        server.rest.max_per_client = 8
        server.rest.request_deadline = 30.0
        slow = [_slow_client(server.address) for _ in range(8)]
        with _closing(slow):
            time.sleep(0.2)
            # the ninth from the same address is refused at once...
            assert _get_from(server.address, "127.0.0.1").startswith(b"HTTP/1.1 503")
            # ...while another address is served
            assert b" 200 " in _get_from(server.address, "127.0.0.2").split(b"\r\n", 1)[0]
        time.sleep(0.3)
        assert b" 200 " in _get_from(server.address, "127.0.0.1").split(b"\r\n", 1)[0]


def test_two_content_lengths_are_refused(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        answer = raw(server, b"POST /v2/plan HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 400") and b"more than one Content-Length" in answer
        answer = raw(server, b"POST /v2/plan HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 400")
        status, _headers, _body = get(server, "/healthz")
        assert status == 200
