"""Per-invocation plumbing: host root, driver library, discovery, stderr messages."""
from __future__ import annotations

import os
import sys
from typing import Callable, List, Mapping, Optional, Tuple

from ..model import Host
from ..records import DriverLibrary
from ..root import HostRoot
from .options import CommonOptions


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


def load_host(opts: CommonOptions, env: Mapping[str, str], *, quiet: bool = False) -> Tuple[HostRoot, Host]:
    """Discover the host named by the options; warnings go to stderr."""
    from ..discover import discover

    root, opener = open_root(opts, env)
    host = discover(root, library_opener=opener, use_nvml=not opts.no_nvml,
                    load_uvm=not opts.no_uvm_load)
    if not quiet:
        for w in host.warnings:
            warn(w)
    return root, host


def first(*values: Optional[str]) -> Optional[str]:
    for v in values:
        if v is not None:
            return v
    return None
