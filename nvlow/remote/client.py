"""Remote hosts: ``--host URL``, ``NV_HOST`` and ``DOCKER_HOST``, as nvidia-docker 1.0 understood them.

Grammar of ``NV_HOST`` / ``--host`` (1.0): ``[(http|ssh)://][<user>@][<host>][:<ssh-port>]:[<http-port>]``.
Without a scheme the value is ``tcp://`` (read as http). The colon before the
HTTP port is mandatory (``10.0.0.1:``, ``ssh://foo@10.0.0.1:22:80``); nvlow
also accepts a bare host (``http://gpu1``, ``ssh://gpu1``). Defaults: host
``localhost``, ssh port 22, HTTP port 3476.

``DOCKER_HOST`` (used when ``NV_HOST`` is unset, and only with the opt-in
``NVLOW_PLUGIN_ON_DOCKER_HOST=1``): ``unix://``, ``fd://`` and ``npipe://``
mean local mode; ``tcp://host:port`` means the plugin is at ``host:3476`` over
HTTP (as in 1.0; refused when ``DOCKER_TLS_VERIFY`` is set);
``ssh://[user@]host[:port]`` (Docker's grammar, the port is ssh's) means the
plugin is on that host's loopback, reached through ssh. What a remote host
answers is data, checked item by item (:mod:`nvlow.remote.answer`); one deadline
bounds the whole exchange.

HTTP targets are sent the whole plan request (``POST /v2/plan`` of a remote
``nvlow serve``, which decides it exactly as a local run would), falling back to
``/v1.0/docker/cli`` of an original nvidia-docker-plugin. SSH targets run the
same HTTP request through the system ``ssh -W localhost:<port>`` (a stdio
tunnel, like 1.0's direct-tcpip dial), so ssh checks host keys and reads
``~/.ssh/config`` as usual; nothing is disabled. The HTTP status is always
checked: an error body never ends up in docker's argv.

Example:
    >>> t = parse_host("ssh://foo@10.0.0.1:22:80")
    >>> (t.scheme, t.user, t.host, t.ssh_port, t.http_port)
    ('ssh', 'foo', '10.0.0.1', 22, 80)
    >>> parse_host("10.0.0.1:").url
    'http://10.0.0.1:3476'
"""
from __future__ import annotations

import json
import re

from ..frozen import Record, replace
from ..errors import NvlowError, RemoteError, RequirementError, SelectionError, UsageError
from ..plan.request import PlanRequest, requested_features, requirement_env, selection_choice
from ..text import lazy_re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple, Union


DEFAULT_HTTP_PORT = 3476
DEFAULT_SSH_PORT = 22
DEFAULT_TIMEOUT = 10.0  # seconds for the whole exchange, 1.0's client timeout
#: set to 1 to let a TCP/SSH DOCKER_HOST name the plugin's host, as nvidia-docker 1.0 did
DOCKER_HOST_OPT_IN = "NVLOW_PLUGIN_ON_DOCKER_HOST"
MAX_RESPONSE = 4 * 1024 * 1024
_SCHEME_RE = lazy_re(r"^[a-z0-9+.-]+://")
_ADDR_RE = lazy_re(r"^(\[[0-9a-fA-F.:]+\]|[0-9A-Za-z.\-_]+)?(:\d+)?:(\d+)?$")
_BARE_RE = lazy_re(r"^(\[[0-9a-fA-F.:]+\]|[0-9A-Za-z.\-_]+)$")
_LOCAL_SCHEMES = ("unix", "fd", "npipe")
_HINT = "use [http://|ssh://][user@]host[:ssh-port]:[http-port], e.g. 10.0.0.1: or ssh://me@gpu1:22:3476"


class RemoteTarget(Record):
    """Where the plugin of a remote host is reached."""

    scheme: str  # "http" or "ssh"
    host: str
    http_port: int = DEFAULT_HTTP_PORT
    ssh_port: int = DEFAULT_SSH_PORT
    user: Optional[str] = None
    source: str = "--host"
    warnings: Tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """``http://host:port`` (for ssh: ``ssh://[user@]host:sshport`` and the tunnelled port)."""
        if self.scheme == "http":
            return f"http://{self.host}:{self.http_port}"
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.ssh_port}:{self.http_port}"


class RemotePlan(Record):
    """What a remote host answered: docker args plus what is known about its driver."""

    args: Tuple[str, ...]
    driver_version: Optional[str]
    cuda_version: Optional[str]
    api: str  # "v2" (nvlow serve) or "v1.0" (nvidia-docker-plugin)
    document: Optional[Dict[str, Any]] = None  # the nvlow args --json document (v2 only)
    warnings: Tuple[str, ...] = ()


def _split_authority(value: str, source: str) -> Tuple[str, Optional[str], str]:
    if not _SCHEME_RE.match(value):
        value = "tcp://" + value
    scheme, _, rest = value.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    user: Optional[str] = None
    if "@" in authority:
        user, _, authority = authority.rpartition("@")
        user = user.split(":", 1)[0] or None  # a password in the URL is never used
    return scheme, user, authority


def parse_host(value: str, *, source: str = "--host") -> RemoteTarget:
    """Parse an ``NV_HOST``/``--host`` value (1.0 grammar plus bare hosts)."""
    scheme, user, authority = _split_authority(value.strip(), source)
    if scheme == "tcp":
        scheme = "http"
    if scheme not in ("http", "ssh"):
        raise UsageError(f"invalid remote host URI in {source}: {value}", hint=_HINT)
    host, sport, hport = "localhost", DEFAULT_SSH_PORT, DEFAULT_HTTP_PORT
    m = _ADDR_RE.match(authority)
    if m:
        host = m.group(1) or host
        if m.group(2):
            sport = int(m.group(2)[1:])
        if m.group(3):
            hport = int(m.group(3))
    elif authority and _BARE_RE.match(authority):
        host = authority
    else:
        raise UsageError(f"invalid remote host URI in {source}: {value}", hint=_HINT)
    if not (0 < hport < 65536 and 0 < sport < 65536):
        raise UsageError(f"invalid port in {source}: {value}", hint=_HINT)
    return RemoteTarget(scheme, host, hport, sport, user if scheme == "ssh" else None, source)


def _docker_host_target(value: str) -> Optional[RemoteTarget]:
    scheme, user, authority = _split_authority(value.strip(), "DOCKER_HOST")
    if scheme in _LOCAL_SCHEMES:
        return None
    host, _, port = authority.rpartition(":") if re.search(r":\d*$", authority) else (authority, "", "")
    host = host or "localhost"
    if scheme in ("tcp", "http", "https"):
        # 1.0: the plugin listens on the docker host, always on port 3476
        return RemoteTarget("http", host, DEFAULT_HTTP_PORT, source="DOCKER_HOST")
    if scheme == "ssh":
        sport = int(port) if port else DEFAULT_SSH_PORT
        return RemoteTarget("ssh", host, DEFAULT_HTTP_PORT, sport, user, source="DOCKER_HOST")
    raise UsageError(f"invalid remote host URI in DOCKER_HOST: {value}",
                      hint="use unix://, tcp://host:port or ssh://[user@]host[:port]")


def resolve_remote(env: Mapping[str, str], host_opt: Optional[str]) -> Optional[RemoteTarget]:
    """The remote target the user named with ``--host`` or ``NV_HOST``; None = local.

    A TCP/SSH ``DOCKER_HOST`` names the plugin's host (as in 1.0) only with the opt-in
    :data:`DOCKER_HOST_OPT_IN` = 1: an engine address alone is no reason to trust what answers on
    its port 3476. Then ``DOCKER_TLS_VERIFY`` (or an ``https://`` DOCKER_HOST) refuses the plain-HTTP
    plugin API instead of silently dropping the encryption the user asked for.
    ``RemoteTarget.warnings`` carries 1.0's ``NV_HOST is set but DOCKER_HOST is not``.
    """
    if host_opt:
        return parse_host(host_opt, source="--host")
    nv_host = env.get("NV_HOST", "")
    docker_host = env.get("DOCKER_HOST", "")
    if nv_host:
        target = parse_host(nv_host, source="NV_HOST")
        if not docker_host:
            target = replace(target, warnings=("NV_HOST is set but DOCKER_HOST is not: containers run on the "
                                               "local engine with devices from the remote host",))
        return target
    if docker_host and env.get(DOCKER_HOST_OPT_IN) == "1":
        derived = _docker_host_target(docker_host)
        tls = env.get("DOCKER_TLS_VERIFY") or docker_host.startswith("https://")
        if derived is not None and derived.scheme == "http" and tls:
            raise RemoteError(f"DOCKER_TLS_VERIFY is set, but the GPU plugin API on {derived.host}:{derived.http_port} "
                              "is plain HTTP: nvlow does not send the request unencrypted",
                              hint=f"accept plain HTTP by naming it (--host http://{derived.host}:{derived.http_port}),"
                                   " or reach it through ssh (DOCKER_HOST=ssh://...)")
        return derived
    return None


def docker_host_note(env: Mapping[str, str]) -> Optional[str]:
    """A note for a remote ``DOCKER_HOST`` that nvlow does not follow (no opt-in): GPUs come from here."""
    docker_host = env.get("DOCKER_HOST", "")
    if not docker_host or env.get(DOCKER_HOST_OPT_IN) == "1" or env.get("NV_HOST"):
        return None
    try:
        target = _docker_host_target(docker_host)
    except RemoteError:
        return None
    if target is None or target.host.strip("[]") in ("localhost", "127.0.0.1", "::1"):
        return None
    return (f"DOCKER_HOST names the engine on {target.host}, but the GPUs are planned from this machine; "
            f"to ask that host's plugin pass --host, or set {DOCKER_HOST_OPT_IN}=1")


# --- transports -------------------------------------------------------------

def _request_bytes(target: RemoteTarget, path: str, body: Optional[bytes]) -> bytes:
    """One HTTP/1.0 request (the connection closes after the answer), GET or POST with a JSON body."""
    method = "GET" if body is None else "POST"
    extra = "" if body is None else f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (f"{method} {path} HTTP/1.0\r\nHost: {target.host}:{target.http_port}\r\nUser-Agent: nvlow\r\n"
            f"Accept: */*\r\n{extra}Connection: close\r\n\r\n").encode("ascii") + (body or b"")


def _complete(raw: bytes) -> bool:
    """Whether ``raw`` holds the whole answer (headers and Content-Length bytes of body)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length" and value.strip().isdigit() and len(value.strip()) < 12:
            return len(body) >= int(value.strip())
    return False


def _http_get(target: RemoteTarget, path: str, timeout: float, body: Optional[bytes] = None) -> Tuple[int, bytes]:
    """The exchange over TCP under one deadline for connect, send and the whole answer (a server that
    drips a byte a second cannot hold nvlow longer than ``timeout``)."""
    import socket
    import time

    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        return remaining

    where = f"{target.url} ({target.source})"
    chunks: List[bytes] = []
    try:
        with socket.create_connection((target.host.strip("[]"), target.http_port), timeout=left()) as sock:
            sock.settimeout(left())
            sock.sendall(_request_bytes(target, path, body))
            size = 0
            while True:
                sock.settimeout(left())
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
                if size > MAX_RESPONSE + 64 * 1024:
                    raise RemoteError(f"{where} answered more than {MAX_RESPONSE // (1024 * 1024)} MiB")
                if _complete(b"".join(chunks)):
                    break
    except ConnectionRefusedError:
        raise RemoteError(f"cannot connect to {where}: connection refused",
                          hint="start 'nvlow serve' there (or nvidia-docker-plugin), or unset NV_HOST") from None
    except socket.gaierror as exc:
        raise RemoteError(f"cannot resolve {target.host} ({target.source}): {exc.strerror}") from None
    except (socket.timeout, TimeoutError):
        raise RemoteError(f"{where} did not answer within {timeout:.2g} s") from None
    except OSError as exc:
        raise RemoteError(f"request to {target.url}{path} failed: {exc.strerror or type(exc).__name__}") from None
    return _parse_raw_response(b"".join(chunks), where)


def ssh_command(target: RemoteTarget, env: Mapping[str, str], timeout: float) -> List[str]:
    """The ``ssh -W`` command that tunnels stdio to the plugin port on the remote loopback."""
    import shutil

    ssh = shutil.which("ssh", path=env.get("PATH") or None)
    if ssh is None:
        raise RemoteError("the ssh client is not installed, so ssh:// hosts cannot be reached",
                          hint="install openssh-client, or use an http:// host")
    argv = [ssh, "-o", f"ConnectTimeout={max(1, int(timeout))}", "-p", str(target.ssh_port)]
    if target.user:
        argv += ["-l", target.user]
    argv += ["-W", f"localhost:{target.http_port}", "--", target.host.strip("[]")]
    return argv


def _parse_raw_response(raw: bytes, where: str) -> Tuple[int, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    m = re.match(r"^HTTP/\d\.\d ([0-9]{3})(?: |$)", status_line)
    if not sep or not m:
        raise RemoteError(f"{where} did not answer HTTP" + (f" (got {status_line[:60]!r})" if status_line else ""))
    lengths = []
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == "content-length":
            lengths.append(value.strip())
    if lengths:
        if len(lengths) > 1 or not (lengths[0].isascii() and lengths[0].isdigit() and len(lengths[0]) < 12):
            raise RemoteError(f"{where} answered an invalid Content-Length")
        body = body[:int(lengths[0])]
    status = int(m.group(1))
    if 300 <= status < 400:
        raise RemoteError(f"{where} answered a redirect (HTTP {status}), which nvlow does not follow",
                          hint="name the plugin's own address with --host or NV_HOST")
    return status, body


def _ssh_get(target: RemoteTarget, path: str, timeout: float, env: Mapping[str, str],
             body: Optional[bytes] = None) -> Tuple[int, bytes]:
    import subprocess
    import threading

    argv = ssh_command(target, env, timeout)
    request = _request_bytes(replace(target, host="localhost"), path, body)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(env))
    except OSError as exc:
        raise RemoteError(f"cannot run {argv[0]}: {exc.strerror}") from None
    out: Dict[str, bytes] = {}

    def pump() -> None:
        assert proc.stdout is not None and proc.stderr is not None
        out["stdout"] = proc.stdout.read(MAX_RESPONSE + 64 * 1024)
        out["stderr"] = proc.stderr.read(64 * 1024)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert proc.stdin is not None
        # stdin stays open until the answer is read: a half-closed tunnel can make
        # some servers drop the request
        proc.stdin.write(request)
        proc.stdin.flush()
    except OSError:
        pass
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()
        proc.wait()
        raise RemoteError(f"{target.url} ({target.source}) did not answer within {timeout:g} s through ssh")
    try:
        proc.stdin.close()  # type: ignore[union-attr]
    except OSError:
        pass
    try:
        code = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    raw = out.get("stdout", b"")
    if not raw:
        err = out.get("stderr", b"").decode("utf-8", "replace").strip().splitlines()
        reason = err[-1] if err else f"ssh exited with status {code}"
        raise RemoteError(f"cannot reach the plugin at {target.url} ({target.source}) through ssh: {reason}",
                          hint="check that 'ssh' to that host works and that 'nvlow serve' runs there")
    return _parse_raw_response(raw, f"{target.url} ({target.source})")


def http_get(target: RemoteTarget, path: str, *, timeout: float = DEFAULT_TIMEOUT,
             env: Optional[Mapping[str, str]] = None, body: Optional[bytes] = None) -> Tuple[int, bytes]:
    """GET ``path`` (POST ``body`` when given) from the target's plugin: (status, body).
    Transport failures raise RemoteError."""
    if target.scheme == "ssh":
        return _ssh_get(target, path, timeout, env if env is not None else {}, body)
    return _http_get(target, path, timeout, body)


# --- queries -----------------------------------------------------------------

def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            import json

            doc = json.loads(text)
            if isinstance(doc, dict) and doc.get("error"):
                return str(doc["error"]) + (f" (hint: {doc['hint']})" if doc.get("hint") else "")
        except ValueError:
            pass
    first = text.splitlines()[0] if text else ""
    return first[:200] or "(empty body)"


def _v1_devices(request: PlanRequest) -> str:
    """The ``dev`` query of nvidia-docker-plugin 1.0 for the request's selection ("" = all)."""
    from urllib.parse import quote

    choice = selection_choice(request)
    if choice.grammar == "count":
        count = int(choice.spec)
        if count < 0:
            return ""
        tokens = [str(i) for i in range(count)]
    else:
        tokens = [t for t in re.split(r"[,\s]+", choice.spec.strip()) if t]
    if not tokens or tokens == ["all"]:
        if choice.grammar == "count":
            raise RemoteError("the remote nvidia-docker-plugin cannot give 0 GPUs",
                              hint="give GPU indices or UUIDs, or run 'nvlow serve' on that host")
        return ""
    bad = [t for t in tokens if t.lower() in ("none", "void", "all")]
    if bad:
        raise RemoteError(f"the remote nvidia-docker-plugin cannot express GPU selection {choice.spec!r}",
                          hint="give GPU indices or UUIDs, or run 'nvlow serve' on that host")
    return "+".join(quote(t, safe="-._~:") for t in tokens)


def _server_error(target: RemoteTarget, status: int, body: bytes) -> NvlowError:
    """The error a remote ``nvlow serve`` answered, with its exit code (selection 2, requirements 3)."""
    text = _error_text(body)
    code = None
    try:
        doc = json.loads(body)
        code = doc.get("exit_code") if isinstance(doc, dict) else None
    except ValueError:
        pass
    if code == 2:
        return SelectionError(f"{target.url}: {text}")
    if code == 3:
        return RequirementError(f"{target.url}: {text}", hint="pass --no-require to skip the check")
    return RemoteError(f"{target.url} ({target.source}) refused the request: HTTP {status}: {text}")


def remote_plan(host_url: Union[str, RemoteTarget], request: PlanRequest, *, env: Mapping[str, str],
                timeout: float = DEFAULT_TIMEOUT) -> RemotePlan:
    """Send the whole request to a remote ``nvlow serve`` (``POST /v2/plan``), which decides it with
    the same :func:`nvlow.plan.decide.plan_for` as a local run; else ask an nvidia-docker-plugin
    (``/v1.0/docker/cli``) and check the image requirements here against its driver versions.
    """
    import time

    target = host_url if isinstance(host_url, RemoteTarget) else parse_host(host_url)
    deadline = time.monotonic() + timeout  # one budget for the whole exchange, fallback included
    payload = json.dumps(request.to_dict()).encode("utf-8")
    status, body = http_get(target, "/v2/plan", timeout=_left(deadline, target, timeout), env=env, body=payload)
    if status == 200:
        from .answer import checked_args

        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:
            raise RemoteError(f"{target.url}/v2/plan answered something that is not a plan document") from None
        # the plan is data: devices, mounts and env are checked one by one and the arguments are
        # rebuilt here; the server's own "args" never reach the engine
        own = env.get("NVLOW_PLUGIN_NAME")
        features = tuple(f for f, _source in requested_features(request))
        args = checked_args(doc, f"{target.url} ({target.source})", (own,) if own else (), features)
        doc["args"] = args
        warnings = doc.get("warnings") or ()
        return RemotePlan(tuple(args), _text_field(doc, "driver_version"), _text_field(doc, "cuda_version"), "v2",
                          doc, tuple(str(w)[:300] for w in warnings) if isinstance(warnings, list) else ())
    if status not in (404, 405, 501):  # an nvidia-docker-plugin has no /v2/plan
        raise _server_error(target, status, body)
    return _remote_plan_v1(target, request, env, deadline, timeout)


def _text_field(doc: Dict[str, Any], key: str) -> Optional[str]:
    value = doc.get(key)
    return value[:64] if isinstance(value, str) else None


def _left(deadline: float, target: RemoteTarget, timeout: float) -> float:
    import time

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RemoteError(f"{target.url} ({target.source}) did not answer within {timeout:.2g} s")
    return remaining


def _remote_plan_v1(target: RemoteTarget, request: PlanRequest, env: Mapping[str, str],
                    deadline: float, timeout: float) -> RemotePlan:
    warnings: List[str] = []
    if request.capabilities:
        warnings.append(f"{target.url} is an nvidia-docker-plugin: capabilities {request.capabilities!r} ignored "
                        "(its driver volume holds compute, utility, video and graphics files)")
    if request.driver_files == "volume":
        warnings.append(f"{target.url} is an nvidia-docker-plugin: driver files come from its volume plugin")
    dev = _v1_devices(request)
    status, body = http_get(target, f"/v1.0/docker/cli?vol=nvidia_driver&dev={dev}",
                            timeout=_left(deadline, target, timeout), env=env)
    if status == 404:
        raise RemoteError(f"{target.url} ({target.source}) is neither 'nvlow serve' nor nvidia-docker-plugin "
                          "(/v2/plan and /v1.0/docker/cli are missing)")
    if status != 200:
        raise RemoteError(f"{target.url} ({target.source}) refused the request: HTTP {status}: {_error_text(body)}")
    from .answer import check_v1_args

    text = body.decode("utf-8", "replace").strip()
    args = tuple(a for a in text.split(" ") if a)
    if not args or not all(a.startswith("--") for a in args):
        raise RemoteError(f"{target.url}/v1.0/docker/cli answered something that is not docker options: "
                          f"{text[:80]!r}")
    check_v1_args(args, f"{target.url} ({target.source})")
    driver = cuda = None
    try:
        istatus, ibody = http_get(target, "/v1.0/gpu/info/json", timeout=_left(deadline, target, timeout), env=env)
        if istatus == 200:
            version = json.loads(ibody).get("Version") or {}
            driver, cuda = version.get("Driver") or None, version.get("CUDA") or None
    except (RemoteError, ValueError, AttributeError):
        pass
    if request.require:
        from ..plan.require import HostFacts, check_image, requirement_error

        failures = check_image(requirement_env(request), dict(request.image_labels), HostFacts(cuda, driver, ()))
        if failures:
            raise requirement_error(failures)
    return RemotePlan(args, driver, cuda, "v1.0", None, tuple(warnings))
