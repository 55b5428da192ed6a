"""The nvlow exception family.

Every failure the core can meet is an :class:`NvlowError`. The CLI prints
``str(err)`` (one line) plus ``err.hint`` when present, and exits with
``err.exit_code``:

====  ==========================================================
code  meaning
====  ==========================================================
1     error (driver, library, host files, engine, I/O)
2     usage or GPU selection error
3     unsatisfied requirement (image needs a newer driver/CUDA)
====  ==========================================================

Example:
    >>> from nvlow.errors import SelectionError
    >>> err = SelectionError("unknown GPU index: 9", hint="nvlow list shows the GPUs")
    >>> (str(err), err.exit_code)
    ('unknown GPU index: 9', 2)
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class NvlowError(Exception):
    """Base of every error nvlow raises on purpose.

    Example:
        >>> isinstance(HostError("x"), NvlowError)
        True
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(NvlowError):
    """Bad command-line or API usage (exit 2)."""

    exit_code = 2


class SelectionError(UsageError):
    """A GPU selection names something that does not exist or is ambiguous (exit 2)."""


class RequirementError(NvlowError):
    """An image requirement is not satisfied by this host (exit 3)."""

    exit_code = 3


class HostError(NvlowError):
    """A host file is missing, unreadable or malformed (names the file)."""


class DriverNotLoaded(HostError):
    """No NVIDIA kernel module is loaded under the host root."""


class LibraryError(NvlowError):
    """A driver library (libnvidia-ml, libcuda) cannot be found or loaded."""


class EngineError(NvlowError):
    """The container engine cannot be reached or answered badly."""


class RemoteError(NvlowError):
    """A remote nvlow/nvidia-docker-plugin host failed or answered badly."""
