"""serve's HTTP layer: the request parser, pipelining, partial reads, slow clients, keep-alive rules, the
answers kept per discovery and identical requests sharing one computation. Every client is on loopback;
loops are bounded."""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from typing import Dict, List, Tuple

import pytest

import nvlow.serve.server as srvmod
from nvlow.serve.httpd import (INLINE_TARGETS, MAX_BODY, MAX_HEADER_BYTES, MAX_LINE, SIDE_BY_SIDE, HeadScan, HttpError,
                               parse_head, split_target)
from test_serve_support import get, get_json, raw, running_server, trickle

# -- the parser ---------------------------------------------------------------------------------


def _error(data: bytes) -> Tuple[int, str]:
    with pytest.raises(HttpError) as info:
        parse_head(data)
    return info.value.status, info.value.message


def test_parse_a_complete_head() -> None:
    head = parse_head(b"GET /docker/cli?dev=0+1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-A: 1\r\nx-a:  2 \r\n\r\nrest")
    assert head is not None
    assert (head.method, head.target, head.version, head.http09, head.keep_alive, head.length) == (
        "GET", "/docker/cli?dev=0+1", "HTTP/1.1", False, True, 0)
    assert head.headers == {"host": "x", "accept": "*/*", "x-a": "2"}  # lower-case names, the last value
    assert head.size == len(b"GET /docker/cli?dev=0+1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
    assert head.line == "GET /docker/cli?dev=0+1 HTTP/1.1"


@pytest.mark.parametrize("data", [b"", b"GET /healthz HT", b"GET /healthz HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n",
                                  b"GET / HTTP/1.1\r\nHost: x\r\n\r", b"\r\n\r\n"])
def test_parse_incomplete_heads_wait(data: bytes) -> None:
    assert parse_head(data) is None


def test_parse_bare_lf_and_leading_empty_lines() -> None:
    head = parse_head(b"\r\n\nGET /healthz HTTP/1.1\nHost: x\n\n")
    assert head is not None and head.target == "/healthz" and head.headers == {"host": "x"}
    assert head.size == len(b"\r\n\nGET /healthz HTTP/1.1\nHost: x\n\n")
    head = parse_head(b"GET /a HTTP/1.1\n\r\n")
    assert head is not None and head.size == len(b"GET /a HTTP/1.1\n\r\n")


def test_parse_request_line_limit() -> None:
    line = b"GET /" + b"a" * (MAX_LINE - len(b"GET / HTTP/1.1\r\n")) + b" HTTP/1.1\r\n"
    assert len(line) == MAX_LINE
    assert parse_head(line + b"\r\n") is not None
    longer = line.replace(b"/a", b"/aa", 1)
    assert _error(longer + b"\r\n")[0] == 414
    assert _error(b"GET /" + b"a" * MAX_LINE)[0] == 414  # no line end yet, already too long


@pytest.mark.parametrize("line,status", [
    (b"GARBAGE", 400),
    (b"   ", 400),
    (b"GET / HTTP/1.1 extra", 400),
    (b"GET / HTTX/1.1", 400),
    (b"GET / HTTP/1", 400),
    (b"GET / HTTP/1.x", 400),
    (b"GET / HTTP/+1.1", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/9.9", 505),
    (b"POST /v2/plan", 400),  # two words: only HTTP/0.9's GET
    (b"\x00\x01\x02garbage", 400),
])
def test_parse_bad_request_lines(line: bytes, status: int) -> None:
    assert _error(line + b"\r\n\r\n")[0] == status


@pytest.mark.parametrize("headers,status,message", [
    (b"Host x\r\n", 400, "malformed header line"),
    (b"Host : x\r\n", 400, "malformed header line"),
    (b": x\r\n", 400, "malformed header line"),
    (b"X-A: 1\r\n  folded\r\n", 400, "folded header lines are not accepted"),
    (b"X: y\r\n" * 101, 431, "too many header fields"),
    (b"X: " + b"y" * MAX_HEADER_BYTES + b"\r\n", 431, "request header fields too large"),
    (b"Content-Length: 2\r\nContent-Length: 2\r\n", 400, "more than one Content-Length"),
    (b"Content-Length: +2\r\n", 400, "invalid Content-Length"),
    (b"Content-Length: 0x10\r\n", 400, "invalid Content-Length"),
    (b"Content-Length: 1 2\r\n", 400, "invalid Content-Length"),
    (b"Content-Length: \xd9\xa3\r\n", 400, "invalid Content-Length"),  # a non-ASCII digit
    (b"Content-Length: " + str(MAX_BODY + 1).encode() + b"\r\n", 413, "request body too large"),
    (b"Transfer-Encoding: chunked\r\n", 411, "chunked bodies are not accepted; send Content-Length"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 411, "chunked bodies are not accepted; send Content-Length"),
])
def test_parse_bad_headers(headers: bytes, status: int, message: str) -> None:
    assert _error(b"POST /v2/plan HTTP/1.1\r\n" + headers + b"\r\n") == (status, message)


def test_parse_headers_too_large_before_they_end() -> None:
    assert _error(b"GET / HTTP/1.1\r\nX: " + b"y" * (MAX_HEADER_BYTES + 10))[0] == 431


def test_parse_body_length_and_keep_alive_rules() -> None:
    def head(text: bytes):  # noqa: ANN202
        h = parse_head(text + b"\r\n")
        assert h is not None
        return h

    assert head(b"POST /v2/plan HTTP/1.1\r\nContent-Length: 12\r\n").length == 12
    assert head(b"POST /v2/plan HTTP/1.1\r\nContent-Length:\r\n").length == 0
    assert head(b"GET / HTTP/1.1\r\n").keep_alive
    assert not head(b"GET / HTTP/1.1\r\nConnection: close\r\n").keep_alive
    assert not head(b"GET / HTTP/1.1\r\nConnection: TE, Close\r\n").keep_alive
    assert not head(b"GET / HTTP/1.0\r\n").keep_alive
    assert head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n").keep_alive
    h09 = head(b"GET /healthz\r\n")
    assert h09.http09 and not h09.keep_alive
    assert head(b"POST /v2/plan HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n").expect
    assert not head(b"POST /v2/plan HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n").expect


@pytest.mark.parametrize("data", [
    b"GET /docker/cli?dev=0 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"\r\n\nPOST /v2/plan HTTP/1.0\nContent-Length: 2\nConnection: keep-alive\n\n{}",
    b"GET /a HTTP/1.1\n\r\n",
    b"GET /healthz\r\n\r\n",
])
def test_parse_in_pieces_is_parsing_at_once(data: bytes) -> None:
    whole = parse_head(data)
    assert whole is not None
    for cut in range(1, len(data)):  # every split into two reads, and byte by byte
        buf = bytearray()
        scan = HeadScan()
        got = None
        for piece in (data[:cut], data[cut:]):
            buf += piece
            got = parse_head(buf, scan)
        assert got is not None and (got.line, got.size, got.headers, got.length, got.keep_alive) == (
            whole.line, whole.size, whole.headers, whole.length, whole.keep_alive)
    buf, scan, results = bytearray(), HeadScan(), []
    for i in range(len(data)):
        buf += data[i:i + 1]
        results.append(parse_head(buf, scan))
    assert results[-1] is not None and results[-1].size == whole.size
    assert all(r is None for r in results[:whole.size - 1])


def test_parse_in_pieces_looks_at_each_byte_about_once() -> None:
    # a head trickled one byte per read is not rescanned from its start on every read
    data = b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\n" + b"X-Long: " + b"y" * (MAX_HEADER_BYTES - 100) + b"\r\n\r\n"
    buf, scan = bytearray(), HeadScan()
    started = time.monotonic()
    head = None
    for i in range(len(data)):
        buf += data[i:i + 1]
        head = parse_head(buf, scan)
    assert head is not None and head.size == len(data)
    assert time.monotonic() - started < 1.0  # ~0.1 s; scanning from the start on every read: ~4 s
    with pytest.raises(HttpError):
        buf, scan = bytearray(), HeadScan()
        for _ in range(MAX_LINE + 2):
            buf += b"\r\n"
            parse_head(buf, scan)  # a flood of empty lines is refused, not kept


def test_split_target() -> None:
    assert split_target("/docker/cli") == ("/docker/cli", "")
    assert split_target("/docker/cli?dev=0+1&vol=nvidia_driver") == ("/docker/cli", "dev=0+1&vol=nvidia_driver")
    assert split_target("/gpu/info#frag") == ("/gpu/info", "")
    assert split_target("http://localhost:3476/v1.0/gpu/info?x=1") == ("/v1.0/gpu/info", "x=1")
    assert split_target("//evil.example/docker/cli") == ("/evil.example/docker/cli", "")
    with pytest.raises(HttpError) as info:
        split_target("http://[::1/docker/cli")  # an unclosed IPv6 host: the parser's ValueError is a 400
    assert (info.value.status, info.value.message) == (400, "malformed request target")


# -- over a socket --------------------------------------------------------------------------------


def _read_response(f) -> Tuple[int, Dict[str, str], bytes]:  # noqa: ANN001
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers: Dict[str, str] = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 100:
        return status, headers, b""
    return status, headers, f.read(int(headers["content-length"]))


def _connect(server, timeout: float = 10):  # noqa: ANN001, ANN202
    s = socket.create_connection(server.address, timeout=timeout)
    return s, s.makefile("rb")


def test_pipelined_requests_are_answered_in_order(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        want = {p: get(server, p) for p in ("/docker/cli", "/gpu/info/json", "/healthz", "/docker/cli?dev=1")}
        paths = ["/docker/cli", "/gpu/status/json", "/healthz", "/nope", "/docker/cli?dev=1", "/gpu/info/json",
                 "/gpu/status", "/docker/cli"]
        s, f = _connect(server)
        with s, f:
            s.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
                      + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
            got = [_read_response(f) for _ in range(len(paths) + 1)]
            assert f.read() == b""  # closed after the last
        for p, (status, headers, body) in zip(paths, got):
            if p in want:
                assert (status, body) == (want[p][0], want[p][2]), p
        assert got[1][0] == 200 and json.loads(got[1][2])["Devices"]
        assert got[3][0] == 404
        assert got[6][2].startswith(b"\nDevice #0")
        assert got[-1][0] == 200 and got[-1][1]["connection"] == "close"
        assert all("connection" not in h for _s, h, _b in got[:-1])


def test_a_long_pipeline_is_answered_in_turns(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        get(server, "/docker/cli?dev=0")  # kept: answered on the loop
        s, f = _connect(server)
        with s, f:
            n = 300
            s.sendall(b"".join(f"GET /docker/cli?dev={i % 2} HTTP/1.1\r\n\r\n".encode() for i in range(n)))
            other = get(server, "/healthz")  # another client is served while the pipeline is worked off
            assert other[0] == 200
            for i in range(n):
                status, _h, body = _read_response(f)
                assert status == 200 and body.endswith(f":/dev/nvidia{i % 2}".encode())


def test_a_request_in_pieces_is_answered(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        body = json.dumps({"gpus": "1"}).encode()
        data = (b"POST /v2/plan HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                + b"GET /docker/cli?dev=0 HTTP/1.1\r\n\r\n")
        s, f = _connect(server)
        with s, f:
            for i in range(0, len(data), 7):  # 7-byte pieces: lines, the head's end and the body all split
                s.sendall(data[i:i + 7])
                time.sleep(0.005)
            status, _h, answer = _read_response(f)
            assert status == 200 and json.loads(answer)["selection"]["gpus"] == [1]
            status, _h, answer = _read_response(f)
            assert status == 200 and answer.endswith(b":/dev/nvidia0")


def test_expect_100_continue(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        body = b'{"gpus": "0"}'
        s, f = _connect(server)
        with s, f:
            s.sendall(b"POST /v2/plan HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n")
            assert _read_response(f)[0] == 100
            s.sendall(body)
            status, _h, answer = _read_response(f)
            assert status == 200 and json.loads(answer)["selection"]["gpus"] == [0]


def test_head_gets_no_body(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        s, f = _connect(server)
        with s, f:
            s.sendall(b"HEAD /docker/cli HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
            status_line = f.readline()
            assert status_line.startswith(b"HTTP/1.1 405")
            while f.readline() not in (b"\r\n", b""):
                pass
            status, _h, answer = _read_response(f)  # the next answer follows the head at once
            assert status == 200 and json.loads(answer)["status"] == "ok"


def test_http_1_0_and_0_9(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        answer = raw(server, b"GET /docker/cli?dev=0 HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in answer
        assert answer.endswith(b":/dev/nvidia0")
        s, f = _connect(server)
        with s, f:  # HTTP/1.0 asking for keep-alive keeps the connection
            s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
            assert _read_response(f)[0] == 200 and _read_response(f)[0] == 200
        assert raw(server, b"GET /docker/cli?dev=0\r\n\r\n").endswith(b":/dev/nvidia0")  # 0.9: the body alone
        assert not raw(server, b"GET /docker/cli?dev=0\r\n\r\n").startswith(b"HTTP/")


@pytest.mark.parametrize("data,code", [
    (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    (b"GET /healthz HTTP/2\r\n\r\n", 400),
    (b"GET /healthz HTTP/3.0\r\n\r\n", 505),
    (b"GET http://[::1/gpu/status HTTP/1.1\r\n\r\n", 400),
])
def test_more_malformed_requests(tmp_path, data: bytes, code: int) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        answer = raw(server, data)
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == str(code).encode()
        assert b"\r\nConnection: close\r\n" in answer
        assert get(server, "/healthz")[0] == 200


def test_an_answer_with_close_survives_unread_input(tmp_path) -> None:
    # the server answers 431 before it has read all the client sent; it drains the rest instead of
    # resetting the connection, so the client reads the answer
    with running_server(tmp_path) as (server, _state, _log):
        with socket.create_connection(server.address, timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nX: " + b"y" * (MAX_HEADER_BYTES + 200_000))
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        assert b"".join(chunks).startswith(b"HTTP/1.1 431 ")


def test_slowloris_is_dropped_at_the_deadline_and_a_slow_request_within_it_is_answered(tmp_path) -> None:
    with running_server(tmp_path, client_timeout=2.0) as (server, _state, _log):
        server.rest.request_deadline = 1.5
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: abcdefgh\r\n\r\n"
        # within the deadline: every byte within the stall timeout, the whole request in ~0.5 s
        s, f = _connect(server)
        with s, f:
            for i in range(len(request)):
                s.sendall(request[i:i + 1])
                time.sleep(0.5 / len(request))
            assert _read_response(f)[0] == 200
        # past it: a byte every 0.25 s, never a whole request
        with socket.create_connection(server.address, timeout=10) as s:
            started = time.monotonic()
            closed = trickle(s, request[:40], 0.25)
            took = time.monotonic() - started
        assert closed and 1.4 < took < 3.5
        assert get(server, "/healthz")[0] == 200


def test_idle_keep_alive_connections_are_closed_after_the_stall_timeout(tmp_path) -> None:
    with running_server(tmp_path, client_timeout=0.5) as (server, _state, _log):
        s, f = _connect(server)
        with s, f:
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert _read_response(f)[0] == 200
            started = time.monotonic()
            assert s.recv(10) == b""
            assert 0.3 < time.monotonic() - started < 3.0


def test_a_client_that_does_not_read_is_dropped(tmp_path) -> None:
    with running_server(tmp_path, client_timeout=0.5) as (server, _state, _log):
        with socket.create_connection(server.address, timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert b" 200 " in s.recv(4096)  # the connection is up on the server's side
            assert len(server.rest._conns) == 1  # noqa: SLF001
            s.settimeout(0.2)
            started = time.monotonic()
            dropped = False
            while time.monotonic() - started < 8:  # never reads: the server's sends stall, then it gives up
                try:
                    s.sendall(b"GET /gpu/info HTTP/1.1\r\n\r\n")
                except socket.timeout:
                    pass  # the server no longer reads either
                except OSError:
                    dropped = True
                    break
                if not server.rest._conns:  # noqa: SLF001 - closed on the server's side
                    dropped = True
                    break
            assert dropped and 0.4 < time.monotonic() - started < 5
        assert get(server, "/healthz")[0] == 200


def test_the_loop_survives_a_crashing_quick_function(tmp_path, monkeypatch) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        def boom(*_args):  # noqa: ANN202
            raise RuntimeError("kaboom")

        monkeypatch.setattr(server.rest, "quick", boom)
        assert get(server, "/docker/cli?dev=0")[2].endswith(b":/dev/nvidia0")  # the workers answered


# -- answers kept per discovery, identical requests computed once -----------------------------------


def _counting(monkeypatch, path: str) -> List[int]:
    calls: List[int] = []
    original = srvmod.ROUTES[path]

    def counted(state, request):  # noqa: ANN001, ANN202
        calls.append(1)
        return original(state, request)

    monkeypatch.setitem(srvmod.ROUTES, path, counted)
    return calls


def test_host_only_answers_are_kept_until_the_driver_changes(tmp_path, monkeypatch) -> None:
    cli = _counting(monkeypatch, "/docker/cli")
    status = _counting(monkeypatch, "/gpu/status/json")
    with running_server(tmp_path) as (server, state, _log):
        get(server, "/healthz")  # discovers (as serve does at start): answers are kept from here on
        first = get(server, "/docker/cli?dev=0")
        for _ in range(5):
            assert get(server, "/docker/cli?dev=0")[::2] == first[::2]
        assert len(cli) == 1
        get(server, "/docker/cli?dev=0+1")
        get(server, "/docker/cli?dev=99")  # a 400 is not kept
        get(server, "/docker/cli?dev=99")
        assert len(cli) == 4
        for _ in range(3):
            get(server, "/gpu/status/json")  # live readings: every request
        assert len(status) == 3
        path = state.cache.root.host("/proc/driver/nvidia/version")
        with open(path) as fh:
            text = fh.read()
        with open(path, "w") as fh:
            fh.write(text.replace("550.54.15", "555.42.02"))
        assert b"nvidia_driver_555.42.02" in get(server, "/docker/cli?dev=0")[2]
        assert len(cli) == 5 and state.cache.discoveries == 2


def test_a_volume_answer_is_not_kept(tmp_path) -> None:
    with running_server(tmp_path) as (server, _state, _log):
        status, doc = get_json(server, "/v2/args?driver_files=volume&gpus=0")
        assert status == 200
        volume = next(a.split("=", 1)[1].split(":", 1)[0] for a in doc["args"] if a.startswith("--volume="))
        assert os.path.isdir(volume)
        shutil.rmtree(volume)
        assert get_json(server, "/v2/args?driver_files=volume&gpus=0")[0] == 200
        assert os.path.isdir(volume)  # built again: the request ran


@pytest.mark.parametrize("waits", [False, True], ids=["one-at-a-time", "side-by-side"])
def test_identical_requests_waiting_for_a_worker_share_one_answer_computed_after_they_arrived(
        tmp_path, monkeypatch, waits: bool) -> None:
    """Requests that come while a reading of their target runs share the next one. When the library's
    readings mostly wait (NVML sampling the PCIe counters), that next reading starts at once on another
    worker (up to SIDE_BY_SIDE at once) instead of when the first ends; either way every answer is
    computed after its request came, and only live paths run side by side."""
    calls: List[float] = []
    active, most = [0], [0]
    lock = threading.Lock()

    def slow_status(state, request):  # noqa: ANN001, ANN202
        started = time.monotonic()
        with lock:
            calls.append(started)
            n = len(calls)
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.4)
        with lock:
            active[0] -= 1
        return srvmod.Response(200, json.dumps({"call": n, "started": started}).encode())

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status/json", slow_status)
    monkeypatch.setattr(srvmod.DiscoveryCache, "readings_wait", lambda self: waits)
    with running_server(tmp_path) as (server, state, _log):
        assert srvmod.side_by_side(state, "/gpu/status/json?a=1") is waits
        assert srvmod.side_by_side(state, "/v2/status") is waits
        assert srvmod.side_by_side(state, "http://127.0.0.1:3476/v1.0/gpu/status#x") is waits  # as routed
        assert not srvmod.side_by_side(state, "/docker/cli") and not srvmod.side_by_side(state, "/v2/plan")
        results: Dict[int, Tuple[float, dict]] = {}

        def client(i: int) -> None:
            sent = time.monotonic()
            status, _h, body = get(server, "/gpu/status/json")
            assert status == 200
            results[i] = (sent, json.loads(body))

        first = threading.Thread(target=client, args=(0,))
        first.start()
        time.sleep(0.1)  # the first is being computed
        others = [threading.Thread(target=client, args=(i,)) for i in range(1, 9)]
        for t in others:
            t.start()
        for t in [first, *others]:
            t.join(20)
        assert len(results) == 9 and results[0][1]["call"] == 1
        for sent, doc in results.values():  # no answer was computed before its request was sent
            assert doc["started"] >= sent
        if not waits:
            assert len(calls) == 2  # one for the first, one shared by the eight that waited
            assert {r[1]["call"] for i, r in results.items() if i} == {2}
            assert calls[1] >= calls[0] + 0.4  # the second started when the first had ended
        else:
            assert calls[1] < calls[0] + 0.4  # the others did not wait for the first to end
            assert 2 <= most[0] <= SIDE_BY_SIDE and len(calls) <= 1 + SIDE_BY_SIDE


@pytest.mark.parametrize("quick", [True, False], ids=["on-the-loop", "on-a-worker"])
def test_quick_readings_are_computed_on_the_loop_once_per_turn(tmp_path, monkeypatch, quick: bool) -> None:
    """When the last reading took microseconds, the loop computes a live path itself, once for every
    request of it read in one turn (no hand-off to a worker); otherwise a worker does. Either way the
    requests that came while one was computed share the next computation, made after they came."""
    calls: List[Tuple[str, float]] = []

    def status(state, request):  # noqa: ANN001, ANN202
        started = time.monotonic()
        calls.append((threading.current_thread().name, started))
        if len(calls) == 1:
            time.sleep(0.3)  # on the loop: nothing else is read meanwhile
        return srvmod.Response(200, json.dumps({"call": len(calls), "started": started}).encode())

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status/json", status)
    monkeypatch.setattr(srvmod.DiscoveryCache, "readings_quick", lambda self: quick)
    with running_server(tmp_path) as (server, state, _log):
        assert srvmod.inline(state, "/gpu/status?x=1") is quick and srvmod.inline(state, "/v2/status") is quick
        assert not srvmod.inline(state, "/docker/cli") and not srvmod.inline(state, "/v2/plan")
        first, f_first = _connect(server)
        first.sendall(b"GET /gpu/status/json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # the first is being computed
        sent = time.monotonic()
        others = [_connect(server) for _ in range(8)]
        for s, _f in others:
            s.sendall(b"GET /gpu/status/json HTTP/1.1\r\nHost: x\r\n\r\n")
        with first, f_first:
            assert json.loads(_read_response(f_first)[2])["call"] == 1
        for s, f in others:
            with s, f:
                status_code, _h, body = _read_response(f)
                doc = json.loads(body)
                assert status_code == 200 and doc["call"] == 2 and doc["started"] >= sent
    where = {name for name, _t in calls}
    assert len(calls) == 2
    assert where == ({"nvlow-serve-rest"} if quick else {"nvlow-serve-worker"})


@pytest.mark.parametrize("threshold,where", [(60.0, "nvlow-serve-rest"), (0.0, "nvlow-serve-worker")],
                         ids=["quick", "slow"])
def test_the_measured_reading_decides_where_status_is_computed(tmp_path, monkeypatch, threshold: float,
                                                               where: str) -> None:
    """The wiring end to end, on the simulated library's real readings: the first reading runs on a worker
    (nothing measured yet); after it, the loop computes when the reading took less than the threshold."""
    import nvlow.serve.cache as cachemod

    monkeypatch.setattr(cachemod, "QUICK_READING_SECONDS", threshold)
    names: List[str] = []
    original = srvmod.ROUTES["/gpu/status/json"]

    def recording(state, request):  # noqa: ANN001, ANN202
        names.append(threading.current_thread().name)
        return original(state, request)

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status/json", recording)
    with running_server(tmp_path) as (server, _state, _log):
        for _ in range(3):
            status, _h, body = get(server, "/gpu/status/json")
            assert status == 200 and json.loads(body)["Devices"]
    assert names == ["nvlow-serve-worker", where, where]


def test_the_loop_computes_at_most_a_few_targets_a_turn(tmp_path, monkeypatch) -> None:
    """Distinct quick targets in one turn: INLINE_TARGETS of them on the loop, the rest on workers (many
    query variants cannot hold the loop)."""
    calls: List[Tuple[str, str]] = []

    def status(state, request):  # noqa: ANN001, ANN202
        calls.append((request.raw_query, threading.current_thread().name))
        if not calls[1:]:
            time.sleep(0.3)
        return srvmod.Response(200, request.raw_query.encode())

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status/json", status)
    monkeypatch.setattr(srvmod.DiscoveryCache, "readings_quick", lambda self: True)
    with running_server(tmp_path) as (server, _state, _log):
        first, f_first = _connect(server)
        first.sendall(b"GET /gpu/status/json?n=0 HTTP/1.1\r\n\r\n")
        time.sleep(0.1)
        conns = [_connect(server) for _ in range(INLINE_TARGETS + 2)]
        for n, (s, _f) in enumerate(conns, 1):
            s.sendall(f"GET /gpu/status/json?n={n} HTTP/1.1\r\n\r\n".encode())
        with first, f_first:
            assert _read_response(f_first)[2] == b"n=0"
        for n, (s, f) in enumerate(conns, 1):
            with s, f:
                assert _read_response(f)[2] == f"n={n}".encode()
    later = [name for query, name in calls if query != "n=0"]
    assert later.count("nvlow-serve-rest") == INLINE_TARGETS and later.count("nvlow-serve-worker") == 2


def test_a_shared_answer_is_sent_to_each_asker_as_it_asked(tmp_path, monkeypatch) -> None:
    """The loop thread sends a shared answer to every connection that joined it: a keep-alive one
    serves its next (pipelined) request, a ``Connection: close`` one is closed after it, and a big
    answer that does not fit the socket buffer at once still arrives whole."""
    gate = threading.Event()

    def slow_status(state, request):  # noqa: ANN001, ANN202
        gate.wait(10)
        return srvmod.Response(200, b"x" * (4 << 20))  # larger than a loopback socket buffer

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status/json", slow_status)
    with running_server(tmp_path) as (server, _state, _log):
        first, f_first = _connect(server)
        first.sendall(b"GET /gpu/status/json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # the first is being computed: the three below wait together for the next turn
        keep, f_keep = _connect(server)
        keep.sendall(b"GET /gpu/status/json HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        close, f_close = _connect(server)
        close.sendall(b"GET /gpu/status/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        other, f_other = _connect(server)
        other.sendall(b"GET /gpu/status/json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        gate.set()
        with first, f_first, keep, f_keep, close, f_close, other, f_other:
            for f in (f_first, f_keep, f_close, f_other):
                status, headers, body = _read_response(f)
                assert status == 200 and len(body) == 4 << 20
            assert _read_response(f_keep)[0] == 200  # the pipelined /healthz after the shared answer
            assert f_close.read() == b""  # closed after its answer
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(f_other)[0] == 200  # still open


def test_different_targets_are_computed_side_by_side(tmp_path, monkeypatch) -> None:
    active: List[int] = []
    most = [0]
    lock = threading.Lock()

    def slow(state, request):  # noqa: ANN001, ANN202
        with lock:
            active.append(1)
            most[0] = max(most[0], len(active))
        time.sleep(0.3)
        with lock:
            active.pop()
        return srvmod.Response(200, request.raw_query.encode())

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status/json", slow)
    with running_server(tmp_path) as (server, _state, _log):
        bodies: Dict[int, bytes] = {}

        def client(i: int) -> None:
            bodies[i] = get(server, f"/gpu/status/json?n={i}")[2]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert bodies == {i: f"n={i}".encode() for i in range(4)}
        assert most[0] == 4 and time.monotonic() - started < 1.0


def test_stop_finishes_a_request_in_flight_and_closes_the_rest(tmp_path, monkeypatch) -> None:
    def slow(state, request):  # noqa: ANN001, ANN202
        time.sleep(0.5)
        return srvmod.Response(200, b"done\n")

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/status", slow)
    got: List[Tuple[int, Dict[str, str], bytes]] = []
    with running_server(tmp_path) as (server, _state, _log):
        busy, busy_f = _connect(server)
        idle, idle_f = _connect(server)
        partial, _partial_f = _connect(server)
        idle.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert _read_response(idle_f)[0] == 200
        partial.sendall(b"GET /healthz HT")
        busy.sendall(b"GET /gpu/status HTTP/1.1\r\n\r\n")
        time.sleep(0.1)
        started = time.monotonic()
        server.stop(grace=5.0)
        took = time.monotonic() - started
        got.append(_read_response(busy_f))
        assert idle.recv(10) == b"" and partial.recv(10) == b""
        assert busy.recv(10) == b""
        for s in (busy, idle, partial):
            s.close()
    assert got[0][0] == 200 and got[0][2] == b"done\n" and got[0][1]["connection"] == "close"
    assert 0.2 < took < 3.0
