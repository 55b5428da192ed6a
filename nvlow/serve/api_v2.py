"""nvlow's own REST namespace: the CLI's JSON documents over HTTP.

======================  =====================================================
``POST /v2/plan``       the ``nvlow args --json`` document for a whole plan
                        request (JSON, :meth:`nvlow.plan.request.PlanRequest.to_dict`):
                        what ``nvlow args|exec --host`` sends, decided by the
                        same :func:`nvlow.plan.decide.plan_for` as a local run.
``GET /v2/args``        the same for a query: ``gpus`` (the CLI's selection
                        syntax), ``nv_gpu`` (NV_GPU grammar), ``capabilities``,
                        ``driver_files`` (bind | volume | plugin, default bind).
``GET /v2/info``        the ``nvlow info --json`` document.
``GET /v2/status``      the ``nvlow status --json`` document (live).
``GET /healthz``        ``{"status": "ok", ...}``; 503 while discovery fails.
======================  =====================================================

Errors are ``{"error": ..., "hint": ..., "exit_code": N}``: 400 for bad input (exit 2),
422 for unmet image requirements (exit 3), 500 otherwise.

Example:
    >>> sorted(ROUTES)
    ['/healthz', '/v2/args', '/v2/info', '/v2/plan', '/v2/status']
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from ..errors import NvlowError, RequirementError, UsageError
from ..model import DriverFiles, Host
from ..plan.plan import Plan
from ..records import GpuRecord
from ..plan.render import plan_document
from ..plan.request import PlanRequest, request_from_dict
from .wire import Handler, Request, Response, json_error, json_response, HandlerState

ARGS_PARAMS = ("gpus", "nv_gpu", "capabilities", "driver_files")
#: POST routes (everything else is GET)
POST_ROUTES = ("/v2/plan",)


def _check_params(request: Request, allowed: Tuple[str, ...]) -> None:
    for name in request.query:
        if name not in allowed:
            raise UsageError(f"unknown query parameter: {name}",
                             hint="use " + ", ".join(allowed) if allowed else "this endpoint takes no parameters")


def plan_request(state: HandlerState, request: PlanRequest) -> Tuple[Host, Plan]:
    """The plan for ``request`` on this server's host, with the server's cached driver files, its
    one driver-volume builder and its engine view (``--engine-root``, ``--plugin-name``): the same
    decision as a local ``nvlow args``."""
    from ..plan.decide import plan_for

    host = state.cache.host()

    def files_for(caps: Tuple[str, ...]) -> DriverFiles:
        return state.cache.driver_files(caps)

    def volume_for(h: Host) -> str:
        return str(state.ensure_driver_volume(h.driver_version).path)

    return host, plan_for(host, request, volumes_dir=state.volumes_dir, files_for=files_for, volume_for=volume_for,
                          engine=state.engine_view)


def query_request(request: Request) -> PlanRequest:
    """The plan request of a ``/v2/args`` query (no image: nothing to check requirements on)."""
    _check_params(request, ARGS_PARAMS)
    gpus, nv_gpu = request.param("gpus"), request.param("nv_gpu")
    if gpus is not None and nv_gpu is not None:
        raise UsageError("give gpus or nv_gpu, not both")
    return PlanRequest(gpus=gpus, capabilities=request.param("capabilities") or None,
                       process_env=(("NV_GPU", nv_gpu),) if nv_gpu is not None else (),
                       driver_files=request.param("driver_files") or "bind", require=False)


def plan_for(state: HandlerState, request: Request) -> Dict[str, Any]:
    """The ``nvlow args --json`` document for the query of ``request``."""
    host, plan = plan_request(state, query_request(request))
    return plan_document(plan, host)


def plan_post(state: HandlerState, request: Request) -> Response:
    """``POST /v2/plan``: a whole :class:`PlanRequest` as JSON -> the plan document."""
    import json

    _check_params(request, ())
    try:
        doc = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError("the plan request is not JSON") from None
    host, plan = plan_request(state, request_from_dict(doc))
    return json_response(plan_document(plan, host))


def args(state: HandlerState, request: Request) -> Response:
    return json_response(plan_for(state, request))


def info(state: HandlerState, request: Request) -> Response:
    _check_params(request, ())
    return json_response(state.cache.host().to_dict())


def status(state: HandlerState, request: Request) -> Response:
    from ..host.status import status_document

    _check_params(request, ())
    snap, statuses = state.cache.status()
    records = snap.records or tuple(GpuRecord(g.index, g.minor, g.uuid, g.name, g.bus_id) for g in snap.host.gpus)
    return json_response(status_document(records, statuses))


def healthz(state: HandlerState, request: Request) -> Response:
    try:
        host = state.cache.host()
    except NvlowError as exc:
        return json_response({"status": "error", "error": str(exc)}, 503)
    return json_response({"status": "ok", "driver_version": host.driver_version, "gpus": len(host.gpus),
                          "source": host.source, "simulated": host.simulated,
                          "discoveries": state.cache.discoveries})


def error_response(exc: NvlowError) -> Response:
    """An nvlow error as JSON with its exit code: 400 usage/selection, 422 unmet requirements, 500 otherwise."""
    status = 400 if isinstance(exc, UsageError) else 422 if isinstance(exc, RequirementError) else 500
    response = json_error(status, str(exc), exc.hint)
    import json

    body = json.loads(response.body)
    body["exit_code"] = exc.exit_code
    return json_response(body, status)


ROUTES: Dict[str, Handler] = {
    "/v2/args": args,
    "/v2/plan": plan_post,
    "/v2/info": info,
    "/v2/status": status,
    "/healthz": healthz,
}
