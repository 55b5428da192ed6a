"""The ``nvlow serve`` servers: REST API on TCP and the Docker volume plugin on a unix socket.

Standard library only (``http.server`` + ``socketserver`` threads). Robustness
rules: only GET on the REST API and POST on the plugin (else 405); unknown
paths 404; request lines over 8 KiB 414, bodies over 64 KiB 413, malformed
requests 400; a client that stalls for :data:`CLIENT_TIMEOUT` seconds is
dropped; at most :data:`MAX_CONNECTIONS` connections are served at once (503
beyond); a handler exception becomes a 500 with a short message and one log
line, and the server keeps serving. :meth:`NvlowServer.stop` finishes
in-flight requests and closes idle keep-alive connections.
"""
from __future__ import annotations

import os
import socket
import socketserver
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict, List, Optional, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from ..errors import NvlowError, UsageError
from ..volume import DEFAULT_VOLUMES_DIR, VolumeResult, ensure_volume
from . import api_v1, api_v2, volume_plugin
from .cache import DiscoveryCache
from .wire import Handler, Request, Response, text_error

DEFAULT_LISTEN = "127.0.0.1:3476"
DEFAULT_SOCKET_DIR = "/run/nvlow"
DEFAULT_SPEC_DIR = "/etc/docker/plugins"
SOCKET_NAME = "nvlow.sock"
SPEC_NAME = "nvlow.spec"
CLIENT_TIMEOUT = 5.0  # seconds, nvidia-docker-plugin's read/write timeout
MAX_LINE = 8192
MAX_BODY = 64 * 1024
MAX_CONNECTIONS = 256
#: the driver volume holds what 1.0's did: compute, utility, video and graphics libraries and binaries
VOLUME_CAPABILITIES = ("compute", "graphics", "utility", "video")


def _default_parse_capabilities(text: str) -> Tuple[str, ...]:
    from ..driverfiles import parse_capabilities

    return tuple(parse_capabilities(text))


def _default_capabilities() -> Tuple[str, ...]:
    from ..driverfiles import DEFAULT_CAPABILITIES

    return tuple(DEFAULT_CAPABILITIES)


@dataclass
class ServeState:
    """What handlers share: the discovery cache, the volumes directory, logging."""

    cache: DiscoveryCache
    volumes_dir: str = DEFAULT_VOLUMES_DIR
    verbose: bool = False
    stream: Any = None  # log stream, stderr by default
    parse_capabilities: Callable[[str], Tuple[str, ...]] = _default_parse_capabilities
    default_capabilities_fn: Callable[[], Tuple[str, ...]] = _default_capabilities
    requests: int = 0
    errors: int = 0
    _log_lock: threading.Lock = field(default_factory=threading.Lock)
    _build_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def default_capabilities(self) -> Tuple[str, ...]:
        return self.default_capabilities_fn()

    def log(self, message: str) -> None:
        """One line on stderr."""
        with self._log_lock:
            stream = self.stream or sys.stderr
            try:
                stream.write(f"nvlow serve: {message}\n")
                stream.flush()
            except (OSError, ValueError):
                pass

    def ensure_driver_volume(self, version: Optional[str]) -> VolumeResult:
        """Build (once) the driver volume of the running driver (one build at a time in this process)."""
        if not version:
            from ..errors import HostError

            raise HostError("the NVIDIA driver version is unknown, so no driver volume can be built")
        files = self.cache.driver_files(VOLUME_CAPABILITIES)
        with self._build_lock:
            result = ensure_volume(files, version, self.volumes_dir)
        if result.created:
            self.log(f"built driver volume {result.path} ({result.linked} linked, {result.copied} copied)")
        return result


ROUTES: Dict[str, Handler] = {**api_v1.ROUTES, **api_v2.ROUTES}


def dispatch(state: ServeState, request: Request) -> Response:
    """Route a REST request; never raises."""
    handler = ROUTES.get(request.path)
    if handler is None:
        return text_error(404, "404 page not found")
    if request.method != "GET":
        return Response(405, b"method not allowed\n", headers=(("Allow", "GET"),))
    try:
        return handler(state, request)
    except NvlowError as exc:
        state.errors += 1
        state.log(f"{request.method} {request.path}: {exc}")
        if request.path.startswith("/v2/") or request.path == "/healthz":
            return api_v2.error_response(exc)
        return text_error(400 if isinstance(exc, UsageError) else 500, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
        state.errors += 1
        state.log(f"internal error on {request.method} {request.path}: {type(exc).__name__}: {exc}")
        return text_error(500, "internal error, check logs for details")


def dispatch_plugin(state: ServeState, request: Request) -> Response:
    """Route a volume plugin request; never raises."""
    if request.path not in volume_plugin.ENDPOINTS:
        return text_error(404, "404 page not found")
    if request.method != "POST":
        return Response(405, b"method not allowed\n", headers=(("Allow", "POST"),))
    try:
        return volume_plugin.handle(state, request)
    except Exception as exc:  # noqa: BLE001
        state.errors += 1
        state.log(f"internal error on plugin {request.path}: {type(exc).__name__}: {exc}")
        return text_error(500, "internal error, check logs for details")


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
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411, "chunked bodies are not accepted; send Content-Length")
            return
        try:
            length = int(length_text) if length_text is not None else 0
            if length < 0:
                raise ValueError
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

    def track(self, handler: _Handler, busy: bool) -> None:
        with self._conns_lock:
            self._conns[handler] = busy
        if not busy and self.stopping.is_set():
            self._close_idle(handler)

    def untrack(self, handler: _Handler) -> None:
        with self._conns_lock:
            self._conns.pop(handler, None)

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

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.stopping.is_set() or not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: 12\r\nConnection: close\r\n\r\nserver busy\n")
            except OSError:
                pass
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self._conns_lock:
            self._live_threads.add(t)
        t.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
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


def parse_listen(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` = all interfaces) as (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise UsageError(f"invalid --listen {text!r}", hint="use HOST:PORT, e.g. 127.0.0.1:3476")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise UsageError(f"invalid port in --listen {text!r}", hint="use HOST:PORT, e.g. 127.0.0.1:3476") from None
    return host or "0.0.0.0", port


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_socket_dir(path: str) -> str:
    """Create the plugin socket directory root-only (0700, owned by us); the socket path."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid != os.geteuid():
            raise UsageError(f"plugin socket directory {path} belongs to uid {st.st_uid}, not to this user",
                             hint="use a directory of your own with --plugin-socket-dir")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise UsageError(f"cannot create plugin socket directory {path}: {exc.strerror}",
                         hint="run as root or pass --plugin-socket-dir DIR") from None
    sock = os.path.join(path, SOCKET_NAME)
    try:
        if stat.S_ISSOCK(os.lstat(sock).st_mode):
            os.unlink(sock)  # a stale socket of a previous run
    except FileNotFoundError:
        pass
    return sock


def write_spec(spec_dir: str, socket_path: str) -> str:
    """Write ``<spec_dir>/nvlow.spec`` pointing dockerd at the socket (atomically); its path."""
    os.makedirs(spec_dir, mode=0o755, exist_ok=True)
    spec = os.path.join(spec_dir, SPEC_NAME)
    content = f"unix://{socket_path}\n"
    try:
        with open(spec) as fh:
            if fh.read() == content:
                return spec
    except OSError:
        pass
    tmp = f"{spec}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(content)
    os.chmod(tmp, 0o644)
    os.rename(tmp, spec)
    return spec


class NvlowServer:
    """The REST server and (optionally) the volume plugin, each on its own thread."""

    def __init__(self, state: ServeState, listen: Tuple[str, int] = ("127.0.0.1", 3476),
                 plugin_socket: Optional[str] = None, *, max_connections: int = MAX_CONNECTIONS,
                 client_timeout: float = CLIENT_TIMEOUT) -> None:
        self.state = state
        cls = _TCP6Server if ":" in listen[0] else _TCPServer
        try:
            self.rest = cls(listen, _Handler, bind_and_activate=False)
            self.rest.init_tracking(state, dispatch, max_connections)
            self.rest.client_timeout = client_timeout
            self.rest.server_bind()
            self.rest.server_activate()
        except OSError as exc:
            raise UsageError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}",
                             hint="another nvidia-docker-plugin or nvlow serve may be running; use --listen") from None
        self.plugin: Optional[_UnixServer] = None
        self.plugin_socket = plugin_socket
        if plugin_socket:
            old_umask = os.umask(0o077)
            try:
                self.plugin = _UnixServer(plugin_socket, _Handler, bind_and_activate=False)
                self.plugin.init_tracking(state, dispatch_plugin, max_connections)
                self.plugin.client_timeout = client_timeout
                self.plugin.server_bind()
                self.plugin.server_activate()
            except OSError as exc:
                self.rest.server_close()
                raise UsageError(f"cannot serve the volume plugin on {plugin_socket}: {exc.strerror or exc}",
                                 hint="use --plugin-socket-dir DIR or --no-plugin") from None
            finally:
                os.umask(old_umask)
        self._threads: List[threading.Thread] = []

    @property
    def address(self) -> Tuple[str, int]:
        """The bound REST address (the real port when 0 was asked)."""
        addr = self.rest.server_address
        return str(addr[0]), int(addr[1])

    def start(self) -> None:
        """Serve on background threads."""
        for srv in (self.rest, self.plugin):
            if srv is not None:
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, grace: float = CLIENT_TIMEOUT) -> None:
        """Stop accepting, finish in-flight requests (at most ``grace`` s), close everything."""
        servers = [s for s in (self.rest, self.plugin) if s is not None]
        for srv in servers:
            srv.stopping.set()
            srv.shutdown()
        for srv in servers:
            srv.close_idle_connections()
        for srv in servers:
            srv.wait_threads(grace)
            srv.server_close()
        if self.plugin_socket:
            try:
                os.unlink(self.plugin_socket)
            except OSError:
                pass
        self.state.cache.close()


def serve_until_signal(server: NvlowServer, stop: Optional[threading.Event] = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); graceful stop; exit code 0."""
    import signal

    event = stop or threading.Event()

    received: List[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # Only set flags here: logging from a signal handler could deadlock on the log
        # lock if the signal lands while the main thread holds it.
        received.append(signum)
        event.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        bound = server.address
        server.state.log(f"serving remote API at {bound[0]}:{bound[1]}")
        while not event.wait(0.5):
            pass
        if received:
            server.state.log(f"received {signal.Signals(received[0]).name}, stopping")
    finally:
        server.stop()
        for s, h in old.items():
            signal.signal(s, h)
    server.state.log("stopped")
    return 0
