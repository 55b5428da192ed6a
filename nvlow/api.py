"""nvlow as a library: discover a host, select GPUs, build and render a plan.

This is the stable public surface, re-exported from :mod:`nvlow`. Nothing here
prints, exits or reads the process environment: callers pass ``env`` in.
Errors are the :class:`nvlow.errors.NvlowError` family; ``exit_code`` tells
usage/selection errors (2) and unmet image requirements (3) from the rest (1).

Example:
    >>> import nvlow
    >>> host = nvlow.load_host(simulate="dgx-a100")
    >>> plan = nvlow.make_plan(host, gpus="0,1", capabilities="utility")
    >>> [d.container_path for d in plan.devices]
    ['/dev/nvidiactl', '/dev/nvidia0', '/dev/nvidia1']
    >>> nvlow.rewrite_argv(["docker", "run", "--rm", "busybox", "true"], plan)[-3:]
    ['--env=LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib', 'busybox', 'true']
"""
from __future__ import annotations

from .model import DriverFiles, Host
from .plan.plan import Plan
from .host.root import HostRoot
# plan.request loads with the functions that build requests: `nvlow cdi generate` and the host commands
# open their root through this module and never need it
from .plan.select import Selection, resolve_choice, select_gpus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

    from .plan.request import EngineRequest, PlanRequest
    from .records import DriverLibrary

    Capabilities = Union[str, Sequence[str], FrozenSet[str]]


def host_root(host: Host) -> HostRoot:
    """The :class:`HostRoot` a host was discovered from (file reads only)."""
    from .plan.decide import host_root as _host_root

    return _host_root(host)


def open_host_root(root: str = "/", *, simulate: Optional[str] = None,
                   env: Optional[Mapping[str, str]] = None) -> Tuple[HostRoot, Callable[[HostRoot], DriverLibrary]]:
    """A host root and a driver-library opener, for a real root or a simulated preset.

    Example:
        >>> r, opener = open_host_root(simulate="workstation")
        >>> r.simulated
        'workstation'
    """
    env = env if env is not None else {}
    if simulate:
        from .simulate.hosttree import simulated_host

        return simulated_host(simulate, env)
    hr = HostRoot(root)

    def opener(r: HostRoot) -> DriverLibrary:
        from .native.probe import open_native_library

        return open_native_library(r, env)

    return hr, opener


def load_host(root: str = "/", *, simulate: Optional[str] = None, use_nvml: bool = True,
              load_uvm: bool = False, env: Optional[Mapping[str, str]] = None) -> Host:
    """Discover the driver, GPUs, MIG devices and device nodes of a host.

    ``simulate`` names a preset (dgx-a100, dgx-h100-mig, workstation, no-gpu,
    no-driver) instead of a real root. ``load_uvm`` allows running
    ``nvidia-modprobe -u -c=0`` when /dev/nvidia-uvm is missing.

    Example:
        >>> h = load_host(simulate="dgx-h100-mig")
        >>> (h.driver_version, len(h.gpus), len(h.gpus[0].mig_devices))
        ('550.90.07', 8, 7)
    """
    from .host.discover import discover

    hr, opener = open_host_root(root, simulate=simulate, env=env)
    return discover(hr, library_opener=opener, use_nvml=use_nvml, load_uvm=load_uvm)


def resolve_gpus(host: Host, spec: str = "all") -> Selection:
    """Resolve a selection string (same rules as the CLI's ``--gpus``).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> [g.index for g in resolve_gpus(h, "3,1").gpus]
        [1, 3]
    """
    if spec.startswith("device="):
        spec = spec[len("device="):]
    return select_gpus(host.gpus, spec, source="api")


def capabilities_of(value: Optional[Capabilities]) -> FrozenSet[str]:
    """Parse capabilities given as ``"compute,utility"``, a sequence, or None (default).

    Example:
        >>> sorted(capabilities_of(None))
        ['compute', 'utility']
    """
    from .host.driverfiles import DEFAULT_CAPABILITIES, parse_capabilities

    if value is None:
        return DEFAULT_CAPABILITIES
    if isinstance(value, str):
        return parse_capabilities(value)
    return parse_capabilities(",".join(value))


def driver_files(host: Host, capabilities: Optional[Capabilities] = None) -> DriverFiles:
    """The driver libraries, binaries, configs and sockets for ``capabilities``.

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> driver_files(h, "utility").libraries64[0].names[1]
        'libnvidia-ml.so.1'
    """
    from .plan.decide import select_files

    return select_files(host, tuple(sorted(capabilities_of(capabilities))))


def _capabilities_text(value: Optional[Capabilities]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


def make_plan(host: Host, gpus: Union[str, Selection] = "all", capabilities: Optional[Capabilities] = None, *,
              driver_files_mode: str = "bind", volumes_dir: Optional[str] = None,
              image_env: Optional[Mapping[str, str]] = None,
              explicit_env: Optional[Mapping[str, str]] = None) -> Plan:
    """Devices, mounts and environment for a GPU selection (no requirement check: see :func:`plan_for`).

    ``driver_files_mode`` is ``bind`` (read-only binds), ``volume`` (builds the
    1.0 driver volume under ``volumes_dir``) or ``plugin``. ``image_env`` (the
    image's environment) lets PATH/LD_LIBRARY_PATH be merged, not replaced;
    ``explicit_env`` holds what the engine command line sets (never touched).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> p = make_plan(h, "2", "utility", image_env={"PATH": "/bin"})
        >>> p.env_dict()["PATH"]
        '/bin:/usr/local/nvidia/bin'
    """
    from .plan.decide import plan_for as _plan_for
    from .plan.request import PlanRequest, pairs

    request = PlanRequest(gpus=None if isinstance(gpus, Selection) else gpus,
                          capabilities=_capabilities_text(capabilities), container_env=pairs(explicit_env),
                          image_env=pairs(image_env), driver_files=driver_files_mode, require=False)
    return _plan_for(host, request, volumes_dir=volumes_dir,
                     selection=gpus if isinstance(gpus, Selection) else None)


def plan_for(host: Host, request: PlanRequest, *, volumes_dir: Optional[str] = None) -> Plan:
    """The plan for a full :class:`PlanRequest` (what ``nvlow args``/``exec`` and ``serve`` do):
    selection source, capabilities and requirements decided exactly as the CLI decides them.

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> req = request_from_argv(["docker", "run", "-e", "NVIDIA_VISIBLE_DEVICES=1", "img"], {}).request
        >>> [g.index for g in plan_for(h, req).selection.gpus]
        [1]
    """
    from .plan.decide import plan_for as _plan_for

    return _plan_for(host, request, volumes_dir=volumes_dir)


def request_from_argv(argv: Sequence[str], env: Optional[Mapping[str, str]] = None, *,
                      image_env: Optional[Mapping[str, str]] = None,
                      image_labels: Optional[Mapping[str, str]] = None,
                      image_hint: Optional[str] = None) -> EngineRequest:
    """Read a docker/podman command line into a :class:`PlanRequest` (``.request``); ``env`` is
    nvlow's environment (NVIDIA_VISIBLE_DEVICES, NV_GPU, ... and bare ``-e NAME`` values).

    Example:
        >>> er = request_from_argv(["docker", "run", "--gpus", '"device=1,2"', "img"])
        >>> er.request.docker_gpus
        ('"device=1,2"',)
    """
    from .frozen import replace

    from .plan.request import pairs, request_from_argv as _from_argv

    env = env if env is not None else {}
    er = _from_argv(argv, env, image_hint=image_hint)
    if image_env is None and image_labels is None:
        return er
    return replace(er, request=replace(er.request, image_env=pairs(image_env),
                                       image_labels=pairs(image_labels) or ()))


def docker_args(plan: Plan) -> List[str]:
    """The plan as ``docker run``/``podman run`` arguments.

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> docker_args(make_plan(h, "none", "utility"))[0].endswith(":/dev/nvidiactl")
        True
    """
    from .plan.render import docker_args as _docker_args

    return _docker_args(plan)


def plan_document(plan: Plan, host: Optional[Host] = None) -> Dict[str, Any]:
    """The plan as the ``nvlow args --json`` document (schema_version 1).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> doc = plan_document(make_plan(h, "1", "utility"), h)
        >>> (doc["schema_version"], [g["index"] for g in doc["gpus"]])
        (1, [1])
    """
    from .plan.render import plan_document as _plan_document

    return _plan_document(plan, host)


def compose_fragment(plan: Plan) -> str:
    """The plan as a docker compose service fragment (YAML text).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> compose_fragment(make_plan(h, "0", "utility")).splitlines()[1]
        'devices:'
    """
    from .plan.render import compose_fragment as _compose

    return _compose(plan)


def cdi_spec(host: Host, capabilities: Optional[Capabilities] = "all", *, vendor: str = "nvidia.com",
             class_: str = "gpu", strategies: Sequence[str] = ("index", "uuid")) -> Dict[str, Any]:
    """A CDI spec (dict) with a device per GPU and MIG device plus ``all``.

    Example:
        >>> spec = cdi_spec(load_host(simulate="dgx-a100"))
        >>> (spec["cdiVersion"], spec["kind"], spec["devices"][0]["name"])
        ('0.5.0', 'nvidia.com/gpu', '0')
    """
    from .cdi.spec import build_spec

    caps = capabilities_of(capabilities)
    generated = build_spec(host, driver_files(host, caps), capabilities=caps, vendor=vendor, class_=class_,
                           strategies=tuple(strategies))
    return dict(generated.document)


def rewrite_argv(argv: Sequence[str], plan: Plan, *, image_hint: Optional[str] = None) -> List[str]:
    """Insert the plan's arguments into a docker/podman command line, right before the image,
    exactly as ``nvlow exec`` does.

    Commands that start no container (``ps``, ``build``, ``run --help``) are
    returned unchanged; ``--gpus``, ``--runtime=nvidia`` and ``nvidia.com`` CDI
    devices are removed (the plan replaces them).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> rewrite_argv(["docker", "ps"], make_plan(h, "0"))
        ['docker', 'ps']
        >>> argv = rewrite_argv(["docker", "run", "--runtime=nvidia", "--device", "nvidia.com/gpu=0", "img"], make_plan(h, "0"))
        >>> "--runtime=nvidia" in argv, "nvidia.com/gpu=0" in argv
        (False, False)
    """
    from .plan.request import request_from_argv as _from_argv

    return _from_argv(argv, {}, image_hint=image_hint).rewrite(docker_args(plan))


def check_requirements(host: Host, selection: Selection, image_env: Mapping[str, str],
                       image_labels: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """The image requirements (``NVIDIA_REQUIRE_*``, ``CUDA_VERSION``, the 1.0 CUDA label) this
    host and selection do not meet, as sentences; empty when everything holds. ``image_env`` is
    the container's final environment (the image's, overlaid by ``-e``).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> check_requirements(h, resolve_gpus(h, "0"), {"NVIDIA_REQUIRE_CUDA": "cuda>=12.6"})
        ('unsatisfied condition: cuda>=12.6 (host CUDA 12.4)',)
        >>> check_requirements(h, resolve_gpus(h, "0"), {"NVIDIA_REQUIRE_CUDA": "cuda>=12.0 brand=nvidia"})
        ()
    """
    from .plan.decide import check_requirements as _check

    return _check(host, selection, dict(image_env), dict(image_labels or {}))


def selection_request(env: Mapping[str, str], *, gpus: Optional[str] = None,
                      container_env: Optional[Mapping[str, str]] = None,
                      image_env: Optional[Mapping[str, str]] = None,
                      docker_gpus: Optional[str] = None) -> PlanRequest:
    """A :class:`PlanRequest` from the selection sources (docker ``--gpus``, ``gpus``,
    NVIDIA_VISIBLE_DEVICES of the container and of ``env``, NV_GPU, the image).

    Example:
        >>> selection_request({"NV_GPU": "1"}, docker_gpus="2").docker_gpus
        ('2',)
    """
    from .plan.request import PlanRequest, pairs, process_pairs

    return PlanRequest(docker_gpus=(docker_gpus,) if docker_gpus is not None else (), gpus=gpus,
                       container_env=pairs(container_env), process_env=process_pairs(env),
                       image_env=pairs(image_env))


def choose_gpus(host: Host, request: PlanRequest) -> Selection:
    """The GPUs ``request`` selects (first source present wins, as for every command).

    Example:
        >>> h = load_host(simulate="dgx-a100")
        >>> [g.index for g in choose_gpus(h, selection_request({"NVIDIA_VISIBLE_DEVICES": "2,5"})).gpus]
        [2, 5]
    """
    from .plan.request import selection_choice

    return resolve_choice(host.gpus, selection_choice(request))
