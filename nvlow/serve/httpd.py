"""The HTTP layer of ``nvlow serve``: the request handler and the connection-tracking servers.

Standard library only (``http.server`` + ``socketserver`` threads). The
handler speaks HTTP/1.1 with keep-alive and sends every response with
Content-Length, headers and body in one write. It enforces the limits:
request lines over :data:`MAX_LINE` bytes get 414, bodies over
:data:`MAX_BODY` 413, chunked bodies 411, malformed requests 400; a client
that stalls for :data:`CLIENT_TIMEOUT` seconds (nvidia-docker-plugin's
read/write timeout) is dropped, and so is one that has not sent a whole request
within :data:`REQUEST_DEADLINE` seconds (however slowly it trickles); two
Content-Length headers are a 400. The servers run a thread per connection,
refuse connections beyond their cap, or beyond :data:`MAX_PER_CLIENT` from one
address, with a 503, and track which connections
are busy so that a graceful stop can finish in-flight requests and close the
idle keep-alive ones. Routing is not done here: each server is given a
``route`` function (:func:`nvlow.serve.server.dispatch` or
:func:`nvlow.serve.server.dispatch_plugin`) at :meth:`_ServerMixin.init_tracking`.
Split out of :mod:`nvlow.serve.server`, which builds and stops these servers.
"""
from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Set
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
MAX_LINE = 8192
MAX_BODY = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every response carries Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "nvlow"
    sys_version = ""
    timeout = CLIENT_TIMEOUT
    server: "_ServerMixin"  # type: ignore[assignment]

    def setup(self) -> None:
        self.timeout = self.server.client_timeout  # type: ignore[misc]
        if self.request.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().setup()
        self.server.track(self, busy=False)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self)

    def address_string(self) -> str:
        addr = self.client_address
        return str(addr[0]) if isinstance(addr, tuple) and addr else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        self.server.state.log(f"{self.address_string()} {format % args}")

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if self.server.state.verbose:
            took = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
            self.server.state.log(f'{self.address_string()} "{self.requestline}" {code} {size} {took:.1f}ms')

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        text = message or self.responses.get(code, ("error",))[0]
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a malformed line still gets a status line
        self._send(Response(code, (text + "\n").encode("utf-8")))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers:
            self.send_header(key, value)
        if self.server.stopping.is_set():
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        # headers and body in one write: two small writes meet Nagle + delayed ACK (40 ms stalls)
        if hasattr(self, "_headers_buffer"):
            self._headers_buffer.append(b"\r\n" + response.body)
            self.flush_headers()
        else:  # HTTP/0.9: no headers
            self.wfile.write(response.body)

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        self.log_request(code, "-")
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())

    def handle_one_request(self) -> None:
        try:
            self.server.arm(self)
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            self.server.track(self, busy=True)
            self._started = time.monotonic()
            if len(self.raw_requestline) > MAX_LINE:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414, "request line too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
            self.wfile.flush()
        except (socket.timeout, TimeoutError):
            self.close_connection = True
        except (ConnectionError, OSError):
            self.close_connection = True
        finally:
            self.server.track(self, busy=False)

    def _serve(self) -> None:
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            # two lengths are a request-smuggling shape (RFC 9112 section 6.3): refuse, do not pick one
            self.send_error(400, "more than one Content-Length")
            return
        length_text = lengths[0] if lengths else None
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411, "chunked bodies are not accepted; send Content-Length")
            return
        try:
            text = (length_text or "0").strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 12):
                raise ValueError
            length = int(text)
        except ValueError:
            self.send_error(400, "invalid Content-Length")
            return
        if length > MAX_BODY:
            self.send_error(413, "request body too large")
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return
        self.server.disarm(self)
        parts = urlsplit(self.path)
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
        except ValueError:
            self.send_error(400, "malformed query string")
            return
        request = Request(self.command, parts.path, query,
                          {k.lower(): v for k, v in self.headers.items()}, body)
        self.server.state.requests += 1
        self._send(self.server.route(self.server.state, request))


class _ServerMixin(socketserver.ThreadingMixIn):
    """Thread per connection with a connection cap and tracking for a graceful stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops SYNs of concurrent clients (1 s retransmits)
    state: ServeState
    route: Callable[[ServeState, Request], Response]
    client_timeout: float = CLIENT_TIMEOUT

    def init_tracking(self, state: ServeState, route: Callable[[ServeState, Request], Response],
                      max_connections: int) -> None:
        self.state = state
        self.route = route
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conns: Dict[_Handler, bool] = {}
        self._conns_lock = threading.Lock()
        self._live_threads: Set[threading.Thread] = set()
        self._deadlines: Dict[_Handler, float] = {}
        self._per_client: Dict[str, int] = {}
        self.request_deadline = REQUEST_DEADLINE
        self.max_per_client = MAX_PER_CLIENT
        threading.Thread(target=self._reap, name="nvlow-deadlines", daemon=True).start()

    def arm(self, handler: _Handler) -> None:
        """Start the deadline of the next request on ``handler``'s connection."""
        with self._conns_lock:
            self._deadlines[handler] = time.monotonic() + self.request_deadline

    def disarm(self, handler: _Handler) -> None:
        """The request is read: the handler runs without a read deadline."""
        with self._conns_lock:
            self._deadlines.pop(handler, None)

    def _reap(self) -> None:
        # closes connections whose request is not read by its deadline; shutdown() makes the
        # handler's blocked read return, and the handler thread ends normally
        while not self.stopping.wait(0.25):
            now = time.monotonic()
            with self._conns_lock:
                late = [h for h, when in self._deadlines.items() if when < now]
                for h in late:
                    self._deadlines.pop(h, None)
            for h in late:
                self._close_idle(h)

    def track(self, handler: _Handler, busy: bool) -> None:
        with self._conns_lock:
            self._conns[handler] = busy
        if not busy and self.stopping.is_set():
            self._close_idle(handler)

    def untrack(self, handler: _Handler) -> None:
        with self._conns_lock:
            self._conns.pop(handler, None)
            self._deadlines.pop(handler, None)

    @staticmethod
    def _close_idle(handler: _Handler) -> None:
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close_idle_connections(self) -> None:
        with self._conns_lock:
            idle = [h for h, busy in self._conns.items() if not busy]
        for h in idle:
            self._close_idle(h)

    @staticmethod
    def _client_key(client_address: Any) -> str:
        return str(client_address[0]) if isinstance(client_address, tuple) and client_address else ""

    def _refuse(self, request: Any) -> None:
        try:
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                            b"Content-Length: 12\r\nConnection: close\r\n\r\nserver busy\n")
        except OSError:
            pass
        self.shutdown_request(request)  # type: ignore[attr-defined]

    def _admit(self, client: str) -> bool:
        """Count a connection of ``client`` (unix sockets have none and no per-client cap)."""
        if not client:
            return True
        with self._conns_lock:
            if self._per_client.get(client, 0) >= self.max_per_client:
                return False
            self._per_client[client] = self._per_client.get(client, 0) + 1
        return True

    def _leave(self, client: str) -> None:
        if client:
            with self._conns_lock:
                left = self._per_client.get(client, 1) - 1
                if left > 0:
                    self._per_client[client] = left
                else:
                    self._per_client.pop(client, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        client = self._client_key(client_address)
        if self.stopping.is_set() or not self._admit(client):
            self._refuse(request)
            return
        if not self._slots.acquire(blocking=False):
            self._leave(client)
            self._refuse(request)
            return
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self._conns_lock:
            self._live_threads.add(t)
        t.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._leave(self._client_key(client_address))
            self._slots.release()
            with self._conns_lock:
                self._live_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        self.state.log(f"connection error: {type(exc).__name__}: {exc}")

    def wait_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._conns_lock:
                threads = list(self._live_threads)
            if not threads or time.monotonic() > deadline:
                return
            threads[0].join(max(0.0, min(0.2, deadline - time.monotonic())))


class _TCPServer(_ServerMixin, socketserver.TCPServer):
    pass


class _TCP6Server(_ServerMixin, socketserver.TCPServer):
    address_family = socket.AF_INET6


class _UnixServer(_ServerMixin, socketserver.UnixStreamServer):
    pass
