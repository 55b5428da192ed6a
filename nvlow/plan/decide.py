"""The one decision: (host, :class:`~nvlow.plan.request.PlanRequest`) -> :class:`~nvlow.plan.plan.Plan`.

Every path calls :func:`plan_for`: ``nvlow args``/``exec`` (local, and ``serve`` for a remote
client, which sends its whole request), ``serve``'s v1 and v2 endpoints, ``nvlow list`` and the
Python API. The steps, in order:

1. the selection source, capabilities and driver-files mode are chosen from the request alone
   (:mod:`nvlow.plan.request`); a ``void`` selection stops here without touching the host, so
   ``NVIDIA_VISIBLE_DEVICES=void`` works on a host without a driver, as with the toolkit;
2. the selection is resolved against the host's GPUs (:func:`nvlow.plan.select.resolve_choice`);
3. the image requirements are evaluated on the container's final environment;
4. the driver files of the capabilities are selected (the driver volume holds every capability);
5. device nodes: control nodes, GPUs, DRM nodes with ``graphics``/``display``, MIG access nodes,
   and the MIG config/monitor, IMEX channel and multi-node feature (GDS, MOFED, GDRCopy, NVSwitch)
   nodes the environment or nvlow's options ask for;
6. :func:`nvlow.plan.plan.build_plan` places files and merges ``PATH``/``LD_LIBRARY_PATH``;
7. the engine's view (``engine=``, :class:`nvlow.plan.plan.EngineView`): device and bind-mount host paths
   with the root prefix the engine sees (``--engine-root``) and the volume plugin's name.

Example:
    >>> import nvlow
    >>> from nvlow.plan.request import PlanRequest
    >>> host = nvlow.load_host(simulate="dgx-a100")
    >>> plan = plan_for(host, PlanRequest(image_env=(("NVIDIA_VISIBLE_DEVICES", "3"), ("NVIDIA_DRIVER_CAPABILITIES", "utility"))))
    >>> [g.index for g in plan.selection.gpus], plan.capabilities
    ([3], ('utility',))
    >>> plan_for(lambda: 1 / 0, PlanRequest(gpus="void")).devices   # void never looks at the host
    ()
"""
from __future__ import annotations

from ..errors import HostError, SelectionError, UsageError
from ..model import DeviceNode, DriverFiles, Host
from .plan import EngineView, Plan, build_plan
from .request import (DRIVER_FILE_MODES, PlanRequest, SelectionChoice, capabilities_choice, decision_env,
                      requested_features, requirement_env, selection_choice)
from ..host.root import HostRoot
from .select import Selection, resolve_choice, select_gpus
from ..text import number_or_none

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

    HostSource = Union[Host, Callable[[], Host]]

_MIG_ADMIN = (("NVIDIA_MIG_CONFIG_DEVICES", "mig_config_node", "config"),
              ("NVIDIA_MIG_MONITOR_DEVICES", "mig_monitor_node", "monitor"))
_OFF = ("", "void", "none")


def host_root(host: Host) -> HostRoot:
    """The :class:`HostRoot` a host was discovered from (file reads only)."""
    return HostRoot(host.root, simulated=host.simulated)


def select_files(host: Host, capabilities: Tuple[str, ...]) -> DriverFiles:
    """The driver files of ``capabilities`` (HostError when the driver version is unknown)."""
    from ..host.driverfiles import select_driver_files

    if host.wsl is not None:  # WSL2: the toolkit's fixed set, whatever the capabilities (nvlow.host.wsl)
        from ..host.wsl import wsl_driver_files

        return wsl_driver_files(host)
    if not host.driver_version:
        raise HostError("the NVIDIA driver version is unknown, so its files cannot be selected",
                        hint="check /proc/driver/nvidia/version ('nvlow doctor')")
    return select_driver_files(host_root(host), host.driver_version, frozenset(capabilities))


def check_requirements(host: Host, selection: Selection, env: Mapping[str, str],
                       labels: Mapping[str, str]) -> Tuple[str, ...]:
    """The unmet requirements of a container environment on this host and selection (sentences)."""
    from .require import GpuFacts, HostFacts, check_image

    gpus = list(selection.gpus)
    parents = {g.index: g for g in host.gpus}
    for m in selection.mig_devices:
        parent = parents.get(m.parent_index)
        if parent is not None and parent not in gpus:
            gpus.append(parent)
    facts = HostFacts(cuda_version=host.cuda_version, driver_version=host.driver_version,
                      gpus=tuple(GpuFacts(arch=g.compute_capability, brand=g.brand, index=g.index) for g in gpus))
    return tuple(check_image(env, labels, facts))


def _mig_admin_nodes(host: Host, env: Mapping[str, str], privileged: Optional[bool]
                     ) -> Tuple[List[DeviceNode], List[str]]:
    """NVIDIA_MIG_CONFIG_DEVICES / NVIDIA_MIG_MONITOR_DEVICES: the listed GPUs' nodes and the
    config/monitor capability node. The toolkit refuses them in an unprivileged container
    ("cannot set MIG_CONFIG_DEVICES in non privileged container", nvidia-container-runtime-hook)."""
    nodes: List[DeviceNode] = []
    warnings: List[str] = []
    for var, attr, what in _MIG_ADMIN:
        value = env.get(var, "")
        if value.strip().lower() in _OFF:
            continue
        if privileged is False:
            raise UsageError(f"{var} is set but the container is not privileged: MIG {what} needs --privileged",
                             hint=f"add --privileged to the engine command line, or unset {var}")
        if privileged is None:
            warnings.append(f"{var}: MIG {what} access works only in a privileged container (run --privileged)")
        node: Optional[DeviceNode] = getattr(host, attr)
        if node is None:
            raise HostError(f"{var} is set but the MIG {what} capability node is missing "
                            f"(/proc/driver/nvidia/capabilities/mig/{what} and its /dev/nvidia-caps node)",
                            hint=f"create it with 'nvidia-modprobe -f /proc/driver/nvidia/capabilities/mig/{what}'")
        sel = select_gpus(host.gpus, value, source=var)
        nodes.extend(g.node for g in sel.gpus if g.node is not None)
        nodes.append(node)
    return nodes, warnings


def _imex_nodes(host: Host, env: Mapping[str, str]) -> List[DeviceNode]:
    """NVIDIA_IMEX_CHANNELS (``all`` or channel numbers): ``/dev/nvidia-caps-imex-channels/channelN``."""
    value = env.get("NVIDIA_IMEX_CHANNELS", "")
    if value.strip().lower() in _OFF:
        return []
    if value.strip().lower() == "all":
        return list(host.imex_channels)
    by_minor = {n.minor: n for n in host.imex_channels}
    out: List[DeviceNode] = []
    for token in (t.strip() for t in value.split(",")):
        if not token:
            continue
        if not (token.isascii() and token.isdigit() and len(token) <= 10):
            raise SelectionError(f"invalid IMEX channel {token!r} in NVIDIA_IMEX_CHANNELS",
                                 hint="use all or channel numbers such as 0,1")
        node = by_minor.get(int(token))
        if node is None:
            raise SelectionError(f"unknown IMEX channel {token}: /dev/nvidia-caps-imex-channels/channel{token} "
                                 "does not exist", hint="create the channel with the IMEX daemon or nvidia-modprobe")
        if node not in out:
            out.append(node)
    return out


def _feature_nodes(host: Host, request: PlanRequest) -> Tuple[List[DeviceNode], List[str]]:
    """The multi-node feature nodes the request asks for (:func:`~nvlow.plan.request.requested_features`);
    a feature whose nodes the host lacks is a warning naming it and the paths, not an error (the
    toolkit's char-device discoverers find nothing and inject nothing)."""
    from ..host.extradevices import feature_paths

    nodes: List[DeviceNode] = []
    warnings: List[str] = []
    for feature, source in requested_features(request):
        found = host.features(feature)
        if not found:
            warnings.append(f"{feature} requested ({source}) but this host has no usable {feature_paths(feature)}: "
                            f"the container gets no {feature} devices")
        nodes.extend(n for n in found if n not in nodes)
    return nodes, warnings


def _void_plan(request: PlanRequest, selection: Selection, caps: Tuple[str, ...]) -> Plan:
    return Plan(driver_version=None, cuda_version=None, selection=selection, capabilities=caps,
                driver_files_mode=request.driver_files, devices=(), mounts=(), env=())


def _volume(host: Host, volumes_dir: Optional[str]) -> str:
    from .volume import ensure_driver_volume

    # one volume per driver version serves every container and `nvlow serve`'s plugin, so it
    # holds every capability's files, as nvidia-docker 1.0's did (nvlow.plan.volume: one definition)
    return ensure_driver_volume(host_root(host), host.driver_version, volumes_dir).path


def plan_for(host: HostSource, request: PlanRequest, *, volumes_dir: Optional[str] = None,
             selection: Optional[Selection] = None,
             files_for: Optional[Callable[[Tuple[str, ...]], DriverFiles]] = None,
             volume_for: Optional[Callable[[Host], str]] = None,
             engine: Optional[EngineView] = None) -> Plan:
    """The plan for ``request`` on ``host`` (a Host, or a callable that discovers it when needed).

    ``selection`` replaces the request's selection sources with GPUs already resolved
    (:func:`nvlow.make_plan` given a :class:`~nvlow.plan.select.Selection`). ``files_for`` and
    ``volume_for`` replace how driver files are selected and the driver volume is built
    (``serve`` passes its cache and its one builder); the decision stays the same. ``engine`` says
    how the container engine sees the host (``--engine-root``, the plugin name): the plan's host
    paths are translated to that view in one step, last.

    Raises :class:`~nvlow.errors.UsageError`/``SelectionError`` (exit 2) for bad input,
    :class:`~nvlow.errors.RequirementError` (exit 3) for unmet image requirements and
    :class:`~nvlow.errors.HostError` for what the host lacks.
    """
    from ..host.capabilities import CAPABILITY_ORDER, parse_capabilities

    if request.driver_files not in DRIVER_FILE_MODES:
        raise UsageError(f"invalid driver-files mode {request.driver_files!r}", hint="use bind, volume or plugin")
    parsed = parse_capabilities(capabilities_choice(request)[1])
    caps = tuple(c for c in CAPABILITY_ORDER if c in parsed)
    if selection is None:
        choice = selection_choice(request)
        if choice.void:
            return _void_plan(request, Selection((), (), "void", choice.source, choice.spec), tuple(sorted(caps)))
    elif selection.is_void:
        return _void_plan(request, selection, tuple(sorted(caps)))
    found = host() if callable(host) else host
    if selection is None:
        selection = _resolve(found, request, choice)
    env = requirement_env(request)
    if request.require:
        failures = check_requirements(found, selection, env, dict(request.image_labels))
        if failures:
            from .require import requirement_error

            raise requirement_error(failures)
    files = files_for(caps) if files_for is not None else select_files(found, caps)
    volume_path: Optional[str] = None
    if request.driver_files == "volume":
        volume_path = volume_for(found) if volume_for is not None else _volume(found, volumes_dir)
    denv = decision_env(request)
    extra, warnings = _mig_admin_nodes(found, denv, request.privileged)
    extra.extend(_imex_nodes(found, denv))
    feature_nodes, feature_warnings = _feature_nodes(found, request)
    extra.extend(feature_nodes)
    warnings.extend(feature_warnings)
    warnings.extend(_missing_mig_caps(found, selection))
    explicit = dict(request.container_env or ())
    image_env: Optional[Dict[str, str]] = dict(request.image_env) if request.image_env is not None else None
    plan = build_plan(found, selection, caps, files, mode=request.driver_files, volume_path=volume_path,
                      image_env=image_env, explicit_env=explicit, extra_devices=tuple(extra))
    if warnings:
        from ..frozen import replace

        plan = replace(plan, warnings=plan.warnings + tuple(warnings))
    if engine is not None:
        plan = engine.apply(plan, found.root)
    return plan


def _resolve(host: Host, request: PlanRequest, choice: SelectionChoice) -> Selection:
    """The selection on ``host``; inside a Slurm job (nvlow's own environment), bounded by the job's
    allocation: the default, ``all`` and a docker GPU count mean the allocated GPUs, and an explicit
    GPU outside them is an error naming the allocation (docs/slurm.md)."""
    if all(name != "SLURM_JOB_ID" for name, _ in request.process_env):  # slurm.JOB_ID: outside a job
        # the Slurm module is not even loaded
        return resolve_choice(host.gpus, choice)
    from .slurm import allocation_spec, check_selection, slurm_allocation

    allocation = slurm_allocation(dict(request.process_env))
    if allocation is None:
        return resolve_choice(host.gpus, choice)
    spec = allocation_spec(host, allocation)
    source = f"{choice.source}, within the Slurm allocation {allocation.describe()}"
    if choice.source in ("default", "legacy image") or choice.spec.strip().lower() == "all" or \
            (choice.grammar == "count" and choice.spec == "-1"):
        return resolve_choice(host.gpus, SelectionChoice(source, spec, "list"))
    if choice.grammar == "count":  # docker --gpus N: the first N allocated GPUs
        tokens = [] if spec == "none" else spec.split(",")
        wanted = number_or_none(choice.spec) or 0
        if wanted > len(tokens):
            raise SelectionError(f"docker --gpus {choice.spec} asks for more GPUs than the Slurm allocation "
                                 f"holds ({len(tokens)}: {allocation.describe()})",
                                 hint="ask Slurm for more (srun --gres=gpu:N) or fewer with --gpus")
        return resolve_choice(host.gpus, SelectionChoice(source, ",".join(tokens[:wanted]) or "none", "list"))
    selection = resolve_choice(host.gpus, choice)
    check_selection(host, allocation, selection.gpus, selection.mig_devices)
    return selection


def _missing_mig_caps(host: Host, selection: Selection) -> List[str]:
    """MIG devices ``all`` had to leave out because their /dev/nvidia-caps access nodes are missing."""
    if selection.spec.strip().lower() != "all":
        return []
    missing = [m.uuid or m.name_for_index for g in selection.gpus for m in g.mig_devices if not m.cap_nodes]
    if not missing:
        return []
    return [f"MIG device(s) {', '.join(missing)} left out: no /dev/nvidia-caps access nodes "
            "(create them with 'nvidia-modprobe -f /proc/driver/nvidia/capabilities/...')"]
