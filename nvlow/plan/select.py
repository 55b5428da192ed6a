"""GPU selection: one resolver for every command, every syntax and every source.

Which source selects (the engine ``--gpus`` flag, nvlow's ``--gpus``,
``NVIDIA_VISIBLE_DEVICES``, ``NV_GPU``, the image, ...) is decided by
:func:`nvlow.plan.request.selection_choice`; this module resolves the chosen text
against the host's GPUs (:func:`resolve_choice`).

Tokens understood (comma separated; NV_GPU also space separated):
``all``, ``none``, ``void``, an index ``2``, a MIG index ``0:1`` (GPU 0, MIG
slot 1), a GPU UUID or unambiguous UUID prefix ``GPU-3b2c...``, a MIG UUID
``MIG-...``, and a PCI bus id in any common spelling (``00000000:07:00.0``,
``0000:07:00.0``, ``7:0.0``).

Example:
    >>> from nvlow.model import Gpu
    >>> host_gpus = (Gpu(0, 0, "GPU-aaaa", "0000:07:00.0", "A100"), Gpu(1, 1, "GPU-bbbb", "0000:0f:00.0", "A100"))
    >>> sel = select_gpus(host_gpus, "1,GPU-aa")
    >>> [g.index for g in sel.gpus]
    [0, 1]
"""
from __future__ import annotations


from ..frozen import Record
from ..errors import SelectionError
from ..model import Gpu, MigDevice
from ..text import is_ascii_digits, lazy_re, parse_number, printable

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import List, Optional, Sequence, Tuple

    from .request import SelectionChoice

_SHORT_BUS_RE = lazy_re(r"^([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])\Z")
_MIG_INDEX_RE = lazy_re(r"^([0-9]+):([0-9]+)\Z")
# The MIG UUID form of drivers R450-R465: MIG-<parent GPU UUID>/<GI>/<CI> (toolkit README).
_OLD_MIG_UUID_RE = lazy_re(r"^MIG-(GPU-[0-9A-Fa-f-]+)/([0-9]+)/([0-9]+)\Z")
#: digits an index, MIG slot or instance id may have (leading zeros aside)
_MAX_INDEX_DIGITS = 10
# A CDI-qualified name (vendor/class=device), which the NVIDIA Container Toolkit accepts in
# NVIDIA_VISIBLE_DEVICES: "-e NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=all" (its CDI docs).
_CDI_NAME_RE = lazy_re(r"^[A-Za-z0-9][A-Za-z0-9.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*=(\S+)$")
_HINT = "'nvlow list --json' or 'nvlow info' shows the GPUs, their UUIDs and MIG devices"


class Selection(Record):
    """The GPUs and MIG devices a container gets.

    ``mode`` is ``devices`` (normal), ``none`` (driver files but no GPU, like
    NVIDIA_VISIBLE_DEVICES=none) or ``void`` (nothing at all is injected).

    Example:
        >>> Selection(()).mode
        'devices'
    """

    gpus: Tuple[Gpu, ...]
    mig_devices: Tuple[MigDevice, ...] = ()
    mode: str = "devices"
    source: str = "default"
    spec: str = "all"

    @property
    def is_void(self) -> bool:
        return self.mode == "void"

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return {
            "mode": self.mode,
            "source": self.source,
            "spec": self.spec,
            "gpus": [g.index for g in self.gpus],
            "mig_devices": [m.uuid or m.name_for_index for m in self.mig_devices],
        }


def _bus_key(text: str) -> Optional[Tuple[int, int, int, int]]:
    """A bus id in any spelling procfs knows, or without a domain (``7:00.0``, domain 0)."""
    from ..host.procfs import parse_bus_id

    full = parse_bus_id(text)
    if full is not None:
        return full
    m = _SHORT_BUS_RE.match(text)
    if m:
        return (0, int(m.group(1), 16), int(m.group(2), 16), int(m.group(3)))  # 1-2 ASCII hex digits each
    return None


def _index(text: str, what: str) -> int:
    """A GPU index, MIG slot or instance id: ASCII digits only; a SelectionError naming ``what``."""
    return parse_number(text, what, max_digits=_MAX_INDEX_DIGITS, error=SelectionError)


def _split(spec: str, *, spaces: bool) -> List[str]:
    if spaces:  # commas and any whitespace separate, as the regular expression [,\s]+ would
        return spec.replace(",", " ").split()
    return [t.strip() for t in spec.split(",") if t.strip()]


def _by_uuid(gpus: Sequence[Gpu], token: str) -> Tuple[Optional[Gpu], Optional[MigDevice]]:
    low = token.lower()
    matches: List[Tuple[Optional[Gpu], Optional[MigDevice]]] = []
    for g in gpus:
        if g.uuid and g.uuid.lower().startswith(low):
            if g.uuid.lower() == low:
                return g, None
            matches.append((g, None))
        for m in g.mig_devices:
            if m.uuid and m.uuid.lower().startswith(low):
                if m.uuid.lower() == low:
                    return None, m
                matches.append((None, m))
    if len(matches) > 1:
        names = ", ".join((g.uuid if g else (m.uuid if m else None)) or "?" for g, m in matches[:4])
        raise SelectionError(f"ambiguous GPU UUID prefix {token!r} matches {names}", hint="give more characters of the UUID")
    if not matches:
        raise SelectionError(f"unknown GPU UUID: {printable(token)}", hint=_HINT)
    return matches[0]


def _old_mig(gpus: Sequence[Gpu], token: str, parent_uuid: str, gi: int, ci: int) -> MigDevice:
    parent = next((g for g in gpus if g.uuid and g.uuid.lower() == parent_uuid.lower()), None)
    if parent is None:
        raise SelectionError(f"unknown GPU UUID in MIG device {printable(token)}", hint=_HINT)
    for mig in parent.mig_devices:
        if mig.gpu_instance_id == gi and mig.compute_instance_id == ci:
            return mig
    raise SelectionError(f"unknown MIG device {printable(token)}: GPU {parent.index} has no GPU instance {gi} "
                         f"with compute instance {ci}", hint=_HINT)


def _resolve_token(gpus: Sequence[Gpu], token: str) -> Tuple[Optional[Gpu], Optional[MigDevice]]:
    if is_ascii_digits(token):
        idx = _index(token, "GPU index")
        for g in gpus:
            if g.index == idx:
                return g, None
        raise SelectionError(f"unknown GPU index: {printable(token)} (this host has {len(gpus)} GPU{'s' if len(gpus) != 1 else ''})", hint=_HINT)
    m = _MIG_INDEX_RE.match(token)
    if m:
        gidx, slot = _index(m.group(1), "GPU index"), _index(m.group(2), "MIG device index")
        parent = next((g for g in gpus if g.index == gidx), None)
        if parent is None:
            raise SelectionError(f"unknown GPU index in MIG device {printable(token)}", hint=_HINT)
        if not parent.mig_enabled:
            raise SelectionError(f"MIG device {printable(token)} requested but GPU {gidx} is not in MIG mode",
                                 hint=_HINT)
        for mig in parent.mig_devices:
            if mig.index == slot:
                return None, mig
        raise SelectionError(f"unknown MIG device {printable(token)}: GPU {gidx} has no MIG device in slot {slot}",
                             hint=_HINT)
    upper = token.upper()
    old = _OLD_MIG_UUID_RE.match(token)
    if old is not None:
        return None, _old_mig(gpus, token, old.group(1), _index(old.group(2), "GPU instance id"),
                              _index(old.group(3), "compute instance id"))
    if upper.startswith("GPU-") or upper.startswith("MIG-"):
        if len(token) <= 4:
            raise SelectionError(f"incomplete GPU UUID: {printable(token)}", hint=_HINT)
        return _by_uuid(gpus, token)
    key = _bus_key(token)
    if key is not None:
        for g in gpus:
            if g.bus_id and _bus_key(g.bus_id) == key:
                return g, None
        raise SelectionError(f"unknown GPU PCI bus id: {printable(token)}", hint=_HINT)
    raise SelectionError(f"invalid GPU identifier: {token!r}", hint="use all, none, an index, a GPU-/MIG- UUID, a PCI bus id or GPU:MIG")


def _cdi_device(token: str) -> str:
    """The device part of a CDI-qualified name (``nvidia.com/gpu=0`` -> ``0``); other tokens unchanged."""
    m = _CDI_NAME_RE.match(token)
    return m.group(1) if m else token


def select_gpus(gpus: Sequence[Gpu], spec: str, *, source: str = "--gpus", nv_gpu: bool = False) -> Selection:
    """Resolve a selection string against the host's GPUs.

    ``nv_gpu`` selects nvidia-docker 1.0's NV_GPU grammar (spaces allowed as
    separators; only indices and UUID prefixes).

    Example:
        >>> select_gpus((), "void").mode
        'void'
    """
    text = spec.strip()
    if not nv_gpu and "/" in text:
        text = ",".join(_cdi_device(t.strip()) for t in text.split(","))
    low = text.lower()
    if low in ("", "all"):
        if not text and not nv_gpu:
            raise SelectionError(f"empty GPU selection from {source}", hint="use all, none or a list of GPUs")
        return _all(gpus, source, spec)
    if low == "none":
        return Selection((), (), "none", source, spec)
    if low == "void":
        return Selection((), (), "void", source, spec)
    chosen_gpus: List[Gpu] = []
    chosen_migs: List[MigDevice] = []
    for token in _split(text, spaces=nv_gpu):
        if token.lower() in ("all", "none", "void"):
            raise SelectionError(f"{token!r} cannot be combined with other GPUs in {spec!r}")
        if nv_gpu and not (is_ascii_digits(token) or token.upper().startswith("GPU-")):
            raise SelectionError(f"invalid device in NV_GPU: {printable(token)}",
                                 hint="NV_GPU takes indices or GPU-UUID prefixes")
        g, m = _resolve_token(gpus, token)
        if g is not None and g not in chosen_gpus:
            chosen_gpus.append(g)
        if m is not None and m not in chosen_migs:
            chosen_migs.append(m)
    chosen_gpus.sort(key=lambda g: g.index)
    chosen_migs.sort(key=lambda m: (m.parent_index, m.index))
    return Selection(tuple(chosen_gpus), tuple(chosen_migs), "devices", source, spec)


def select_count(gpus: Sequence[Gpu], count: int, *, source: str = "docker --gpus") -> Selection:
    """The first ``count`` GPUs in index order (docker ``--gpus N``; ``-1`` = all)."""
    if count < 0:
        return _all(gpus, source, "all")
    if count > len(gpus):
        raise SelectionError(
            f"--gpus {count} requested but this host has {len(gpus)} GPU{'s' if len(gpus) != 1 else ''}",
            hint=_HINT,
        )
    return Selection(tuple(gpus[:count]), (), "devices", source, str(count))


def _all(gpus: Sequence[Gpu], source: str, spec: str) -> Selection:
    """Every GPU and every MIG device with its access nodes: libnvidia-container selects all MIG
    devices with ``all`` (``src/cli/common.c``, select_devices), so a MIG host's ``all`` container
    can use them; a MIG device whose caps nodes are missing is left out (the plan warns)."""
    migs = tuple(m for g in gpus for m in g.mig_devices if m.cap_nodes)
    return Selection(tuple(gpus), migs, "devices", source, spec)


def _visible_devices(gpus: Sequence[Gpu], value: str, source: str) -> Selection:
    # The toolkit documents "void or empty or unset" as one case (runc behaviour) and treats a
    # list holding "void" as void (internal/config/image/devices.go, NewVisibleDevices).
    tokens = [t.strip().lower() for t in value.split(",")]
    if not any(tokens) or "void" in tokens:
        return Selection((), (), "void", source, value)
    return select_gpus(gpus, value, source=source)


def resolve_choice(gpus: Sequence[Gpu], choice: "SelectionChoice") -> Selection:
    """Resolve the source :func:`nvlow.plan.request.selection_choice` picked against the host's GPUs.

    Example:
        >>> from nvlow.plan.request import SelectionChoice
        >>> resolve_choice((), SelectionChoice("NVIDIA_VISIBLE_DEVICES", "", "env")).mode
        'void'
    """
    if choice.grammar == "count":
        spec = choice.spec.strip()
        count = parse_number(spec[1:] if spec.startswith("-") else spec, "GPU count", error=SelectionError)
        # docker --gpus -1 (any negative count): all
        return select_count(gpus, -1 if spec.startswith("-") else count, source=choice.source)
    if choice.grammar == "nv_gpu":
        return select_gpus(gpus, choice.spec, source=choice.source, nv_gpu=True)
    if choice.grammar == "env":
        try:
            return _visible_devices(gpus, choice.spec, choice.source)
        except SelectionError as exc:
            # name the variable (and where it was set): the value may come from -e, nvlow's
            # environment or the image, and the user has to know which one to fix
            if choice.source in str(exc):
                raise
            raise SelectionError(f"{choice.source}: {exc}", hint=exc.hint) from None
    return select_gpus(gpus, choice.spec, source=choice.source)
