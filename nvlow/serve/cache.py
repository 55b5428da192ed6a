"""Discovery cache for ``nvlow serve``, keyed by the kernel module's version text.

nvidia-docker-plugin 1.0 discovered once at start, so a driver upgrade left it
serving the old version until restarted (NVIDIA/nvidia-docker #80, #365,
#737). Here every request compares ``/proc/driver/nvidia/version`` (one small
procfs read) with the text the cached discovery was made under, and
rediscovers when it differs. Live status is read on every request from the
driver library kept open alongside the snapshot. Answers that depend only on a
discovery are kept in its :attr:`Snapshot.answers` (:meth:`DiscoveryCache.remember`,
read back after :meth:`DiscoveryCache.current` has checked the version text), so
they go when it goes.

nvidia-docker 1.0 also showed what only libcuda knows (memory attributes,
peer-to-peer access) and NVML readings nvlow's probe does not take (ECC
counters, every GPU pair's topology, NVLinks). :func:`complete_records` and
:func:`complete_statuses` add them to a native library's records, once per
discovery and on every status request; this is where ``nvlow serve`` calls
``cuInit`` (no CUDA context is created, where 1.0 created one and reset it,
but libcuda opens the device nodes, ``/dev/nvidia-uvm`` included, for the
life of the process; a
``DiscoveryCache`` made with ``use_cuda=False`` never calls it and takes the
NVML answers where NVML has them). The simulated library fills them itself.

Example:
    >>> from nvlow.host.root import HostRoot
    >>> cache = DiscoveryCache(HostRoot("/nonexistent-root"), None, load_uvm=False)
    >>> cache.version_key() is None
    True
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

from ..errors import LibraryError, NvlowError
from ..frozen import replace
from ..model import DriverFiles, Host
from ..records import DriverLibrary, GpuRecord, GpuStatus, PeerLink
from ..host.root import HostRoot

T = TypeVar("T")

VERSION_FILE = "/proc/driver/nvidia/version"
LibraryOpener = Callable[[HostRoot], DriverLibrary]
FilesSelector = Callable[[HostRoot, str, Tuple[str, ...]], DriverFiles]
#: a failed discovery is retried after this many seconds even if the version text is unchanged
ERROR_RETRY_SECONDS = 5.0
#: how much of the version file is compared (the file is a few hundred bytes)
VERSION_KEY_BYTES = 16 * 1024
#: the most answers kept per discovery (the set starts over when full: a client sending endless
#: distinct queries costs recomputation, never memory)
MAX_ANSWERS = 512
#: a status reading whose library calls took less than this (seconds) is "quick": ``nvlow serve`` then
#: reads on its loop thread (:meth:`DiscoveryCache.readings_quick`). A real GPU's reading takes ~20 ms
#: (NVML samples the PCIe counters) and stays on the workers; one call that hangs costs the loop that
#: one reading, after which the measured time sends readings back to the workers.
QUICK_READING_SECONDS = 0.002


@dataclass
class Snapshot:
    """One discovery: the host, NVML's static records and the library used for live status."""

    key: Optional[str]
    host: Host
    records: Tuple[GpuRecord, ...]
    library: Optional[DriverLibrary]
    numa_nodes: Dict[int, Optional[int]] = field(default_factory=dict)
    created: float = 0.0
    #: answers that depend only on this discovery, by request (:meth:`DiscoveryCache.remember`)
    answers: Dict[Any, Any] = field(default_factory=dict)


def _default_files_selector(root: HostRoot, version: str, caps: Tuple[str, ...]) -> DriverFiles:
    from ..host.driverfiles import select_driver_files

    return select_driver_files(root, version, caps)


def _numa_node(root: HostRoot, bus_id: Optional[str]) -> Optional[int]:
    # sysfs spells the domain with 4 lower-case digits, as nvlow's Gpu.bus_id does; 1.0 used
    # NVML's 8-digit form here and so always reported node 0 (docs/host-formats.md, bus ids).
    if not bus_id:
        return None
    text = root.read_text_optional(f"/sys/bus/pci/devices/{bus_id.lower()}/numa_node")
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


class _VersionFile:
    """The version file's text (its first :data:`VERSION_KEY_BYTES`), read on every request through
    one kept descriptor: a ``stat`` of the path that says it is still the same file, then a ``pread``
    (two system calls, where opening, checking and reading it anew takes six). Unloading the kernel
    module removes its procfs entry, and a read through a descriptor of a removed entry fails (EIO), so
    the file is opened again and read; so it is when the path names another file (a ``--root`` tree
    whose file was replaced) or none. The lock keeps a descriptor from being closed while another
    thread reads through it."""

    def __init__(self, root: HostRoot) -> None:
        self._root = root
        self._path = root.host(VERSION_FILE)
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._ident = (0, 0)
        self._last = (b"", "")

    def text(self) -> Optional[str]:
        with self._lock:
            if self._fd is not None:
                data = self._reread(self._fd)
                if data is not None:
                    return self._decode(data)
                self._drop()
            return self._open()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _reread(self, fd: int) -> Optional[bytes]:
        try:
            st = os.stat(self._path)
            if (st.st_dev, st.st_ino) != self._ident:
                return None
            return os.pread(fd, VERSION_KEY_BYTES, 0)
        except OSError:
            return None

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # nothing to keep: the next read opens the file again
                pass

    def _open(self) -> Optional[str]:
        from ..errors import HostError
        from ..host.root import open_regular, read_fd

        try:
            fd = open_regular(self._path)
        except HostError:
            if not self._root.exists(VERSION_FILE):
                return None
            raise
        try:
            st = os.fstat(fd)
            data = read_fd(fd, self._path, VERSION_KEY_BYTES, limit=VERSION_KEY_BYTES)
        except (OSError, HostError):
            os.close(fd)
            raise
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        return self._decode(data)

    def _decode(self, data: bytes) -> str:
        if data != self._last[0]:
            self._last = (data, data.decode("utf-8", "replace"))
        return self._last[1]


class _LibraryUse:
    """Who may call into the open driver library at once: any number of status readings together, or
    one discovery or close alone. NVML is thread-safe (NVML API reference, "Multi-threading": calls may
    be made from several threads at once), and a reading waits ~20 ms per PCIe counter on a real GPU
    (:data:`nvlow.native.probe.SAMPLE_SECONDS`), so readings run side by side as nvidia-docker 1.0's
    did; a library is shut down only when no reading uses it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readings = 0
        self._alone = False
        self._queued = 0  # waiting to be alone: new readings wait behind them (no starving)

    def begin_reading(self) -> None:
        with self._cond:
            while self._alone or self._queued:
                self._cond.wait()
            self._readings += 1

    def end_reading(self) -> None:
        with self._cond:
            self._readings -= 1
            if self._readings == 0:
                self._cond.notify_all()

    def __enter__(self) -> "_LibraryUse":
        """Alone: waits for the readings under way; readings that come meanwhile wait for it."""
        with self._cond:
            self._queued += 1
            while self._alone or self._readings:
                self._cond.wait()
            self._queued -= 1
            self._alone = True
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._alone = False
            self._cond.notify_all()


class DiscoveryCache:
    """Thread-safe cached discovery plus live status for the server's handlers."""

    def __init__(self, root: HostRoot, opener: Optional[LibraryOpener], *, use_nvml: bool = True,
                 load_uvm: bool = True, files_selector: Optional[FilesSelector] = None,
                 clock: Callable[[], float] = time.monotonic,
                 discover_fn: Optional[Callable[..., Host]] = None, use_cuda: bool = True) -> None:
        self.root = root
        self._use_cuda = use_cuda
        self._discover_fn = discover_fn
        self._opener = opener
        self._use_nvml = use_nvml
        self._load_uvm = load_uvm
        self._select_files = files_selector or _default_files_selector
        self._clock = clock
        self._lock = threading.Lock()  # guards rebuilds and the snapshot swap
        self._lib_use = _LibraryUse()  # readings side by side; discovery and close alone
        self._snapshot: Optional[Snapshot] = None
        self._error: Optional[Tuple[Optional[str], float, NvlowError]] = None
        self._files: Dict[Tuple[Optional[str], Tuple[str, ...]], DriverFiles] = {}
        self._version = _VersionFile(root)
        #: how many discoveries ran (tests and /healthz read it)
        self.discoveries = 0
        #: seconds the last status reading spent in the library, and the snapshot it was read from
        self._reading: Tuple[Optional[Snapshot], float] = (None, 0.0)

    def version_key(self) -> Optional[str]:
        """The current text of the kernel module's version file (its first
        :data:`VERSION_KEY_BYTES`; None without a driver). Read on every request (:class:`_VersionFile`)."""
        return self._version.text()

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
            with self._lib_use:
                old.library.close()
        return new

    def host(self) -> Host:
        """The cached :class:`Host`."""
        return self.snapshot().host

    def current(self) -> Optional[Snapshot]:
        """The snapshot when it is that of the running driver, else None; never discovers (one
        read of the version text: what ``nvlow serve`` checks before answering from
        :attr:`Snapshot.answers`)."""
        snap = self._snapshot
        if snap is None:
            return None
        try:
            key = self.version_key()
        except NvlowError:
            return None
        return snap if snap.key == key else None

    def remember(self, snap: Snapshot, key: Any, answer: Any) -> None:
        """Keep ``answer`` in ``snap``'s answers, unless another discovery has replaced ``snap``
        meanwhile (the answer may then describe either)."""
        if self._snapshot is not snap:
            return
        if len(snap.answers) >= MAX_ANSWERS:
            snap.answers.clear()
        snap.answers[key] = answer

    def _discover(self, key: Optional[str]) -> Snapshot:
        if self._discover_fn is not None:
            discover = self._discover_fn
        else:
            from ..host.discover import discover

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
                with self._lib_use:
                    records = complete_records(lib, tuple(lib.gpus()), use_cuda=self._use_cuda)
        except BaseException:
            if lib is not None:
                lib.close()
            raise
        if host.source != "nvml" and lib is not None:
            lib.close()
            lib = None
        if warnings:
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
        lib = snap.library
        self._lib_use.begin_reading()
        start = self._clock()
        try:
            return snap, complete_statuses(lib, tuple(lib.status()))
        finally:
            self._reading = (snap, self._clock() - start)
            self._lib_use.end_reading()

    def readings_quick(self) -> bool:
        """True when a status reading now would take microseconds: the running driver's snapshot is
        the one kept (no discovery) and its last reading's library calls took less than
        :data:`QUICK_READING_SECONDS` (a snapshot without a library reads nothing). Never true before
        the snapshot's first reading; a measurement slowed by a busy machine only says "not quick"."""
        snap = self.current()
        if snap is None:
            return False
        if snap.library is None:
            return True
        read_from, took = self._reading
        return read_from is snap and took < QUICK_READING_SECONDS

    def readings_wait(self) -> bool:
        """True when the current library's status readings mostly wait for the driver (NVML sampling
        the PCIe counters: :attr:`nvlow.native.probe.NativeDriverLibrary.samples_wait`), so that
        readings for several requests are better run side by side."""
        snap = self._snapshot
        return bool(snap is not None and getattr(snap.library, "samples_wait", False))

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
        """Close the driver library and the version file (idempotent)."""
        with self._lock:
            snap, self._snapshot = self._snapshot, None
        self._version.close()
        if snap is not None and snap.library is not None:
            with self._lib_use:
                snap.library.close()


# --- nvidia-docker 1.0's remaining fields, from a native library ---------------

Asker = Callable[..., Any]  # (where, field method, *args) -> value or None


def _native_parts(lib: Any) -> Optional[Tuple[Any, Any, Asker, Callable[[str], None]]]:
    """(Nvml, Cuda or None, asker, reporter) of a native library; None for any other library (the simulated one
    fills these fields itself). The asker is the library's own field helper
    (:meth:`nvlow.native.probe.NativeDriverLibrary.ask`): None for what a GPU lacks, a failure reported
    once in the library's problems, NOT_SUPPORTED not asked again; here libcuda's codes for a missing
    symbol, an unknown attribute or a hidden GPU are silent as well. The reporter adds a line to those
    problems (once)."""
    from ..native.probe import NativeDriverLibrary

    if not isinstance(lib, NativeDriverLibrary):
        return None
    from ..native.cuda import INVALID_DEVICE, INVALID_VALUE

    quiet = (None, INVALID_VALUE, INVALID_DEVICE)

    def ask(where: str, fn: Callable[..., T], *args: Any) -> Optional[T]:
        return lib.ask(where, fn, *args, cuda_quiet=quiet)

    return lib.nvml, lib.cuda, ask, lib.report


def _cuda_devices(cuda: Any, records: Sequence[GpuRecord], ask: Asker, report: Callable[[str], None]
                  ) -> Dict[int, int]:
    """NVML index -> CUdevice, matched by PCI address as 1.0 did (empty when libcuda cannot help).

    GPUs in MIG mode are left out: CUDA enumerates their MIG devices, whose attributes (SM count,
    L2, bus width) are a slice's, not the GPU's.
    """
    from ..native.cuda import NO_DEVICE, CudaError

    try:
        cuda.init()
    except CudaError as exc:
        if exc.code != NO_DEVICE:
            report(f"cuda {exc.function}: {exc.name}")
        return {}
    out: Dict[int, int] = {}
    for rec in records:
        if rec.mig_enabled:
            continue
        dev = ask(f"GPU {rec.index}", cuda.device_by_bus_id, rec.bus_id)
        if dev is not None:
            out[rec.index] = dev
    return out


def _same_bus(a: Optional[str], b: Optional[str]) -> bool:
    from ..host.procfs import parse_bus_id

    return a is not None and b is not None and parse_bus_id(a) is not None and parse_bus_id(a) == parse_bus_id(b)


NvLinks = List[Tuple[int, Optional[str], Optional[int]]]


def _nvlinks_between(mine: Optional[NvLinks], theirs: Optional[NvLinks], their_bus: Optional[str],
                     fabric_p2p: Optional[bool]) -> Optional[int]:
    """Active NVLinks from one GPU to another: straight ones, else (when NVML says NVLink P2P works
    between them) the links both have into the NVSwitch fabric."""
    from ..native.nvml import NVLINK_DEVICE_GPU, NVLINK_DEVICE_SWITCH

    if mine is None:
        return None
    direct = sum(1 for _l, remote, kind in mine if kind in (None, NVLINK_DEVICE_GPU) and _same_bus(remote, their_bus))
    if direct or not fabric_p2p or theirs is None:
        return direct
    return min(sum(1 for _l, _r, kind in links if kind == NVLINK_DEVICE_SWITCH) for links in (mine, theirs))


def complete_records(lib: DriverLibrary, records: Tuple[GpuRecord, ...], *, use_cuda: bool = True
                     ) -> Tuple[GpuRecord, ...]:
    """``records`` with what 1.0 showed and the probe leaves out, for a native library.

    libcuda's device attributes (ECC, shared/constant memory, L2, memory clock and bus width,
    multiprocessor count), ``cuDeviceTotalMem`` and ``cuDeviceCanAccessPeer`` when ``cuInit`` works; else NVML's ECC
    mode, memory bus width, peak memory clock and P2P read status. Every pair's
    ``nvmlDeviceGetTopologyCommonAncestor`` and NVLinks come from NVML. A value already in a
    record is kept. Other libraries' records are returned as they are.
    """
    parts = _native_parts(lib)
    if parts is None or not records:
        return records
    from ..native.nvml import P2P_OK

    nv, cuda, ask, report = parts
    handles = {r.index: ask(f"GPU {r.index}", nv.handle, r.index) for r in records}
    devices = _cuda_devices(cuda, records, ask, report) if cuda is not None and use_cuda else {}
    attrs: Dict[int, Dict[str, Optional[int]]] = {
        i: ask(f"GPU {i}", cuda.attributes, dev) or {} for i, dev in devices.items()}
    totals = {i: ask(f"GPU {i}", cuda.total_memory, dev) for i, dev in devices.items()}
    links: Dict[int, Optional[NvLinks]] = {r.index: ask(f"GPU {r.index}", nv.nvlinks, handles[r.index])
                                           for r in records}
    peers: Dict[int, List[PeerLink]] = {r.index: [] for r in records}
    ordered = sorted(records, key=lambda r: r.index)
    for n, a in enumerate(ordered):
        for b in ordered[n + 1:]:
            where = f"GPU {a.index}/{b.index}"
            ha, hb = handles[a.index], handles[b.index]
            level = ask(where, nv.topology_common_ancestor, ha, hb)
            p2p: Optional[bool]
            if a.index in devices and b.index in devices:
                p2p = ask(where, cuda.can_access_peer, devices[a.index], devices[b.index])
            else:
                status = ask(where, nv.p2p_status, ha, hb, "read")
                p2p = None if status is None else status == P2P_OK
            fabric: Optional[bool] = None
            if links[a.index] and links[b.index]:
                nvl_status = ask(where, nv.p2p_status, ha, hb, "nvlink")
                fabric = None if nvl_status is None else nvl_status == P2P_OK
            nvl_ab = _nvlinks_between(links[a.index], links[b.index], b.bus_id, fabric)
            nvl_ba = _nvlinks_between(links[b.index], links[a.index], a.bus_id, fabric)
            peers[a.index].append(PeerLink(b.index, b.bus_id, level, p2p, nvl_ab))
            peers[b.index].append(PeerLink(a.index, a.bus_id, level, p2p, nvl_ba))

    def keep(current: Optional[T], new: Optional[T]) -> Optional[T]:
        return current if current is not None else new

    out = []
    for rec in records:
        h, at = handles[rec.index], attrs.get(rec.index, {})
        where = f"GPU {rec.index}"
        ecc: Optional[bool] = None
        if at.get("ecc_enabled") is not None:
            ecc = bool(at["ecc_enabled"])
        else:
            mode = ask(where, nv.ecc_mode, h)
            ecc = mode[0] if mode is not None else None
        clock = at.get("memory_clock_rate")
        if clock is None and rec.max_clocks_memory is not None:
            clock = rec.max_clocks_memory * 1000  # NVML's peak memory clock, MHz
        width = at.get("memory_bus_width")
        if width is None:
            width = ask(where, nv.memory_bus_width, h)
        out.append(replace(
            rec,
            multiprocessor_count=keep(rec.multiprocessor_count, at.get("multiprocessor_count")),
            ecc_enabled=keep(rec.ecc_enabled, ecc),
            global_memory=keep(rec.global_memory, totals.get(rec.index)),
            shared_memory_per_sm=keep(rec.shared_memory_per_sm, at.get("shared_memory_per_multiprocessor")),
            constant_memory=keep(rec.constant_memory, at.get("total_constant_memory")),
            l2_cache=keep(rec.l2_cache, at.get("l2_cache_size")),
            memory_clock=keep(rec.memory_clock, clock),
            memory_bus_width=keep(rec.memory_bus_width, width),
            peers=rec.peers or tuple(peers[rec.index]),
        ))
    return tuple(out)


def complete_statuses(lib: DriverLibrary, statuses: Tuple[GpuStatus, ...]) -> Tuple[GpuStatus, ...]:
    """``statuses`` with BAR1 in use and the uncorrected volatile ECC counters (L1, L2, device
    memory; the total over all locations when NVML cannot count device memory alone), for a
    native library; other libraries' statuses are returned as they are."""
    parts = _native_parts(lib)
    if parts is None:
        return statuses
    nv, _cuda, ask, _report = parts
    out = []
    for s in statuses:
        where = f"GPU {s.index}"
        h = ask(where, nv.handle, s.index)
        bar1_used = s.bar1_used
        if bar1_used is None:
            bar1 = ask(where, nv.bar1_memory, h)
            bar1_used = bar1[1] if bar1 is not None else None
        l1, l2, device = s.ecc_errors_l1, s.ecc_errors_l2, s.ecc_errors_device
        if l1 is None:
            l1 = ask(where, nv.memory_error_count, h, "l1")
        if l2 is None:
            l2 = ask(where, nv.memory_error_count, h, "l2")
        if device is None:
            device = ask(where, nv.memory_error_count, h, "device")
        if device is None:
            device = ask(where, nv.total_ecc_errors, h)
        out.append(replace(s, bar1_used=bar1_used, ecc_errors_l1=l1, ecc_errors_l2=l2, ecc_errors_device=device))
    return tuple(out)
