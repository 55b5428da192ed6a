"""Render a :class:`~nvlow.plan.plan.Plan` as docker/podman arguments, JSON or a compose fragment.

Example:
    >>> from nvlow.plan.plan import Plan, DeviceMapping, Mount
    >>> from nvlow.plan.select import Selection
    >>> p = Plan("550.54.15", "12.4", Selection(()), ("compute",), "bind",
    ...          (DeviceMapping("/dev/nvidiactl", "/dev/nvidiactl"),),
    ...          (Mount("/usr/bin/nvidia-smi", "/usr/local/nvidia/bin/nvidia-smi"),), ())
    >>> docker_args(p)
    ['--device=/dev/nvidiactl', '--volume=/usr/bin/nvidia-smi:/usr/local/nvidia/bin/nvidia-smi:ro']
"""
from __future__ import annotations

from ..model import Host
from .plan import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional


SCHEMA_VERSION = 1


def docker_args(plan: Plan) -> List[str]:
    """The arguments to add to ``docker run``/``podman run`` (one token per option)."""
    args: List[str] = []
    for d in plan.devices:
        if d.host_path == d.container_path:
            args.append(f"--device={d.host_path}")
        else:
            args.append(f"--device={d.host_path}:{d.container_path}")
    if plan.volume_driver:
        args.append(f"--volume-driver={plan.volume_driver}")
    for m in plan.mounts:
        suffix = ":ro" if m.read_only else ""
        args.append(f"--volume={m.host_path}:{m.container_path}{suffix}")
    for key, value in plan.env:
        args.append(f"--env={key}={value}")
    return args


#: what shlex.quote leaves unquoted (ASCII word characters and @%+=:,./-)
_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def shell_quote(word: str) -> str:
    """``shlex.quote`` without importing shlex and re on the hot path (the same output).

    Example:
        >>> print(shell_quote("--volume=/a b:/c"), shell_quote(""), shell_quote("it's"), shell_quote("--env=A=1"))
        '--volume=/a b:/c' '' 'it'"'"'s' --env=A=1
    """
    if not word:
        return "''"
    if _SHELL_SAFE.issuperset(word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def shell_line(args: List[str]) -> str:
    """Arguments joined as one shell-quoted line."""
    return " ".join(shell_quote(a) for a in args)


def plan_document(plan: Plan, host: Optional[Host] = None) -> Dict[str, Any]:
    """The ``nvlow args --json`` document (schema_version 1)."""
    gpus: List[Dict[str, Any]] = []
    for g in plan.selection.gpus:
        gpus.append({"index": g.index, "minor": g.minor, "uuid": g.uuid, "bus_id": g.bus_id,
                     "name": g.name, "device_path": g.device_path, "mig_device": None})
    parents = {g.index: g for g in host.gpus} if host is not None else {}
    for m in plan.selection.mig_devices:
        parent = parents.get(m.parent_index)
        gpus.append({"index": m.parent_index, "minor": parent.minor if parent else None, "uuid": m.uuid,
                     "bus_id": parent.bus_id if parent else None, "name": m.name,
                     "device_path": parent.device_path if parent else None, "mig_device": m.name_for_index,
                     "gpu_instance_id": m.gpu_instance_id, "compute_instance_id": m.compute_instance_id})
    return {
        "schema_version": SCHEMA_VERSION,
        "driver_version": plan.driver_version,
        "cuda_version": plan.cuda_version,
        "capabilities": list(plan.capabilities),
        "driver_files": plan.driver_files_mode,
        "selection": plan.selection.to_dict(),
        "gpus": gpus,
        "devices": [d.to_dict() for d in plan.devices],
        "mounts": [m.to_dict() for m in plan.mounts],
        "volume_driver": plan.volume_driver,
        "env": plan.env_dict(),
        "args": docker_args(plan),
        "warnings": list(plan.warnings),
        # a void plan is decided without looking at the host (nvlow.plan.decide), so it names none
        "simulated": host.simulated if host and not plan.selection.is_void else None,
    }


def compose_fragment(plan: Plan) -> str:
    """A docker compose service fragment (YAML) with ``devices``, ``volumes`` and ``environment``.

    Strings are JSON-quoted, which YAML reads as plain strings.
    """
    lines = ["# nvlow: paste under a service in compose.yaml"]
    lines.append("devices:" if plan.devices else "devices: []")
    for d in plan.devices:
        lines.append(f"  - {_json_dumps(d.host_path + ':' + d.container_path)}")
    lines.append("volumes:" if plan.mounts else "volumes: []")
    for m in plan.mounts:
        if m.kind == "volume":
            lines.append(f"  - {_json_dumps(m.host_path + ':' + m.container_path + (':ro' if m.read_only else ''))}")
        else:
            lines.append("  - type: bind")
            lines.append(f"    source: {_json_dumps(m.host_path)}")
            lines.append(f"    target: {_json_dumps(m.container_path)}")
            lines.append(f"    read_only: {'true' if m.read_only else 'false'}")
    lines.append("environment:" if plan.env else "environment: {}")
    for key, value in plan.env:
        lines.append(f"  {key}: {_json_dumps(value)}")
    return "\n".join(lines) + "\n"


def _json_dumps(value: object, **kwargs: object) -> str:
    import json

    return json.dumps(value, **kwargs)  # type: ignore[arg-type]
