"""Discovery cache for ``nvlow serve``, keyed by the kernel module's version text.

nvidia-docker-plugin 1.0 discovered once at start, so a driver upgrade left it
serving the old version until restarted (NVIDIA/nvidia-docker #80, #365,
#737). Here every request compares ``/proc/driver/nvidia/version`` (one small
procfs read) with the text the cached discovery was made under, and
rediscovers when it differs. Live status is read on every request from the
driver library kept open alongside the snapshot.

Example:
    >>> from nvlow.root import HostRoot
    >>> cache = DiscoveryCache(HostRoot("/nonexistent-root"), None, load_uvm=False)
    >>> cache.version_key() is None
    True
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Tuple

from ..errors import LibraryError, NvlowError
from ..model import DriverFiles, Host
from ..records import DriverLibrary, GpuRecord, GpuStatus
from ..root import HostRoot

VERSION_FILE = "/proc/driver/nvidia/version"
LibraryOpener = Callable[[HostRoot], DriverLibrary]
FilesSelector = Callable[[HostRoot, str, Tuple[str, ...]], DriverFiles]
#: a failed discovery is retried after this many seconds even if the version text is unchanged
ERROR_RETRY_SECONDS = 5.0


@dataclass
class Snapshot:
    """One discovery: the host, NVML's static records and the library used for live status."""

    key: Optional[str]
    host: Host
    records: Tuple[GpuRecord, ...]
    library: Optional[DriverLibrary]
    numa_nodes: Dict[int, Optional[int]] = field(default_factory=dict)
    created: float = 0.0


def _default_files_selector(root: HostRoot, version: str, caps: Tuple[str, ...]) -> DriverFiles:
    from ..driverfiles import select_driver_files

    return select_driver_files(root, version, caps)


def _numa_node(root: HostRoot, bus_id: Optional[str]) -> Optional[int]:
    # sysfs spells the domain with 4 lower-case digits, as nvlow's Gpu.bus_id does; 1.0 used
    # NVML's 8-digit form here and so always reported node 0 (reference §11).
    if not bus_id:
        return None
    text = root.read_text_optional(f"/sys/bus/pci/devices/{bus_id.lower()}/numa_node")
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


class DiscoveryCache:
    """Thread-safe cached discovery plus live status for the server's handlers."""

    def __init__(self, root: HostRoot, opener: Optional[LibraryOpener], *, use_nvml: bool = True,
                 load_uvm: bool = True, files_selector: Optional[FilesSelector] = None,
                 clock: Callable[[], float] = time.monotonic,
                 discover_fn: Optional[Callable[..., Host]] = None) -> None:
        self.root = root
        self._discover_fn = discover_fn
        self._opener = opener
        self._use_nvml = use_nvml
        self._load_uvm = load_uvm
        self._select_files = files_selector or _default_files_selector
        self._clock = clock
        self._lock = threading.Lock()  # guards rebuilds and the snapshot swap
        self._lib_lock = threading.Lock()  # serialises calls into the driver library
        self._snapshot: Optional[Snapshot] = None
        self._error: Optional[Tuple[Optional[str], float, NvlowError]] = None
        self._files: Dict[Tuple[Optional[str], Tuple[str, ...]], DriverFiles] = {}
        #: how many discoveries ran (tests and /healthz read it)
        self.discoveries = 0

    def version_key(self) -> Optional[str]:
        """The current text of the kernel module's version file (None without a driver)."""
        return self.root.read_text_optional(VERSION_FILE)

    def snapshot(self) -> Snapshot:
        """The discovery for the running driver, rediscovered when the version text changed.

        Raises the discovery's :class:`NvlowError` (cached briefly) when there is no usable driver.
        """
        key = self.version_key()
        snap = self._snapshot
        if snap is not None and snap.key == key:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap.key == key:
                return snap
            if self._error is not None:
                ekey, when, err = self._error
                if ekey == key and self._clock() - when < ERROR_RETRY_SECONDS:
                    raise err
            try:
                new = self._discover(key)
            except NvlowError as exc:
                self._error = (key, self._clock(), exc)
                raise
            old, self._snapshot, self._error = self._snapshot, new, None
            self._files = {}
        if old is not None and old.library is not None:
            with self._lib_lock:
                old.library.close()
        return new

    def host(self) -> Host:
        """The cached :class:`Host`."""
        return self.snapshot().host

    def _discover(self, key: Optional[str]) -> Snapshot:
        if self._discover_fn is not None:
            discover = self._discover_fn
        else:
            from ..discover import discover

        lib: Optional[DriverLibrary] = None
        warnings = []
        if self._use_nvml and self._opener is not None:
            try:
                lib = self._opener(self.root)
            except LibraryError as exc:
                warnings.append(f"NVML unavailable, using procfs only: {exc}")
        records: Tuple[GpuRecord, ...] = ()
        try:
            host = discover(self.root, library=lib, use_nvml=lib is not None, load_uvm=self._load_uvm)
            if lib is not None and host.source == "nvml":
                with self._lib_lock:
                    records = tuple(lib.gpus())
        except BaseException:
            if lib is not None:
                lib.close()
            raise
        if host.source != "nvml" and lib is not None:
            lib.close()
            lib = None
        if warnings:
            from dataclasses import replace

            host = replace(host, warnings=tuple(warnings) + host.warnings)
        numa = {}
        by_index = {r.index: r for r in records}
        for g in host.gpus:
            rec = by_index.get(g.index)
            numa[g.index] = rec.numa_node if rec is not None and rec.numa_node is not None \
                else _numa_node(self.root, g.bus_id)
        self.discoveries += 1
        return Snapshot(key, host, records, lib, numa, self._clock())

    def status(self) -> Tuple[Snapshot, Tuple[GpuStatus, ...]]:
        """The snapshot and live readings for every GPU (empty readings without NVML)."""
        snap = self.snapshot()
        if snap.library is None:
            return snap, tuple(GpuStatus(index=g.index) for g in snap.host.gpus)
        with self._lib_lock:
            return snap, tuple(snap.library.status())

    def driver_files(self, capabilities: Iterable[str]) -> DriverFiles:
        """Driver files for ``capabilities`` under the running driver, selected once per driver."""
        snap = self.snapshot()
        caps = tuple(sorted(set(capabilities)))
        cache_key = (snap.key, caps)
        files = self._files.get(cache_key)
        if files is None:
            if not snap.host.driver_version:
                from ..errors import HostError

                raise HostError("the NVIDIA driver version is unknown, so its files cannot be selected",
                                hint="check /proc/driver/nvidia/version ('nvlow doctor')")
            files = self._select_files(self.root, snap.host.driver_version, caps)
            self._files[cache_key] = files
        return files

    def close(self) -> None:
        """Close the driver library (idempotent)."""
        with self._lock:
            snap, self._snapshot = self._snapshot, None
        if snap is not None and snap.library is not None:
            with self._lib_lock:
                snap.library.close()
