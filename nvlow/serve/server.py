"""The ``nvlow serve`` servers: REST API on TCP and the Docker volume plugin on a unix socket.

Standard library only (a selector loop per socket plus a few worker threads,
:mod:`nvlow.serve.httpd`). Robustness rules: only GET on the REST API and POST
on the plugin (else 405); unknown paths 404; request lines over 8 KiB 414,
bodies over 64 KiB 413, malformed requests 400; a client that stalls for
:data:`CLIENT_TIMEOUT` seconds is dropped; at most :data:`MAX_CONNECTIONS`
connections are served at once (503 beyond); a handler exception becomes a 500
with a short message and one log line, and the server keeps serving.
:meth:`NvlowServer.stop` finishes in-flight requests and closes idle keep-alive
connections.

Answers that depend only on the discovered host (:data:`CACHED_PATHS`: the
docker/mesos arguments, gpu/info, /v2/args, /v2/info, /healthz) are kept per
discovery and answered again without running their handler until the kernel
module's version text changes (:meth:`nvlow.serve.cache.DiscoveryCache.current`,
checked on every request); live readings (gpu/status, /v2/status) are read on
every request, as nvidia-docker-plugin 1.0 did.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import NvlowError, UsageError
from ..plan.plan import PLUGIN_DRIVER, EngineView
from ..plan.volume import VOLUME_CAPABILITIES as VOLUME_CAPABILITIES
from ..plan.volume import DEFAULT_VOLUMES_DIR, VolumeResult
from ..plan.volume import ensure_driver_volume as build_driver_volume
from . import api_v1, api_v2, volume_plugin
from .cache import DiscoveryCache
from .httpd import CLIENT_TIMEOUT, HTTPServer, split_target
from .wire import Handler, Request, Response, text_error

DEFAULT_SOCKET_DIR = "/run/nvlow"
DEFAULT_SPEC_DIR = "/etc/docker/plugins"
#: the socket and spec file names of the default plugin name (``<name>.sock``, ``<name>.spec``)
SOCKET_NAME = f"{PLUGIN_DRIVER}.sock"
SPEC_NAME = f"{PLUGIN_DRIVER}.spec"
#: where dockerd looks for a legacy plugin ``<name>``, in its order: sockets in /run/docker/plugins, then
#: ``.spec``/``.json`` files in /etc/docker/plugins and /usr/lib/docker/plugins (moby pkg/plugins/discovery.go)
DOCKER_PLUGIN_DIRS = ("/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins")
MAX_CONNECTIONS = 256


def _default_parse_capabilities(text: str) -> Tuple[str, ...]:
    from ..host.driverfiles import parse_capabilities

    return tuple(parse_capabilities(text))


def _default_capabilities() -> Tuple[str, ...]:
    from ..host.driverfiles import DEFAULT_CAPABILITIES

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
    #: the volume plugin's name: what /docker/cli reports as VolumeDriver and plans name in plugin mode
    plugin_name: str = PLUGIN_DRIVER
    #: the host root as the container engine sees it (``--engine-root``); None: as nvlow reads it
    engine_root: Optional[str] = None
    requests: int = 0
    errors: int = 0
    #: the volume plugin's Mount/Unmount counts per volume and caller ID (Remove refuses a mounted one)
    plugin_mounts: volume_plugin.MountTable = field(default_factory=volume_plugin.MountTable)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def default_capabilities(self) -> Tuple[str, ...]:
        return self.default_capabilities_fn()

    @property
    def engine_view(self) -> EngineView:
        """How the engine sees this server's host: ``--engine-root`` and the plugin name."""
        return EngineView(self.engine_root, self.plugin_name)

    def engine_path(self, path: str) -> str:
        """A path nvlow uses (a volume's mountpoint) as the engine sees it."""
        return self.engine_view.path(path, self.cache.root.path)

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
        """The driver volume of the running driver, built or rebuilt by the same function as the CLI's
        (:func:`nvlow.plan.volume.ensure_driver_volume`) from the cached file selection. Builds of a version
        are serialized by that function's volume lock, across this process's threads and other
        processes alike (no lock of this process's own: the plugin holds the volume lock around
        Mount, and taking a second lock here in the other order could deadlock)."""
        result = build_driver_volume(self.cache.root, version, self.volumes_dir,
                                     select=lambda _root, _version, caps: self.cache.driver_files(caps))
        if result.created:
            verb = "rebuilt" if result.replaced else "built"
            self.log(f"{verb} driver volume {result.path} ({result.linked} linked, {result.copied} copied)")
        return result


ROUTES: Dict[str, Handler] = {**api_v1.ROUTES, **api_v2.ROUTES}


_CACHED_V1 = ("/docker/cli", "/docker/cli/json", "/gpu/info", "/gpu/info/json", "/mesos/cli")
#: GET paths whose successful answer depends only on the discovery, this server's settings and the
#: query (/v2/args only without driver_files=volume, which builds the volume when it is missing)
CACHED_PATHS = frozenset(_CACHED_V1 + tuple("/v1.0" + p for p in _CACHED_V1) + ("/v2/args", "/v2/info", "/healthz"))
_LIVE_V1 = ("/gpu/status", "/gpu/status/json")
#: GET paths answered with a live status reading
LIVE_PATHS = frozenset(_LIVE_V1 + tuple("/v1.0" + p for p in _LIVE_V1) + ("/v2/status",))


def _live(target: str) -> bool:
    return split_target(target)[0] in LIVE_PATHS


def side_by_side(state: ServeState, target: str) -> bool:
    """Whether a live reading for ``target`` may start while another is under way: when the driver
    library's readings mostly wait (a real GPU's PCIe counters sample for 20 ms each), a second worker
    reading at once halves the wait of the requests that came meanwhile; on a library that answers at
    once a second reading would only contend for the interpreter."""
    return _live(target) and state.cache.readings_wait()


def inline(state: ServeState, target: str) -> bool:
    """Whether the loop thread may compute a live reading for ``target`` itself: when the last one took
    microseconds (:meth:`DiscoveryCache.readings_quick`), as with the simulated library or a fake;
    never when it may discover or wait on NVML."""
    return _live(target) and state.cache.readings_quick()


def _cacheable(request: Request) -> bool:
    if request.method != "GET" or request.path not in CACHED_PATHS:
        return False
    return request.path != "/v2/args" or "volume" not in request.query.get("driver_files", ())


def quick_answer(state: ServeState, method: str, path: str, raw_query: str) -> Optional[Response]:
    """The kept answer to a GET of ``path?raw_query`` when the running driver is the one it was made
    for, else None (the request then goes to :func:`dispatch`). Never blocks and never discovers:
    one read of the driver's version text."""
    if method != "GET" or path not in CACHED_PATHS:
        return None
    snap = state.cache.current()
    if snap is None:
        return None
    answer = snap.answers.get((ROUTES.get(path), path, raw_query))
    return answer if isinstance(answer, Response) else None


def dispatch(state: ServeState, request: Request) -> Response:
    """Route a REST request; never raises."""
    handler = ROUTES.get(request.path)
    if handler is None:
        return text_error(404, "404 page not found")
    allowed = "POST" if request.path in api_v2.POST_ROUTES else "GET"
    if request.method != allowed:
        return Response(405, b"method not allowed\n", headers=(("Allow", allowed),))
    try:
        snap = state.cache.current() if _cacheable(request) else None
        response = handler(state, request)
        if snap is not None and response.status == 200:
            state.cache.remember(snap, (handler, request.path, request.raw_query), response)
        return response
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


def _socket_dir_error(path: str, exc: OSError) -> UsageError:
    if exc.errno == errno.EROFS:
        hint = "the directory is read-only: choose another --plugin-socket-dir"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "run as root, or choose a directory of your own with --plugin-socket-dir"
    else:
        hint = "choose another directory with --plugin-socket-dir"
    return UsageError(f"cannot create plugin socket directory {path}: {exc.strerror}", hint=hint)


def socket_alive(path: str, timeout: float = 1.0) -> bool:
    """True when a process accepts connections on the unix socket ``path`` (a live plugin).

    A missing path, a file that is not a socket and a refused connection (a socket left by a
    process that died) are not alive; a slow or forbidden socket counts as alive (nvlow does not
    take over what it cannot prove is abandoned)."""
    import socket

    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        sock.close()
    return True


def prepare_socket_dir(path: str, plugin_name: str = PLUGIN_DRIVER) -> str:
    """Create the plugin socket directory root-only (0700, owned by us); the socket path
    ``<path>/<plugin_name>.sock``.

    A symlink is refused, not followed: the directory is opened with ``O_NOFOLLOW | O_DIRECTORY``
    and its mode is fixed with ``fchmod`` on that descriptor, so the check and the chmod act on the
    same directory. A socket left by a dead process is replaced; one that a live process serves
    (another ``nvlow serve``, an nvidia-docker-plugin) is refused.
    """
    symlink = UsageError(f"plugin socket directory {path} is a symlink; nvlow does not follow it",
                         hint="pass a real directory with --plugin-socket-dir")
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise symlink
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _socket_dir_error(path, exc) from None
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink from None
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            raise UsageError(f"plugin socket directory {path} is not a directory",
                             hint="remove it, or pass another directory with --plugin-socket-dir") from None
        raise _socket_dir_error(path, exc) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise UsageError(f"plugin socket directory {path} belongs to uid {st.st_uid}, not to this user",
                             hint="use a directory of your own with --plugin-socket-dir")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    except OSError as exc:
        raise _socket_dir_error(path, exc) from None
    finally:
        os.close(fd)
    sock = os.path.join(path, f"{plugin_name}.sock")
    if socket_alive(sock):
        raise UsageError(f"another process serves the plugin socket {sock}",
                         hint="stop it (another nvlow serve or nvidia-docker-plugin), or choose another "
                              "--plugin-socket-dir or --plugin-name")
    try:
        if stat.S_ISSOCK(os.lstat(sock).st_mode):
            os.unlink(sock)  # a stale socket of a previous run
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _socket_dir_error(path, exc) from None
    return sock


def _same_file_name(a: str, b: str) -> bool:
    """Whether two paths name the same directory entry (their directories resolved, not the entry)."""
    def norm(p: str) -> str:
        return os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(p))), os.path.basename(p))

    return norm(a) == norm(b)


def plugin_claims(plugin_name: str, dirs: Sequence[str]) -> List[str]:
    """The files by which dockerd would find a legacy plugin called ``plugin_name`` in ``dirs``:
    ``<dir>/<name>.sock|.spec|.json`` and ``<dir>/<name>/<name>.<ext>`` (moby pkg/plugins/discovery.go)."""
    out: List[str] = []
    for d in dirs:
        for ext in (".sock", ".spec", ".json"):
            for p in (os.path.join(d, plugin_name + ext), os.path.join(d, plugin_name, plugin_name + ext)):
                if os.path.lexists(p) and not any(_same_file_name(p, q) for q in out):
                    out.append(p)
    return out


def _spec_address(path: str) -> Optional[str]:
    """The address a ``.spec`` file names (dockerd reads it whole and trims it), None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
        return "".join(c if c.isprintable() else "?" for c in text)  # shown in a one-line error
    except OSError:
        return None
    finally:
        os.close(fd)


def check_plugin_name_free(plugin_name: str, socket_path: str, spec_path: Optional[str],
                           dirs: Sequence[str]) -> List[str]:
    """Refuse to serve a plugin name that another plugin claims in ``dirs``; the notes to log.

    nvlow's own files do not count: the socket it is about to serve (:func:`prepare_socket_dir`
    checks that nobody else serves it) and any ``.spec`` file that names this socket (its own, or one
    an admin installed for it).
    A spec file at ``spec_path`` that names a unix socket nobody serves any more (left by a crash of
    nvlow or nvidia-docker-plugin) is stale: it is replaced, with a note. Anything else -- a ``.json``
    spec, another spec file, another socket, a spec naming a live plugin -- is a UsageError naming the
    file: dockerd would send the volume requests of ``--volume-driver=<name>`` to one of the two.
    """
    notes: List[str] = []
    hint = ("stop the other plugin (nvidia-docker 1.0: systemctl stop nvidia-docker) and remove the file, or "
            "serve under another name with --plugin-name NAME (and NVLOW_PLUGIN_NAME=NAME for nvlow args/exec)")
    for path in plugin_claims(plugin_name, dirs):
        if _same_file_name(path, socket_path):
            continue
        if path.endswith(".spec"):
            address = _spec_address(path) or ""
            target = address[len("unix://"):] if address.startswith("unix://") else None
            if target and _same_file_name(target, socket_path):
                continue  # names this server's socket (its own spec, or one the admin installed for it)
            if target and spec_path is not None and _same_file_name(path, spec_path) and not socket_alive(target):
                notes.append(f"replacing the stale plugin spec {path} (it named {address[:200]}, "
                             "which nobody serves)")
                continue
            where = f" ({address[:200]})" if address else ""
            raise UsageError(f"{path}{where} already registers a Docker plugin named '{plugin_name}'; "
                             "nvlow will not take the name from it", hint=hint)
        raise UsageError(f"{path} already registers a Docker plugin named '{plugin_name}'; "
                         "nvlow will not take the name from it", hint=hint)
    return notes


def write_spec(spec_dir: str, socket_path: str, plugin_name: str = PLUGIN_DRIVER) -> str:
    """Write ``<spec_dir>/<plugin_name>.spec`` pointing dockerd at the socket (atomically); its path.

    OSError when it cannot (the caller warns). The temporary file is created exclusively and never
    through a symlink."""
    os.makedirs(spec_dir, mode=0o755, exist_ok=True)
    spec = os.path.join(spec_dir, f"{plugin_name}.spec")
    content = f"unix://{socket_path}\n"
    try:
        with open(os.open(spec, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)) as fh:
            if fh.read() == content:
                return spec
    except (OSError, ValueError):
        pass
    tmp = f"{spec}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by an earlier process with this pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with open(fd, "w") as fh:
            fh.write(content)
            os.fchmod(fh.fileno(), 0o644)
        os.rename(tmp, spec)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return spec


class NvlowServer:
    """The REST server and (optionally) the volume plugin, each on its own thread."""

    def __init__(self, state: ServeState, listen: Tuple[str, int] = ("127.0.0.1", 3476),
                 plugin_socket: Optional[str] = None, *, max_connections: int = MAX_CONNECTIONS,
                 client_timeout: float = CLIENT_TIMEOUT) -> None:
        import socket

        self.state = state
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        try:
            self.rest = HTTPServer(family, listen, state, dispatch, quick=quick_answer, coalesce=True,
                                   max_connections=max_connections, client_timeout=client_timeout,
                                   side_by_side=lambda target: side_by_side(state, target),
                                   inline=lambda target: inline(state, target))
        except OSError as exc:
            raise UsageError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}",
                             hint="another nvidia-docker-plugin or nvlow serve may be running; use --listen") from None
        self.plugin: Optional[HTTPServer] = None
        self.plugin_socket = plugin_socket
        if plugin_socket:
            old_umask = os.umask(0o077)
            try:
                self.plugin = HTTPServer(socket.AF_UNIX, plugin_socket, state, dispatch_plugin,
                                         max_connections=max_connections, client_timeout=client_timeout)
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
        for srv, name in ((self.rest, "nvlow-serve-rest"), (self.plugin, "nvlow-serve-plugin")):
            if srv is not None:
                self._threads.append(srv.start(name))

    def stop(self, grace: float = CLIENT_TIMEOUT) -> None:
        """Stop accepting, finish in-flight requests (at most ``grace`` s), close everything."""
        servers = [s for s in (self.rest, self.plugin) if s is not None]
        for srv in servers:
            srv.stop(grace)  # closes the listener and the idle connections at once
        for srv in servers:
            srv.wait(grace + 1.0)
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
