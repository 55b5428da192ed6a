"""NVML (``libnvidia-ml.so.1``) through cffi's out-of-line ABI mode.

:class:`Nvml` wraps the versioned C functions declared in ``cdefs/nvml.h`` and
returns plain Python values. Every return code goes through one funnel,
:meth:`Nvml._call` and :func:`nvml_error`, which raise an :class:`NvmlError` (a
:class:`~nvlow.errors.LibraryError`) or the subclass for the codes callers
treat differently. Optional functions are probed once at open: a symbol an
older driver lacks raises :class:`NvmlNotSupported` with code
``NVML_ERROR_FUNCTION_NOT_FOUND`` instead of a cffi error.

Importing this module loads no library (cffi's ``ffi`` is pure data until
``dlopen``).

Example:
    >>> nvml_error(18, "nvmlInit_v2").name
    'NVML_ERROR_LIB_RM_VERSION_MISMATCH'
    >>> type(nvml_error(3, "nvmlDeviceGetPowerUsage")).__name__
    'NvmlNotSupported'
"""
from __future__ import annotations


from ..errors import LibraryError
from ..host.root import HostRoot
from ._nvml_ffi import ffi as _ffi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple, Type

    Handle = Any  # an nvmlDevice_t cdata

ffi: Any = _ffi  # cffi ships no type information

#: functions nvlow cannot work without; the rest are optional (older drivers lack some)
REQUIRED: Tuple[str, ...] = ("nvmlInit_v2", "nvmlShutdown", "nvmlDeviceGetCount_v2",
                             "nvmlDeviceGetHandleByIndex_v2")

SUCCESS = 0
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
INSUFFICIENT_SIZE = 7
DRIVER_NOT_LOADED = 9
FUNCTION_NOT_FOUND = 13
LIB_RM_VERSION_MISMATCH = 18
ARGUMENT_VERSION_MISMATCH = 25

#: codes newer than the cdef's enum (NVML 13.5)
_EXTRA_NAMES = {30: "NVML_ERROR_RESET_TYPE_NOT_SUPPORTED"}

_VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE as unsigned long long

_CLOCKS = {"graphics": 0, "sm": 1, "mem": 2, "memory": 2, "video": 3}
#: nvmlPcieUtilCounter_t (NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES)
_PCIE_COUNTERS = {"tx": 0, "rx": 1}

#: nvmlMemoryLocation_t by nvlow's name (nvidia-docker 1.0 reported l1, l2 and device memory)
_MEMORY_LOCATIONS = {"l1": 0, "l2": 1, "device": 2, "register": 3, "texture": 4, "shared": 5, "cbu": 6,
                     "sram": 7}
#: nvmlGpuP2PCapsIndex_t by nvlow's name
_P2P_CAPS = {"read": 0, "write": 1, "nvlink": 2, "atomics": 3, "pci": 4}

#: NVML_P2P_STATUS_OK: the pair can do what was asked
P2P_OK = 0
#: NVML_NVLINK_MAX_LINKS of the newest header (13.5: 36; 12.9: 18). Links past a driver's own
#: maximum answer INVALID_ARGUMENT, which ends the scan.
NVLINK_MAX_LINKS = 36
#: nvmlIntNvLinkDeviceType_t values
NVLINK_DEVICE_GPU = 0
NVLINK_DEVICE_SWITCH = 2


class NvmlError(LibraryError):
    """An NVML call returned an error. ``code`` is the nvmlReturn_t value,
    ``name`` its NVML_ERROR_* name, ``function`` the C function."""

    def __init__(self, code: int, function: str, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.name = return_name(code)
        self.function = function


class NvmlDriverNotLoaded(NvmlError):
    """NVML_ERROR_DRIVER_NOT_LOADED: no NVIDIA kernel module is running."""


class NvmlLibRmVersionMismatch(NvmlError):
    """NVML_ERROR_LIB_RM_VERSION_MISMATCH: libraries upgraded, kernel module not reloaded."""


class NvmlNoPermission(NvmlError):
    """NVML_ERROR_NO_PERMISSION."""


class NvmlNotSupported(NvmlError):
    """NVML_ERROR_NOT_SUPPORTED, or NVML_ERROR_FUNCTION_NOT_FOUND (the driver lacks the function)."""


class NvmlNotFound(NvmlError):
    """NVML_ERROR_NOT_FOUND (lookup miss, empty MIG slot)."""


class NvmlInsufficientSize(NvmlError):
    """NVML_ERROR_INSUFFICIENT_SIZE: retry with a bigger buffer."""


_CLASSES: Dict[int, Type[NvmlError]] = {
    DRIVER_NOT_LOADED: NvmlDriverNotLoaded,
    LIB_RM_VERSION_MISMATCH: NvmlLibRmVersionMismatch,
    NO_PERMISSION: NvmlNoPermission,
    NOT_SUPPORTED: NvmlNotSupported,
    FUNCTION_NOT_FOUND: NvmlNotSupported,
    NOT_FOUND: NvmlNotFound,
    INSUFFICIENT_SIZE: NvmlInsufficientSize,
}


#: return code -> name, filled as codes are met: ``nvlow serve`` reads status on every request and a
#: GPU answers NOT_SUPPORTED to several fields every time
_NAMES: Dict[int, str] = {}


def return_name(code: int) -> str:
    """The NVML_* name of a return code, without loading the library.

    Example:
        >>> return_name(3), return_name(30), return_name(12345)
        ('NVML_ERROR_NOT_SUPPORTED', 'NVML_ERROR_RESET_TYPE_NOT_SUPPORTED', 'NVML_ERROR_12345')
    """
    known = _NAMES.get(code)
    if known is not None:
        return known
    name = str(ffi.string(ffi.cast("nvmlReturn_t", code)))
    if name.lstrip("-").isdigit():
        name = _EXTRA_NAMES.get(code, f"NVML_ERROR_{code}")
    if len(_NAMES) < 1024:  # codes come from the library: bounded all the same
        _NAMES[code] = name
    return name


def nvml_error(code: int, function: str, description: Optional[str] = None) -> NvmlError:
    """The exception for return code ``code`` of ``function`` (one funnel for every call)."""
    name = return_name(code)
    detail = f"{function}: {name}" + (f", {description}" if description else "")
    if code == LIB_RM_VERSION_MISMATCH:
        # nvidia-docker #737: the driver was upgraded but the old kernel module still runs
        return NvmlLibRmVersionMismatch(
            code, function, f"NVML: Driver/library version mismatch ({detail})",
            hint="reboot, or reload the nvidia kernel modules (rmmod nvidia_uvm nvidia_drm "
                 "nvidia_modeset nvidia; modprobe nvidia) so they match the installed libraries")
    if code == DRIVER_NOT_LOADED:
        return NvmlDriverNotLoaded(code, function, f"NVML: NVIDIA driver is not loaded ({detail})",
                                   hint="install the NVIDIA driver and load it: 'modprobe nvidia'")
    if code == NO_PERMISSION:
        return NvmlNoPermission(code, function, f"NVML: insufficient permissions ({detail})",
                                hint="check the permissions of /dev/nvidiactl and /dev/nvidia*")
    cls = _CLASSES.get(code, NvmlError)
    return cls(code, function, f"NVML call failed ({detail})")


def _probe(lib: Any, name: str) -> Optional[Callable[..., int]]:
    """The C function ``name`` or None; out-of-line ABI libs raise ffi.error, in-line ones AttributeError."""
    try:
        return getattr(lib, name)  # type: ignore[no-any-return]
    except (AttributeError, ffi.error):
        return None


class Nvml:
    """An opened and initialised NVML. Use :meth:`open`, preferably as a context manager.

    ``path`` is the host path of the loaded library, ``capabilities`` the
    declared functions the library exports.
    """

    def __init__(self, lib: Any, path: str) -> None:
        self.path = path
        self._lib = lib
        names = [n for n in dir(lib) if n.startswith("nvml")]
        funcs = {n: _probe(lib, n) for n in names}
        self._funcs: Dict[str, Callable[..., int]] = {n: f for n, f in funcs.items() if f is not None}
        self.capabilities: FrozenSet[str] = frozenset(self._funcs)
        missing = [n for n in REQUIRED if n not in self._funcs]
        if missing:
            raise LibraryError(
                f"{path} does not export {', '.join(missing)}: the NVIDIA driver is too old for nvlow",
                hint="install a newer NVIDIA driver (R450 or later)")
        self._initialized = False
        #: device handles by index, valid until nvmlShutdown (status asks for each GPU's on every reading)
        self._handles: Dict[int, Handle] = {}
        #: nvmlErrorString answers by code (static strings in the library)
        self._error_strings: Dict[int, Optional[str]] = {}

    @classmethod
    def open(cls, root: HostRoot, env: Mapping[str, str]) -> "Nvml":
        """Load ``libnvidia-ml.so.1`` under ``root`` and initialise it."""
        from .loader import NVML_SONAME, load_library

        loaded = load_library(ffi, NVML_SONAME, root, env)
        nv = cls(loaded.lib, loaded.path)
        nv.init()
        return nv

    def __enter__(self) -> "Nvml":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- the funnel --------------------------------------------------------
    def has(self, function: str) -> bool:
        """True when the loaded library exports ``function``."""
        return function in self._funcs

    def error_string(self, code: int) -> Optional[str]:
        """nvmlErrorString of ``code`` (None when the library lacks it)."""
        if code in self._error_strings:
            return self._error_strings[code]
        fn = self._funcs.get("nvmlErrorString")
        if fn is None:
            return None
        text = fn(code)
        value = ffi.string(text).decode("utf-8", "replace") if text != ffi.NULL else None
        if len(self._error_strings) < 1024:
            self._error_strings[code] = value
        return value

    def _call(self, function: str, *args: Any) -> None:
        fn = self._funcs.get(function)
        if fn is None:
            raise NvmlNotSupported(FUNCTION_NOT_FOUND, function,
                                   f"NVML: {self.path} does not export {function} (older driver)")
        rc = fn(*args)
        if rc != SUCCESS:  # the one error funnel (nvml_error) of every NVML call
            raise nvml_error(rc, function, self.error_string(rc))

    def _uint(self, function: str, *args: Any, ctype: str = "unsigned int *") -> int:
        out = ffi.new(ctype)
        self._call(function, *args, out)
        return int(out[0])

    def _string(self, function: str, size: int, *head: Any) -> str:
        buf = ffi.new("char[]", size)
        self._call(function, *head, buf, size)
        return str(ffi.string(buf).decode("utf-8", "replace"))

    # -- lifetime ----------------------------------------------------------
    def init(self) -> None:
        """nvmlInit_v2."""
        self._call("nvmlInit_v2")
        self._handles = {}
        self._initialized = True

    def shutdown(self) -> None:
        """nvmlShutdown (idempotent; errors are ignored, there is nothing left to do)."""
        if self._initialized:
            self._initialized = False
            self._handles = {}
            try:
                self._call("nvmlShutdown")
            except NvmlError:
                pass

    # -- system ------------------------------------------------------------
    def driver_version(self) -> str:
        return self._string("nvmlSystemGetDriverVersion", 80)

    def nvml_version(self) -> str:
        return self._string("nvmlSystemGetNVMLVersion", 80)

    def cuda_driver_version(self) -> int:
        """nvmlSystemGetCudaDriverVersion_v2 (12040 for CUDA 12.4)."""
        return self._uint("nvmlSystemGetCudaDriverVersion_v2", ctype="int *")

    def process_name(self, pid: int) -> str:
        return self._string("nvmlSystemGetProcessName", 1024, pid)

    # -- enumeration and identity -----------------------------------------
    def device_count(self) -> int:
        return self._uint("nvmlDeviceGetCount_v2")

    def handle(self, index: int) -> Handle:
        known = self._handles.get(index)
        if known is not None:
            return known
        out = ffi.new("nvmlDevice_t *")
        self._call("nvmlDeviceGetHandleByIndex_v2", index, out)
        self._handles[index] = out[0]
        return out[0]

    def name(self, h: Handle) -> str:
        return self._string("nvmlDeviceGetName", 96, h)

    def uuid(self, h: Handle) -> str:
        return self._string("nvmlDeviceGetUUID", 96, h)

    def minor(self, h: Handle) -> int:
        return self._uint("nvmlDeviceGetMinorNumber", h)

    def pci_info(self, h: Handle) -> Tuple[str, int]:
        """(bus id as NVML spells it, "00000000:07:00.0"; pciDeviceId = device << 16 | vendor)."""
        info = ffi.new("nvmlPciInfo_t *")
        self._call("nvmlDeviceGetPciInfo_v3", h, info)
        bus_id = ffi.string(info.busId).decode("ascii", "replace")
        return str(bus_id), int(info.pciDeviceId)

    def memory(self, h: Handle) -> Tuple[int, int, Optional[int]]:
        """(total, used, reserved) bytes. ``used`` is what processes allocated, as nvidia-smi's "Used";
        ``reserved`` is what the driver and firmware set aside (None from the pre-R510 query, used when
        the _v2 one is missing, whose ``used`` counts both: nvml.h, nvmlMemory_t)."""
        if self.has("nvmlDeviceGetMemoryInfo_v2"):
            mem = ffi.new("nvmlMemory_v2_t *")
            mem.version = ffi.sizeof("nvmlMemory_v2_t") | (2 << 24)  # NVML_STRUCT_VERSION(Memory, 2)
            self._call("nvmlDeviceGetMemoryInfo_v2", h, mem)
            return int(mem.total), int(mem.used), int(mem.reserved)
        old = ffi.new("nvmlMemory_t *")
        self._call("nvmlDeviceGetMemoryInfo", h, old)
        return int(old.total), int(old.used), None

    def compute_capability(self, h: Handle) -> Tuple[int, int]:
        major, minor = ffi.new("int *"), ffi.new("int *")
        self._call("nvmlDeviceGetCudaComputeCapability", h, major, minor)
        return int(major[0]), int(minor[0])

    def brand(self, h: Handle) -> int:
        """The nvmlBrandType_t value."""
        return self._uint("nvmlDeviceGetBrand", h, ctype="nvmlBrandType_t *")

    def architecture(self, h: Handle) -> int:
        """The nvmlDeviceArchitecture_t value."""
        return self._uint("nvmlDeviceGetArchitecture", h)

    def persistence_mode(self, h: Handle) -> bool:
        return self._uint("nvmlDeviceGetPersistenceMode", h, ctype="nvmlEnableState_t *") == 1

    # -- MIG ---------------------------------------------------------------
    def mig_mode(self, h: Handle) -> Tuple[int, int]:
        """(current, pending); MIG is on when both are 1."""
        cur, pend = ffi.new("unsigned int *"), ffi.new("unsigned int *")
        self._call("nvmlDeviceGetMigMode", h, cur, pend)
        return int(cur[0]), int(pend[0])

    def max_mig_device_count(self, h: Handle) -> int:
        return self._uint("nvmlDeviceGetMaxMigDeviceCount", h)

    def mig_handle(self, h: Handle, index: int) -> Handle:
        out = ffi.new("nvmlDevice_t *")
        self._call("nvmlDeviceGetMigDeviceHandleByIndex", h, index, out)
        return out[0]

    def mig_handles(self, h: Handle) -> List[Tuple[int, Handle]]:
        """(slot, handle) of every populated MIG slot; NOT_FOUND marks an empty slot."""
        out = []
        for slot in range(self.max_mig_device_count(h)):
            try:
                out.append((slot, self.mig_handle(h, slot)))
            except NvmlNotFound:
                continue
        return out

    def gpu_instance_id(self, mig: Handle) -> int:
        return self._uint("nvmlDeviceGetGpuInstanceId", mig)

    def compute_instance_id(self, mig: Handle) -> int:
        return self._uint("nvmlDeviceGetComputeInstanceId", mig)

    # -- info and status ---------------------------------------------------
    def power_usage(self, h: Handle) -> int:
        """Milliwatts."""
        return self._uint("nvmlDeviceGetPowerUsage", h)

    def power_limit(self, h: Handle) -> int:
        """Power management limit in milliwatts."""
        return self._uint("nvmlDeviceGetPowerManagementLimit", h)

    def enforced_power_limit(self, h: Handle) -> int:
        return self._uint("nvmlDeviceGetEnforcedPowerLimit", h)

    def temperature(self, h: Handle) -> int:
        """GPU die temperature (C): nvmlDeviceGetTemperatureV, or the call NVML 13 deprecates."""
        if self.has("nvmlDeviceGetTemperatureV"):
            temp = ffi.new("nvmlTemperature_t *")
            temp.version = ffi.sizeof("nvmlTemperature_t") | (1 << 24)  # NVML_STRUCT_VERSION(Temperature, 1)
            temp.sensorType = 0  # NVML_TEMPERATURE_GPU
            try:
                self._call("nvmlDeviceGetTemperatureV", h, temp)
                return int(temp.temperature)
            except NvmlError as exc:
                if exc.code not in (NOT_SUPPORTED, ARGUMENT_VERSION_MISMATCH) \
                        or not self.has("nvmlDeviceGetTemperature"):
                    raise
        return self._uint("nvmlDeviceGetTemperature", h, 0)

    def utilization(self, h: Handle) -> Tuple[int, int]:
        """(gpu, memory) percent."""
        util = ffi.new("nvmlUtilization_t *")
        self._call("nvmlDeviceGetUtilizationRates", h, util)
        return int(util.gpu), int(util.memory)

    def encoder_utilization(self, h: Handle) -> int:
        return self._util_with_period("nvmlDeviceGetEncoderUtilization", h)

    def decoder_utilization(self, h: Handle) -> int:
        return self._util_with_period("nvmlDeviceGetDecoderUtilization", h)

    def _util_with_period(self, function: str, h: Handle) -> int:
        value, period = ffi.new("unsigned int *"), ffi.new("unsigned int *")
        self._call(function, h, value, period)
        return int(value[0])

    def clock(self, h: Handle, kind: str) -> int:
        """Current clock in MHz; ``kind`` is graphics, sm, mem or video."""
        return self._uint("nvmlDeviceGetClockInfo", h, _CLOCKS[kind])

    def max_clock(self, h: Handle, kind: str) -> int:
        return self._uint("nvmlDeviceGetMaxClockInfo", h, _CLOCKS[kind])

    def pcie_throughput(self, h: Handle, direction: str) -> int:
        """KB/s received (``rx``) or sent (``tx``) over PCIe. NVML samples a byte counter for 20 ms
        per call (nvml.h, nvmlDeviceGetPcieThroughput), so each call takes that long on a real GPU."""
        return self._uint("nvmlDeviceGetPcieThroughput", h, _PCIE_COUNTERS[direction])

    def max_pcie_generation(self, h: Handle) -> int:
        return self._uint("nvmlDeviceGetMaxPcieLinkGeneration", h)

    def max_pcie_width(self, h: Handle) -> int:
        return self._uint("nvmlDeviceGetMaxPcieLinkWidth", h)

    def bar1_memory(self, h: Handle) -> Tuple[int, int]:
        """(total, used) bytes of BAR1."""
        bar1 = ffi.new("nvmlBAR1Memory_t *")
        self._call("nvmlDeviceGetBAR1MemoryInfo", h, bar1)
        return int(bar1.bar1Total), int(bar1.bar1Used)

    def processes(self, h: Handle) -> List[Tuple[int, Optional[int]]]:
        """(pid, used bytes or None) of the compute processes; grows the buffer on INSUFFICIENT_SIZE."""
        size = 32
        for _attempt in range(6):
            count = ffi.new("unsigned int *", size)
            infos = ffi.new("nvmlProcessInfo_t[]", size)
            try:
                self._call("nvmlDeviceGetComputeRunningProcesses_v3", h, count, infos)
            except NvmlInsufficientSize:
                # processes can start between the calls: take what NVML asked for, with room
                size = max(int(count[0]), size) * 2
                continue
            return [(int(infos[i].pid),
                     None if infos[i].usedGpuMemory == _VALUE_NOT_AVAILABLE else int(infos[i].usedGpuMemory))
                    for i in range(min(int(count[0]), size))]
        raise nvml_error(INSUFFICIENT_SIZE, "nvmlDeviceGetComputeRunningProcesses_v3",
                         "the process list kept growing")

    def topology_common_ancestor(self, h1: Handle, h2: Handle) -> int:
        """nvmlGpuTopologyLevel_t: 0 same board ... 50 across CPU sockets."""
        return self._uint("nvmlDeviceGetTopologyCommonAncestor", h1, h2, ctype="nvmlGpuTopologyLevel_t *")

    def numa_node(self, h: Handle) -> int:
        return self._uint("nvmlDeviceGetNumaNodeId", h)

    def cpu_affinity(self, h: Handle, max_cpus: int = 1024) -> Tuple[int, ...]:
        """CPU ids close to the GPU."""
        bits = ffi.sizeof("unsigned long") * 8
        words = (max_cpus + bits - 1) // bits
        mask = ffi.new("unsigned long[]", words)
        self._call("nvmlDeviceGetCpuAffinity", h, words, mask)
        return tuple(w * bits + b for w in range(words) for b in range(bits) if (mask[w] >> b) & 1)

    # -- nvidia-docker 1.0's remaining fields: ECC, memory bus, P2P, NVLink --------
    def ecc_mode(self, h: Handle) -> Tuple[bool, bool]:
        """(current, pending) ECC mode; NOT_SUPPORTED on GPUs without ECC (GeForce)."""
        cur, pend = ffi.new("nvmlEnableState_t *"), ffi.new("nvmlEnableState_t *")
        self._call("nvmlDeviceGetEccMode", h, cur, pend)
        return int(cur[0]) == 1, int(pend[0]) == 1

    def memory_error_count(self, h: Handle, location: str, *, corrected: bool = False,
                           aggregate: bool = False) -> int:
        """ECC errors at ``location`` (l1, l2, device, register, texture, shared, cbu, sram).

        The default is what nvidia-docker 1.0 reported: uncorrected (double bit) errors since
        the driver loaded (volatile).
        """
        out = ffi.new("unsigned long long *")
        self._call("nvmlDeviceGetMemoryErrorCounter", h, int(not corrected), int(aggregate),
                   _MEMORY_LOCATIONS[location], out)
        return int(out[0])

    def total_ecc_errors(self, h: Handle, *, corrected: bool = False, aggregate: bool = False) -> int:
        """ECC errors over every memory location (uncorrected and volatile by default)."""
        out = ffi.new("unsigned long long *")
        self._call("nvmlDeviceGetTotalEccErrors", h, int(not corrected), int(aggregate), out)
        return int(out[0])

    def memory_bus_width(self, h: Handle) -> int:
        """Memory bus width in bits."""
        return self._uint("nvmlDeviceGetMemoryBusWidth", h)

    def p2p_status(self, h1: Handle, h2: Handle, capability: str = "read") -> int:
        """nvmlGpuP2PStatus_t of ``capability`` (read, write, nvlink, atomics, pci) between two GPUs;
        :data:`P2P_OK` when the pair supports it."""
        out = ffi.new("nvmlGpuP2PStatus_t *")
        self._call("nvmlDeviceGetP2PStatus", h1, h2, _P2P_CAPS[capability], out)
        return int(out[0])

    def nvlink_active(self, h: Handle, link: int) -> bool:
        return self._uint("nvmlDeviceGetNvLinkState", h, link, ctype="nvmlEnableState_t *") == 1

    def nvlink_remote_bus_id(self, h: Handle, link: int) -> str:
        """The bus id (NVML spelling) of the device at the far end of ``link``: a GPU or an NVSwitch."""
        info = ffi.new("nvmlPciInfo_t *")
        self._call("nvmlDeviceGetNvLinkRemotePciInfo_v2", h, link, info)
        return str(ffi.string(info.busId).decode("ascii", "replace"))

    def nvlink_remote_type(self, h: Handle, link: int) -> int:
        """nvmlIntNvLinkDeviceType_t at the far end of ``link`` (:data:`NVLINK_DEVICE_GPU`,
        :data:`NVLINK_DEVICE_SWITCH`, ...)."""
        return self._uint("nvmlDeviceGetNvLinkRemoteDeviceType", h, link, ctype="nvmlIntNvLinkDeviceType_t *")

    def nvlinks(self, h: Handle) -> List[Tuple[int, Optional[str], Optional[int]]]:
        """(link, remote bus id, remote device type) of every active NVLink; empty without NVLink.

        A link that does not exist answers NOT_SUPPORTED (skipped); a link number past the
        driver's maximum answers INVALID_ARGUMENT (the end). The remote end's bus id and type
        are None when the driver cannot tell them.
        """
        out: List[Tuple[int, Optional[str], Optional[int]]] = []
        for link in range(NVLINK_MAX_LINKS):
            try:
                if not self.nvlink_active(h, link):
                    continue
            except NvmlError as exc:
                if exc.code == NOT_SUPPORTED:
                    continue
                if exc.code == INVALID_ARGUMENT:
                    break
                raise
            remote: Optional[str] = None
            kind: Optional[int] = None
            try:
                remote = self.nvlink_remote_bus_id(h, link)
            except NvmlNotSupported:
                pass
            try:
                kind = self.nvlink_remote_type(h, link)
            except NvmlNotSupported:
                pass
            out.append((link, remote, kind))
        return out
