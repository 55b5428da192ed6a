"""The CUDA driver API (``libcuda.so.1``) through cffi's out-of-line ABI mode.

nvlow needs little from libcuda: the driver's CUDA version (``cuDriverGetVersion``
works before ``cuInit``, so it is cheap) and per-device facts NVML lacks: the
multiprocessor count and the memory attributes and peer access nvidia-docker 1.0
reported (device attributes and ``cuDeviceCanAccessPeer`` need ``cuInit`` but no
context). Errors go through one funnel, :meth:`Cuda._check`, raising
:class:`CudaError` named with ``cuGetErrorName``.

Example:
    >>> cuda_version_string(12040), cuda_version_string(11080), cuda_version_string(12120)
    ('12.4', '11.8', '12.12')
"""
from __future__ import annotations

from ..errors import LibraryError
from ..host.root import HostRoot
from ._cuda_ffi import ffi as _ffi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Mapping, Optional, Tuple


ffi: Any = _ffi  # cffi ships no type information

REQUIRED: Tuple[str, ...] = ("cuDriverGetVersion",)

INVALID_VALUE = 1
STUB_LIBRARY = 34
NO_DEVICE = 100
INVALID_DEVICE = 101

ATTR_TOTAL_CONSTANT_MEMORY = 9
ATTR_MULTIPROCESSOR_COUNT = 16
ATTR_ECC_ENABLED = 32
ATTR_MEMORY_CLOCK_RATE = 36
ATTR_GLOBAL_MEMORY_BUS_WIDTH = 37
ATTR_L2_CACHE_SIZE = 38
ATTR_COMPUTE_CAPABILITY_MAJOR = 75
ATTR_COMPUTE_CAPABILITY_MINOR = 76
ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81

#: nvlow's name -> CUdevice_attribute, for :meth:`Cuda.attributes`
MEMORY_ATTRIBUTES: Dict[str, int] = {
    "ecc_enabled": ATTR_ECC_ENABLED,  # 0/1
    "shared_memory_per_multiprocessor": ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,  # bytes
    "total_constant_memory": ATTR_TOTAL_CONSTANT_MEMORY,  # bytes
    "l2_cache_size": ATTR_L2_CACHE_SIZE,  # bytes
    "memory_clock_rate": ATTR_MEMORY_CLOCK_RATE,  # peak, kHz
    "memory_bus_width": ATTR_GLOBAL_MEMORY_BUS_WIDTH,  # bits
    "multiprocessor_count": ATTR_MULTIPROCESSOR_COUNT,
}


def cuda_version_string(version: int) -> str:
    """cuDriverGetVersion's integer as "major.minor" (12040 -> "12.4")."""
    return f"{version // 1000}.{(version % 1000) // 10}"


class CudaError(LibraryError):
    """A CUDA driver call failed. ``code`` is the CUresult (None when the
    library lacks the function), ``name`` its CUDA_ERROR_* name."""

    def __init__(self, code: Optional[int], name: str, function: str, message: str,
                 *, hint: Optional[str] = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.name = name
        self.function = function


def _probe(lib: Any, name: str) -> Optional[Callable[..., int]]:
    try:
        return getattr(lib, name)  # type: ignore[no-any-return]
    except (AttributeError, ffi.error):
        return None


class Cuda:
    """A loaded libcuda. :meth:`open` loads it; :meth:`init` (cuInit) is only
    needed for the per-device calls."""

    def __init__(self, lib: Any, path: str) -> None:
        self.path = path
        self._lib = lib
        funcs = {n: _probe(lib, n) for n in dir(lib) if n.startswith("cu") and not n.startswith("cuda")}
        self._funcs: Dict[str, Callable[..., int]] = {n: f for n, f in funcs.items() if f is not None}
        missing = [n for n in REQUIRED if n not in self._funcs]
        if missing:
            raise LibraryError(f"{path} does not export {', '.join(missing)}: not a CUDA driver library",
                               hint="install the NVIDIA driver's libcuda.so.1")
        self._initialized = False

    @classmethod
    def open(cls, root: HostRoot, env: Mapping[str, str]) -> "Cuda":
        """Load ``libcuda.so.1`` under ``root`` (no cuInit)."""
        from .loader import CUDA_SONAME, load_library

        loaded = load_library(ffi, CUDA_SONAME, root, env)
        return cls(loaded.lib, loaded.path)

    def has(self, function: str) -> bool:
        return function in self._funcs

    def error_name(self, code: int) -> str:
        """CUDA_ERROR_* name from cuGetErrorName, else the cdef's enum, else the number."""
        fn = self._funcs.get("cuGetErrorName")
        if fn is not None:
            out = ffi.new("const char **")
            if fn(code, out) == 0 and out[0] != ffi.NULL:
                return str(ffi.string(out[0]).decode("ascii", "replace"))
        name = str(ffi.string(ffi.cast("CUresult", code)))
        return name if not name.lstrip("-").isdigit() else f"CUDA_ERROR_{code}"

    def error_string(self, code: int) -> Optional[str]:
        fn = self._funcs.get("cuGetErrorString")
        if fn is None:
            return None
        out = ffi.new("const char **")
        if fn(code, out) != 0 or out[0] == ffi.NULL:
            return None
        return str(ffi.string(out[0]).decode("utf-8", "replace"))

    def _check(self, rc: int, function: str) -> None:
        if rc == 0:
            return
        name = self.error_name(rc)
        text = self.error_string(rc)
        detail = f"{function}: {name}" + (f", {text}" if text else "")
        hint = None
        if rc == STUB_LIBRARY:
            hint = ("a CUDA toolkit stub libcuda.so was loaded instead of the driver's; "
                    "remove the stub directory from the library search path")
        raise CudaError(rc, name, function, f"CUDA driver call failed ({detail})", hint=hint)

    def _call(self, function: str, *args: Any) -> None:
        fn = self._funcs.get(function)
        if fn is None:
            raise CudaError(None, "symbol missing", function,
                            f"CUDA: {self.path} does not export {function} (older driver)")
        self._check(fn(*args), function)

    def _int(self, function: str, *args: Any) -> int:
        out = ffi.new("int *")
        self._call(function, out, *args)
        return int(out[0])

    def driver_version(self) -> int:
        """cuDriverGetVersion (works without cuInit): 12040 for CUDA 12.4."""
        return self._int("cuDriverGetVersion")

    def init(self) -> None:
        """cuInit(0), once."""
        if not self._initialized:
            self._call("cuInit", 0)
            self._initialized = True

    def device_count(self) -> int:
        return self._int("cuDeviceGetCount")

    def device(self, ordinal: int) -> int:
        out = ffi.new("CUdevice *")
        self._call("cuDeviceGet", out, ordinal)
        return int(out[0])

    def name(self, dev: int) -> str:
        buf = ffi.new("char[]", 256)
        self._call("cuDeviceGetName", buf, 256, dev)
        return str(ffi.string(buf).decode("utf-8", "replace"))

    def attribute(self, dev: int, attribute: int) -> int:
        return self._int("cuDeviceGetAttribute", attribute, dev)

    def compute_capability(self, dev: int) -> Tuple[int, int]:
        return (self.attribute(dev, ATTR_COMPUTE_CAPABILITY_MAJOR),
                self.attribute(dev, ATTR_COMPUTE_CAPABILITY_MINOR))

    def multiprocessor_count(self, dev: int) -> int:
        return self.attribute(dev, ATTR_MULTIPROCESSOR_COUNT)

    def total_memory(self, dev: int) -> int:
        out = ffi.new("size_t *")
        self._call("cuDeviceTotalMem_v2", out, dev)
        return int(out[0])

    def uuid(self, dev: int) -> str:
        """cuDeviceGetUuid_v2 as "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (the MIG UUID's bytes on MIG devices)."""
        out = ffi.new("CUuuid *")
        self._call("cuDeviceGetUuid_v2", out, dev)
        h = bytes(ffi.buffer(out.bytes, 16)).hex()
        return f"GPU-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def pci_bus_id(self, dev: int) -> str:
        """"0000:07:00.0" (CUDA spells the domain with 4 digits)."""
        buf = ffi.new("char[]", 64)
        self._call("cuDeviceGetPCIBusId", buf, 64, dev)
        return str(ffi.string(buf).decode("ascii", "replace"))

    def device_by_bus_id(self, bus_id: str) -> int:
        """The CUdevice at a PCI address, any spelling CUDA takes ("00000000:07:00.0", "0000:07:00.0")."""
        out = ffi.new("CUdevice *")
        self._call("cuDeviceGetByPCIBusId", out, bus_id.encode("ascii"))
        return int(out[0])

    def can_access_peer(self, dev: int, peer: int) -> bool:
        """cuDeviceCanAccessPeer: whether ``dev`` can map ``peer``'s memory (PCIe or NVLink P2P)."""
        out = ffi.new("int *")
        self._call("cuDeviceCanAccessPeer", out, dev, peer)
        return int(out[0]) != 0

    def attributes(self, dev: int, names: Optional[Tuple[str, ...]] = None) -> Dict[str, Optional[int]]:
        """:data:`MEMORY_ATTRIBUTES` of ``dev`` by name (``names`` to ask fewer); an attribute the
        driver does not know (CUDA_ERROR_INVALID_VALUE) is None, any other failure raises."""
        out: Dict[str, Optional[int]] = {}
        for name in names or tuple(MEMORY_ATTRIBUTES):
            try:
                out[name] = self.attribute(dev, MEMORY_ATTRIBUTES[name])
            except CudaError as exc:
                if exc.code != INVALID_VALUE:
                    raise
                out[name] = None
        return out
