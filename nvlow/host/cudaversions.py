"""The CUDA version a Linux driver supports, from NVIDIA's published minimum-driver table.

Used when libcuda cannot be asked (``--no-nvml``, a broken or missing
libcuda): the driver version from /proc still tells which CUDA version the
driver supports, so image requirements can be checked instead of reporting
nvidia-docker 1.0's ``driver 0.0`` (NVIDIA/nvidia-docker #190, #357, #384).
Source: the "CUDA Toolkit and Corresponding Driver Versions" table of the CUDA
release notes (minimum Linux x86_64 driver of each toolkit's GA release).

Example:
    >>> cuda_for_driver("550.54.15")
    '12.4'
    >>> cuda_for_driver("535.129.03")
    '12.2'
    >>> cuda_for_driver("304.88") is None
    True
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple


#: (minimum driver version, CUDA version), newest first
MINIMUM_DRIVER: Tuple[Tuple[Tuple[int, ...], str], ...] = (
    ((580, 65, 6), "13.0"),
    ((575, 51, 3), "12.9"),
    ((570, 26), "12.8"),
    ((560, 28, 3), "12.6"),
    ((555, 42, 2), "12.5"),
    ((550, 54, 14), "12.4"),
    ((545, 23, 6), "12.3"),
    ((535, 54, 3), "12.2"),
    ((530, 30, 2), "12.1"),
    ((525, 60, 13), "12.0"),
    ((520, 61, 5), "11.8"),
    ((515, 43, 4), "11.7"),
    ((510, 39, 1), "11.6"),
    ((495, 29, 5), "11.5"),
    ((470, 42, 1), "11.4"),
    ((465, 19, 1), "11.3"),
    ((460, 27, 3), "11.2"),
    ((455, 23, 5), "11.1"),
    ((450, 36, 6), "11.0"),
    ((440, 33), "10.2"),
    ((418, 39), "10.1"),
    ((410, 48), "10.0"),
    ((396, 26), "9.2"),
    ((390, 46), "9.1"),
    ((384, 81), "9.0"),
    ((375, 26), "8.0"),
)


def _parse(version: str) -> Optional[Tuple[int, ...]]:
    """The parts of a dotted driver version: ASCII digits, at most 10 significant each (None otherwise)."""
    from ..text import number_or_none

    parts = [number_or_none(p, max_digits=10) for p in version.strip().split(".")]
    return tuple(p for p in parts if p is not None) if all(p is not None for p in parts) else None


def cuda_for_driver(driver_version: str) -> Optional[str]:
    """Highest CUDA version whose minimum driver is ``<= driver_version`` (None if unknown)."""
    parsed = _parse(driver_version)
    if not parsed:
        return None
    for minimum, cuda in MINIMUM_DRIVER:
        if parsed >= minimum:
            return cuda
    return None
