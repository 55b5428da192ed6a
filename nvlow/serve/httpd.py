"""The HTTP layer of ``nvlow serve``: an HTTP/1.1 keep-alive server on one selector loop.

Standard library only. One thread runs the loop of a listening socket: it
accepts, reads and parses requests (:func:`parse_head`, no ``email`` parser and
no per-request handler object) and writes answers; every response carries
Content-Length and goes out in one ``send`` (headers and body together: two
small writes meet Nagle and delayed ACK). A request is answered on the loop
itself when the server's ``quick`` function has its answer at hand (a cached
document of the running driver: no I/O beyond the driver-version check, never a
discovery); every other request goes to a small pool of worker threads, which
run the ``route`` function and send the answer, so a slow handler (NVML, a
driver-volume build, a rediscovery) never stalls the loop; a computation the
server's ``inline`` function calls quick (a live reading that took microseconds
last time) is run by the loop itself at the end of its turn, once for every
request of that target read in the turn. An answer shared by
several identical requests (``coalesce``) is handed back to the loop, which
sends it to each, so the worker is free for the next computation. A connection is
owned by one thread at a time, and one request per connection is in flight:
pipelined requests are answered in order.

The limits are those of the ``http.server`` handler this replaced: request
lines over :data:`MAX_LINE` bytes get 414, more than :data:`MAX_HEADERS`
header lines or :data:`MAX_HEADER_BYTES` of them 431, bodies over
:data:`MAX_BODY` 413, any Transfer-Encoding 411, two Content-Length headers or
a malformed one 400, a malformed request line or header line 400 (folded
header lines and spaces before the colon included), versions from HTTP/2 up
505. A client that stalls for ``client_timeout`` seconds (nvidia-docker-plugin's
read/write timeout, :data:`CLIENT_TIMEOUT`) is dropped, idle keep-alive
connections included, and so is one that has not sent a whole request within
:data:`REQUEST_DEADLINE` seconds of the connection becoming ready for it,
however slowly it trickles. Connections beyond ``max_connections``, or beyond
:data:`MAX_PER_CLIENT` from one address, get a 503 and are closed. After an
answer with ``Connection: close`` the write side is shut and what the client
still sends is read and dropped for up to :data:`LINGER` seconds, so the
answer is not lost to a reset. :meth:`HTTPServer.stop` stops accepting,
closes idle connections, lets requests in flight finish (their answers say
``Connection: close``) within a grace period and ends the loop.

Routing is not done here: each server is given ``route`` (and optionally
``quick``), :func:`nvlow.serve.server.dispatch` and
:func:`nvlow.serve.server.quick_answer` for the REST API,
:func:`nvlow.serve.server.dispatch_plugin` for the volume plugin.

Example:
    >>> head = parse_head(b"GET /docker/cli?dev=0 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    >>> (head.method, head.target, head.keep_alive, head.length)
    ('GET', '/docker/cli?dev=0', True, 0)
    >>> parse_head(b"GET / HTTP/1.1\\r\\nContent-Length: 1\\r\\nContent-Length: 2\\r\\n\\r\\n")
    Traceback (most recent call last):
    ...
    nvlow.serve.httpd.HttpError: 400 more than one Content-Length
"""
from __future__ import annotations

import collections
import errno
import queue
import selectors
import socket
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Union
from urllib.parse import parse_qs, urlsplit

from .wire import Request, Response

if TYPE_CHECKING:
    from .server import ServeState

CLIENT_TIMEOUT = 5.0  # seconds, nvidia-docker-plugin's read/write timeout
#: seconds a client has for a whole request (line, headers, body): a per-read timeout alone lets a
#: client that sends one byte every few seconds hold its connection slot forever
REQUEST_DEADLINE = 10.0
#: connections one client address may hold at once, so a few clients cannot take every slot
MAX_PER_CLIENT = 64
#: the longest request line, CRLF included (414 beyond)
MAX_LINE = 8192
MAX_BODY = 64 * 1024
#: header lines and their bytes (431 beyond)
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: worker threads per server: requests without a ready answer (NVML readings, volume builds, misses)
WORKERS = 8
#: at most this many workers compute one target at once when it may run side by side (the others stay
#: free for other targets)
SIDE_BY_SIDE = 4
#: seconds a connection closed after an answer is drained before it is closed for good
LINGER = 1.0
#: what a lingering connection may still send before it is closed without waiting
LINGER_BYTES = 256 * 1024
#: seconds between two sweeps for deadlines and stalls
SWEEP = 0.1
#: pipelined requests of one connection answered in one turn of the loop
PIPELINE_TURN = 8
#: targets the loop computes itself in one turn (``inline``); more distinct ones in a turn go to the workers,
#: so many query variants cannot hold the loop
INLINE_TARGETS = 2
LISTEN_BACKLOG = 128  # the socketserver default of 5 drops SYNs of concurrent clients (1 s retransmits)

Route = Callable[["ServeState", Request], Response]
#: (state, method, path, raw query) -> an answer at hand, or None for the workers
Quick = Callable[["ServeState", str, str, str], Optional[Response]]

_REASONS: Dict[int, str] = {int(s): s.phrase for s in HTTPStatus}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SERVER_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 12\r\nConnection: close\r\n\r\nserver busy\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpError(Exception):
    """A request the server answers with an error status and then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


class Head:
    """A parsed request line and header block."""

    __slots__ = ("method", "target", "version", "http09", "keep_alive", "headers", "length", "expect",
                 "size", "line")

    def __init__(self, method: str, target: str, version: str, http09: bool, keep_alive: bool,
                 headers: Dict[str, str], length: int, expect: bool, size: int, line: str) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.http09 = http09
        self.keep_alive = keep_alive
        self.headers = headers
        self.length = length
        self.expect = expect
        self.size = size  # bytes of the request line and header block, blank line included
        self.line = line  # the request line as received (for the log)


def _request_line(raw: bytes) -> Tuple[str, str, str, bool, Tuple[int, int]]:
    """(method, target, version, HTTP/0.9?, version number) of a request line (no line end)."""
    line = raw.decode("latin-1")
    words = line.split()
    version = "HTTP/0.9"
    number = (0, 9)
    if len(words) >= 3:
        version = words[-1]
        try:
            if not version.startswith("HTTP/"):
                raise ValueError
            parts = version[5:].split(".")
            if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
                raise ValueError
            number = (int(parts[0]), int(parts[1]))
        except ValueError:
            raise HttpError(400, "bad request version") from None
        if number >= (2, 0):
            raise HttpError(505, "HTTP version not supported")
    if not 2 <= len(words) <= 3:
        raise HttpError(400, "malformed request line")
    method, target = words[0], words[1]
    if len(words) == 2 and method != "GET":
        raise HttpError(400, "malformed request line")
    return method, target, version, len(words) == 2, number


def _headers(block: bytes) -> Tuple[Dict[str, str], List[str], bool]:
    """Lower-cased names -> values (the last of repeated names), every Content-Length value, and
    whether Transfer-Encoding was sent."""
    headers: Dict[str, str] = {}
    lengths: List[str] = []
    chunked = False
    if not block:
        return headers, lengths, chunked
    lines = block.split(b"\n")
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, "too many header fields")
    for raw in lines:
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        if not raw:
            raise HttpError(400, "malformed header line")
        if raw[0] in (32, 9):
            raise HttpError(400, "folded header lines are not accepted")
        name, sep, value = raw.partition(b":")
        if not sep or not name or b" " in name or b"\t" in name:
            raise HttpError(400, "malformed header line")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key == "content-length":
            lengths.append(text)
        elif key == "transfer-encoding":
            chunked = True
        headers[key] = text
    return headers, lengths, chunked


def _content_length(lengths: List[str]) -> int:
    """The body length of one Content-Length value (none: 0). Two lengths are a request-smuggling
    shape (RFC 9112 section 6.3), refused before this is called, never one picked."""
    text = (lengths[0] if lengths else "") or "0"
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise HttpError(400, "invalid Content-Length")
    length = int(text)
    if length > MAX_BODY:
        raise HttpError(413, "request body too large")
    return length


class HeadScan:
    """How far :func:`parse_head` got in an incomplete head, so that a head arriving in many small
    pieces is scanned about once, not once per piece."""

    __slots__ = ("skipped", "start", "nl", "line", "scanned")

    def __init__(self) -> None:
        self.skipped = 0  # empty-line bytes before the request line, so far
        self.start = -1  # where the request line starts, once known
        self.nl = -1  # where it ends (its LF), once known
        self.line: Optional[Tuple[bytes, Tuple[str, str, str, bool, Tuple[int, int]]]] = None
        self.scanned = 0  # bytes already searched for the line end or the blank line


def parse_head(data: Union[bytes, bytearray], scan: Optional[HeadScan] = None) -> Optional[Head]:
    """The request head at the start of ``data``; None while it is incomplete (and within the limits).

    Raises :class:`HttpError` for what is answered with an error status. Empty lines before the
    request line are skipped (RFC 9112 section 2.2); lines may end in CRLF or LF. ``scan`` carries
    the progress of earlier calls on a growing ``data`` (one per request; a fresh one by default).
    """
    scan = scan or HeadScan()
    n = len(data)
    if scan.start < 0:
        start = scan.skipped
        while start < n and data[start] in (13, 10):
            start += 1
        if start > MAX_LINE:
            raise HttpError(400, "malformed request line")  # a flood of empty lines
        if start == n:
            scan.skipped = n
            return None
        scan.start = scan.scanned = start
    start = scan.start
    if scan.line is None:
        nl = data.find(b"\n", scan.scanned, start + MAX_LINE + 1)
        if nl < 0:
            if n - start > MAX_LINE:
                raise HttpError(414, "request line too long")
            scan.scanned = n
            return None
        if nl + 1 - start > MAX_LINE:
            raise HttpError(414, "request line too long")
        raw_line = bytes(data[start:nl])
        if raw_line[-1:] == b"\r":
            raw_line = raw_line[:-1]
        scan.line = (raw_line, _request_line(raw_line))
        scan.nl = scan.scanned = nl
    nl = scan.nl
    raw_line, (method, target, version, http09, number) = scan.line
    resume = max(nl, scan.scanned - 2)  # a blank line may straddle the end of the last look
    crlf = data.find(b"\n\r\n", resume)
    lf = data.find(b"\n\n", resume)
    if crlf < 0 and lf < 0:
        if n - nl > MAX_HEADER_BYTES + 2:
            raise HttpError(431, "request header fields too large")
        scan.scanned = n
        return None
    if lf < 0 or 0 <= crlf < lf:
        end, size = crlf, crlf + 3
    else:
        end, size = lf, lf + 2
    if end - nl > MAX_HEADER_BYTES:
        raise HttpError(431, "request header fields too large")
    headers, lengths, chunked = _headers(bytes(data[nl + 1:end]))
    if len(lengths) > 1:  # before the Transfer-Encoding check, as before
        raise HttpError(400, "more than one Content-Length")
    if chunked:
        raise HttpError(411, "chunked bodies are not accepted; send Content-Length")
    length = _content_length(lengths)
    tokens = [t.strip() for t in headers.get("connection", "").lower().split(",")]
    if number >= (1, 1):
        keep_alive = "close" not in tokens
    else:
        keep_alive = "keep-alive" in tokens and not http09
    expect = number >= (1, 1) and headers.get("expect", "").lower() == "100-continue"
    return Head(method, target, version, http09, keep_alive, headers, length, expect, size,
                raw_line.decode("latin-1"))


def split_target(target: str) -> Tuple[str, str]:
    """(path, raw query) of a request target (origin form or absolute form).

    >>> split_target("/docker/cli?dev=0+1#x"), split_target("http://h:3476/gpu/info"), split_target("//a/b")
    (('/docker/cli', 'dev=0+1'), ('/gpu/info', ''), ('/a/b', ''))
    """
    if target.startswith("//"):
        target = "/" + target.lstrip("/")  # as http.server: never a network-path reference
    if target.startswith("/"):
        path, _, query = target.partition("#")[0].partition("?")
        return path, query
    try:
        parts = urlsplit(target)
    except ValueError:  # "http://[::1/x": an unclosed IPv6 host
        raise HttpError(400, "malformed request target") from None
    return parts.path, parts.query


def _http_date(now: float) -> str:
    t = time.gmtime(now)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


# connection states
_READ, _BUSY, _WRITE, _LINGER, _CLOSED = range(5)


class _Conn:
    """One client connection; owned by the loop, or by one worker while its request runs."""

    __slots__ = ("sock", "fd", "client", "who", "inbuf", "out", "state", "closed", "armed", "last_io",
                 "close_after", "broken", "queued", "head", "scan", "continued", "drained", "linger_until",
                 "started", "line", "unsent")

    def __init__(self, sock: socket.socket, client: str, who: str, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.closed = False
        self.client = client
        self.who = who
        self.inbuf = bytearray()
        self.out = b""
        self.state = _READ
        self.armed = now  # when the connection became ready for its next request
        self.last_io = now
        self.close_after = False
        self.broken = False  # a worker's send failed: close it
        self.unsent = False  # ``out`` is a whole answer a worker handed back to the loop to send
        self.queued = False  # in the loop's ready list: pipelined requests wait for the next turn
        self.head: Optional[Head] = None
        self.scan = HeadScan()
        self.continued = False
        self.drained = 0
        self.linger_until = 0.0
        self.started = 0.0
        self.line = ""


class _Job:
    """A request for the workers, and the identical requests that joined it before it started."""

    __slots__ = ("key", "head", "body", "conns", "queued")

    def __init__(self, key: Optional[Tuple[str, str]], conn: _Conn, head: Head, body: bytes) -> None:
        self.key = key
        self.head = head
        self.body = body
        self.conns: List[Tuple[_Conn, Head]] = [(conn, head)]
        self.queued = False  # handed to the workers (it still takes joiners until one starts it)


class HTTPServer:
    """A listening socket served by one selector loop plus a few worker threads.

    With ``coalesce``, a GET that arrives while an identical one (same target) waits for a worker,
    not yet started, joins it and gets the same answer: that answer is computed after both
    arrived, so it is as fresh as one computed for each (many clients polling gpu/status cost one
    reading per turn of the workers, not one each). One worker at a time computes a target, unless
    ``side_by_side(target)`` says its computation mostly waits (a live reading while NVML samples the
    PCIe counters for 20 ms): then a new job of it starts on a free worker at once, up to
    :data:`SIDE_BY_SIDE` of them. When ``inline(target)`` says a computation is quick (a live reading
    that took microseconds last time), the loop runs it itself once per turn for every request of that
    target read in the turn: handing it to a worker would cost more than the reading, since the two
    threads then pass the interpreter lock back and forth at every library call and socket operation.
    """

    def __init__(self, family: int, address: Any, state: "ServeState", route: Route, *,
                 quick: Optional[Quick] = None, coalesce: bool = False, max_connections: int = 256,
                 client_timeout: float = CLIENT_TIMEOUT, workers: int = WORKERS,
                 side_by_side: Optional[Callable[[str], bool]] = None,
                 inline: Optional[Callable[[str], bool]] = None) -> None:
        self.state = state
        self.side_by_side = side_by_side
        self.inline = inline
        self.route = route
        self.quick = quick
        self.coalesce = coalesce
        self.max_connections = max_connections
        self.client_timeout = client_timeout
        self.request_deadline = REQUEST_DEADLINE
        self.max_per_client = MAX_PER_CLIENT
        self.workers = max(1, workers)
        self.stopping = threading.Event()
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family != getattr(socket, "AF_UNIX", None):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self.server_address: Any = sock.getsockname()
        self._tcp = family in (socket.AF_INET, socket.AF_INET6)
        self._sel = selectors.DefaultSelector()
        self._conns: Dict[int, _Conn] = {}
        self._per_client: Dict[str, int] = {}
        self._jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        self._waiting: Dict[Tuple[str, str], _Job] = {}  # coalescible jobs not started yet
        self._running: Dict[Tuple[str, str], int] = {}  # coalescible targets being computed: how many
        self._waiting_lock = threading.Lock()
        # epoll takes registrations from any thread, so a worker re-arms a connection itself
        # (no wake-up of the loop); other selectors get it back through the loop
        self._rearm = isinstance(self._sel, getattr(selectors, "EpollSelector", ()))
        self._back: Deque[_Conn] = collections.deque()
        self._ready: Deque[_Conn] = collections.deque()  # connections with pipelined requests left
        self._inline: Dict[str, _Job] = {}  # GETs the loop computes at the end of this turn, by target
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._grace_until: Optional[float] = None
        self._loop_done = threading.Event()
        self._loop_started = False
        self._finished = False  # the loop has ended: workers close what they hand back
        self._closed = False
        self._date = (0, "")
        self._accept_paused = False

    # -- control (any thread) ---------------------------------------------------------------
    def start(self, name: str = "nvlow-serve") -> threading.Thread:
        """Run :meth:`serve_forever` on a daemon thread (which :meth:`wait` then waits for)."""
        self._loop_started = True
        t = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        t.start()
        return t

    def serve_forever(self, poll_interval: float = SWEEP) -> None:
        """Run the loop until :meth:`stop` has finished (``poll_interval`` is ignored)."""
        self._loop_started = True
        try:
            self._loop()
        finally:
            self._finished = True
            for conn in list(self._conns.values()):
                if conn.state != _BUSY:
                    self._close(conn)
            self._close_from_worker()  # answered by a worker after the loop's last look
            self._loop_done.set()

    def stop(self, grace: float) -> None:
        """Stop accepting and close idle connections now; in-flight requests get ``grace`` seconds."""
        self.stopping.set()
        self._grace_until = time.monotonic() + grace
        self._wake()

    def wait(self, timeout: float) -> bool:
        """Wait for the loop to end (True when it has, or never ran)."""
        if not self._loop_started:
            return True
        return self._loop_done.wait(timeout)

    def server_close(self) -> None:
        """Close the listening socket, the loop's resources and the workers (after :meth:`wait`)."""
        if self._closed:
            return
        self._closed = True
        self.stopping.set()
        for s in (self.socket, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass
        if self._loop_done.is_set() or not self._loop_started:
            self._sel.close()
        for _ in self._threads:
            self._jobs.put(None)

    # -- the loop (loop thread) -------------------------------------------------------------
    def _loop(self) -> None:
        sel = self._sel
        sel.register(self.socket, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, self)
        listening = True
        next_sweep = time.monotonic() + SWEEP
        while True:
            events = sel.select(0.0 if self._ready or self._inline else max(0.0, next_sweep - time.monotonic()))
            now = time.monotonic()
            for key, mask in events:
                data = key.data
                try:
                    if data is None:
                        self._accept(now)
                    elif data is self:
                        self._drain_wake(now)
                    elif mask & selectors.EVENT_READ:
                        self._on_read(data, now)
                    else:
                        self._on_write(data, now)
                except Exception as exc:  # noqa: BLE001 - one connection's failure must not stop the loop
                    self.state.log(f"connection error: {type(exc).__name__}: {exc}")
                    if isinstance(data, _Conn):
                        self._close(data)
            for _ in range(len(self._ready)):
                conn = self._ready.popleft()
                conn.queued = False
                if conn.state == _READ and not conn.closed:
                    try:
                        self._serve(conn, now)
                    except Exception as exc:  # noqa: BLE001 - as above
                        self.state.log(f"connection error: {type(exc).__name__}: {exc}")
                        self._close(conn)
            if self._inline:
                self._run_inline()
            if self.stopping.is_set():
                if listening:
                    listening = False
                    if not self._accept_paused:
                        sel.unregister(self.socket)
                    self.socket.close()
                    self._close_idle()
                if not self._conns:
                    return
                if self._grace_until is not None and now > self._grace_until:
                    return
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + SWEEP
                if self._accept_paused and listening:
                    self._accept_paused = False
                    sel.register(self.socket, selectors.EVENT_READ, None)

    def _accept(self, now: float) -> None:
        for _ in range(64):
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # reset before it was accepted
                # out of descriptors: the listener stays readable, so pause until the next sweep
                # instead of spinning on it
                self.state.log(f"accept failed: {exc.strerror or exc}; pausing accepts")
                self._sel.unregister(self.socket)
                self._accept_paused = True
                return
            client = str(addr[0]) if isinstance(addr, tuple) and addr else ""
            if self.stopping.is_set() or not self._room_for(client):
                self._refuse(sock)
                continue
            sock.setblocking(False)
            if self._tcp:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            conn = _Conn(sock, client, client or "unix", now)
            if client:
                self._per_client[client] = self._per_client.get(client, 0) + 1
            self._conns[conn.fd] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _full(self, client: str) -> bool:
        return len(self._conns) >= self.max_connections or bool(
            client and self._per_client.get(client, 0) >= self.max_per_client)

    def _room_for(self, client: str) -> bool:
        """Whether a new connection of ``client`` is within the caps, after closing the idle
        connections whose client has already closed them (a client that reconnects at once must not
        be refused because the loop has not read the old connection's end yet)."""
        if not self._full(client):
            return True
        total = len(self._conns) >= self.max_connections
        for conn in list(self._conns.values()):
            if conn.state != _READ or conn.inbuf or (not total and conn.client != client):
                continue
            try:
                if conn.sock.recv(1, socket.MSG_PEEK) != b"":
                    continue
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
            self._close(conn)
        return not self._full(client)

    @staticmethod
    def _refuse(sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            sock.send(_SERVER_BUSY)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.state != _BUSY:
            try:
                self._sel.unregister(conn.sock)
            except (KeyError, ValueError, OSError, RuntimeError):
                pass
        conn.state = _CLOSED
        self._conns.pop(conn.fd, None)
        if conn.client:
            left = self._per_client.get(conn.client, 1) - 1
            if left > 0:
                self._per_client[conn.client] = left
            else:
                self._per_client.pop(conn.client, None)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _close_idle(self) -> None:
        """At stop: close connections with no request under way (a complete request line counts)."""
        for conn in list(self._conns.values()):
            if conn.state == _LINGER or (conn.state == _READ and conn.head is None and conn.scan.line is None):
                self._close(conn)

    def _sweep(self, now: float) -> None:
        deadline, stall = self.request_deadline, self.client_timeout
        for conn in list(self._conns.values()):
            if conn.state == _READ:
                if now - conn.armed > deadline or now - conn.last_io > stall:
                    self._close(conn)
            elif conn.state == _WRITE:
                if now - conn.last_io > stall:
                    self._close(conn)
            elif conn.state == _LINGER and now > conn.linger_until:
                self._close(conn)

    def _on_read(self, conn: _Conn, now: float) -> None:
        if conn.queued:
            return  # its buffered requests first (the loop does not spin: the ready list is served each turn)
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if conn.state == _LINGER:
            conn.drained += len(data)
            if not data or conn.drained > LINGER_BYTES:
                self._close(conn)
            return
        if not data:
            self._close(conn)  # the client went away (mid-request: nobody to answer)
            return
        conn.last_io = now
        conn.inbuf += data
        self._serve(conn, now)

    def _serve(self, conn: _Conn, now: float) -> None:
        """Answer the complete requests in ``conn``'s buffer, one at a time (loop thread, state _READ);
        after :data:`PIPELINE_TURN` of them the rest wait for the loop's next turn, so a client that
        pipelines many requests cannot hold the loop."""
        served = 0
        while conn.state == _READ and conn.inbuf:
            if served == PIPELINE_TURN:
                if not conn.queued:
                    conn.queued = True
                    self._ready.append(conn)
                return
            served += 1
            try:
                got = self._next_request(conn)
                if got is None:
                    return
                path, raw_query = split_target(got[0].target)
            except HttpError as exc:
                conn.line, conn.started = "", now
                self._answer(conn, Response(exc.status, (exc.message + "\n").encode("utf-8")),
                             close=True, head_only=False, http09=False, now=now)
                return
            head, body = got
            conn.started = now
            conn.line = head.line
            answer: Optional[Response] = None
            if self.quick is not None and not head.length:
                try:
                    answer = self.quick(self.state, head.method, path, raw_query)
                except Exception:  # noqa: BLE001 - the workers run the full route and report
                    answer = None
            self.state.requests += 1
            if answer is None:
                conn.state = _BUSY
                if self._join_inline(conn, head, body):
                    return  # stays registered: answered at the end of this turn
                self._sel.unregister(conn.sock)
                self._submit(conn, head, body)
                return
            self._answer(conn, answer, close=not head.keep_alive, head_only=head.method == "HEAD",
                         http09=head.http09, now=now)

    def _submit(self, conn: _Conn, head: Head, body: bytes) -> None:
        """Hand a request to the workers. With ``coalesce``, a GET joins the waiting job of the same
        target; a new one waits while one of its target is computed (it starts when that ends), so
        one target takes one worker at a time (up to :data:`SIDE_BY_SIDE` when ``side_by_side`` says
        so) and every answer is computed after its request came."""
        key = (head.method, head.target) if self.coalesce and head.method == "GET" and not head.length else None
        if key is None:
            self._enqueue(_Job(None, conn, head, body))
            return
        with self._waiting_lock:
            job = self._waiting.get(key)
            if job is not None:
                job.conns.append((conn, head))
                return
            job = self._waiting[key] = _Job(key, conn, head, body)
            running = self._running.get(key, 0)
            if running and not (running < SIDE_BY_SIDE and self.side_by_side and self.side_by_side(key[1])):
                return  # enqueued by a worker computing this target, when it is done
            job.queued = True
        self._enqueue(job)

    def _join_inline(self, conn: _Conn, head: Head, body: bytes) -> bool:
        """Keep a GET for this turn's computation of its target when ``inline`` says it is quick."""
        if self.inline is None or head.method != "GET" or head.length:
            return False
        job = self._inline.get(head.target)
        if job is not None:
            job.conns.append((conn, head))
            return True
        if len(self._inline) >= INLINE_TARGETS or not self.inline(head.target):
            return False
        self._inline[head.target] = _Job(None, conn, head, body)
        return True

    def _run_inline(self) -> None:
        """Compute each target kept this turn once and answer every request of it (loop thread)."""
        jobs, self._inline = self._inline, {}
        for job in jobs.values():
            response = self._compute(job)
            encoded: Dict[Tuple[bool, bool, bool], bytes] = {}
            now = time.monotonic()
            for conn, head in job.conns:
                if conn.closed:
                    continue
                conn.state = _READ  # it stayed registered: answered as a quick answer is (and closed so)
                try:
                    self._send(conn, self._prepare(conn, head, response, encoded, now), now)
                    if conn.state == _READ and conn.inbuf:
                        self._serve(conn, now)  # pipelined: may keep a request for the next turn
                except Exception as exc:  # noqa: BLE001 - as in the loop
                    self.state.log(f"connection error: {type(exc).__name__}: {exc}")
                    self._close(conn)

    def _enqueue(self, job: _Job) -> None:
        self._jobs.put(job)
        with self._waiting_lock:
            if len(self._threads) < self.workers and (not self._threads or self._jobs.qsize() > 0):
                t = threading.Thread(target=self._work, name="nvlow-serve-worker", daemon=True)
                self._threads.append(t)
                t.start()

    def _next_request(self, conn: _Conn) -> Optional[Tuple[Head, bytes]]:
        buf = conn.inbuf
        head = conn.head
        if head is None:
            head = parse_head(buf, conn.scan)
            if head is None:
                return None
            conn.head = head
            conn.scan = HeadScan()
        need = head.size + head.length
        if len(buf) < need:
            if head.expect and not conn.continued:
                conn.continued = True
                try:
                    conn.sock.send(_CONTINUE)
                except OSError:
                    pass
            return None
        # the skipped empty lines before the request line are part of head.size
        body = bytes(buf[head.size:need]) if head.length else b""
        del buf[:need]
        conn.head = None
        conn.continued = False
        return head, body

    def _encode(self, response: Response, close: bool, head_only: bool, http09: bool) -> bytes:
        body = response.body
        if http09:
            return body
        now = int(time.time())
        stamp, date = self._date
        if stamp != now:
            date = _http_date(now)
            self._date = (now, date)
        extra = "".join(f"{k}: {v}\r\n" for k, v in response.headers) if response.headers else ""
        if close:
            extra += "Connection: close\r\n"
        head = (f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\nServer: nvlow\r\n"
                f"Date: {date}\r\nContent-Type: {response.content_type}\r\nContent-Length: {len(body)}\r\n"
                f"{extra}\r\n").encode("latin-1")
        return head if head_only else head + body

    def _log(self, conn: _Conn, status: int, now: float) -> None:
        if self.state.verbose:
            took = (now - conn.started) * 1000 if conn.started else 0.0
            self.state.log(f'{conn.who} "{conn.line}" {status} - {took:.1f}ms')

    def _answer(self, conn: _Conn, response: Response, *, close: bool, head_only: bool, http09: bool,
                now: float) -> None:
        """Send an answer from the loop thread."""
        close = close or http09 or self.stopping.is_set()
        data = self._encode(response, close, head_only, http09)
        self._log(conn, response.status, time.monotonic())
        conn.close_after = close
        self._send(conn, data, now)

    def _send(self, conn: _Conn, data: bytes, now: float) -> None:
        """Send an answer (``conn.close_after`` set) on a connection the loop holds registered."""
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        if sent < len(data):
            conn.out = data[sent:]
            conn.state = _WRITE
            conn.last_io = now
            self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        self._done_writing(conn, now)

    def _done_writing(self, conn: _Conn, now: float) -> None:
        """The answer is out: linger and close, or wait for the next request (state already registered
        for reading, or the caller registers it)."""
        conn.out = b""
        if conn.close_after:
            self._linger(conn, now)
            return
        conn.state = _READ
        conn.armed = conn.last_io = now
        conn.started = 0.0

    def _linger(self, conn: _Conn, now: float) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        if self.stopping.is_set():
            self._close(conn)
            return
        conn.state = _LINGER
        conn.inbuf = bytearray()
        conn.linger_until = now + LINGER

    def _on_write(self, conn: _Conn, now: float) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.last_io = now
        conn.out = conn.out[sent:]
        if conn.out:
            return
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
        self._done_writing(conn, now)
        if conn.state == _READ and conn.inbuf:
            self._serve(conn, now)

    # -- workers ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.key is not None:
                with self._waiting_lock:  # from here on nobody joins this job
                    if self._waiting.get(job.key) is job:
                        del self._waiting[job.key]
                    self._running[job.key] = self._running.get(job.key, 0) + 1
            try:
                response = self._compute(job)
            finally:
                following = None
                if job.key is not None:
                    with self._waiting_lock:
                        left = self._running.pop(job.key, 1) - 1
                        if left:
                            self._running[job.key] = left
                        following = self._waiting.get(job.key)
                        if following is not None and following.queued:
                            following = None  # handed already (side by side)
                        elif following is not None:
                            following.queued = True
                if following is not None:
                    self._enqueue(following)  # still open to joiners until a worker starts it
            encoded: Dict[Tuple[bool, bool, bool], bytes] = {}  # one encoding per kind of asker
            if len(job.conns) == 1:
                conn, head = job.conns[0]
                self._reply(conn, head, response, encoded)
                continue
            for conn, head in job.conns:
                self._hand_back(conn, head, response, encoded)
            self._to_loop()

    def _reply(self, conn: _Conn, head: Head, response: Response,
               encoded: Dict[Tuple[bool, bool, bool], bytes]) -> None:
        """Send a worker's answer, then re-arm the connection (epoll) or hand it back to the loop."""
        now = time.monotonic()
        data = self._prepare(conn, head, response, encoded, now)
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = -1
        conn.out = b"" if sent < 0 else data[sent:]
        conn.broken = sent < 0
        if self._rearm and not (conn.close_after or conn.out or conn.broken or conn.inbuf or self._finished):
            # the common case: wait for the next request on the loop without waking it
            conn.state = _READ
            conn.armed = conn.last_io = now
            conn.started = 0.0
            try:
                self._sel.register(conn.sock, selectors.EVENT_READ, conn)
                return
            except (KeyError, ValueError, OSError, RuntimeError):  # closed meanwhile (a stop)
                if conn.closed:
                    return
                conn.state = _BUSY
                conn.broken = True
        self._back.append(conn)
        self._to_loop()

    def _hand_back(self, conn: _Conn, head: Head, response: Response,
                   encoded: Dict[Tuple[bool, bool, bool], bytes]) -> None:
        """Give a coalesced request's answer to the loop thread to send (one wake-up for the batch:
        the loop sends each while the worker is free for the next reading, instead of both threads
        passing the interpreter lock back and forth at every send)."""
        conn.out = self._prepare(conn, head, response, encoded, time.monotonic())
        conn.unsent = True
        self._back.append(conn)

    def _prepare(self, conn: _Conn, head: Head, response: Response,
                 encoded: Dict[Tuple[bool, bool, bool], bytes], now: float) -> bytes:
        """A worker's answer as bytes for ``head``'s asker (encoded once per kind of asker), logged;
        ``conn.close_after`` says whether the connection ends with it."""
        close = not head.keep_alive or head.http09 or self.stopping.is_set()
        kind = (close, head.method == "HEAD", head.http09)
        data = encoded.get(kind)
        if data is None:
            data = encoded[kind] = self._encode(response, *kind)
        self._log(conn, response.status, now)
        conn.close_after = close
        return data

    def _to_loop(self) -> None:
        """Wake the loop for the connections workers put in ``_back`` (closed here once it has ended)."""
        if self._finished:
            self._close_from_worker()
        else:
            self._wake()

    def _compute(self, job: _Job) -> Response:
        """The answer to ``job`` (a worker's or the loop's); one bad request must not stop either."""
        try:
            return self._call(job.head, job.body)
        except Exception as exc:  # noqa: BLE001
            self.state.log(f"connection error: {type(exc).__name__}: {exc}")
            return Response(500, b"internal error, check logs for details\n")

    def _call(self, head: Head, body: bytes) -> Response:
        path, raw_query = split_target(head.target)
        try:
            query = parse_qs(raw_query, keep_blank_values=True, strict_parsing=False,
                             max_num_fields=64) if raw_query else {}
        except ValueError:
            return Response(400, b"malformed query string\n")
        request = Request(head.method, path, query, head.headers, body, raw_query)
        return self.route(self.state, request)

    def _close_from_worker(self) -> None:
        while self._back:
            try:
                conn = self._back.popleft()
            except IndexError:
                return
            try:
                conn.sock.close()
            except OSError:
                pass

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass  # the pipe is full (a wake-up is pending anyway) or closed at the end

    def _drain_wake(self, now: float) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass
        self._wake_pending = False
        while self._back:
            conn = self._back.popleft()
            try:
                self._rejoin(conn, now)
            except Exception as exc:  # noqa: BLE001 - as in the loop
                self.state.log(f"connection error: {type(exc).__name__}: {exc}")
                self._close(conn)

    def _rejoin(self, conn: _Conn, now: float) -> None:
        """Take back a connection a worker has answered on."""
        if conn.closed:
            return
        if conn.broken:
            self._close(conn)
            return
        if conn.unsent:  # an answer handed back by a worker: send it from here
            conn.unsent = False
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            conn.out = conn.out[sent:]
        if conn.out:
            conn.state = _WRITE
            conn.last_io = now
            self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
            return
        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
        conn.state = _READ  # registered: _done_writing may shut it down and linger
        self._done_writing(conn, now)
        if conn.state == _READ and conn.inbuf:
            self._serve(conn, now)
