"""Generated host trees for ``--simulate PRESET``: built once per preset and cached.

The tree holds what a real host would (/proc files, /dev nodes as marked
regular files, driver libraries with real ELF headers, /etc/ld.so.cache), so
``--simulate`` runs exactly the pipeline a real host runs.

Example:
    >>> root, opener = simulated_host("workstation")
    >>> root.simulated, root.read_text("/proc/driver/nvidia/version").startswith("NVRM")
    ('workstation', True)
"""
from __future__ import annotations

import os

from ..errors import HostError
from ..host.root import HostRoot, file_node_reader
from .presets import Preset, get_preset, md5_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Optional, Tuple

    from ..records import DriverLibrary


#: bump when the layout written by proctree/drivertree changes
TREE_SCHEMA = 1


def cache_dir(env: Optional[Mapping[str, str]] = None) -> str:
    """Where simulated trees are kept: ``$NVLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/nvlow``,
    else ``~/.cache/nvlow``."""
    env = env if env is not None else {}
    if env.get("NVLOW_CACHE_DIR"):
        return env["NVLOW_CACHE_DIR"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nvlow")


def _fingerprint(preset: Preset) -> str:
    from .. import __version__

    # The writers' source is part of the key so that a changed writer never reuses a tree built by an
    # older one (cheap: a few small files; their contents, not their paths or times, so that two copies
    # of the same nvlow share the tree).
    here = os.path.dirname(__file__)
    key = [repr(preset).encode()]
    for mod in ("proctree.py", "drivertree.py", "elfgen.py", "hosttree.py", "wsltree.py"):
        try:
            with open(os.path.join(here, mod), "rb") as fh:
                key.append(fh.read())
        except OSError:
            key.append(b"-")
    digest = md5_hex(b"\0".join(key))[:8]
    return f"{preset.name}-{__version__}-{TREE_SCHEMA}-{digest}"


def build_tree(dest: str, preset: Preset) -> None:
    """Write the whole simulated host for ``preset`` under ``dest`` (a new directory)."""
    from .drivertree import write_driver_tree
    from .proctree import write_proc_dev_tree

    write_proc_dev_tree(dest, preset)
    if preset.wsl:  # /dev/dxg and /usr/lib/wsl instead of the Linux driver (nvlow.simulate.wsltree)
        from .wsltree import write_wsl_tree

        write_wsl_tree(dest, preset)
        return
    write_driver_tree(dest, preset)


def ensure_tree(preset: Preset, base_dir: str) -> str:
    """The cached tree for ``preset`` under ``base_dir``, built atomically if missing."""
    final = os.path.join(base_dir, "simulate", _fingerprint(preset))
    if os.path.isdir(final):
        return final
    parent = os.path.dirname(final)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = f"{final}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
        os.mkdir(tmp)
    except OSError as exc:
        raise HostError(f"cannot create the simulation cache {parent}: {exc.strerror}",
                        hint="set NVLOW_CACHE_DIR to a writable directory") from None
    try:
        build_tree(tmp, preset)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            _remove(tmp)
    except BaseException:
        _remove(tmp)
        raise
    return final


def _remove(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def simulated_root(preset: Preset, env: Optional[Mapping[str, str]] = None) -> HostRoot:
    """A :class:`HostRoot` over the preset's generated tree."""
    path = ensure_tree(preset, cache_dir(env))
    return HostRoot(path, node_reader=file_node_reader, simulated=preset.name)


def simulated_library(preset: Preset) -> DriverLibrary:
    """The Python stand-in for NVML/libcuda (raises LibraryError for driverless presets)."""
    from .fakelib import open_simulated_library

    return open_simulated_library(preset)


def simulated_host(name: str, env: Optional[Mapping[str, str]] = None
                   ) -> Tuple[HostRoot, Callable[[HostRoot], DriverLibrary]]:
    """Root and library opener for the preset ``name`` (the opener raises
    LibraryError for driverless presets, as the real loader would)."""
    preset = get_preset(name)
    root = simulated_root(preset, env)
    return root, lambda _root: simulated_library(preset)
