"""The native :class:`~nvlow.records.DriverLibrary`: NVML plus libcuda, as plain records.

Every per-field failure (NOT_SUPPORTED, NOT_FOUND, a lost GPU, a function an
older driver lacks) becomes ``None`` in the record: one bad field or one bad
device never kills the whole answer. Failures other than "not supported" and
"not found" are kept in :attr:`NativeDriverLibrary.problems` for ``doctor`` (each line once). A field
NVML answers NOT_SUPPORTED (or whose function the driver lacks) is not asked again while the library
is open: a GPU or driver without a feature keeps lacking it, and ``nvlow serve`` reads status on every
request.

Example (no driver needed):
    >>> brand_token(14), brand_token(5), brand_token(99), architecture_token(9)
    ('nvidia', 'geforce', 'unknown', 'hopper')
"""
from __future__ import annotations

import _thread
from time import monotonic

from ..errors import LibraryError
from ..host.procfs import parse_bus_id
from ..records import GpuRecord, GpuStatus, MigRecord, ProcessRecord, SystemInfo
from ..host.root import HostRoot
from .cuda import Cuda, CudaError, cuda_version_string
from .nvml import FUNCTION_NOT_FOUND, NOT_FOUND, NOT_SUPPORTED, UNINITIALIZED, Nvml, NvmlError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, TypeVar

    T = TypeVar("T")

# nvmlBrandType_t -> NVIDIA_REQUIRE_* brand token (NVML API reference; docs/host-formats.md)
_BRANDS = ("unknown", "quadro", "tesla", "nvs", "grid", "geforce", "titan", "vapps", "vpc", "vcs", "vws",
           "cloudgaming", "quadrortx", "nvidiartx", "nvidia", "geforcertx", "titanrtx", "dla", "vgamedev", "npu")

# nvmlDeviceArchitecture_t (NVML_DEVICE_ARCH_*)
_ARCHITECTURES = {2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada",
                  9: "hopper", 10: "blackwell", 11: "dla", 12: "dla2", 13: "rubin", 15: "npu3"}

#: what :meth:`NativeDriverLibrary.gpus` asks NVML for: ``all`` (every field of a GpuRecord) or
#: ``plan`` (what a plan uses: minor, UUID, name, PCI bus id, brand, architecture and compute
#: capability for requirements, MIG mode and MIG devices' UUID/GI/CI/name; no memory, power,
#: clocks, BAR1, NUMA or PCIe link queries, and libcuda is not loaded)
FIELD_LEVELS = ("all", "plan")

#: codes that mean "this GPU or driver does not have it": remembered, not asked again
_UNSUPPORTED = (NOT_SUPPORTED, FUNCTION_NOT_FOUND)
#: bounds of what an open library remembers (problem lines; unsupported field calls)
MAX_PROBLEMS = 256
MAX_UNSUPPORTED = 4096
#: NVML's PCIe throughput counters sample the link for 20 ms per call (nvml.h,
#: nvmlDeviceGetPcieThroughput), so reading rx and tx of 8 GPUs in turn takes 8 x 2 x 20 ms. A status
#: reading samples them all at once, one thread each (NVML is thread-safe; cffi releases the GIL during
#: the call): ~20 ms for any number of GPUs. When even the quickest of those samples took less than this
#: many seconds the library does not sample (a stand-in): later readings call it in turn, without threads.
SAMPLE_SECONDS = 0.010


def brand_token(value: int) -> str:
    """Lower-case brand token of an nvmlBrandType_t value ("unknown" for new values)."""
    return _BRANDS[value] if 0 <= value < len(_BRANDS) else "unknown"


def architecture_token(value: int) -> str:
    """Lower-case architecture name of an nvmlDeviceArchitecture_t value."""
    return _ARCHITECTURES.get(value, "unknown")


class NativeDriverLibrary:
    """NVML (required) and libcuda (optional) behind the DriverLibrary protocol.

    ``cuda_devices=True`` also calls cuInit for facts only CUDA has
    (multiprocessor count); cuInit wakes every GPU, so it is off by default.
    """

    def __init__(self, nvml: Nvml, cuda: Optional[Cuda] = None, *, cuda_devices: bool = False,
                 fields: str = "all") -> None:
        if fields not in FIELD_LEVELS:
            raise ValueError(f"fields must be one of {FIELD_LEVELS}, not {fields!r}")
        self.nvml = nvml
        self.cuda = cuda
        self.cuda_devices = cuda_devices
        #: ``all`` (info, status, serve) or ``plan`` (args/exec: identity, brand/arch, MIG; see FIELD_LEVELS)
        self.fields = fields
        self.loaded_paths: Tuple[str, ...] = (nvml.path,) + ((cuda.path,) if cuda else ())
        #: one line per unexpected field failure ("GPU 3 nvmlDeviceGetPowerUsage: NVML_ERROR_GPU_IS_LOST")
        self.problems: List[str] = []
        self._reported: Set[str] = set()
        self._report_lock = _thread.allocate_lock()
        #: (field method, arguments) that answered NOT_SUPPORTED or whose function is missing
        self._unsupported: Set[Tuple[Any, ...]] = set()
        #: whether a status reading waits for the PCIe counters' samples (a real GPU: serve then runs
        #: readings of several requests side by side) or they answer at once (read in turn, without
        #: threads; see SAMPLE_SECONDS); None until the first reading
        self.samples_wait: Optional[bool] = None
        self._closed = False

    @classmethod
    def open(cls, root: HostRoot, env: Mapping[str, str], *, cuda_devices: bool = False,
             fields: str = "all") -> "NativeDriverLibrary":
        """Load and initialise NVML under ``root``; load libcuda when present (its absence is not
        an error) unless ``fields="plan"``, where NVML's own CUDA version is enough."""
        nv = Nvml.open(root, env)
        cuda: Optional[Cuda] = None
        if fields != "plan":
            try:
                cuda = Cuda.open(root, env)
            except LibraryError:
                cuda = None
        return cls(nv, cuda, cuda_devices=cuda_devices, fields=fields)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.nvml.shutdown()

    def __enter__(self) -> "NativeDriverLibrary":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- field helpers -----------------------------------------------------
    def report(self, line: str) -> None:
        """Keep one unexpected failure in :attr:`problems`, once (status is read again and again;
        field calls may come from several threads)."""
        with self._report_lock:
            if line not in self._reported and len(self._reported) < MAX_PROBLEMS:
                self._reported.add(line)
                self.problems.append(line)

    def ask(self, where: str, fn: Callable[..., T], *args: Any,
            cuda_quiet: Tuple[Optional[int], ...] = ()) -> Optional[T]:
        """``fn(*args)`` (a field method of :attr:`nvml` or :attr:`cuda`), or None when it cannot answer
        or an argument is None (what an earlier call could not give). NOT_SUPPORTED and a missing
        function are remembered and not asked again; NOT_FOUND and the CUDA codes in ``cuda_quiet`` are
        silent; any other failure is a line in :attr:`problems` (``where`` names the GPU)."""
        if None in args:
            return None
        key = (fn, args)  # bound methods compare by object and function
        if key in self._unsupported:
            return None
        try:
            return fn(*args)
        except NvmlError as exc:
            if exc.code == UNINITIALIZED:
                raise
            if exc.code in _UNSUPPORTED:
                if len(self._unsupported) < MAX_UNSUPPORTED:
                    self._unsupported.add(key)
            elif exc.code != NOT_FOUND:
                self.report(f"{where} {exc.function}: {exc.name}")
            return None
        except CudaError as exc:
            if exc.code not in cuda_quiet:
                self.report(f"{where} {exc.function}: {exc.name}")
            return None

    # -- DriverLibrary -----------------------------------------------------
    def system(self) -> SystemInfo:
        nv = self.nvml
        cuda_version: Optional[int] = None
        if self.cuda is not None:
            cuda_version = self.ask("system", self.cuda.driver_version)
        if cuda_version is None:
            cuda_version = self.ask("system", nv.cuda_driver_version)
        return SystemInfo(
            driver_version=self.ask("system", nv.driver_version),
            nvml_version=self.ask("system", nv.nvml_version) if self.fields == "all" else None,
            cuda_version=cuda_version_string(cuda_version) if cuda_version else None,
        )

    def _cuda_sm_counts(self) -> Dict[Tuple[int, int, int, int], int]:
        """multiprocessor count per PCI address, from CUDA (empty when unavailable)."""
        cuda = self.cuda
        if cuda is None or not self.cuda_devices:
            return {}
        out: Dict[Tuple[int, int, int, int], int] = {}
        try:
            cuda.init()
            for ordinal in range(cuda.device_count()):
                dev = cuda.device(ordinal)
                key = parse_bus_id(cuda.pci_bus_id(dev))
                if key is not None and key not in out:
                    out[key] = cuda.multiprocessor_count(dev)
        except CudaError as exc:
            if exc.code != 100:  # CUDA_ERROR_NO_DEVICE: nothing to add
                self.report(f"cuda {exc.function}: {exc.name}")
        return out

    def gpus(self) -> Tuple[GpuRecord, ...]:
        nv = self.nvml
        sm_counts = self._cuda_sm_counts()
        out = []
        for index in range(nv.device_count()):
            where = f"GPU {index}"
            h = self.ask(where, nv.handle, index)
            if h is None:
                out.append(GpuRecord(index=index, minor=None, uuid=None, name=None, bus_id=None))
                continue
            pci = self.ask(where, nv.pci_info, h)
            cc = self.ask(where, nv.compute_capability, h)
            brand = self.ask(where, nv.brand, h)
            arch = self.ask(where, nv.architecture, h)
            mig = self.ask(where, nv.mig_mode, h)
            # the identity every field level asks for (the plan's level asks nothing more)
            ident: Dict[str, Any] = dict(
                index=index,
                minor=self.ask(where, nv.minor, h),
                uuid=self.ask(where, nv.uuid, h),
                name=self.ask(where, nv.name, h),
                bus_id=pci[0] if pci else None,
                pci_device_id=pci[1] if pci else None,
                brand=brand_token(brand) if brand is not None else None,
                architecture=architecture_token(arch) if arch is not None else None,
                compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
                mig_enabled=(mig[0] == 1 and mig[1] == 1) if mig else None,
                mig_pending=(mig[0] != mig[1]) if mig else None,
                mig_devices=self._mig_records(where, h) if mig and mig[0] == 1 else (),
            )
            if self.fields == "plan":
                out.append(GpuRecord(**ident))
                continue
            memory = self.ask(where, nv.memory, h)
            bar1 = self.ask(where, nv.bar1_memory, h)
            power_limit = self.ask(where, nv.power_limit, h)
            if power_limit is None:
                power_limit = self.ask(where, nv.enforced_power_limit, h)
            key = parse_bus_id(pci[0]) if pci else None
            out.append(GpuRecord(
                **ident,
                memory_total=memory[0] if memory else None,
                persistence_mode=self.ask(where, nv.persistence_mode, h),
                power_limit=power_limit,
                max_clocks_sm=self.ask(where, nv.max_clock, h, "sm"),
                max_clocks_memory=self.ask(where, nv.max_clock, h, "mem"),
                multiprocessor_count=sm_counts.get(key) if key else None,
                numa_node=self.ask(where, nv.numa_node, h),
                pcie_max_generation=self.ask(where, nv.max_pcie_generation, h),
                pcie_max_width=self.ask(where, nv.max_pcie_width, h),
                bar1_total=bar1[0] if bar1 else None,
            ))
        return tuple(out)

    def _mig_records(self, where: str, h: Any) -> Tuple[MigRecord, ...]:
        nv = self.nvml
        handles = self.ask(where, nv.mig_handles, h) or []
        out = []
        for slot, mh in handles:
            mwhere = f"{where} MIG {slot}"
            memory = self.ask(mwhere, nv.memory, mh) if self.fields == "all" else None
            out.append(MigRecord(
                index=slot,
                uuid=self.ask(mwhere, nv.uuid, mh),
                gpu_instance_id=self.ask(mwhere, nv.gpu_instance_id, mh),
                compute_instance_id=self.ask(mwhere, nv.compute_instance_id, mh),
                name=self.ask(mwhere, nv.name, mh),
                memory_total=memory[0] if memory else None,
            ))
        return tuple(out)

    def status(self) -> Tuple[GpuStatus, ...]:
        nv = self.nvml
        handles = [self.ask(f"GPU {index}", nv.handle, index) for index in range(nv.device_count())]
        pcie = self._sample_pcie(handles)
        readings: List[Optional[Dict[str, Any]]] = []  # every other field while the PCIe counters sample
        for index, h in enumerate(handles):
            where = f"GPU {index}"
            if h is None:
                readings.append(None)
                continue
            util = self.ask(where, nv.utilization, h)
            memory = self.ask(where, nv.memory, h)
            power_limit = self.ask(where, nv.power_limit, h)
            if power_limit is None:
                power_limit = self.ask(where, nv.enforced_power_limit, h)
            procs = self.ask(where, nv.processes, h) or []
            readings.append(dict(
                index=index,
                power_usage=self.ask(where, nv.power_usage, h),
                power_limit=power_limit,
                temperature=self.ask(where, nv.temperature, h),
                utilization_gpu=util[0] if util else None,
                utilization_memory=util[1] if util else None,
                utilization_encoder=self.ask(where, nv.encoder_utilization, h),
                utilization_decoder=self.ask(where, nv.decoder_utilization, h),
                memory_used=memory[1] if memory else None,
                memory_total=memory[0] if memory else None,
                memory_reserved=memory[2] if memory else None,
                clock_sm=self.ask(where, nv.clock, h, "sm"),
                clock_memory=self.ask(where, nv.clock, h, "mem"),
                processes=tuple(
                    ProcessRecord(pid=pid, name=self.ask(where, nv.process_name, pid), used_memory=used)
                    for pid, used in procs),
            ))
        out = []
        for index, fields in enumerate(readings):
            if fields is None:
                out.append(GpuStatus(index=index))
                continue
            rx, tx = pcie(index)
            out.append(GpuStatus(**fields, pcie_rx=rx, pcie_tx=tx))
        return tuple(out)

    def _sample_pcie(self, handles: List[Any]) -> Callable[[int], Tuple[Optional[int], Optional[int]]]:
        """Start sampling every GPU's PCIe rx and tx (:data:`SAMPLE_SECONDS`: all at once, on threads);
        returns ``(index) -> (rx, tx)``, which waits for every sample."""
        nv = self.nvml
        if self.samples_wait is False:
            return lambda index: (self.ask(f"GPU {index}", nv.pcie_throughput, handles[index], "rx"),
                                  self.ask(f"GPU {index}", nv.pcie_throughput, handles[index], "tx"))
        got: Dict[Tuple[int, str], Optional[int]] = {}
        took: List[float] = []
        failed: List[BaseException] = []
        threads: List[Any] = []
        jobs = [(i, h, d) for i, h in enumerate(handles) if h is not None for d in ("rx", "tx")]

        def sample(index: int, h: Any, direction: str) -> None:
            start = monotonic()
            try:
                got[(index, direction)] = self.ask(f"GPU {index}", nv.pcie_throughput, h, direction)
            except BaseException as exc:  # noqa: BLE001 - UNINITIALIZED: raised again by the reader
                failed.append(exc)
            took.append(monotonic() - start)

        if len(jobs) < 2:
            for job in jobs:
                sample(*job)
        else:
            import threading

            threads = [threading.Thread(target=sample, args=job, daemon=True) for job in jobs]
            for t in threads:
                t.start()

        def result(index: int) -> Tuple[Optional[int], Optional[int]]:
            while threads:
                threads.pop().join()
                if not threads:
                    self.samples_wait = min(took) >= SAMPLE_SECONDS
            if failed:
                raise failed[0]
            return got.get((index, "rx")), got.get((index, "tx"))

        return result


def open_native_library(root: HostRoot, env: Mapping[str, str], *, cuda_devices: bool = False,
                        fields: str = "all") -> NativeDriverLibrary:
    """Open NVML (and libcuda when present) under ``root``; raises LibraryError (or an
    NvmlError subclass) when NVML cannot be loaded or initialised. ``fields``: see :data:`FIELD_LEVELS`."""
    return NativeDriverLibrary.open(root, env, cuda_devices=cuda_devices, fields=fields)


def read_cuda_version(root: HostRoot, env: Mapping[str, str]) -> Optional[str]:
    """The driver's CUDA version from libcuda's cuDriverGetVersion alone (no NVML, no cuInit);
    None when libcuda cannot be loaded or answer."""
    try:
        cuda = Cuda.open(root, env)
        return cuda_version_string(cuda.driver_version())
    except LibraryError:
        return None
