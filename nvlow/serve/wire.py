"""Small request/response types shared by the REST API and the volume plugin.

Handlers are pure functions ``(state, request) -> Response``; only
:mod:`nvlow.serve.server` touches sockets.

Example:
    >>> text_error(400, "invalid device: 9").body
    b'invalid device: 9\\n'
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple

from .gpuinfo import go_json

if TYPE_CHECKING:
    from ..plan.plan import EngineView
    from ..plan.volume import VolumeResult
    from .cache import DiscoveryCache
    from .volume_plugin import MountTable

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    """A parsed request: method, path without query, query values (blank values kept), headers
    (lower-case names), body, and the query as sent (what answers are cached by)."""

    method: str
    path: str
    query: Mapping[str, List[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw_query: str = ""

    def param(self, name: str) -> Optional[str]:
        """First value of a query parameter (Go's ``FormValue``), None when absent."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    """A complete response; the server adds Content-Length and Connection."""

    status: int
    body: bytes
    content_type: str = TEXT
    headers: Tuple[Tuple[str, str], ...] = ()


def text_response(text: str, status: int = 200) -> Response:
    """A plain-text response."""
    return Response(status, text.encode("utf-8"), TEXT)


def text_error(status: int, message: str) -> Response:
    """What Go's ``http.Error`` writes: the message and a newline, as plain text."""
    return Response(status, (message + "\n").encode("utf-8"), TEXT, (("X-Content-Type-Options", "nosniff"),))


def go_json_response(obj: Any, status: int = 200, content_type: str = JSON) -> Response:
    """JSON encoded like Go's ``json.Encoder`` (compact, trailing newline)."""
    return Response(status, go_json(obj), content_type)


def json_response(obj: Any, status: int = 200) -> Response:
    """nvlow's own JSON (indented like the CLI's ``--json`` output)."""
    return Response(status, (json.dumps(obj, indent=2) + "\n").encode("utf-8"), JSON)


def json_error(status: int, message: str, hint: Optional[str] = None) -> Response:
    """nvlow's JSON error body: ``{"error": ..., "hint": ...}``."""
    body: Dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    return json_response(body, status)


class HandlerState(Protocol):
    """What a handler may use of the server (:class:`nvlow.serve.server.ServeState` implements it), so
    that ``mypy --strict`` checks every handler's use of its state."""

    cache: "DiscoveryCache"
    volumes_dir: str
    verbose: bool
    plugin_name: str
    plugin_mounts: "MountTable"

    @property
    def engine_view(self) -> "EngineView": ...

    def log(self, message: str) -> None: ...

    def ensure_driver_volume(self, version: Optional[str]) -> "VolumeResult": ...


Handler = Callable[[HandlerState, Request], Response]
