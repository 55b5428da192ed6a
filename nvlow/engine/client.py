"""A tiny Docker Engine API client over a unix socket (stdlib only).

nvlow needs four read-only calls (``/_ping``, ``/version``, ``/info``,
``/images/<name>/json``) and must never hang, so this speaks just enough
HTTP/1.1 itself: one request per connection (``Connection: close``), bodies
by ``Content-Length``, ``chunked`` or until close, a deadline over the whole
exchange and a cap on the response size.

``http.client`` is not used on purpose: importing it pulls in ``email`` and
costs about 17 ms against about 3 ms for ``socket`` (CPython 3.11, measured
with ``-X importtime``), and ``nvlow exec`` imports this module on every run. For the same reason
the connection is the ``_socket`` type itself: ``socket.py`` adds ``selectors``, ``array`` and
``enum`` (another ~3.5 ms) for wrappers this client never calls (makefile, sendfile, ``with``).

The caller passes ``DOCKER_HOST`` in; only ``unix://`` (or unset) gets an API
client. ``tcp://``/``ssh://`` hosts raise :class:`EngineError` so that the
caller uses the ``docker`` CLI instead.

Example:
    >>> engine_socket(None), engine_socket("unix:///run/user/1000/docker.sock")
    ('/var/run/docker.sock', '/run/user/1000/docker.sock')
    >>> engine_socket("tcp://10.0.0.1:2375") is None
    True
"""
from __future__ import annotations

import errno
import time

from ..frozen import Record
from ..errors import EngineError
from .jsondoc import loads  # json.loads without importing json (and re): exec reads one answer per run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple


DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_DOCKER_HOST = "unix://" + DEFAULT_SOCKET
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # /info on a big host is tens of KiB; images/json a few KiB
_MAX_HEAD_BYTES = 64 * 1024
_PATH_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/:@")


def engine_socket(docker_host: Optional[str]) -> Optional[str]:
    """The unix socket path named by a ``DOCKER_HOST`` value; None when it is not ``unix://``.

    An unset or empty value means Docker's default socket.
    """
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://"):
        path = docker_host[len("unix://"):]
        return path or DEFAULT_SOCKET
    return None


def quote_path(segment: str) -> str:
    """Percent-encode ``segment`` for a URL path, keeping ``/ : @`` (image references use them).

    >>> quote_path("nvidia/cuda:12.4.1-base-ubuntu22.04")
    'nvidia/cuda:12.4.1-base-ubuntu22.04'
    >>> quote_path("a b?#")
    'a%20b%3F%23'
    """
    out: List[str] = []
    for ch in segment:
        if ch in _PATH_SAFE:
            out.append(ch)
        else:
            out.extend("%%%02X" % b for b in ch.encode("utf-8"))
    return "".join(out)


class Response(Record):
    """One HTTP response: status code, lower-cased headers, raw body."""

    status: int
    headers: Tuple[Tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        """The last value of header ``name`` (case-insensitive), or None."""
        found = None
        for key, value in self.headers:
            if key == name.lower():
                found = value
        return found


class _Malformed(Exception):
    """The peer did not speak HTTP/1.x as expected (internal)."""


def parse_response(data: bytes) -> Response:
    """Parse a complete HTTP/1.x response (head + body, connection closed after it).

    Raises ``ValueError`` with a short reason when the bytes are not a valid response.

    >>> parse_response(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nOK").body
    b'OK'
    """
    try:
        return _parse(data, complete=True)[0]
    except _Malformed as exc:
        raise ValueError(str(exc)) from None


def _parse(data: bytes, complete: bool) -> Tuple[Response, bool]:
    """Returns (response, done). ``done`` is False when more bytes are needed."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > _MAX_HEAD_BYTES:
            raise _Malformed("response head too long")
        if complete:
            raise _Malformed("incomplete response head" if data else "empty response")
        return Response(0, (), b""), False
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise _Malformed("not an HTTP response: %r" % lines[0][:60])
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise _Malformed("bad header line: %r" % line[:60])
        headers.append((key.strip().lower(), value.strip()))
    response = Response(int(parts[1]), tuple(headers), b"")
    rest = data[end + 4:]
    encoding = (response.header("transfer-encoding") or "").lower()
    length = response.header("content-length")
    if response.status in (204, 304) or 100 <= response.status < 200:
        return response, True
    if "chunked" in encoding:
        body, done = _dechunk(rest, complete)
    elif length is not None:
        if not length.isdigit():
            raise _Malformed("bad Content-Length: %r" % length[:20])
        want = int(length)
        if want > MAX_RESPONSE_BYTES:
            raise _Malformed("response body of %d bytes is too large" % want)
        done = len(rest) >= want
        if complete and not done:
            raise _Malformed("response body cut short (%d of %d bytes)" % (len(rest), want))
        body = rest[:want]
    else:  # body runs until the connection closes
        body, done = rest, complete
    return Response(response.status, response.headers, body), done


def _dechunk(data: bytes, complete: bool) -> Tuple[bytes, bool]:
    chunks: List[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _Malformed("bad chunk size: %r" % size_text[:20]) from None
        if size < 0:
            raise _Malformed("bad chunk size: %r" % size_text[:20])
        if size == 0:
            return b"".join(chunks), True  # trailers, if any, are ignored
        start = eol + 2
        if len(data) < start + size + 2:
            break
        chunks.append(data[start:start + size])
        pos = start + size + 2
    if complete:
        raise _Malformed("chunked body cut short")
    return b"", False


class EngineClient:
    """Read-only Docker Engine API calls over the unix socket named by ``docker_host``.

    Raises :class:`EngineError` at construction when ``docker_host`` is not a
    unix socket (``tcp://``, ``ssh://``, ``npipe://``): the caller then falls
    back to the ``docker`` CLI. ``timeout`` bounds each whole request
    (connect, send and every read together).
    """

    def __init__(self, docker_host: Optional[str], *, timeout: float = 2.0) -> None:
        path = engine_socket(docker_host)
        if path is None:
            raise EngineError(f"DOCKER_HOST={docker_host} is not a unix socket; nvlow talks to the Engine API "
                              "only over unix://", hint="the docker CLI is used for remote engines")
        self.socket_path = path
        self.address = "unix://" + path
        self.timeout = timeout

    # -- the calls ---------------------------------------------------------
    def version(self) -> Dict[str, Any]:
        """``GET /version`` as a dict (``Version``, ``ApiVersion``, ...)."""
        return self._object("/version")

    def info(self) -> Dict[str, Any]:
        """``GET /info`` as a dict (``Runtimes``, ``DefaultRuntime``, ``CDISpecDirs``, ...)."""
        return self._object("/info")

    def inspect_image(self, name: str) -> Optional[Dict[str, Any]]:
        """``GET /images/<name>/json``; None when the engine has no such image (404). Never pulls."""
        if not name or any(ord(c) < 33 for c in name):
            raise EngineError(f"invalid image name {name!r}")
        return self._json("/images/" + quote_path(name) + "/json", allow_missing=True)

    # -- plumbing ----------------------------------------------------------
    def _object(self, path: str) -> Dict[str, Any]:
        doc = self._json(path)
        if doc is None:  # pragma: no cover - only with allow_missing
            raise EngineError(f"the Docker engine at {self.address} has nothing at GET {path}")
        return doc

    def _json(self, path: str, allow_missing: bool = False) -> Optional[Dict[str, Any]]:
        response = self.request("GET", path)
        if response.status == 404 and allow_missing:
            return None
        if response.status != 200:
            raise EngineError(f"the Docker engine at {self.address} answered {response.status} to GET {path}: "
                              f"{_error_message(response.body)}")
        try:
            doc = loads(response.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise EngineError(f"the Docker engine at {self.address} sent invalid JSON for GET {path}") from None
        if not isinstance(doc, dict):
            raise EngineError(f"the Docker engine at {self.address} sent unexpected JSON for GET {path}")
        result: Dict[str, Any] = doc
        return result

    def request(self, method: str, path: str) -> Response:
        """Send one request and read the whole response, within ``timeout`` seconds overall."""
        import _socket  # socket.socket's own base type, without socket.py's imports (module docstring)

        deadline = time.monotonic() + self.timeout
        head = (f"{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: nvlow\r\n"
                "Accept: application/json\r\nConnection: close\r\n\r\n").encode("latin-1")
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                sock.sendall(head)
                data = b""
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _socket.timeout()
                    sock.settimeout(left)
                    piece = sock.recv(65536)
                    if not piece:
                        return _parse(data, complete=True)[0]
                    data += piece
                    if len(data) > MAX_RESPONSE_BYTES + _MAX_HEAD_BYTES:
                        raise _Malformed(f"response larger than {MAX_RESPONSE_BYTES} bytes")
                    response, done = _parse(data, complete=False)
                    if done:
                        return response
            except _socket.timeout:
                raise EngineError(f"the Docker engine at {self.address} did not answer within {self.timeout:g} s",
                                  hint="check that dockerd is healthy (systemctl status docker)") from None
            except _Malformed as exc:
                raise EngineError(f"the Docker engine at {self.address} sent a malformed HTTP response: {exc}",
                                  hint="is DOCKER_HOST pointing at a Docker Engine API socket?") from None
            except OSError as exc:
                raise _connect_error(self.address, exc) from None
        finally:
            sock.close()


def _error_message(body: bytes) -> str:
    """The ``message`` of an Engine API error body, or the body's first line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return text.splitlines()[0][:200] if text else "(empty body)"


_HINTS = {
    errno.EACCES: "add your user to the docker group (sudo usermod -aG docker $USER, then log in again), "
                  "or set DOCKER_HOST to a socket you can use",
    errno.EPERM: "add your user to the docker group (sudo usermod -aG docker $USER, then log in again), "
                 "or set DOCKER_HOST to a socket you can use",
    errno.ENOENT: "start the Docker daemon (systemctl start docker), or set DOCKER_HOST=unix:///path/to/docker.sock",
    errno.ECONNREFUSED: "the socket exists but nothing listens on it: start the Docker daemon, "
                        "or set DOCKER_HOST to the right socket",
}


def _connect_error(address: str, exc: OSError) -> EngineError:
    reason = {errno.ENOENT: "no such socket", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.ECONNREFUSED: "connection refused", errno.ECONNRESET: "connection reset",
              errno.EPIPE: "connection closed"}.get(exc.errno or 0)
    if reason is None:
        reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
    return EngineError(f"cannot reach the Docker engine at {address}: {reason}",
                       hint=_HINTS.get(exc.errno or 0, "check DOCKER_HOST and that the Docker daemon is running"))
