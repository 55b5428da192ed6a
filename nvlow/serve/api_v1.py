"""The v1.0 REST API of nvidia-docker-plugin: same paths, formats and errors.

Every path exists under ``/v1.0`` and unprefixed. ``/docker/cli`` answers
``--volume-driver=nvidia-docker --volume=nvidia_driver_<drv>:/usr/local/nvidia:ro
--device=...`` (one line, no newline): the volume driver is the plugin this
server serves (``serve --plugin-name``, 1.0's ``nvidia-docker`` by default), so
``docker run $(curl -s localhost:3476/docker/cli) IMAGE`` keeps working.
Devices are the engine's paths (``serve --engine-root``): a plain
``/dev/nvidiaN`` whenever the engine's path is the container's, which is what
1.0 clients expect (nvidia-docker-compose counts ``/dev/nvidia<digits>`` entries); only
when they differ (``--root`` without ``--engine-root``) ``HOST:CONTAINER``.
Differences from 1.0, all fixes: devices come in GPU index order (1.0 went
through a Go map, so the order was random), only control nodes that exist are
listed, ambiguous UUID prefixes are rejected, and each ``dev`` token also
takes nvlow's selection syntax (bus ids, ``GPU:MIG``).

Example:
    >>> sorted(ROUTES)[:3]
    ['/docker/cli', '/docker/cli/json', '/gpu/info']
"""
from __future__ import annotations

import base64
import zlib
from typing import Any, Dict, List, Tuple

from ..errors import SelectionError
from ..model import Host
from ..plan.plan import NVIDIA_DIR
from ..plan.request import PlanRequest
from ..plan.select import select_gpus
from ..plan.volume import VOLUME_BASE
from . import gpuinfo
from .wire import Handler, Request, Response, go_json_response, text_error, text_response, HandlerState

#: volume names /docker/cli knows (1.0's only volume)
VOLUMES = (VOLUME_BASE,)
_CONTROL_CAPS = ("compute", "utility")


class BadRequest(Exception):
    """A 400 answer with 1.0's message (``invalid device: X``)."""


def _tokens(value: Any) -> List[str]:
    # 1.0: strings.Split(FormValue(...), " "): "+" in the URL is a space, and an
    # empty or "*" list means all
    return [] if value is None else str(value).split(" ")


def _is_all(tokens: List[str]) -> bool:
    return not tokens or (len(tokens) == 1 and tokens[0] in ("", "*"))


def _invalid_token(host: Host, tokens: List[str]) -> str:
    """The first ``dev`` token that selects nothing on its own (for 1.0's ``invalid device: X``)."""
    for token in tokens:
        if token in ("", "*", "none", "void", "all"):
            return token
        try:
            select_gpus(host.gpus, token, source="dev")
        except SelectionError:
            return token
    return " ".join(tokens)


def dev_request(tokens: List[str]) -> PlanRequest:
    """The plan request of a ``dev`` query: 1.0 gave compute+utility devices and its driver volume."""
    gpus = "all" if _is_all(tokens) else ",".join(tokens)
    return PlanRequest(gpus=gpus, capabilities=",".join(_CONTROL_CAPS), driver_files="plugin", require=False)


def select_volumes(host: Host, tokens: List[str]) -> List[str]:
    """``vol`` tokens as ``nvidia_driver_<drv>:/usr/local/nvidia:ro`` volume options."""
    names = list(VOLUMES) if _is_all(tokens) else tokens
    out: List[str] = []
    for name in names:
        if name not in VOLUMES:
            raise BadRequest(f"invalid volume: {name}")
        out.append(f"{name}_{host.driver_version}:{NVIDIA_DIR}:ro")
    return out


def docker_cli_args(state: HandlerState, request: Request) -> Dict[str, Any]:
    """The ``/docker/cli/json`` document: ``{"VolumeDriver","Volumes","Devices"}``."""
    from .api_v2 import plan_request

    tokens = _tokens(request.param("dev"))
    if any(t in ("", "*", "none", "void", "all") for t in tokens) and not _is_all(tokens):
        raise BadRequest(f"invalid device: {_invalid_token(state.cache.host(), tokens)}")
    try:
        host, plan = plan_request(state, dev_request(tokens))
    except SelectionError:
        raise BadRequest(f"invalid device: {_invalid_token(state.cache.host(), tokens)}") from None
    volumes = select_volumes(host, _tokens(request.param("vol")))
    # host:container only when the engine's path is not the container's (--root without --engine-root)
    devices = [d.container_path if d.host_path == d.container_path else f"{d.host_path}:{d.container_path}"
               for d in plan.devices]
    return {"VolumeDriver": plan.volume_driver or state.plugin_name, "Volumes": volumes, "Devices": devices}


def _info(state: HandlerState) -> Tuple[Host, Dict[str, Any]]:
    snap = state.cache.snapshot()
    return snap.host, gpuinfo.info_document(snap.host, snap.records, snap.numa_nodes)


def gpu_info(state: HandlerState, request: Request) -> Response:
    _host, doc = _info(state)
    return text_response(gpuinfo.info_text(doc))


def gpu_info_json(state: HandlerState, request: Request) -> Response:
    _host, doc = _info(state)
    return go_json_response(doc)


def _status(state: HandlerState) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    snap, statuses = state.cache.status()
    info = gpuinfo.info_document(snap.host, snap.records, snap.numa_nodes)
    return info, gpuinfo.status_document(snap.host, statuses)


def gpu_status(state: HandlerState, request: Request) -> Response:
    info, status = _status(state)
    return text_response(gpuinfo.status_text(info, status))


def gpu_status_json(state: HandlerState, request: Request) -> Response:
    # the JSON form needs the live readings only (the text form also shows the info document's names)
    snap, statuses = state.cache.status()
    return go_json_response(gpuinfo.status_document(snap.host, statuses))


def docker_cli(state: HandlerState, request: Request) -> Response:
    try:
        args = docker_cli_args(state, request)
    except BadRequest as exc:
        return text_error(400, str(exc))
    line = f"--volume-driver={args['VolumeDriver']}"
    line += "".join(f" --volume={v}" for v in args["Volumes"])
    line += "".join(f" --device={d}" for d in args["Devices"])
    return text_response(line)


def docker_cli_json(state: HandlerState, request: Request) -> Response:
    try:
        args = docker_cli_args(state, request)
    except BadRequest as exc:
        return text_error(400, str(exc))
    return go_json_response(args)


def mesos_attribute(info_json: bytes) -> str:
    """base64url of zlib(info JSON) without padding, as 1.0 put in ``--attributes=gpus:``."""
    return base64.urlsafe_b64encode(zlib.compress(info_json)).decode("ascii").rstrip("=")


def mesos_cli(state: HandlerState, request: Request) -> Response:
    host, doc = _info(state)
    attr = mesos_attribute(gpuinfo.go_json(doc))
    uuids = ",".join(g.uuid or "" for g in host.gpus)
    return text_response(f"--attributes=gpus:{attr} --resources=gpus:{{{uuids}}}")


_ENDPOINTS: Dict[str, Handler] = {
    "/gpu/info": gpu_info,
    "/gpu/info/json": gpu_info_json,
    "/gpu/status": gpu_status,
    "/gpu/status/json": gpu_status_json,
    "/docker/cli": docker_cli,
    "/docker/cli/json": docker_cli_json,
    "/mesos/cli": mesos_cli,
}

#: path -> handler, versioned (/v1.0/...) and unversioned
ROUTES: Dict[str, Handler] = {**_ENDPOINTS, **{"/v1.0" + p: h for p, h in _ENDPOINTS.items()}}
