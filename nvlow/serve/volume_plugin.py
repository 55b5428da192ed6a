"""Docker's legacy volume plugin protocol, serving the 1.0 driver volume ``nvidia_driver_<version>``.

dockerd POSTs JSON to ``/Plugin.Activate`` and ``/VolumeDriver.*`` with
``Accept: application/vnd.docker.plugins.v1.x+json``; errors travel in
``{"Err": "..."}`` with status 200, as in nvidia-docker-plugin 1.0. The volume
is built by the server's ``ensure_driver_volume``, i.e. the CLI's own
:func:`nvlow.volume.ensure_driver_volume` (atomic rename of a complete
temporary directory), so a build killed midway never leaves a volume that
Mount or List would return, and the volume holds the same files whoever built
it. Mount rebuilds a missing or stale (manifest differs) volume of the running
driver instead of failing with 1.0's ``no such volume`` after a cleanup.

Example:
    >>> parse_volume_name("nvidia_driver_550.54.15")
    ('nvidia_driver', '550.54.15')
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional, Tuple

from ..errors import NvlowError
from ..volume import VOLUME_BASE, find_volume, list_volumes, remove_volume, volume_path
from .wire import Request, Response, go_json_response, text_error

PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
ACCEPTED = ("application/vnd.docker.plugins.v1.1+json", "application/vnd.docker.plugins.v1.2+json")
_NAME_RE = re.compile(r"^([a-zA-Z0-9_.-]+)_([0-9.]+)$")


class VolumeError(Exception):
    """An ``Err`` answer: ``<reason>: <volume name>``."""


def parse_volume_name(name: str) -> Tuple[str, str]:
    """``(base, version)`` of a volume name; VolumeError for other names."""
    m = _NAME_RE.match(name)
    if not m:
        raise VolumeError(f"bad volume format: {name}")
    if m.group(1) != VOLUME_BASE:
        raise VolumeError(f"unsupported volume: {name}")
    return m.group(1), m.group(2)


def _reply(obj: Dict[str, Any]) -> Response:
    return go_json_response(obj, 200, PLUGIN_CONTENT_TYPE)


def _current_version(state: Any) -> Optional[str]:
    return state.cache.host().driver_version  # type: ignore[no-any-return]


def _check_version(state: Any, name: str, version: str) -> None:
    current = _current_version(state)
    if version != current:
        raise VolumeError(f"invalid volume version: {name} (the running driver is {current or 'unknown'}, "
                          f"the volume is for {version})")


def _ensure(state: Any, name: str, version: str) -> str:
    _check_version(state, name, version)
    return str(state.ensure_driver_volume(version).path)


def activate(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    return {"Implements": ["VolumeDriver"]}


def create(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    name = q["Name"]
    _base, version = parse_volume_name(name)
    _ensure(state, name, version)
    return {"Err": ""}


def remove(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    _base, version = parse_volume_name(q["Name"])
    remove_volume(state.volumes_dir, version)
    return {"Err": ""}


def mount(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    """The running driver's volume is checked against its manifest (and rebuilt when stale or
    missing) on every Mount; another version's volume is only looked up."""
    name = q["Name"]
    _base, version = parse_volume_name(name)
    if version == _current_version(state):
        return {"Mountpoint": _ensure(state, name, version), "Err": ""}
    path = find_volume(state.volumes_dir, version)
    if path is None:
        raise VolumeError(f"no such volume: {name}")
    return {"Mountpoint": path, "Err": ""}


def _existing(state: Any, name: str) -> str:
    """The mountpoint of a complete volume ``name``; ``no such volume`` otherwise."""
    _base, version = parse_volume_name(name)
    path = find_volume(state.volumes_dir, version)
    if path is None:
        raise VolumeError(f"no such volume: {name}")
    return path


def path_(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    return {"Mountpoint": _existing(state, q["Name"]), "Err": ""}


def unmount(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    parse_volume_name(q["Name"])
    return {"Err": ""}


def get(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    name = q["Name"]
    return {"Volume": {"Name": name, "Mountpoint": _existing(state, name)}, "Err": ""}


def list_(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    return {"Volumes": [{"Name": f"{VOLUME_BASE}_{v}", "Mountpoint": volume_path(state.volumes_dir, v)}
                        for v in list_volumes(state.volumes_dir)], "Err": ""}


def capabilities(state: Any, q: Dict[str, Any]) -> Dict[str, Any]:
    return {"Capabilities": {"Scope": "local"}}


ENDPOINTS = {
    "/Plugin.Activate": (activate, False),
    "/VolumeDriver.Create": (create, True),
    "/VolumeDriver.Remove": (remove, True),
    "/VolumeDriver.Mount": (mount, True),
    "/VolumeDriver.Path": (path_, True),
    "/VolumeDriver.Unmount": (unmount, True),
    "/VolumeDriver.Get": (get, True),
    "/VolumeDriver.List": (list_, False),
    "/VolumeDriver.Capabilities": (capabilities, False),
}


def handle(state: Any, request: Request) -> Response:
    """Answer one plugin request (the server has already checked the method)."""
    endpoint = ENDPOINTS.get(request.path)
    if endpoint is None:
        return text_error(404, "404 page not found")
    accept = request.headers.get("accept", "")
    if accept not in ACCEPTED:
        state.log(f"plugin: unsupported plugin API {accept!r} on {request.path}")
        return text_error(406, f"unsupported plugin API: {accept or '(no Accept header)'}")
    fn, needs_name = endpoint
    q: Dict[str, Any] = {}
    if request.body.strip():
        try:
            q = json.loads(request.body)
        except ValueError:
            return text_error(400, "malformed JSON body")
        if not isinstance(q, dict):
            return text_error(400, "malformed JSON body: expected an object")
    if needs_name and not isinstance(q.get("Name"), str):
        return text_error(400, "request needs a \"Name\" string")
    try:
        return _reply(fn(state, q))
    except VolumeError as exc:
        return _reply({"Err": str(exc)})
    except NvlowError as exc:
        state.log(f"plugin: {request.path} {q.get('Name', '')}: {exc}")
        return _reply({"Err": f"{exc}: {q.get('Name', '')}"})
