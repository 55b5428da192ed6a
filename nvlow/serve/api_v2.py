"""nvlow's own REST namespace: the CLI's JSON documents over HTTP.

======================  =====================================================
``GET /v2/args``        the ``nvlow args --json`` document. Query: ``gpus``
                        (the CLI's selection syntax), ``nv_gpu`` (NV_GPU
                        grammar), ``capabilities``, ``driver_files``
                        (bind | volume | plugin, default bind).
``GET /v2/info``        the ``nvlow info --json`` document.
``GET /v2/status``      the ``nvlow status --json`` document (live).
``GET /healthz``        ``{"status": "ok", ...}``; 503 while discovery fails.
======================  =====================================================

Errors are ``{"error": ..., "hint": ...}`` with 400 for bad input.

Example:
    >>> sorted(ROUTES)
    ['/healthz', '/v2/args', '/v2/info', '/v2/status']
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..errors import NvlowError, UsageError
from ..plan import DRIVER_FILE_MODES, build_plan
from ..records import GpuRecord
from ..render import plan_document
from ..select import Selection, select_gpus
from .wire import Handler, Request, Response, json_error, json_response

ARGS_PARAMS = ("gpus", "nv_gpu", "capabilities", "driver_files")


def _check_params(request: Request, allowed: Tuple[str, ...]) -> None:
    for name in request.query:
        if name not in allowed:
            raise UsageError(f"unknown query parameter: {name}",
                             hint="use " + ", ".join(allowed) if allowed else "this endpoint takes no parameters")


def _selection(state: Any, request: Request) -> Selection:
    host = state.cache.host()
    gpus, nv_gpu = request.param("gpus"), request.param("nv_gpu")
    if gpus is not None and nv_gpu is not None:
        raise UsageError("give gpus or nv_gpu, not both")
    if gpus is not None:
        spec = gpus[len("device="):] if gpus.startswith("device=") else gpus
        return select_gpus(host.gpus, spec, source="gpus")
    if nv_gpu is not None:
        return select_gpus(host.gpus, nv_gpu, source="NV_GPU", nv_gpu=True)
    return Selection(host.gpus, (), "devices", "default", "all")


def plan_for(state: Any, request: Request) -> Dict[str, Any]:
    """The ``nvlow args --json`` document for the query of ``request``."""
    _check_params(request, ARGS_PARAMS)
    mode = request.param("driver_files") or "bind"
    if mode not in DRIVER_FILE_MODES:
        raise UsageError(f"invalid driver_files {mode!r}", hint="use bind, volume or plugin")
    host = state.cache.host()
    selection = _selection(state, request)
    caps_text = request.param("capabilities")
    capabilities = state.parse_capabilities(caps_text) if caps_text else state.default_capabilities
    files = None
    volume_path: Optional[str] = None
    if not selection.is_void:
        files = state.cache.driver_files(capabilities)
        if mode == "volume":
            volume_path = state.ensure_driver_volume(host.driver_version).path
    plan = build_plan(host, selection, capabilities, files, mode=mode, volume_path=volume_path)
    return plan_document(plan, host)


def args(state: Any, request: Request) -> Response:
    return json_response(plan_for(state, request))


def info(state: Any, request: Request) -> Response:
    _check_params(request, ())
    return json_response(state.cache.host().to_dict())


def status(state: Any, request: Request) -> Response:
    from ..status import status_document

    _check_params(request, ())
    snap, statuses = state.cache.status()
    records = snap.records or tuple(GpuRecord(g.index, g.minor, g.uuid, g.name, g.bus_id) for g in snap.host.gpus)
    return json_response(status_document(records, statuses))


def healthz(state: Any, request: Request) -> Response:
    try:
        host = state.cache.host()
    except NvlowError as exc:
        return json_response({"status": "error", "error": str(exc)}, 503)
    return json_response({"status": "ok", "driver_version": host.driver_version, "gpus": len(host.gpus),
                          "source": host.source, "simulated": host.simulated,
                          "discoveries": state.cache.discoveries})


def error_response(exc: NvlowError) -> Response:
    """An nvlow error as JSON: 400 for usage/selection errors, 500 otherwise."""
    return json_error(400 if isinstance(exc, UsageError) else 500, str(exc), exc.hint)


ROUTES: Dict[str, Handler] = {
    "/v2/args": args,
    "/v2/info": info,
    "/v2/status": status,
    "/healthz": healthz,
}
