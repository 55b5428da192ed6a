"""Load and faults: thousands of requests from many clients plus malformed ones; zero wrong answers."""
from __future__ import annotations

import http.client
import json
import random
import socket
import threading

from test_serve_support import get, get_json, running_server

CLIENTS = 48
REQUESTS_PER_CLIENT = 60  # 2880 requests in all
MALFORMED = [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GET /docker/cli HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /docker/cli HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n",
    b"GET /docker/cli?dev=%zz HTTP/1.1\r\n\r\n",
    b"GET /docker/cli HTTP/1.1\r\n",  # truncated, then the client goes away
]


def _expected(server):
    want = {}
    for path in ("/docker/cli", "/docker/cli?dev=0+3", "/v1.0/docker/cli/json?dev=7", "/v2/args?gpus=2",
                 "/docker/cli?dev=99", "/gpu/info/json", "/nope"):
        status, _h, body = get(server, path)
        want[path] = (status, body)
    return want


def test_many_clients_no_wrong_answers(tmp_path):
    with running_server(tmp_path, client_timeout=2.0) as (server, state, _log):
        want = _expected(server)
        paths = sorted(want)
        wrong = []
        lock = threading.Lock()
        host, port = server.address

        def client(seed):
            rnd = random.Random(seed)
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                for i in range(REQUESTS_PER_CLIENT):
                    path = rnd.choice(paths)
                    if i % 10 == 9:  # some clients reconnect
                        conn.close()
                        conn = http.client.HTTPConnection(host, port, timeout=30)
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    got = (resp.status, resp.read())
                    if got != want[path]:
                        with lock:
                            wrong.append((path, got[0], got[1][:80]))
            except Exception as exc:  # noqa: BLE001 - counted as a wrong answer
                with lock:
                    wrong.append(("exception", type(exc).__name__, str(exc)))
            finally:
                conn.close()

        def vandal(seed):
            rnd = random.Random(seed)
            for _ in range(10):
                data = rnd.choice(MALFORMED)
                try:
                    with socket.create_connection((host, port), timeout=10) as s:
                        s.sendall(data)
                        s.shutdown(socket.SHUT_WR)
                        s.recv(4096)
                except OSError:
                    pass

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        threads += [threading.Thread(target=vandal, args=(1000 + i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert wrong == []
        status, health = get_json(server, "/healthz")
        assert status == 200 and health["status"] == "ok" and health["discoveries"] == 1
        assert state.requests >= CLIENTS * REQUESTS_PER_CLIENT
        status, _h, body = get(server, "/docker/cli")
        assert (status, body) == want["/docker/cli"]


def test_graceful_stop_finishes_and_closes_idle_connections(tmp_path):
    with running_server(tmp_path) as (server, _state, _log):
        host, port = server.address
        idle = socket.create_connection((host, port), timeout=10)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in idle.recv(4096)
    # the context manager stopped the server: the idle keep-alive connection was closed
    assert idle.recv(100) == b""
    idle.close()
    try:
        socket.create_connection((host, port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused
