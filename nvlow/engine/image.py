"""An image's configuration (environment and labels), read without pulling.

Docker images are read through the Engine API (``nvlow.engine.client``) when the
engine is local over a unix socket, else through the CLI:
``<engine argv> image inspect --format '{{json .Config}}' NAME``. Podman
always goes through its CLI. Nothing here pulls an image or waits without a
bound: a missing image or an unreachable engine gives ``(None, reason)``.

The image's PATH/LD_LIBRARY_PATH are merged with the driver's directories by
``nvlow.plan.plan.merge_search_path`` (``-e PATH=...`` replaces the image's PATH,
docs/driver-file-selection.md "Where CUDA images look").

Example:
    >>> cfg = config_from_json("cuda", {"Env": ["PATH=/usr/bin", "CUDA_VERSION=12.4.1"],
    ...                                 "Labels": {"maintainer": "NVIDIA"}}, "api")
    >>> cfg.env_value("CUDA_VERSION"), cfg.label("maintainer"), cfg.path_value("PATH")
    ('12.4.1', 'NVIDIA', ('/usr/bin',))
"""
from __future__ import annotations

import os

from ..frozen import Record
from ..errors import EngineError
from .jsondoc import loads


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple


class ImageConfig(Record):
    """The parts of an image's ``.Config`` nvlow uses; ``source`` is "api" or "cli"."""

    name: str
    env: Tuple[Tuple[str, str], ...]
    labels: Tuple[Tuple[str, str], ...]
    source: str

    def env_value(self, key: str) -> Optional[str]:
        """The image's value of environment variable ``key`` (the last one wins), or None."""
        return self.env_dict().get(key)

    def label(self, key: str) -> Optional[str]:
        """The image's label ``key``, or None."""
        return dict(self.labels).get(key)

    def env_dict(self) -> Dict[str, str]:
        """The environment as a dict."""
        return dict(self.env)

    def labels_dict(self) -> Dict[str, str]:
        """The labels as a dict."""
        return dict(self.labels)

    def path_value(self, key: str, default: str = "") -> Tuple[str, ...]:
        """The non-empty entries of a colon list (PATH, LD_LIBRARY_PATH), ``default`` when unset."""
        value = self.env_value(key)
        return tuple(p for p in (default if value is None else value).split(":") if p)


def config_from_json(name: str, config: Any, source: str) -> ImageConfig:
    """An :class:`ImageConfig` from an image's ``.Config`` object (Engine API or CLI JSON).

    ``Env`` entries are ``KEY=VALUE``; an entry without ``=`` is ignored. A null
    config, env or label set counts as empty.
    """
    if config is not None and not isinstance(config, dict):
        raise EngineError(f"image {name}: unexpected .Config JSON ({type(config).__name__})")
    config = config or {}
    env = []
    for entry in config.get("Env") or ():
        if isinstance(entry, str) and "=" in entry:
            key, _, value = entry.partition("=")
            env.append((key, value))
    labels = config.get("Labels") or {}
    if not isinstance(labels, dict):
        raise EngineError(f"image {name}: unexpected .Config.Labels JSON")
    return ImageConfig(name=name, env=tuple(env),
                       labels=tuple((str(k), str(v)) for k, v in sorted(labels.items()) if v is not None),
                       source=source)


# -- which engine endpoint the docker CLI would use ---------------------------
_DOCKER_VALUE_GLOBALS = {"-H": "host", "--host": "host", "-c": "context", "--context": "context",
                         "--config": "config", "-l": None, "--log-level": None, "--tlscacert": None,
                         "--tlscert": None, "--tlskey": None}


def docker_globals(engine_argv: Sequence[str]) -> Dict[str, str]:
    """The ``host``, ``context`` and ``config`` global options in a docker command prefix.

    The prefix may start with a wrapper (``sudo docker -H unix:///x``): options
    are read after the first word named ``docker``.

    >>> docker_globals(["sudo", "docker", "-H", "unix:///x", "--context=rootless"])
    {'host': 'unix:///x', 'context': 'rootless'}
    >>> docker_globals(["docker", "-Hunix:///y", "-D"])
    {'host': 'unix:///y'}
    """
    start = 0
    for i, word in enumerate(engine_argv):
        if os.path.basename(word) == "docker":
            start = i + 1
            break
    found: Dict[str, str] = {}
    words = list(engine_argv[start:])
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--" or not word.startswith("-"):
            break
        name, eq, value = word.partition("=")
        if not eq and not name.startswith("--") and len(name) > 2 and name[:2] in ("-H", "-c", "-l"):
            name, value, eq = name[:2], name[2:], "="  # attached short value: -Hunix:///x
        if name not in _DOCKER_VALUE_GLOBALS:
            continue  # a boolean global (-D, --tls, --tlsverify)
        if not eq:
            if i >= len(words):
                break
            value = words[i]
            i += 1
        key = _DOCKER_VALUE_GLOBALS[name]
        if key is not None:
            found[key] = value
    return found


def _current_context(config_dir: Optional[str], env: Mapping[str, str]) -> Optional[str]:
    """The docker CLI's current context from DOCKER_CONTEXT or ``config.json`` (None = default)."""
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"]
    directory = config_dir or env.get("DOCKER_CONFIG")
    if not directory:
        home = env.get("HOME")
        if not home:
            return None
        directory = os.path.join(home, ".docker")
    try:
        with open(os.path.join(directory, "config.json"), "rb") as fh:
            doc = loads(fh.read(1024 * 1024).decode("utf-8"))
    except (OSError, ValueError):
        return None
    current = doc.get("currentContext") if isinstance(doc, dict) else None
    return current if isinstance(current, str) and current else None


def api_docker_host(engine_argv: Sequence[str], docker_host: Optional[str],
                    env: Mapping[str, str]) -> Tuple[bool, Optional[str]]:
    """(use_api, DOCKER_HOST value for the API client) for a docker command prefix.

    Follows the docker CLI's precedence: ``-H`` > ``--context`` > DOCKER_HOST >
    DOCKER_CONTEXT > ``currentContext`` in config.json. A named context other
    than ``default`` is left to the CLI (its endpoint lives in the context store).

    >>> api_docker_host(["docker", "-H", "tcp://h:2375"], None, {})
    (False, None)
    >>> api_docker_host(["docker"], "unix:///run/docker.sock", {})
    (True, 'unix:///run/docker.sock')
    """
    opts = docker_globals(engine_argv)
    if "host" in opts:
        host = opts["host"]
        return (True, host) if host.startswith("unix://") else (False, None)
    if "context" in opts:
        return (True, docker_host) if opts["context"] == "default" and _unix_or_unset(docker_host) else (False, None)
    if docker_host:
        return (True, docker_host) if docker_host.startswith("unix://") else (False, None)
    context = _current_context(opts.get("config"), env)
    if context is not None and context != "default":
        return False, None
    return True, None


def _unix_or_unset(docker_host: Optional[str]) -> bool:
    return not docker_host or docker_host.startswith("unix://")


# -- inspection ------------------------------------------------------------------
def _absent(name: str) -> str:
    return f"image {name} is not present locally"


def inspect_image(name: str, *, engine: str, engine_argv: Sequence[str], docker_host: Optional[str],
                  timeout: float = 3.0, env: Optional[Mapping[str, str]] = None
                  ) -> Tuple[Optional[ImageConfig], Optional[str]]:
    """The image's config, or (None, reason) when it is absent or the engine cannot be asked.

    ``engine`` is "docker" or "podman"; ``engine_argv`` is the engine command
    prefix including global options (``["sudo", "docker", "-H", "unix:///x"]``).
    ``env`` (default ``os.environ``) is read only for the docker CLI's context
    selection (DOCKER_CONTEXT, DOCKER_CONFIG, HOME). Never pulls; every step is
    bounded by ``timeout``.
    """
    argv = list(engine_argv) or [engine]
    if engine == "docker":
        use_api, host = api_docker_host(argv, docker_host, os.environ if env is None else env)
        if use_api:
            from .client import EngineClient

            reached = True
            doc: Optional[Dict[str, Any]] = None
            try:
                doc = EngineClient(host, timeout=timeout).inspect_image(name)
            except EngineError:
                reached = False  # unreachable or odd answer: ask the CLI, which may run under sudo
            if reached and doc is None:
                return None, _absent(name)
            if doc is not None:
                try:
                    return config_from_json(name, doc.get("Config"), "api"), None
                except EngineError as exc:
                    return None, str(exc)
    return _inspect_cli(name, argv, timeout)


_ABSENT_MARKERS = ("no such image", "image not known", "no such object", "image not found")


def _inspect_cli(name: str, argv: Sequence[str], timeout: float) -> Tuple[Optional[ImageConfig], Optional[str]]:
    import subprocess

    cmd = list(argv) + ["image", "inspect", "--format", "{{json .Config}}", "--", name]
    shown = " ".join(list(argv) + ["image", "inspect"])
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return None, f"cannot inspect image {name}: {argv[0]} not found"
    except PermissionError:
        return None, f"cannot inspect image {name}: {argv[0]} is not executable"
    except subprocess.TimeoutExpired:
        return None, f"cannot inspect image {name}: {shown} did not answer within {timeout:g} s"
    except OSError as exc:
        return None, f"cannot inspect image {name}: {argv[0]}: {exc.strerror or exc}"
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        if any(marker in stderr.lower() for marker in _ABSENT_MARKERS):
            return None, _absent(name)
        last = stderr.splitlines()[-1].strip() if stderr else f"exit status {proc.returncode}"
        return None, f"cannot inspect image {name}: {shown} failed: {last[:300]}"
    text = proc.stdout.decode("utf-8", "replace").strip()
    try:
        # one JSON document per image; a podman quirk prints it wrapped in a list
        doc = loads(text.splitlines()[0] if text else "")
    except (ValueError, IndexError):
        return None, f"cannot inspect image {name}: {shown} printed no JSON config"
    if isinstance(doc, list):
        doc = doc[0] if doc else None
    try:
        return config_from_json(name, doc, "cli"), None
    except EngineError as exc:
        return None, str(exc)

