"""The plan request: every raw input that decides what a container gets, and the choices that need no host.

A :class:`PlanRequest` holds the inputs exactly as given, nothing resolved against a host: the
docker/podman ``--gpus`` values and ``nvidia.com`` CDI device names of an engine command line,
nvlow's own ``--gpus``/``--capabilities``, the container environment the engine will set (``-e``,
``--env``, ``--env-file``), the NVIDIA variables of nvlow's own environment, the image's
environment and labels, the driver-files mode and whether requirements are checked.
:func:`nvlow.plan.decide.plan_for` turns (host, request) into the plan; every path (``args``/``exec``
local and remote, ``serve``, ``list``, the Python API) builds a request and calls it.

The choices below are pure functions of the request, so a remote client and the server that
plans for it make the same ones:

* :func:`selection_choice` - which source selects the GPUs, first present wins: the engine
  ``--gpus`` flag, ``nvidia.com`` CDI devices in the argv, nvlow's ``--gpus``,
  ``NVIDIA_VISIBLE_DEVICES`` (container ``-e`` first, then nvlow's environment), ``NV_GPU``
  (nvidia-docker 1.0), the image's ``NVIDIA_VISIBLE_DEVICES``, ``all`` for a legacy CUDA image
  (toolkit ``internal/config/image/cuda_image.go``), else ``all`` (nvlow's default: the user
  asked nvlow for GPUs; the toolkit gives none here).
* :func:`capabilities_choice` - ``--capabilities``, the engine ``--gpus`` capabilities, then
  ``NVIDIA_DRIVER_CAPABILITIES`` of :func:`decision_env`; set but empty means the default
  ``compute,utility`` and unset on a legacy image means ``all`` (toolkit
  ``cmd/nvidia-container-runtime-hook/container_config.go``, ``getDriverCapabilities``).
* :func:`requirement_env` - the container's final environment (image overlaid by ``-e``), which
  the toolkit evaluates ``NVIDIA_REQUIRE_*``/``NVIDIA_DISABLE_REQUIRE``/``CUDA_VERSION`` on.

Example:
    >>> req = PlanRequest(container_env=(("NVIDIA_VISIBLE_DEVICES", ""),), image_env=(("NVIDIA_VISIBLE_DEVICES", "3"),))
    >>> selection_choice(req).void
    True
    >>> capabilities_choice(PlanRequest(image_env=(("CUDA_VERSION", "9.0"),)))
    ('legacy image', 'all')
"""
from __future__ import annotations

from ..frozen import Record
from ..errors import UsageError
from ..model import ProcfsFacts
from ..host.extradevices import ENABLED, FEATURE_ENV, FEATURES
from .plan import DRIVER_FILE_MODES as DRIVER_FILE_MODES  # one definition, re-exported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

    Pairs = Tuple[Tuple[str, str], ...]

#: variables of nvlow's own environment that take part in the decision (like a ``-e`` given
#: before the command line's own); nothing else of nvlow's environment reaches the plan
PROCESS_ENV_KEYS = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_MIG_CONFIG_DEVICES",
                    "NVIDIA_MIG_MONITOR_DEVICES", "NVIDIA_IMEX_CHANNELS", "NVIDIA_DISABLE_REQUIRE", "NV_GPU",
                    "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
#: a Slurm job's variables name GPUs of the node the job runs on: a request that arrives over the
#: network (serve) is for another machine, so they never cross it (docs/slurm.md)
LOCAL_ONLY_KEYS = frozenset({"SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"})
DEFAULT_CAPABILITIES_TEXT = "compute,utility"
#: a CDI device of NVIDIA's vendor (nvidia.com/gpu=0, nvidia.com/mig=1:2, nvidia.com/gpu=all)
CDI_VENDOR_PREFIX = "nvidia.com/"
#: bounds for a request that arrives over the network (serve): keys, values, list lengths
MAX_ITEMS = 4096
MAX_TEXT = 65536


class PlanRequest(Record):
    """Everything that decides a container's GPUs, nodes, driver files and environment, as given.

    Environments are tuples of ``(name, value)`` pairs (later pairs win), so the record is
    immutable; ``None`` for ``container_env``/``image_env`` means "not known" (no engine
    command line; image not read), which is not the same as empty.

    Example:
        >>> PlanRequest(gpus="0,1").to_dict()["gpus"]
        '0,1'
    """

    docker_gpus: Tuple[str, ...] = ()
    cdi_devices: Tuple[str, ...] = ()
    gpus: Optional[str] = None
    capabilities: Optional[str] = None
    container_env: Optional[Pairs] = None
    process_env: Pairs = ()
    image_env: Optional[Pairs] = None
    image_labels: Pairs = ()
    driver_files: str = "bind"
    require: bool = True
    #: ``--privileged`` in the engine argv: True/False, None when there is no argv (``args``)
    privileged: Optional[bool] = None
    #: multi-node features asked for by nvlow's options (``--gds``, ``--mofed``, ``--gdrcopy``,
    #: ``--nvswitch``), besides the container's ``NVIDIA_GDS=enabled``, ... (:func:`requested_features`)
    features: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        """The request as JSON-ready data (what the remote client sends to ``serve``)."""
        return {
            "docker_gpus": list(self.docker_gpus),
            "cdi_devices": list(self.cdi_devices),
            "gpus": self.gpus,
            "capabilities": self.capabilities,
            "container_env": None if self.container_env is None else [list(p) for p in self.container_env],
            "process_env": [list(p) for p in self.process_env],
            "image_env": None if self.image_env is None else [list(p) for p in self.image_env],
            "image_labels": [list(p) for p in self.image_labels],
            "driver_files": self.driver_files,
            "require": self.require,
            "privileged": self.privileged,
            # only when asked: a server from before the features refuses unknown fields
            **({"features": list(self.features)} if self.features else {}),
        }


def pairs(mapping: Optional[Mapping[str, str]]) -> Optional[Pairs]:
    """A mapping as sorted ``(name, value)`` pairs; None stays None."""
    if mapping is None:
        return None
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


def process_pairs(env: Mapping[str, str]) -> Pairs:
    """The decision variables of nvlow's own environment (:data:`PROCESS_ENV_KEYS`)."""
    return tuple((k, env[k]) for k in PROCESS_ENV_KEYS if k in env)


# -- the request from untrusted JSON (serve) -------------------------------------------
def _text(doc: Mapping[str, Any], key: str, *, optional: bool = True) -> Optional[str]:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise UsageError(f"request field {key!r} must be a string of at most {MAX_TEXT} characters")
    return value


def _strings(doc: Mapping[str, Any], key: str) -> Tuple[str, ...]:
    value = doc.get(key) or []
    if not isinstance(value, list) or len(value) > MAX_ITEMS or \
            not all(isinstance(v, str) and len(v) <= MAX_TEXT for v in value):
        raise UsageError(f"request field {key!r} must be a list of strings")
    return tuple(value)


def _pairs_field(doc: Mapping[str, Any], key: str, *, optional: bool) -> Optional[Pairs]:
    value = doc.get(key)
    if value is None:
        return None if optional else ()
    ok = isinstance(value, list) and len(value) <= MAX_ITEMS and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and len(s) <= MAX_TEXT for s in p)
        for p in value)
    if not ok:
        raise UsageError(f"request field {key!r} must be a list of [name, value] string pairs")
    return tuple((p[0], p[1]) for p in value)


def _flag(doc: Mapping[str, Any], key: str, default: Optional[bool]) -> Optional[bool]:
    value = doc.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"request field {key!r} must be true, false or null")
    return value


_FIELDS = ("docker_gpus", "cdi_devices", "gpus", "capabilities", "container_env", "process_env", "image_env",
           "image_labels", "driver_files", "require", "privileged", "features")


def request_from_dict(doc: Any) -> PlanRequest:
    """A :class:`PlanRequest` from :meth:`PlanRequest.to_dict` data; anything else is a UsageError.

    Example:
        >>> request_from_dict({"gpus": "1", "process_env": [["NV_GPU", "2"]]}).process_env
        (('NV_GPU', '2'),)
    """
    if not isinstance(doc, dict):
        raise UsageError("the plan request must be a JSON object")
    unknown = sorted(k for k in doc if k not in _FIELDS)
    if unknown:
        raise UsageError(f"unknown request field {unknown[0]!r}", hint="fields: " + ", ".join(_FIELDS))
    mode = _text(doc, "driver_files") or "bind"
    if mode not in DRIVER_FILE_MODES:
        raise UsageError(f"invalid driver-files mode {mode!r}", hint="use bind, volume or plugin")
    process = _pairs_field(doc, "process_env", optional=False) or ()
    features = _strings(doc, "features")
    unknown_features = [f for f in features if f not in FEATURES]
    if unknown_features:
        raise UsageError(f"unknown feature {unknown_features[0][:40]!r} in the request",
                         hint="features: " + ", ".join(FEATURES))
    return PlanRequest(
        docker_gpus=_strings(doc, "docker_gpus"), cdi_devices=_strings(doc, "cdi_devices"),
        gpus=_text(doc, "gpus"), capabilities=_text(doc, "capabilities"),
        container_env=_pairs_field(doc, "container_env", optional=True),
        process_env=tuple(p for p in process if p[0] in PROCESS_ENV_KEYS and p[0] not in LOCAL_ONLY_KEYS),
        image_env=_pairs_field(doc, "image_env", optional=True),
        image_labels=_pairs_field(doc, "image_labels", optional=False) or (),
        driver_files=mode, require=bool(_flag(doc, "require", True)), privileged=_flag(doc, "privileged", None),
        features=tuple(f for f in FEATURES if f in features),
    )


# -- pure choices ----------------------------------------------------------------------
class SelectionChoice(Record):
    """The source that selects the GPUs and its text.

    ``grammar``: ``list`` (nvlow's selection syntax), ``env`` (``NVIDIA_VISIBLE_DEVICES``: empty or
    ``void`` anywhere in it means nothing at all), ``nv_gpu`` (1.0's NV_GPU) or ``count``
    (docker ``--gpus N``; ``-1`` is all).

    Example:
        >>> SelectionChoice("default", "all", "list").void
        False
    """

    source: str
    spec: str
    grammar: str

    @property
    def void(self) -> bool:
        """Nothing is injected (toolkit: "void or empty or unset" behaves like runc)."""
        if self.grammar == "env":
            tokens = [t.strip().lower() for t in self.spec.split(",")]
            return not any(tokens) or "void" in tokens
        return self.grammar == "list" and self.spec.strip().lower() == "void"


def _env_get(env: Optional[Pairs], key: str) -> Optional[str]:
    if env is None:
        return None
    value: Optional[str] = None
    for k, v in env:
        if k == key:
            value = v
    return value


def _docker_gpus_choice(value: str) -> SelectionChoice:
    from ..engine.gpusflag import parse_gpus_flag

    parsed = parse_gpus_flag(value)
    if parsed.devices:
        return SelectionChoice("docker --gpus", ",".join(parsed.devices), "list")
    count = parsed.count if parsed.count is not None else -1
    return SelectionChoice("docker --gpus", str(count), "count")


def is_legacy_image(env: Mapping[str, str]) -> bool:
    """CUDA_VERSION set and NVIDIA_REQUIRE_CUDA not: an image from before the requirement variables."""
    return bool(env.get("CUDA_VERSION")) and not env.get("NVIDIA_REQUIRE_CUDA")


def selection_choice(req: PlanRequest) -> SelectionChoice:
    """Which source selects the GPUs (first present wins; see the module docstring).

    Example:
        >>> selection_choice(PlanRequest(gpus="1", process_env=(("NV_GPU", "2"),))).source
        '--gpus'
        >>> selection_choice(PlanRequest(process_env=(("NV_GPU", "2"),))).grammar
        'nv_gpu'
    """
    if req.docker_gpus:
        # docker turns each --gpus flag into a device request and the NVIDIA runtime sees the last
        return _docker_gpus_choice(req.docker_gpus[-1])
    if req.cdi_devices:
        return SelectionChoice("CDI device", ",".join(req.cdi_devices), "list")
    if req.gpus is not None:
        spec = req.gpus[len("device="):] if req.gpus.startswith("device=") else req.gpus
        return SelectionChoice("--gpus", spec, "list")
    for env, source in ((req.container_env, "container NVIDIA_VISIBLE_DEVICES"),
                        (req.process_env, "NVIDIA_VISIBLE_DEVICES")):
        value = _env_get(env, "NVIDIA_VISIBLE_DEVICES")
        if value is not None:
            return SelectionChoice(source, value, "env")
    nv_gpu = _env_get(req.process_env, "NV_GPU")
    if nv_gpu is not None:
        return SelectionChoice("NV_GPU", nv_gpu, "nv_gpu")
    image = _env_get(req.image_env, "NVIDIA_VISIBLE_DEVICES")
    if image is not None:
        return SelectionChoice("image NVIDIA_VISIBLE_DEVICES", image, "env")
    if is_legacy_image(requirement_env(req)):
        return SelectionChoice("legacy image", "all", "list")
    return SelectionChoice("default", "all", "list")


def decision_env(req: PlanRequest) -> Dict[str, str]:
    """The NVIDIA variables as the decision sees them: image, then nvlow's environment, then ``-e``."""
    out: Dict[str, str] = {}
    for layer in (req.image_env or (), req.process_env, req.container_env or ()):
        out.update(layer)
    return out


def requirement_env(req: PlanRequest) -> Dict[str, str]:
    """The container's final environment (image overlaid by ``-e``/``--env-file``), plus an
    ``NVIDIA_DISABLE_REQUIRE`` of nvlow's own environment that the command line does not set."""
    out: Dict[str, str] = dict(req.image_env or ())
    disable = _env_get(req.process_env, "NVIDIA_DISABLE_REQUIRE")
    if disable is not None:
        out["NVIDIA_DISABLE_REQUIRE"] = disable
    out.update(req.container_env or ())
    return out


def requested_features(req: PlanRequest) -> Tuple[Tuple[str, str], ...]:
    """(feature, source) of every multi-node feature the request asks for, in the toolkit's order:
    nvlow's option (``--gds``), else the container's final environment (image overlaid by ``-e``)
    holding exactly ``enabled`` (toolkit ``internal/modifier/cdi.go``, ``gatedDevices``: ``Getenv(...)
    == "enabled"``, case-sensitive; ``ENABLED``, ``true`` or ``1`` do not count).

    Example:
        >>> requested_features(PlanRequest(features=("gdrcopy",), image_env=(("NVIDIA_GDS", "enabled"),),
        ...                                container_env=(("NVIDIA_MOFED", "true"),)))
        (('gds', 'image NVIDIA_GDS=enabled'), ('gdrcopy', '--gdrcopy'))
    """
    out: List[Tuple[str, str]] = []
    for feature in FEATURES:
        var = FEATURE_ENV[feature]
        cvalue = _env_get(req.container_env, var)
        value = cvalue if cvalue is not None else _env_get(req.image_env, var)
        if feature in req.features:
            out.append((feature, f"--{feature}"))
        elif value == ENABLED:
            out.append((feature, f"{'container' if cvalue is not None else 'image'} {var}={ENABLED}"))
    return tuple(out)


def capabilities_choice(req: PlanRequest) -> Tuple[str, str]:
    """(source, capability list text) for the request; see the module docstring.

    Example:
        >>> capabilities_choice(PlanRequest(container_env=(("NVIDIA_DRIVER_CAPABILITIES", ""),)))
        ('container NVIDIA_DRIVER_CAPABILITIES', 'compute,utility')
    """
    if req.capabilities is not None:
        return "--capabilities", req.capabilities.strip() or DEFAULT_CAPABILITIES_TEXT
    if req.docker_gpus:
        from ..engine.gpusflag import parse_gpus_flag

        caps = [c for c in parse_gpus_flag(req.docker_gpus[-1]).capabilities if c != "gpu"]
        if caps:
            return "docker --gpus", ",".join(caps)
    for env, source in ((req.container_env, "container NVIDIA_DRIVER_CAPABILITIES"),
                        (req.process_env, "NVIDIA_DRIVER_CAPABILITIES"),
                        (req.image_env, "image NVIDIA_DRIVER_CAPABILITIES")):
        value = _env_get(env, "NVIDIA_DRIVER_CAPABILITIES")
        if value is not None:
            return source, value if value.strip() else DEFAULT_CAPABILITIES_TEXT
    if is_legacy_image(requirement_env(req)):
        return "legacy image", "all"
    return "default", DEFAULT_CAPABILITIES_TEXT


# -- the request from an engine command line ---------------------------------------------
class EngineRequest(Record):
    """An engine command line read for nvlow: the parsed command, the request it makes and the
    options that nvlow replaces (``--gpus``, ``--runtime=nvidia``, ``nvidia.com`` CDI devices)."""

    command: Any  # nvlow.engine.argv.EngineCommand
    request: PlanRequest
    removed: Tuple[Any, ...] = ()  # ParsedOption
    notes: Tuple[str, ...] = ()

    def rewrite(self, args: Sequence[str]) -> List[str]:
        """The final argv: ``args`` injected and the replaced options dropped; unchanged when the
        command starts no container."""
        from ..engine.argv import inject

        if not self.command.injectable:
            return list(self.command.argv)
        return inject(self.command, args, remove=(), remove_options=self.removed)


def _cdi_device(value: Optional[str]) -> Optional[str]:
    if not value or not value.startswith(CDI_VENDOR_PREFIX) or "=" not in value:
        return None
    kind, _, name = value.partition("=")
    return name if kind.count("/") == 1 and name and not any(c.isspace() for c in name) else None


def request_from_argv(argv: Sequence[str], env: Mapping[str, str], *, base: Optional[PlanRequest] = None,
                      image_hint: Optional[str] = None,
                      read_file: Optional[Callable[[str], Optional[str]]] = None) -> EngineRequest:
    """Read a docker/podman command line into a request (``base`` supplies nvlow's own options).

    ``env`` is nvlow's environment: it fills bare ``-e NAME`` words and :data:`PROCESS_ENV_KEYS`.

    Example:
        >>> er = request_from_argv(["docker", "run", "--gpus", "2", "-e", "NVIDIA_DRIVER_CAPABILITIES=video", "img"], {})
        >>> er.request.docker_gpus, dict(er.request.container_env or ())
        (('2',), {'NVIDIA_DRIVER_CAPABILITIES': 'video'})
    """
    from ..frozen import replace

    from ..engine.argv import parse_engine_argv
    from ..engine.environ import container_environment

    base = base if base is not None else PlanRequest(process_env=process_pairs(env))
    cmd = parse_engine_argv(list(argv), image_hint=image_hint)
    if not cmd.injectable:
        return EngineRequest(cmd, base)
    kwargs = {"read": read_file} if read_file is not None else {}
    cenv = container_environment(cmd.get("env-file"), cmd.get("env"), env, **kwargs)
    cdi = [o for o in cmd.options if o.name == "device" and _cdi_device(o.value) is not None]
    runtime = [o for o in cmd.options if o.name == "runtime" and o.value == "nvidia"]
    gpus = [o for o in cmd.options if o.name == "gpus"]
    notes: List[str] = []
    if runtime:
        # the NVIDIA runtime is what nvlow replaces; on a host with only the driver docker
        # would fail with "Unknown runtime specified nvidia" (NVIDIA/nvidia-docker #578)
        notes.append("removed --runtime=nvidia: nvlow passes the GPUs itself")
    if cdi:
        notes.append("replaced CDI device(s) " + ", ".join(o.value or "" for o in cdi) + " by nvlow's explicit devices")
    privileged = any(o.name == "privileged" and (o.value is None or o.value.lower() in ("1", "t", "true"))
                     for o in cmd.options)
    request = replace(base, docker_gpus=tuple(cmd.get("gpus")),
                      cdi_devices=tuple(_cdi_device(o.value) or "" for o in cdi),
                      container_env=pairs(cenv), privileged=privileged)
    return EngineRequest(cmd, request, tuple(gpus + cdi + runtime), tuple(notes))


# -- does this request need NVML? (args/exec on a local host) -------------------------------
_REQUIRE_NEEDS_NVML = ("brand", "arch")


def _selection_tokens(spec: str) -> List[str]:
    out: List[str] = []
    for raw in spec.replace(" ", ",").split(","):
        token = raw.strip()
        if "/" in token and "=" in token:  # a CDI name (nvidia.com/gpu=0): its device part
            token = token.partition("=")[2]
        if token:
            out.append(token)
    return out


def _token_needs_nvml(token: str, facts: ProcfsFacts) -> Optional[str]:
    low = token.lower()
    if low in ("all", "none", "void"):
        return f"'{token}' on a host with MIG devices (their UUIDs come from NVML)" if (
            low == "all" and facts.mig_gpus) else None
    if token.isascii() and token.isdigit():
        return None
    if low.startswith("mig-"):
        return f"MIG device {token} (MIG UUIDs come from NVML)"
    head, sep, tail = token.partition(":")
    if sep and head.isascii() and head.isdigit() and tail.isascii() and tail.isdigit():
        return f"MIG device {token}"
    if low.startswith("gpu-"):
        hits = [u for u in facts.gpu_uuids if u and u.lower().startswith(low)]
        return None if len(hits) == 1 else f"GPU UUID {token} not resolved by procfs"
    return None  # a PCI bus id (procfs has them) or an invalid token (the same error either way)


def nvml_reason(req: PlanRequest, facts: ProcfsFacts) -> Optional[str]:
    """Why planning ``req`` on a host with ``facts`` needs NVML, or None when procfs and /dev
    answer everything the plan holds (see docs/nvml-lazy.md).

    NVML is needed for: MIG devices (selected by ``all`` on a host with MIG instances, a ``MIG-``
    UUID or a ``GPU:MIG`` index), a GPU UUID (prefix) that procfs does not resolve to one GPU,
    ``brand``/``arch`` requirements of the container's final environment, and any GPU-selecting
    request when procfs is incomplete. A void selection never needs it. The CUDA version is not a
    reason: see :func:`needs_cuda_version`.

    Example:
        >>> facts = ProcfsFacts(gpu_uuids=("GPU-aaaa", "GPU-bbbb"))
        >>> nvml_reason(PlanRequest(gpus="0,GPU-bb"), facts) is None
        True
        >>> nvml_reason(PlanRequest(gpus="MIG-1234"), facts)
        'MIG device MIG-1234 (MIG UUIDs come from NVML)'
        >>> nvml_reason(PlanRequest(gpus="all", image_env=(("NVIDIA_REQUIRE_ARCH", "arch>=8.0"),)), facts)
        'requirement NVIDIA_REQUIRE_ARCH=arch>=8.0 needs the GPU brand/architecture'
    """
    from .require import require_disabled

    choice = selection_choice(req)
    if choice.void:
        return None
    if not facts.complete:
        return "procfs lacks a GPU's minor, UUID, bus id or model"
    if req.require:
        env = requirement_env(req)
        if not require_disabled(env.get("NVIDIA_DISABLE_REQUIRE")):
            for key in sorted(env):
                if key.startswith("NVIDIA_REQUIRE_") and any(w in env[key].lower() for w in _REQUIRE_NEEDS_NVML):
                    return f"requirement {key}={env[key]} needs the GPU brand/architecture"
    specs: List[str] = []
    if choice.grammar != "count":
        specs.append(choice.spec)
    denv = decision_env(req)
    specs.extend(denv.get(k, "") for k in ("NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"))
    for spec in specs:
        for token in _selection_tokens(spec):
            reason = _token_needs_nvml(token, facts)
            if reason:
                return reason
    return None


def needs_nvml(req: PlanRequest, facts: ProcfsFacts) -> bool:
    """Whether planning ``req`` needs NVML (:func:`nvml_reason` gives the reason)."""
    return nvml_reason(req, facts) is not None


def needs_cuda_version(req: PlanRequest) -> bool:
    """Whether the requirement check will ask for the host's CUDA version (an ``NVIDIA_REQUIRE_*``
    or legacy ``CUDA_VERSION`` in the final environment, or the 1.0 ``com.nvidia.cuda.version``
    label), so a plan without NVML reads it from libcuda instead of only the driver table.

    Example:
        >>> needs_cuda_version(PlanRequest(image_env=(("NVIDIA_REQUIRE_CUDA", "cuda>=12.0"),)))
        True
        >>> needs_cuda_version(PlanRequest(image_env=(("NVIDIA_REQUIRE_CUDA", "cuda>=12.0"),), require=False))
        False
    """
    from .require import LABEL_CUDA_VERSION, require_disabled

    if not req.require or selection_choice(req).void:
        return False
    env = requirement_env(req)
    if require_disabled(env.get("NVIDIA_DISABLE_REQUIRE")):
        return False
    return any(k.startswith("NVIDIA_REQUIRE_") for k in env) or bool(env.get("CUDA_VERSION")) or \
        any(k == LABEL_CUDA_VERSION for k, _ in req.image_labels)
