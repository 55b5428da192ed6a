"""nvlow: NVIDIA GPUs in Docker/Podman containers with only the driver installed.

The public API is re-exported here (see :mod:`nvlow.api` and README "Python API").
Names are resolved lazily, so ``import nvlow`` loads no native library and
imports no typer, cffi or pycparser.

Example:
    >>> import nvlow
    >>> nvlow.load_host(simulate="workstation").gpus[0].name
    'NVIDIA GeForce RTX 4090'
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict


__version__ = "0.1.0"

_EXPORTS = {
    # functions (nvlow.api)
    "load_host": "api", "open_host_root": "api", "resolve_gpus": "api", "selection_request": "api",
    "choose_gpus": "api", "capabilities_of": "api", "driver_files": "api", "make_plan": "api",
    "docker_args": "api", "plan_document": "api", "compose_fragment": "api", "cdi_spec": "api",
    "rewrite_argv": "api", "check_requirements": "api", "plan_for": "api", "request_from_argv": "api",
    # results
    "Host": "model", "Gpu": "model", "MigDevice": "model", "DeviceNode": "model", "DriverFile": "model",
    "DriverFiles": "model", "Plan": "plan.plan", "Mount": "plan.plan", "DeviceMapping": "plan.plan",
    "Selection": "plan.select", "PlanRequest": "plan.request",
    # errors
    "NvlowError": "errors", "UsageError": "errors", "SelectionError": "errors", "RequirementError": "errors",
    "HostError": "errors", "DriverNotLoaded": "errors", "LibraryError": "errors", "EngineError": "errors",
    "RemoteError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover - static view of the lazy exports
    from .api import (capabilities_of, cdi_spec, check_requirements, choose_gpus, compose_fragment,
                      docker_args, driver_files, load_host, make_plan, open_host_root, plan_document,
                      plan_for, request_from_argv, resolve_gpus, rewrite_argv, selection_request)
    from .errors import (DriverNotLoaded, EngineError, HostError, LibraryError, NvlowError, RemoteError,
                         RequirementError, SelectionError, UsageError)
    from .model import DeviceNode, DriverFile, DriverFiles, Gpu, Host, MigDevice
    from .plan.plan import DeviceMapping, Mount, Plan
    from .plan.request import PlanRequest
    from .plan.select import Selection


def _lazy_exports(package: str, exports: Dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` on first use of ``name`` and
    keeps the value in the package (``nvlow`` and ``nvlow.cdi`` export their names this way)."""
    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib
        import sys

        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value
    return getattr_


__getattr__ = _lazy_exports(__name__, _EXPORTS)


def __dir__() -> "list[str]":
    return sorted(list(globals()) + list(_EXPORTS))
