"""nvlow.engine.client against a fake Docker Engine API served on a unix socket by a thread."""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from typing import Callable, Iterator, List, Optional

import pytest

from nvlow.engine.client import EngineClient, engine_socket, parse_response, quote_path
from nvlow.errors import EngineError

Handler = Callable[[str, socket.socket], None]

IMAGE = {"Id": "sha256:abc", "RepoTags": ["nvidia/cuda:12.4.1-base-ubuntu22.04"],
         "Config": {"Env": ["PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/bin",
                            "NVIDIA_REQUIRE_CUDA=cuda>=12.4"], "Labels": {"maintainer": "NVIDIA CORPORATION"}}}
VERSION = {"Version": "28.2.2", "ApiVersion": "1.50"}
INFO = {"Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc", "CDISpecDirs": ["/etc/cdi"]}


def reply(conn: socket.socket, status: int, body: bytes, ctype: str = "application/json",
          chunked: bool = False) -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nServer: fake\r\n"
    if chunked:
        out = b""
        for i in range(0, len(body), 7):  # small chunks, with an extension on one of them
            piece = body[i:i + 7]
            ext = ";name=v" if i == 7 else ""
            out += f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n"
        out += b"0\r\nX-Trailer: t\r\n\r\n"
        conn.sendall(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + out)
    else:
        conn.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def docker_api(path: str, conn: socket.socket, chunked: bool = False) -> None:
    """A well-behaved engine: /_ping, /version, /info, /images/<name>/json."""
    if path == "/_ping":
        reply(conn, 200, b"OK", "text/plain", chunked)
    elif path == "/version":
        reply(conn, 200, json.dumps(VERSION).encode(), chunked=chunked)
    elif path == "/info":
        reply(conn, 200, json.dumps(INFO).encode(), chunked=chunked)
    elif path == "/images/nvidia/cuda:12.4.1-base-ubuntu22.04/json":
        reply(conn, 200, json.dumps(IMAGE).encode(), chunked=chunked)
    elif path.startswith("/images/"):
        name = path[len("/images/"):-len("/json")]
        reply(conn, 404, json.dumps({"message": f"No such image: {name}"}).encode(), chunked=chunked)
    else:
        reply(conn, 404, b'{"message":"page not found"}', chunked=chunked)


class FakeEngine:
    """Serves ``handler(path, conn)`` on a unix socket; records request heads."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.requests: List[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stop.is_set():
                conn.close()
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        piece = conn.recv(4096)
                        if not piece:
                            break
                        data += piece
                    self.requests.append(data)
                    path = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else ""
                    self.handler(path, conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        try:  # wake the blocked accept(): closing the listener alone does not on Linux
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(self.path)
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()



@pytest.fixture
def sockdir() -> Iterator[str]:
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer
    d = tempfile.mkdtemp(prefix="nvlow-eng-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def serve(sockdir: str) -> Iterator[Callable[[Handler], FakeEngine]]:
    engines: List[FakeEngine] = []

    def start(handler: Handler) -> FakeEngine:
        eng = FakeEngine(os.path.join(sockdir, f"d{len(engines)}.sock"), handler)
        engines.append(eng)
        return eng

    yield start
    for eng in engines:
        eng.close()


def client(eng: FakeEngine, timeout: float = 2.0) -> EngineClient:
    return EngineClient("unix://" + eng.path, timeout=timeout)


# -- DOCKER_HOST handling ---------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (None, "/var/run/docker.sock"),
    ("", "/var/run/docker.sock"),
    ("unix:///var/run/docker.sock", "/var/run/docker.sock"),
    ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"),
    ("unix://", "/var/run/docker.sock"),
    ("tcp://10.0.0.1:2375", None),
    ("ssh://me@host", None),
    ("npipe:////./pipe/docker_engine", None),
    ("fd://", None),
])
def test_engine_socket(value: Optional[str], expected: Optional[str]) -> None:
    assert engine_socket(value) == expected


def test_non_unix_docker_host_has_no_api_client() -> None:
    with pytest.raises(EngineError) as exc:
        EngineClient("tcp://10.0.0.1:2375")
    assert str(exc.value) == ("DOCKER_HOST=tcp://10.0.0.1:2375 is not a unix socket; "
                              "nvlow talks to the Engine API only over unix://")
    assert exc.value.hint == "the docker CLI is used for remote engines"


def test_default_address() -> None:
    c = EngineClient(None)
    assert (c.socket_path, c.address, c.timeout) == ("/var/run/docker.sock", "unix:///var/run/docker.sock", 2.0)


# -- the calls ---------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True])
def test_calls(serve: Callable[[Handler], FakeEngine], chunked: bool) -> None:
    eng = serve(lambda path, conn: docker_api(path, conn, chunked))
    c = client(eng)
    assert c.version() == VERSION
    assert c.info() == INFO
    assert c.inspect_image("nvidia/cuda:12.4.1-base-ubuntu22.04") == IMAGE
    assert c.inspect_image("nosuch:latest") is None
    heads = [r.decode() for r in eng.requests]
    assert heads[0] == ("GET /version HTTP/1.1\r\nHost: docker\r\nUser-Agent: nvlow\r\n"
                        "Accept: application/json\r\nConnection: close\r\n\r\n")
    assert [h.split(" ")[1] for h in heads] == [
        "/version", "/info", "/images/nvidia/cuda:12.4.1-base-ubuntu22.04/json", "/images/nosuch:latest/json"]


def test_image_name_is_percent_encoded(serve: Callable[[Handler], FakeEngine]) -> None:
    eng = serve(docker_api)
    assert client(eng).inspect_image("we%ird#name") is None
    assert eng.requests[0].split(b" ")[1] == b"/images/we%25ird%23name/json"


@pytest.mark.parametrize("name", ["", "a\nb", "x y\x00"])
def test_invalid_image_name(name: str) -> None:
    with pytest.raises(EngineError, match="invalid image name"):
        EngineClient("unix:///nonexistent.sock").inspect_image(name)


def test_error_status_names_the_message(serve: Callable[[Handler], FakeEngine]) -> None:
    eng = serve(lambda path, conn: reply(conn, 500, b'{"message":"layer store broken"}'))
    with pytest.raises(EngineError) as exc:
        client(eng).version()
    assert str(exc.value) == (f"the Docker engine at unix://{eng.path} answered 500 to GET /version: "
                              "layer store broken")
    # a 500 on an image is an error too, not "absent"
    with pytest.raises(EngineError, match="answered 500 to GET /images/x/json"):
        client(eng).inspect_image("x")


def test_error_status_with_text_body(serve: Callable[[Handler], FakeEngine]) -> None:
    eng = serve(lambda path, conn: reply(conn, 403, b"forbidden by policy\nmore", "text/plain"))
    with pytest.raises(EngineError, match=r"answered 403 to GET /info: forbidden by policy$"):
        client(eng).info()


def test_body_until_close(serve: Callable[[Handler], FakeEngine]) -> None:
    def handler(path: str, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + json.dumps(VERSION).encode())

    assert client(serve(handler)).version() == VERSION


def test_response_in_tiny_pieces(serve: Callable[[Handler], FakeEngine]) -> None:
    def handler(path: str, conn: socket.socket) -> None:
        body = json.dumps(INFO).encode()
        data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])

    assert client(serve(handler)).info() == INFO


# -- failures: each one clean, one line, naming the socket ---------------------------------
def test_no_socket(sockdir: str) -> None:
    path = os.path.join(sockdir, "missing.sock")
    c = EngineClient("unix://" + path)
    with pytest.raises(EngineError) as exc:
        c.version()
    assert str(exc.value) == f"cannot reach the Docker engine at unix://{path}: no such socket"
    assert "systemctl start docker" in (exc.value.hint or "")


def test_socket_file_without_listener(sockdir: str) -> None:
    path = os.path.join(sockdir, "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens: what a crashed dockerd leaves
    with pytest.raises(EngineError) as exc:
        EngineClient("unix://" + path).version()
    assert str(exc.value) == f"cannot reach the Docker engine at unix://{path}: connection refused"
    assert "nothing listens" in (exc.value.hint or "")


def test_permission_denied_message() -> None:
    # tests run as root, which ignores socket permissions: check the mapping itself
    import errno

    from nvlow.engine.client import _connect_error

    err = _connect_error("unix:///var/run/docker.sock", PermissionError(errno.EACCES, "Permission denied"))
    assert str(err) == "cannot reach the Docker engine at unix:///var/run/docker.sock: permission denied"
    assert err.hint is not None and "docker group" in err.hint and "DOCKER_HOST" in err.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores socket file permissions")
def test_permission_denied_real(serve: Callable[[Handler], FakeEngine]) -> None:  # pragma: no cover
    eng = serve(docker_api)
    os.chmod(eng.path, 0)
    with pytest.raises(EngineError, match="permission denied"):
        client(eng).version()


def test_closes_immediately(serve: Callable[[Handler], FakeEngine]) -> None:
    eng = serve(lambda path, conn: None)
    with pytest.raises(EngineError) as exc:
        client(eng).version()
    assert str(exc.value) == (f"the Docker engine at unix://{eng.path} sent a malformed HTTP response: "
                              "empty response")


def test_slow_server_times_out(serve: Callable[[Handler], FakeEngine]) -> None:
    release = threading.Event()

    def handler(path: str, conn: socket.socket) -> None:
        release.wait(10)

    eng = serve(handler)
    try:
        with pytest.raises(EngineError) as exc:
            client(eng, timeout=0.3).version()
        assert str(exc.value) == f"the Docker engine at unix://{eng.path} did not answer within 0.3 s"
    finally:
        release.set()


def test_dripping_server_hits_the_overall_deadline(serve: Callable[[Handler], FakeEngine]) -> None:
    release = threading.Event()

    def handler(path: str, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not release.wait(0.05):  # one byte every 50 ms: each read succeeds, the whole never ends
            try:
                conn.sendall(b" ")
            except OSError:
                return

    eng = serve(handler)
    try:
        with pytest.raises(EngineError, match="did not answer within 0.4 s"):
            client(eng, timeout=0.4).version()
    finally:
        release.set()


@pytest.mark.parametrize("raw, reason", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "incomplete response head"),
    (b"garbage\r\n\r\n", "not an HTTP response: 'garbage'"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "not an HTTP response: 'HTTP/1.1 abc OK'"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line: 'no colon here'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length: 'x'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "response body cut short (2 of 10 bytes)"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size: b'zz'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "chunked body cut short"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "response body of 99999999999 bytes is too large"),
])
def test_garbage_responses(serve: Callable[[Handler], FakeEngine], raw: bytes, reason: str) -> None:
    eng = serve(lambda path, conn: conn.sendall(raw))
    with pytest.raises(EngineError) as exc:
        client(eng).version()
    assert str(exc.value) == f"the Docker engine at unix://{eng.path} sent a malformed HTTP response: {reason}"
    assert exc.value.hint == "is DOCKER_HOST pointing at a Docker Engine API socket?"


def test_invalid_json(serve: Callable[[Handler], FakeEngine]) -> None:
    eng = serve(lambda path, conn: reply(conn, 200, b"{not json"))
    with pytest.raises(EngineError) as exc:
        client(eng).version()
    assert str(exc.value) == f"the Docker engine at unix://{eng.path} sent invalid JSON for GET /version"


def test_json_not_an_object(serve: Callable[[Handler], FakeEngine]) -> None:
    eng = serve(lambda path, conn: reply(conn, 200, b"[1, 2]"))
    with pytest.raises(EngineError, match="sent unexpected JSON for GET /info"):
        client(eng).info()


def test_oversized_response_until_close(serve: Callable[[Handler], FakeEngine],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 1024 * 1024
    monkeypatch.setattr("nvlow.engine.client.MAX_RESPONSE_BYTES", limit)

    def handler(path: str, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        block = b"x" * 65536
        try:
            for _ in range(limit // len(block) + 4):
                conn.sendall(block)
        except OSError:
            pass

    eng = serve(handler)
    with pytest.raises(EngineError, match=f"response larger than {limit} bytes"):
        client(eng, timeout=10).version()


# -- pure helpers -----------------------------------------------------------------------------
def test_parse_response_chunked_with_trailers() -> None:
    r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
                       b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
    assert (r.status, r.body, r.header("X-A"), r.header("missing")) == (200, b"abcde", "2", None)


def test_parse_response_no_body_statuses() -> None:
    assert parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").body == b""


def test_parse_response_error() -> None:
    with pytest.raises(ValueError, match="empty response"):
        parse_response(b"")


@pytest.mark.parametrize("raw, quoted", [
    ("ubuntu", "ubuntu"),
    ("localhost:5000/team/img:tag", "localhost:5000/team/img:tag"),
    ("img@sha256:0123abcd", "img@sha256:0123abcd"),
    ("ä", "%C3%A4"),
    ("a?b", "a%3Fb"),
])
def test_quote_path(raw: str, quoted: str) -> None:
    assert quote_path(raw) == quoted


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, nvlow.engine.client; print(sorted(m for m in ('http.client', 'email', 'subprocess') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_exec_reads_the_image_answer_without_json_or_re(serve, tmp_path) -> None:
    """``nvlow exec`` decodes the Engine API's answer with nvlow.engine.jsondoc: the wrapped run pays
    for neither ``json`` nor ``re`` (with ``enum``: ~4 ms), and the image's environment still counts
    (its PATH is merged, its CUDA requirement checked)."""
    import subprocess
    import sys

    image = {"Id": "sha256:abc", "Config": {"Env": ["PATH=/usr/sbin:/usr/bin", "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
                                                  "NVIDIA_VISIBLE_DEVICES=1"], "Labels": {"a": "\u00e9"}}}

    def api(path: str, conn: socket.socket) -> None:
        if path == "/images/nvidia/cuda:12.4.1-base-ubuntu22.04/json":
            reply(conn, 200, json.dumps(image, indent=2).encode())
        else:
            docker_api(path, conn)

    eng = serve(api)
    code = ("import sys\nbefore = set(sys.modules)\nfrom nvlow.cli import main\ntry:\n"
            "    main(['exec', '--simulate', 'dgx-a100', '--dry-run', '--', 'docker', 'run', '--rm',"
            " 'nvidia/cuda:12.4.1-base-ubuntu22.04'])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('HEAVY=%s' % sorted(m for m in ('json', 're', 'enum', 'typing')"
            " if m in sys.modules and m not in before))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NV_", "DOCKER_", "NVIDIA_"))}
    env.update(DOCKER_HOST="unix://" + eng.path, NVLOW_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-m", "nvlow", "args", "--simulate", "dgx-a100"], capture_output=True,
                   timeout=60, env=env)  # the simulated tree is built before the measured run
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert res.stderr.rsplit("HEAVY=", 1)[-1] == "[]", res.stderr
    # the image's PATH, merged; its NVIDIA_VISIBLE_DEVICES=1 chose one GPU
    assert "--env=PATH=/usr/sbin:/usr/bin:/usr/local/nvidia/bin" in res.stdout, res.stdout
    assert ":/dev/nvidia1 " in res.stdout and ":/dev/nvidia0 " not in res.stdout, res.stdout
    assert any(r.startswith(b"GET /images/nvidia/cuda:12.4.1-base-ubuntu22.04/json ") for r in eng.requests)
