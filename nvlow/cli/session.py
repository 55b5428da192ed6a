"""Per-invocation plumbing: host root, driver library, discovery, stderr messages."""
from __future__ import annotations

import os
import sys

from ..model import Host
from ..host.root import HostRoot
from .options import CommonOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Optional, Tuple

    from ..model import ProcfsFacts
    from ..plan.request import PlanRequest
    from ..records import DriverLibrary

#: ``NVLOW_EAGER_NVML=1``: args/exec open NVML even when the request does not need it (the
#: behaviour before docs/nvml-lazy.md; for comparisons and as a way back)
EAGER_NVML_ENV = "NVLOW_EAGER_NVML"


def long_running() -> None:
    """Turn Python's cyclic garbage collector back on: the ``nvlow`` script and ``python -m nvlow`` turn
    it off for commands that end within milliseconds; ``serve`` and ``status --watch`` run for days."""
    import gc

    gc.enable()


def note(message: str) -> None:
    """A one-line note on stderr."""
    sys.stderr.write(f"nvlow: {message}\n")


def warn(message: str) -> None:
    sys.stderr.write(f"nvlow: warning: {message}\n")


def open_root(opts: CommonOptions, env: Mapping[str, str]
              ) -> Tuple[HostRoot, Callable[[HostRoot], DriverLibrary]]:
    """The host root and a driver-library opener for the common options (see :func:`nvlow.api.open_host_root`)."""
    from ..api import open_host_root

    if opts.simulate:
        result = open_host_root(simulate=opts.simulate, env=env)
        note(f"simulated host '{opts.simulate}' (no real GPU or driver is used)")
        return result
    if not os.path.isdir(opts.root or "/"):
        from ..errors import UsageError

        raise UsageError(f"--root {os.path.abspath(opts.root)} is not a directory")
    return open_host_root(opts.root or "/", env=env)


def load_host(opts: CommonOptions, env: Mapping[str, str], *, quiet: bool = False,
              request: Optional["PlanRequest"] = None,
              nvml_wanted: Optional[Callable[["ProcfsFacts"], Optional[str]]] = None) -> Tuple[HostRoot, Host]:
    """Discover the host named by the options; warnings go to stderr.

    With ``request`` (``args``/``exec``, on a real root or a simulated one alike) NVML is opened only when
    :func:`nvlow.plan.request.nvml_reason` says the plan needs it, and with ``nvml_wanted``
    (``cdi generate``) only when that says so; either way it is then asked only for the plan's fields
    (docs/nvml-lazy.md). Without them (info, status, serve, ...) NVML is read whole.
    """
    from ..host.discover import discover

    lazy = request is not None or nvml_wanted is not None
    if lazy and env.get(EAGER_NVML_ENV) != "1":
        return _load_for_plan(opts, env, request, nvml_wanted, quiet=quiet)
    root, opener = open_root(opts, env)
    host = discover(root, library_opener=opener, use_nvml=not opts.no_nvml,
                    load_uvm=not opts.no_uvm_load)
    if not quiet:
        for w in host.warnings:
            warn(w)
    return root, host


def _load_for_plan(opts: CommonOptions, env: Mapping[str, str], request: Optional["PlanRequest"],
                   nvml_wanted: Optional[Callable[["ProcfsFacts"], Optional[str]]], *,
                   quiet: bool) -> Tuple[HostRoot, Host]:
    from ..host.discover import discover

    root, simulated_opener = open_root(opts, env)

    def plan_opener(r: HostRoot) -> DriverLibrary:
        if opts.simulate:  # the preset's stand-in, opened exactly when a real host's NVML would be
            return simulated_opener(r)
        from ..native.probe import open_native_library

        return open_native_library(r, env, fields="plan")

    def wanted(facts: ProcfsFacts) -> Optional[str]:
        if nvml_wanted is not None:
            return nvml_wanted(facts)
        assert request is not None
        from ..plan.request import nvml_reason

        return nvml_reason(request, facts)

    def libcuda_version(r: HostRoot) -> Optional[str]:
        if opts.simulate:
            from ..errors import LibraryError

            try:
                return simulated_opener(r).system().cuda_version
            except LibraryError:  # a driverless preset: no libcuda either
                return None
        from ..native.probe import read_cuda_version

        return read_cuda_version(r, env)

    cuda_reader = None
    if request is not None:  # args/exec (cdi generate's spec holds no CUDA version)
        from ..plan.request import needs_cuda_version

        # libcuda is loaded without NVML only for a requirement that compares the CUDA version
        cuda_reader = libcuda_version if needs_cuda_version(request) else None
    host = discover(root, library_opener=plan_opener, use_nvml=not opts.no_nvml,
                    load_uvm=not opts.no_uvm_load, nvml_wanted=wanted, cuda_reader=cuda_reader)
    if not quiet:
        for w in host.warnings:
            warn(w)
    return root, host


def first(*values: Optional[str]) -> Optional[str]:
    for v in values:
        if v is not None:
            return v
    return None
