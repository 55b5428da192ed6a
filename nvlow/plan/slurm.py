"""Slurm: the GPUs a job or step was given, and the gres.conf lines that number a host's GPUs.

Pure functions of text and records (the one reader, :func:`read_gpu_cores`, reads through the host
root object it is handed). The Slurm facts they rely on, with their public sources, are in
``docs/slurm.md``; in short:

- Slurm names a job's GPUs by *GRES index*: the position of the GPU's record among the ``gpu``
  records of the node's ``gres.conf`` (``File=`` or ``MultipleFiles=``, one record per line here).
  ``srun`` puts the step's indices in ``SLURM_STEP_GPUS`` (per task under ``--gpu-bind`` or
  ``--gpus-per-task``), the batch step the job's in ``SLURM_JOB_GPUS``, both as comma lists; a step
  that asked for no GPU has no ``SLURM_STEP_GPUS`` but still inherits the batch step's
  ``SLURM_JOB_GPUS``. ``CUDA_VISIBLE_DEVICES`` holds the same indices only without device
  constraining (``task/cgroup`` with ``ConstrainDevices=yes`` renumbers it from 0), so it is never read.
- ``nvlow slurm gres`` writes one ``gpu`` record per GPU in device-minor order (``/dev/nvidia0``
  first), and a MIG-enabled GPU's MIG devices in its place, in MIG slot order; :func:`gres_devices`
  is that order, so GRES index N is ``gres_devices(host)[N]``.

Example:
    >>> alloc = slurm_allocation({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0,2-3"})
    >>> (alloc.indices, alloc.describe())
    ((0, 2, 3), 'SLURM_STEP_GPUS=0,2-3 (Slurm job 7, step 0)')
    >>> slurm_allocation({"SLURM_STEP_GPUS": "0"}) is None  # not in a job: nothing is restricted
    True
    >>> import nvlow
    >>> host = nvlow.load_host(simulate="dgx-a100")
    >>> [d.token for d in allocated_devices(host, alloc)]
    ['0', '2', '3']

May import: the leaf modules (:mod:`nvlow.errors`, :mod:`nvlow.frozen`, :mod:`nvlow.model`,
:mod:`nvlow.text`) only.
"""
from __future__ import annotations

from ..errors import HostError, NvlowError, SelectionError
from ..frozen import Record
from ..model import Gpu, Host, MigDevice
from ..text import number_or_none, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Set, Tuple

    #: cpu -> (physical package, die, core id), from /sys/devices/system/cpu/cpuN/topology
    Topology = Mapping[int, Tuple[int, int, int]]
else:
    Protocol = object  # a plain base at run time; type checkers see typing.Protocol

JOB_ID = "SLURM_JOB_ID"
STEP_ID = "SLURM_STEP_ID"
STEP_GPUS = "SLURM_STEP_GPUS"
JOB_GPUS = "SLURM_JOB_GPUS"
#: gres.conf(5): "When specifying File, Count is limited in size (currently 1024) for each node"
MAX_GRES = 1024
#: digits a job id, step id, GRES index or CPU number may have
_MAX_DIGITS = 10
#: the most CPUs a cpulist may name (Slurm's own NVML plugin sizes its CPU masks for 0x8000)
MAX_CPUS = 0x8000
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.")
_HINT_GRES = ("nvlow numbers GRES indices in the order 'nvlow slurm gres' writes gres.conf (device minors); "
              "regenerate the node's gres.conf with it and restart slurmd")


# --------------------------------------------------------------------------- the job's allocation

class SlurmAllocation(Record):
    """The GRES indices of the GPUs Slurm gave this job step (or batch step).

    ``variable`` is where they came from; ``value`` is its text, None when it is unset (the step
    was given no GPU).

    Example:
        >>> SlurmAllocation(12, None, "SLURM_JOB_GPUS", None, ()).describe()
        'SLURM_JOB_GPUS unset: no GPU (Slurm job 12)'
    """

    job_id: int
    step_id: Optional[int]
    variable: str
    value: Optional[str]
    indices: Tuple[int, ...]

    def describe(self) -> str:
        """``SLURM_STEP_GPUS=0,1 (Slurm job 12, step 0)``, for messages."""
        where = f"Slurm job {self.job_id}" + (f", step {self.step_id}" if self.step_id is not None else "")
        if self.value is None:
            return f"{self.variable} unset: no GPU ({where})"
        return f"{self.variable}={printable(self.value, 60)} ({where})"

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready dict."""
        return {"job_id": self.job_id, "step_id": self.step_id, "variable": self.variable,
                "value": self.value, "indices": list(self.indices)}


def _q(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message (cut at ``limit`` characters, escapes shown)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _index(text: str, variable: str, value: str) -> int:
    number = number_or_none(text, max_digits=_MAX_DIGITS)
    if number is None:
        raise SelectionError(f"invalid {variable} {_q(value)}: {_q(text, 20)} is not a GRES index",
                             hint=f"Slurm writes {variable} as GPU indices such as 0,2-3; unset it outside a job")
    return number


def parse_gres_indices(value: str, variable: str = STEP_GPUS) -> Tuple[int, ...]:
    """The GRES indices of a Slurm GPU list (``0,2``; ranges ``0-3`` as ``bit_fmt`` prints them),
    sorted. Empty is no GPU; an index named twice, a reversed range, a sign, space inside or a
    non-ASCII digit is a :class:`~nvlow.errors.SelectionError` (exit 2) naming ``variable``.

    Example:
        >>> parse_gres_indices("3,0-1"), parse_gres_indices("")
        ((0, 1, 3), ())
        >>> parse_gres_indices("0,²")
        Traceback (most recent call last):
        ...
        nvlow.errors.SelectionError: invalid SLURM_STEP_GPUS '0,²': '²' is not a GRES index
    """
    text = value.strip(" \t\n")
    if not text:
        return ()
    seen: List[int] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        low = _index(first, variable, value)
        high = _index(last, variable, value) if dash else low
        if high < low:
            raise SelectionError(f"invalid {variable} {_q(value)}: range {_q(part, 20)} is reversed")
        if high >= MAX_GRES or len(seen) + high - low >= MAX_GRES:
            raise SelectionError(f"invalid {variable} {_q(value)}: more than {MAX_GRES} GRES indices "
                                 f"or one above {MAX_GRES - 1} (Slurm's limit per node)")
        seen.extend(range(low, high + 1))
    unique = sorted(set(seen))
    if len(unique) != len(seen):
        twice = sorted({i for i in seen if seen.count(i) > 1})
        raise SelectionError(f"invalid {variable} {_q(value)}: GRES index "
                             f"{', '.join(map(str, twice))} named twice")
    return tuple(unique)


def _id(env: Mapping[str, str], name: str) -> Optional[int]:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    number = number_or_none(raw, max_digits=_MAX_DIGITS)
    if number is None:
        raise SelectionError(f"invalid {name} {_q(raw, 40)}: expected a number",
                             hint="Slurm sets it in a job; unset it outside one")
    return number


def slurm_allocation(env: Mapping[str, str]) -> Optional[SlurmAllocation]:
    """The GPUs Slurm gave the job step this environment belongs to, or None outside a Slurm job.

    In a job (``SLURM_JOB_ID``): an ``srun`` step (``SLURM_STEP_ID`` set) has exactly the
    ``SLURM_STEP_GPUS`` indices (unset: no GPU, even when the inherited ``SLURM_JOB_GPUS`` lists
    some); the batch step has the job's ``SLURM_JOB_GPUS`` (unset: no GPU). A step list that is not
    within the job's is refused. A malformed value is a :class:`~nvlow.errors.SelectionError`.

    Example:
        >>> env = {"SLURM_JOB_ID": "3", "SLURM_JOB_GPUS": "0,1,2", "SLURM_STEP_ID": "2"}
        >>> slurm_allocation(env).describe()  # srun --gres=none in a batch job with 3 GPUs
        'SLURM_STEP_GPUS unset: no GPU (Slurm job 3, step 2)'
        >>> slurm_allocation({"SLURM_JOB_ID": "3", "SLURM_JOB_GPUS": "0,1,2"}).indices
        (0, 1, 2)
    """
    job_id = _id(env, JOB_ID)
    if job_id is None:
        return None
    step_id = _id(env, STEP_ID)
    job_value = env.get(JOB_GPUS)
    job_indices = parse_gres_indices(job_value, JOB_GPUS) if job_value is not None else None
    if step_id is None:
        return SlurmAllocation(job_id, None, JOB_GPUS, job_value, job_indices or ())
    step_value = env.get(STEP_GPUS)
    step_indices = parse_gres_indices(step_value, STEP_GPUS) if step_value is not None else ()
    if job_indices is not None and not set(step_indices) <= set(job_indices):
        raise SelectionError(
            f"{STEP_GPUS}={printable(step_value or '', 60)} is not within the job's "
            f"{JOB_GPUS}={printable(job_value or '', 60)} (Slurm job {job_id}, step {step_id})",
            hint="a batch job submitted from inside an srun step inherits that step's SLURM_STEP_* "
                 "variables; submit with 'sbatch --export=NONE' or unset them first")
    return SlurmAllocation(job_id, step_id, STEP_GPUS, step_value, step_indices)


# --------------------------------------------------------------------------- GRES order of a host

class GresDevice(Record):
    """One ``gpu`` record of the gres.conf ``nvlow slurm gres`` writes: a whole GPU, or a MIG device.

    Example:
        >>> import nvlow
        >>> d = gres_devices(nvlow.load_host(simulate="dgx-h100-mig"))[8]
        >>> (d.index, d.token, d.gpu.minor, [p.rsplit("/", 1)[1] for p in d.files])
        (8, '1:1', 1, ['nvidia1', 'nvidia-cap156', 'nvidia-cap157'])
    """

    #: the GRES index: the record's position among the gpu records
    index: int
    gpu: Gpu
    mig: Optional[MigDevice] = None

    @property
    def token(self) -> str:
        """The nvlow selection token (``--gpus``/``NVIDIA_VISIBLE_DEVICES``): ``3`` or ``0:1``."""
        return self.mig.name_for_index if self.mig is not None else str(self.gpu.index)

    @property
    def files(self) -> Tuple[str, ...]:
        """Host paths of the device files: the GPU's node; for a MIG device the parent's node, then
        its GPU-instance and compute-instance access nodes (Slurm's NVML plugin lists the same)."""
        node = self.gpu.device_path
        paths: Tuple[str, ...] = (node,) if node else ()
        if self.mig is not None:
            paths += tuple(n.host_path for n in self.mig.cap_nodes)
        return paths


def _minor_key(gpu: Gpu) -> Tuple[int, int]:
    return (gpu.minor if gpu.minor is not None else 1 << 30, gpu.index)


def gres_devices(host: Host) -> Tuple[GresDevice, ...]:
    """The host's GPUs in the order ``nvlow slurm gres`` writes them: device minor order; a GPU in
    MIG mode is replaced by its MIG devices (slot order), and one with none is left out (no CUDA
    work can run on it). Position N is GRES index N.

    Example:
        >>> import nvlow
        >>> [d.token for d in gres_devices(nvlow.load_host(simulate="dgx-h100-mig"))][5:11]
        ['0:5', '0:6', '1:0', '1:1', '1:2', '2']
    """
    out: List[GresDevice] = []
    for gpu in sorted(host.gpus, key=_minor_key):
        if gpu.mig_enabled and gpu.mig_devices:
            base = len(out)
            out.extend(GresDevice(base + i, gpu, mig) for i, mig in enumerate(gpu.mig_devices))
        elif not gpu.mig_enabled:
            out.append(GresDevice(len(out), gpu))
    return tuple(out)


def allocated_devices(host: Host, allocation: SlurmAllocation) -> Tuple[GresDevice, ...]:
    """The GPUs and MIG devices of ``allocation`` on ``host`` (GRES index order); an index the
    host does not have is a :class:`~nvlow.errors.SelectionError` naming the allocation.

    Example:
        >>> import nvlow
        >>> host = nvlow.load_host(simulate="workstation")
        >>> allocated_devices(host, SlurmAllocation(5, 0, "SLURM_STEP_GPUS", "1", (1,)))
        Traceback (most recent call last):
        ...
        nvlow.errors.SelectionError: SLURM_STEP_GPUS=1 (Slurm job 5, step 0) names GRES index 1, but this host has 1 GPU record (index 0)
    """
    devices = gres_devices(host)
    missing = [i for i in allocation.indices if i >= len(devices)]
    if missing:
        have = "none" if not devices else "index 0" if len(devices) == 1 else f"indices 0-{len(devices) - 1}"
        records = f"{len(devices)} GPU record" + ("" if len(devices) == 1 else "s")
        raise SelectionError(f"{allocation.describe()} names GRES index {', '.join(map(str, missing))}, "
                             f"but this host has {records} ({have})", hint=_HINT_GRES)
    return tuple(devices[i] for i in allocation.indices)


def _nvlow_order(device: GresDevice) -> Tuple[int, int]:
    return (device.gpu.index, device.mig.index if device.mig is not None else -1)


def allocation_spec(host: Host, allocation: SlurmAllocation) -> str:
    """The allocation as an nvlow GPU selection in nvlow's index order (``1,3``, ``0:2``), or ``none``
    when the step has no GPU (driver files, no device: the toolkit's meaning of ``none``).

    Example:
        >>> import nvlow
        >>> host = nvlow.load_host(simulate="dgx-a100")
        >>> allocation_spec(host, slurm_allocation({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "4,1"}))
        '1,4'
    """
    devices = sorted(allocated_devices(host, allocation), key=_nvlow_order)
    return ",".join(d.token for d in devices) if devices else "none"


def check_selection(host: Host, allocation: SlurmAllocation, gpus: Sequence[Gpu],
                    mig_devices: Sequence[MigDevice] = ()) -> None:
    """Refuse an explicit selection that reaches beyond the allocation: every selected GPU must be
    allocated whole, every selected MIG device itself or through its allocated parent GPU. The
    :class:`~nvlow.errors.SelectionError` names the GPU and the allocation.

    Example:
        >>> import nvlow
        >>> host = nvlow.load_host(simulate="dgx-a100")
        >>> alloc = slurm_allocation({"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0,1"})
        >>> check_selection(host, alloc, host.gpus[:2])  # within the allocation
        >>> check_selection(host, alloc, host.gpus[1:3])
        Traceback (most recent call last):
        ...
        nvlow.errors.SelectionError: GPU 2 is not allocated to this Slurm step: SLURM_STEP_GPUS=0,1 (Slurm job 9, step 0) gives it GPU 0, 1
    """
    granted = allocated_devices(host, allocation)
    whole = {d.gpu.index for d in granted if d.mig is None}
    migs = {(d.gpu.index, d.mig.index) for d in granted if d.mig is not None}
    outside = [str(g.index) for g in gpus if g.index not in whole]
    outside += [m.name_for_index for m in mig_devices
                if m.parent_index not in whole and (m.parent_index, m.index) not in migs]
    if not outside:
        return
    what = "step" if allocation.step_id is not None else "job"
    given = ", ".join(d.token for d in granted) or "none"
    are = "GPUs {} are".format(", ".join(outside)) if len(outside) > 1 else f"GPU {outside[0]} is"
    raise SelectionError(
        f"{are} not allocated to this Slurm {what}: {allocation.describe()} gives it GPU {given}",
        hint="select among the allocated GPUs or leave the selection out; ask Slurm for more with --gres=gpu:N")


# --------------------------------------------------------------------------- gres.conf

def gpu_type(name: Optional[str]) -> Optional[str]:
    """A GRES ``Type`` for a GPU model: lower case, without the vendor word, cut at the first ``-``
    (as Slurm's NVML plugin cuts a name before adding a MIG profile), spaces as ``_``, only
    ``[a-z0-9_.]``; a substring of the name Slurm's ``AutoDetect=nvml`` reports. None when unknown.

    Example:
        >>> [gpu_type(n) for n in ("NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3", "Tesla V100-SXM2-16GB", None)]
        ['a100', 'h100_80gb_hbm3', 'tesla_v100', None]
    """
    if not name:
        return None
    low = name.strip().lower()
    if low.startswith("nvidia "):
        low = low[len("nvidia "):]
    low = low.split("-", 1)[0].strip()
    cleaned = "".join(c if c in _TYPE_CHARS else "_" for c in "_".join(low.split()))
    cleaned = "_".join(p for p in cleaned.split("_") if p)
    return cleaned or None


def mig_type(gpu: Gpu, mig: MigDevice) -> Optional[str]:
    """The GRES ``Type`` of a MIG device: the GPU's type, ``_``, the MIG profile from its name
    (``a100_3g.20gb``, the form of Slurm's gres documentation), ``_mig`` when the profile is unknown
    (no NVML).

    Example:
        >>> m = MigDevice("MIG-x", 0, 0, 1, 0, name="NVIDIA A100-SXM4-40GB MIG 3g.20gb")
        >>> mig_type(Gpu(0, 0, None, None, "NVIDIA A100-SXM4-40GB"), m)
        'a100_3g.20gb'
    """
    base = gpu_type(gpu.name)
    profile = None
    if mig.name and " MIG " in f" {mig.name} ":
        profile = gpu_type(mig.name.rsplit("MIG", 1)[1].strip().replace("-", "_"))
    if base is None:
        return None
    return f"{base}_{profile or 'mig'}"


def device_type(device: GresDevice) -> Optional[str]:
    """The ``Type`` of a GRES record (:func:`gpu_type` or :func:`mig_type`)."""
    return mig_type(device.gpu, device.mig) if device.mig is not None else gpu_type(device.gpu.name)


def _check_files(device: GresDevice) -> None:
    gpu = device.gpu
    where = gpu.bus_id or f"index {gpu.index}"
    if not gpu.device_path:
        raise HostError(f"GPU {where} has no usable /dev/nvidiaN node (minor {gpu.minor}): gres.conf needs one",
                        hint="'nvlow info' and 'nvlow doctor' show why; create the node with nvidia-modprobe")
    if device.mig is not None and len(device.mig.cap_nodes) != 2:
        raise HostError(f"MIG device {device.token} of GPU {where} lacks its /dev/nvidia-caps access nodes: "
                        "gres.conf needs them", hint="create them with 'nvidia-modprobe -f' (nvlow doctor)")


def gres_line(device: GresDevice, cores: Optional[str] = None) -> str:
    """The gres.conf line of one record: ``Name=gpu Type=a100 File=/dev/nvidia0 Cores=0-15``; a MIG
    device gets ``MultipleFiles=`` (parent node, GI access, CI access), the form of gres.conf(5).

    Example:
        >>> import nvlow
        >>> d = gres_devices(nvlow.load_host(simulate="dgx-h100-mig"))[0]
        >>> gres_line(d, "0-55").replace(d.gpu.device_path.rsplit("/dev/", 1)[0], "$ROOT")
        'Name=gpu Type=h100_80gb_hbm3_1g.10gb MultipleFiles=$ROOT/dev/nvidia0,$ROOT/dev/nvidia-caps/nvidia-cap66,$ROOT/dev/nvidia-caps/nvidia-cap67 Cores=0-55'
    """
    # The MIG form is gres.conf(5)'s MultipleFiles= (https://slurm.schedmd.com/gres.conf.html#OPT_MultipleFiles,
    # "Graphics cards using Multi-Instance GPU (MIG) technology will present multiple device files that should
    # be managed as a single generic resource"; https://slurm.schedmd.com/gres.html#MIG_Management): the parent's
    # /dev/nvidiaN and the GI and CI access nodes, the files Slurm's own NVML autodetection lists.
    _check_files(device)
    parts = ["Name=gpu"]
    kind = device_type(device)
    if kind:
        parts.append(f"Type={kind}")
    files = device.files
    # gres.conf is split on white space and "," separates MultipleFiles: such a path cannot be written
    for path in files:
        if any(c.isspace() or c in ",#" for c in path) or not path.isprintable():
            raise HostError(f"{printable(path)} cannot be written in gres.conf (white space, ',' or '#')",
                            hint="use a --root path without them")
    parts.append(f"MultipleFiles={','.join(files)}" if device.mig is not None else f"File={files[0]}")
    if cores:
        parts.append(f"Cores={cores}")
    return " ".join(parts)


def node_gres(devices: Sequence[GresDevice]) -> str:
    """The node's ``Gres=`` value for slurm.conf: ``gpu:a100:8`` (per type, in first-seen order)."""
    counts: Dict[str, int] = {}
    for d in devices:
        kind = device_type(d) or ""
        counts[kind] = counts.get(kind, 0) + 1
    return ",".join(f"gpu:{k}:{n}" if k else f"gpu:{n}" for k, n in counts.items())


def render_gres_conf(host: Host, cores_by_bus: Optional[Mapping[str, str]] = None) -> str:
    """The gres.conf text for ``host``: a comment with slurm.conf's ``Gres=``, ``AutoDetect=off``
    (an NVML autodetection would order the records itself), then one line per GRES record in
    :func:`gres_devices` order with the ``Cores=`` of ``cores_by_bus`` (by PCI bus id).

    Example:
        >>> import nvlow
        >>> print(render_gres_conf(nvlow.load_host(simulate="no-gpu")), end="")
        # gres.conf written by 'nvlow slurm gres': GPUs in device-minor order; GRES index N is the Nth gpu line
        # slurm.conf: no GPU on this host
        AutoDetect=off
    """
    devices = gres_devices(host)
    cores_by_bus = cores_by_bus or {}
    lines = ["# gres.conf written by 'nvlow slurm gres': GPUs in device-minor order; "
             "GRES index N is the Nth gpu line",
             f"# slurm.conf: Gres={node_gres(devices)}" if devices else "# slurm.conf: no GPU on this host",
             "AutoDetect=off"]
    lines += [gres_line(d, cores_by_bus.get(d.gpu.bus_id or "")) for d in devices]
    return "\n".join(lines) + "\n"


def gres_document(host: Host, cores_by_bus: Optional[Mapping[str, str]] = None) -> Dict[str, object]:
    """``nvlow slurm gres --json``: schema_version 1, slurm.conf's ``node_gres`` and one entry per
    GRES record (index, type, files, cores, the GPU, the MIG device, the nvlow selection token)."""
    cores_by_bus = cores_by_bus or {}
    devices = gres_devices(host)
    entries = []
    for d in devices:
        cores = cores_by_bus.get(d.gpu.bus_id or "")
        entries.append({
            "index": d.index, "line": gres_line(d, cores), "type": device_type(d), "files": list(d.files),
            "cores": cores, "selection": d.token, "gpu_index": d.gpu.index, "minor": d.gpu.minor,
            "bus_id": d.gpu.bus_id, "uuid": d.gpu.uuid,
            "mig": None if d.mig is None else {
                "index": d.mig.index, "uuid": d.mig.uuid, "gpu_instance_id": d.mig.gpu_instance_id,
                "compute_instance_id": d.mig.compute_instance_id},
        })
    return {"schema_version": 1, "autodetect": "off", "node_gres": node_gres(devices) if devices else None,
            "gres": entries}


# --------------------------------------------------------------------------- CPU affinity from sysfs

def parse_cpu_list(text: str, what: str = "CPU list") -> Tuple[int, ...]:
    """A kernel cpulist (``0-3,8-11``, sysfs ``local_cpulist``/``cpulist``), sorted; a
    :class:`~nvlow.errors.HostError` naming ``what`` when malformed.

    Example:
        >>> parse_cpu_list("0-2,8\\n"), parse_cpu_list("")
        ((0, 1, 2, 8), ())
    """
    body = text.strip()
    if not body:
        return ()
    out: Set[int] = set()
    for part in body.split(","):
        first, dash, last = part.partition("-")
        low = number_or_none(first, max_digits=_MAX_DIGITS)
        high = number_or_none(last, max_digits=_MAX_DIGITS) if dash else low
        if low is None or high is None or high < low or high >= MAX_CPUS:
            raise HostError(f"{what} is malformed: {printable(body, 60)}")
        out.update(range(low, high + 1))
    return tuple(sorted(out))


def format_ranges(values: Iterable[int]) -> str:
    """Numbers as Slurm and the kernel write lists: ``0-2,5``.

    Example:
        >>> format_ranges([5, 0, 1, 2]), format_ranges([])
        ('0-2,5', '')
    """
    nums = sorted(set(values))
    parts: List[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def logical_cores(topology: Topology) -> Dict[int, int]:
    """CPU number -> Slurm's logical core index (gres.conf(5) ``Cores``: "Core 0 will be the first
    core on the first socket", hwloc's logical order): packages ordered by their lowest CPU, cores
    within a package by theirs; the hyperthreads of one core share its index.

    Example:
        >>> # 2 sockets, 2 cores each, SMT siblings numbered n and n+4 (CPUs 0,1 socket 0; 2,3 socket 1)
        >>> topo = {0: (0, 0, 0), 1: (0, 0, 1), 2: (1, 0, 0), 3: (1, 0, 1),
        ...         4: (0, 0, 0), 5: (0, 0, 1), 6: (1, 0, 0), 7: (1, 0, 1)}
        >>> logical_cores(topo)
        {0: 0, 1: 1, 2: 2, 3: 3, 4: 0, 5: 1, 6: 2, 7: 3}
    """
    core_cpus: Dict[Tuple[int, int, int], List[int]] = {}
    package_first: Dict[int, int] = {}
    for cpu in sorted(topology):
        key = topology[cpu]
        core_cpus.setdefault(key, []).append(cpu)
        package_first.setdefault(key[0], cpu)
    order = sorted(core_cpus, key=lambda k: (package_first[k[0]], core_cpus[k][0]))
    index = {key: i for i, key in enumerate(order)}
    return {cpu: index[topology[cpu]] for cpu in topology}


def cores_for_cpus(cpus: Iterable[int], topology: Topology) -> Optional[str]:
    """The ``Cores=`` value for a GPU close to ``cpus``: the logical cores holding them, or None when
    that is every core (gres.conf(5): "If any core can be effectively used with the resources, then
    do not specify the cores option") or when the topology names none of them.

    Example:
        >>> topo = {0: (0, 0, 0), 1: (0, 0, 1), 2: (1, 0, 0), 3: (1, 0, 1)}
        >>> cores_for_cpus([2, 3], topo), cores_for_cpus(range(4), topo)
        ('2-3', None)
    """
    mapping = logical_cores(topology)
    cores = {mapping[c] for c in cpus if c in mapping}
    if not cores or cores == set(mapping.values()):
        return None
    return format_ranges(cores)


class RootReader(Protocol):
    """What :func:`read_gpu_cores` needs of :class:`nvlow.host.root.HostRoot` (passed in, so that this
    module imports no host code)."""

    def read_text_optional(self, path: str) -> Optional[str]: ...

    def listdir(self, path: str) -> List[str]: ...


_CPU_DIR = "/sys/devices/system/cpu"


def _topology_number(root: RootReader, path: str) -> Optional[int]:
    text = root.read_text_optional(path)
    if text is None:
        return None
    body = text.strip()
    # die_id is -1 on kernels and architectures without dies
    return -1 if body == "-1" else number_or_none(body, max_digits=_MAX_DIGITS)


def read_cpu_topology(root: RootReader) -> Dict[int, Tuple[int, int, int]]:
    """cpu -> (package, die, core) from ``/sys/devices/system/cpu/cpuN/topology`` under the root;
    CPUs without a readable topology (offline) are left out."""
    topology: Dict[int, Tuple[int, int, int]] = {}
    for name in root.listdir(_CPU_DIR):
        cpu = number_or_none(name[3:], max_digits=_MAX_DIGITS) if name.startswith("cpu") else None
        if cpu is None or cpu >= MAX_CPUS:
            continue
        base = f"{_CPU_DIR}/{name}/topology"
        package = _topology_number(root, f"{base}/physical_package_id")
        core = _topology_number(root, f"{base}/core_id")
        die = _topology_number(root, f"{base}/die_id")
        if package is None or core is None:
            continue
        topology[cpu] = (package, die if die is not None else 0, core)
    return topology


def read_gpu_cores(root: RootReader, host: Host) -> Tuple[Dict[str, str], Tuple[str, ...]]:
    """Each GPU's ``Cores=`` by PCI bus id, from ``/sys/bus/pci/devices/<bus>/local_cpulist`` (the CPUs
    the kernel calls local to the device, what NVML's CPU affinity reports) and the CPU topology, read
    through ``root``; plus warnings for what could not be read. A GPU whose CPUs are every core, or
    whose files are missing, gets no entry (no ``Cores=``: any core).

    Example:
        >>> import nvlow
        >>> from nvlow.host.root import HostRoot
        >>> read_gpu_cores(HostRoot("/nonexistent"), nvlow.load_host(simulate="workstation"))
        ({}, ())
    """
    warnings: List[str] = []
    try:
        topology = read_cpu_topology(root)
    except NvlowError as exc:
        return {}, (f"CPU topology unreadable, gres.conf without Cores=: {exc}",)
    if not topology:
        return {}, ()
    out: Dict[str, str] = {}
    for gpu in host.gpus:
        if not gpu.bus_id:
            continue
        path = f"/sys/bus/pci/devices/{gpu.bus_id.lower()}/local_cpulist"
        try:
            text = root.read_text_optional(path)
            if text is None:
                continue
            cores = cores_for_cpus(parse_cpu_list(text, path), topology)
        except NvlowError as exc:
            warnings.append(f"no Cores= for GPU {gpu.bus_id}: {exc}")
            continue
        if cores:
            out[gpu.bus_id] = cores
    return out, tuple(warnings)
