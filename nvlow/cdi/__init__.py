"""CDI (Container Device Interface) specs: generate, list and validate.

``nvlow cdi generate`` writes one spec of kind ``nvidia.com/gpu`` that podman
(4.1+), Docker (25+ with CDI enabled), containerd and CRI-O understand:
``podman run --device nvidia.com/gpu=0 IMAGE``. See :mod:`nvlow.cdi.spec`
(building), :mod:`nvlow.cdi.layout` (where driver files go in the container:
the loader's default directories and /usr/bin, so the spec sets no PATH or
LD_LIBRARY_PATH), :mod:`nvlow.cdi.rules` and :mod:`nvlow.cdi.field_rules` (the CDI
rules), :mod:`nvlow.cdi.validate` (host checks: stale or missing files),
:mod:`nvlow.cdi.store` (spec directories, atomic writes) and
:mod:`nvlow.cdi.yaml` (YAML without a dependency).

May import: the leaf modules, :mod:`nvlow.host` and :mod:`nvlow.plan`.
"""
from __future__ import annotations

from .. import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:  # the static view of the lazy names below
    from .spec import DEFAULT_CLASS, DEFAULT_NAMING, DEFAULT_VENDOR, GeneratedSpec, build_spec, render_spec
    from .store import SPEC_DIRS, ListedDevice, list_devices, write_atomic
    from .validate import host_problems, required_version, validate_document

#: name -> submodule; imported on first use, so that `cdi generate` does not load the YAML reader or
#: the validator it never calls
_EXPORTS = {
    "DEFAULT_CLASS": "spec", "DEFAULT_NAMING": "spec", "DEFAULT_VENDOR": "spec", "GeneratedSpec": "spec",
    "build_spec": "spec", "render_spec": "spec", "SPEC_DIRS": "store", "ListedDevice": "store",
    "list_devices": "store", "write_atomic": "store", "host_problems": "validate",
    "required_version": "validate", "validate_document": "validate",
}

__all__ = sorted(_EXPORTS)
__getattr__ = _lazy_exports(__name__, _EXPORTS)
