"""Docker's legacy volume plugin protocol, serving the 1.0 driver volume ``nvidia_driver_<version>``.

dockerd POSTs JSON to ``/Plugin.Activate`` and ``/VolumeDriver.*`` with
``Accept: application/vnd.docker.plugins.v1.x+json``; errors travel in
``{"Err": "..."}`` with status 200, as in nvidia-docker-plugin 1.0. The volume
is built by the server's ``ensure_driver_volume``, i.e. the CLI's own
:func:`nvlow.plan.volume.ensure_driver_volume` (atomic rename of a complete
temporary directory), so a build killed midway never leaves a volume that
Mount or List would return, and the volume holds the same files whoever built
it. Mount rebuilds a missing or stale (manifest differs) volume of the running
driver instead of failing with 1.0's ``no such volume`` after a cleanup.

The running driver's volume always exists for Get, Path and List, built or
not: dockerd keeps the volumes a previous plugin of the same name created (a
real nvidia-docker-plugin 1.0, or an earlier ``nvlow serve`` with another
volumes directory) and asks the plugin about them before it mounts them; a
``no such volume`` there fails every container that still references one
("found references to volume ... but the volume was not found in the
driver"). Its Mount builds it. Mountpoints are given in the engine's view
(``--engine-root``: :meth:`ServeState.engine_path`).

Safety: every endpoint that takes a ``Name`` checks it with
:func:`nvlow.plan.volume.volume_name_version` (``nvidia_driver_`` + ASCII digits and
dots, full match) before any filesystem call, and :mod:`nvlow.plan.volume` proves
every path inside the volumes directory. Create, Mount and Remove of a volume
hold its lock (:func:`nvlow.plan.volume.volume_lock`, an ``flock`` shared with the
CLI). Mounts are counted per volume and caller ``ID`` as the protocol expects
(Mount +1, Unmount -1), and Remove refuses a mounted volume; the counts live in
this ``nvlow serve`` process.

Example:
    >>> parse_volume_name("nvidia_driver_550.54.15")
    ('nvidia_driver', '550.54.15')
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any, Dict, Optional, Tuple

from ..errors import NvlowError
from ..plan.volume import (VOLUME_BASE, find_volume, list_volumes, remove_volume, show_name, volume_exists,
                      volume_lock, volume_name_version, volume_path)
from .wire import Request, Response, go_json_response, text_error, HandlerState

PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
ACCEPTED = ("application/vnd.docker.plugins.v1.1+json", "application/vnd.docker.plugins.v1.2+json")
#: only to word the error for a name that failed the strict check: another driver's volume or no volume name
_OTHER_VOLUME_RE = re.compile(r"([A-Za-z0-9_.-]+)_([0-9.]+)", re.ASCII)


class VolumeError(Exception):
    """An ``Err`` answer: ``<reason>: <volume name>``."""


def parse_volume_name(name: str) -> Tuple[str, str]:
    """``(base, version)`` of a volume name; VolumeError for any name but ``nvidia_driver_<version>``
    (:func:`nvlow.plan.volume.volume_name_version`: digits and dots, full match, bounded length)."""
    version = volume_name_version(name)
    if version is None:
        other = _OTHER_VOLUME_RE.fullmatch(name) if isinstance(name, str) else None
        if other is not None and other.group(1) != VOLUME_BASE:
            raise VolumeError(f"unsupported volume: {show_name(name)}")
        raise VolumeError(f"bad volume format: {show_name(name)}")
    return VOLUME_BASE, version


class MountTable:
    """Mounts per volume version and caller ``ID`` (Docker sends one ID per container mount)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, Dict[str, int]] = {}

    def mount(self, version: str, caller: str) -> None:
        with self._lock:
            ids = self._counts.setdefault(version, {})
            ids[caller] = ids.get(caller, 0) + 1

    def unmount(self, version: str, caller: str) -> bool:
        """False when ``caller`` had no mount of ``version`` (nothing changes)."""
        with self._lock:
            ids = self._counts.get(version, {})
            if not ids.get(caller):
                return False
            ids[caller] -= 1
            if not ids[caller]:
                del ids[caller]
            if not ids:
                self._counts.pop(version, None)
            return True

    def count(self, version: str) -> int:
        with self._lock:
            return sum(self._counts.get(version, {}).values())


def mounts(state: HandlerState) -> MountTable:
    """The server's mount table (``ServeState.plugin_mounts``)."""
    table: MountTable = state.plugin_mounts
    return table


def _name(q: Dict[str, Any]) -> Tuple[str, str]:
    """(name, version) of the request's volume; VolumeError unless the strict check passes."""
    name = q.get("Name")
    if not isinstance(name, str):
        raise VolumeError("bad volume format: (no Name)")
    return name, parse_volume_name(name)[1]


def _caller(q: Dict[str, Any]) -> str:
    caller = q.get("ID", "")
    return caller if isinstance(caller, str) else ""


def _reply(obj: Dict[str, Any]) -> Response:
    return go_json_response(obj, 200, PLUGIN_CONTENT_TYPE)


def _current_version(state: HandlerState) -> Optional[str]:
    return state.cache.host().driver_version


def _check_version(state: HandlerState, name: str, version: str) -> None:
    current = _current_version(state)
    if version != current:
        raise VolumeError(f"invalid volume version: {name} (the running driver is {current or 'unknown'}, "
                          f"the volume is for {version})")


def _ensure(state: HandlerState, name: str, version: str) -> str:
    _check_version(state, name, version)
    return str(state.ensure_driver_volume(version).path)


def activate(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    return {"Implements": ["VolumeDriver"]}


def create(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    name, version = _name(q)
    _check_version(state, name, version)
    with volume_lock(state.volumes_dir, version):
        _ensure(state, name, version)
    return {"Err": ""}


def remove(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    """Refused while the volume is mounted (Docker checks its own references first; this covers the
    plugin's own view, e.g. a Remove racing a Mount)."""
    name, version = _name(q)
    if not volume_exists(state.volumes_dir, version):
        return {"Err": ""}
    with volume_lock(state.volumes_dir, version):
        count = mounts(state).count(version)
        if count:
            raise VolumeError(f"volume is in use: {name} (mounted {count} time{'s' if count > 1 else ''}; "
                              "stop the containers using it first)")
        remove_volume(state.volumes_dir, version)
    return {"Err": ""}


def mount(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    """The running driver's volume is checked against its manifest (and rebuilt when stale or
    missing) on every Mount; another version's volume is only looked up. Counted per caller ID
    until its Unmount, under the volume's lock, so a racing Remove cannot delete it meanwhile."""
    name, version = _name(q)
    current = version == _current_version(state)
    if not current and find_volume(state.volumes_dir, version) is None:
        raise VolumeError(f"no such volume: {name}")
    with volume_lock(state.volumes_dir, version):
        path = _ensure(state, name, version) if current else find_volume(state.volumes_dir, version)
        if path is None:
            raise VolumeError(f"no such volume: {name}")
        mounts(state).mount(version, _caller(q))
    return {"Mountpoint": _engine_path(state, path), "Err": ""}


def _running_version(state: HandlerState) -> Optional[str]:
    """The running driver's version, None when discovery fails (List then shows what is on disk)."""
    try:
        return _current_version(state)
    except NvlowError:
        return None


def _existing(state: HandlerState, name: str) -> str:
    """The mountpoint (engine view) of volume ``name``: a complete volume on disk, or the running
    driver's volume whether built or not (its Mount builds it); ``no such volume`` otherwise."""
    _base, version = parse_volume_name(name)
    path = find_volume(state.volumes_dir, version)
    if path is None and version == _current_version(state):
        path = volume_path(state.volumes_dir, version)
    if path is None:
        raise VolumeError(f"no such volume: {name}")
    return _engine_path(state, path)


def _engine_path(state: HandlerState, path: str) -> str:
    engine_path = getattr(state, "engine_path", None)
    return str(engine_path(path)) if engine_path is not None else path


def path_(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    name, _version = _name(q)
    return {"Mountpoint": _existing(state, name), "Err": ""}


def unmount(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    """One mount of the caller ID less (an Unmount without a matching Mount changes nothing)."""
    name, version = _name(q)
    if not mounts(state).unmount(version, _caller(q)) and state.verbose:
        state.log(f"plugin: Unmount of {name} by {show_name(_caller(q))} without a Mount")
    return {"Err": ""}


def get(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    name, _version = _name(q)
    return {"Volume": {"Name": name, "Mountpoint": _existing(state, name)}, "Err": ""}


def list_(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
    """The complete volumes on disk and the running driver's volume (built or not)."""
    versions = list_volumes(state.volumes_dir)
    running = _running_version(state)
    if running is not None and volume_name_version(f"{VOLUME_BASE}_{running}") == running and running not in versions:
        try:
            find_volume(state.volumes_dir, running)  # a symlink in its place is refused, so not listed
        except NvlowError:
            running = None
        if running is not None:
            versions = sorted(versions + [running])
    return {"Volumes": [{"Name": f"{VOLUME_BASE}_{v}",
                         "Mountpoint": _engine_path(state, volume_path(state.volumes_dir, v))}
                        for v in versions], "Err": ""}


def capabilities(state: HandlerState, q: Dict[str, Any]) -> Dict[str, Any]:
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


def handle(state: HandlerState, request: Request) -> Response:
    """Answer one plugin request (the server has already checked the method).

    A ``Name`` is checked here, before the endpoint runs, for every endpoint that takes one."""
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
    shown = show_name(q.get("Name", "")) if needs_name else ""
    try:
        if needs_name:
            _name(q)
        return _reply(fn(state, q))
    except VolumeError as exc:
        return _reply({"Err": str(exc)})
    except NvlowError as exc:
        state.log(f"plugin: {request.path} {shown}: {exc}")
        return _reply({"Err": f"{exc}: {shown}"})
