"""Build a CDI spec (as a dict) from a discovered :class:`~nvlow.model.Host`.

One spec of kind ``vendor/class`` (default ``nvidia.com/gpu``) holds a device
per GPU and per MIG device under every chosen naming strategy, plus ``all``.
A GPU in MIG mode is no device of its own, only its MIG devices are (as with
nvidia-ctk); ``all`` holds every GPU node and every MIG device's nodes.
The spec-wide ``containerEdits`` carry the control nodes, the driver files
and ``NVIDIA_VISIBLE_DEVICES=void``, so a container gets them once whatever
it requests. There are no hooks: nothing on the host runs when a container
starts.

CDI ``env`` entries *replace* the image's value (the CDI library sets the
variable in the OCI spec), so the spec sets neither ``PATH`` nor
``LD_LIBRARY_PATH``: :mod:`nvlow.cdi.layout` binds libraries into the
directories glibc searches by default and binaries into ``/usr/bin``
(docs/cdi-spec-rules.md).

Example:
    >>> from nvlow.model import DeviceNode, Gpu, Host
    >>> ctl = DeviceNode("/dev/nvidiactl", "/dev/nvidiactl", 195, 255, "ctl")
    >>> gpu = Gpu(0, 0, "GPU-1111", "0000:07:00.0", "A100", node=DeviceNode("/dev/nvidia0", "/dev/nvidia0", 195, 0, "gpu"))
    >>> host = Host("/", "550.54.15", "12.4", "procfs", (gpu,), control_nodes=(ctl,))
    >>> spec = build_spec(host, None, capabilities=("utility",))
    >>> [d["name"] for d in spec.document["devices"]], spec.document["cdiVersion"]
    (['0', 'GPU-1111', 'all'], '0.5.0')
    >>> spec.document["containerEdits"]["env"]
    ['NVIDIA_VISIBLE_DEVICES=void']
"""
from __future__ import annotations

import os

from ..frozen import Record, field
from ..errors import HostError, UsageError
from ..model import DeviceNode, DriverFiles, Gpu, Host, MigDevice
from ..plan.plan import NVIDIA_DIR, Mount, device_mappings
from ..plan.select import select_gpus
from .layout import driver_mounts, volume_source
from .rules import is_device_name, is_vendor_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union


DEFAULT_VENDOR = "nvidia.com"
DEFAULT_CLASS = "gpu"
NAMING_STRATEGIES = ("index", "uuid", "type-index")
#: like nvidia-ctk's default (index plus uuid), so every device has two names
DEFAULT_NAMING = ("index", "uuid")
SPEC_FORMATS = ("yaml", "json")
CDI_DRIVER_FILE_MODES = ("bind", "volume")
#: read-only, like nvidia-ctk before v1.18 ("bind"; later "rbind","rprivate")
MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "bind")
#: IPC sockets must stay writable (toolkit 1.19 dropped "ro" for them too)
IPC_MOUNT_OPTIONS = ("nosuid", "nodev", "bind")
#: the most recent version both podman 4.x (CDI 0.5) and Docker 26 accept (docs/cdi-spec-rules.md "Versions")
MAX_EMITTED_VERSION = "0.5.0"


class GeneratedSpec(Record):
    """A CDI spec document and what was left out of it (one line each)."""

    document: Dict[str, Any]
    warnings: Tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return str(self.document["kind"])

    def qualified_names(self) -> List[str]:
        """``vendor/class=name`` of every device, in spec order."""
        return [f"{self.kind}={d['name']}" for d in self.document["devices"]]


def parse_naming_strategies(values: Iterable[str]) -> Tuple[str, ...]:
    """Naming strategies from repeatable and/or comma-separated option values.

    Example:
        >>> parse_naming_strategies(["index,uuid", "type-index", "index"])
        ('index', 'uuid', 'type-index')
    """
    out: List[str] = []
    for value in values:
        for token in value.split(","):
            token = token.strip().lower()
            if not token:
                continue
            if token not in NAMING_STRATEGIES:
                raise UsageError(f"invalid --device-name-strategy {token!r}",
                                 hint="use index, uuid or type-index (repeat or separate with commas)")
            if token not in out:
                out.append(token)
    return tuple(out) if out else DEFAULT_NAMING


def check_kind(vendor: str, class_: str) -> str:
    """``vendor/class`` after checking both halves against the CDI name rules (docs/cdi-spec-rules.md "Names")."""
    if not is_vendor_name(vendor) or len(vendor) > 253:
        raise UsageError(f"invalid CDI vendor {vendor!r}",
                         hint="start with a letter, end with a letter or digit, use only letters, digits, '_', '.', '-'")
    if not is_vendor_name(class_) or len(class_) > 63 or "." in class_:
        raise UsageError(f"invalid CDI class {class_!r}",
                         hint="start with a letter, end with a letter or digit, use only letters, digits, '_', '-' "
                              "(a '.' needs cdiVersion 0.6.0, which podman 4.x rejects)")
    return f"{vendor}/{class_}"


def device_names(item: Union[Gpu, MigDevice], strategies: Sequence[str]) -> List[str]:
    """The device names of a GPU or MIG device under each strategy (missing UUIDs are skipped).

    Example:
        >>> m = MigDevice(uuid="MIG-abc", parent_index=1, index=0, gpu_instance_id=1, compute_instance_id=0)
        >>> device_names(m, ("index", "uuid", "type-index"))
        ['1:0', 'MIG-abc', 'mig1:0']
    """
    names: List[str] = []
    for s in strategies:
        if s == "index":
            names.append(item.name_for_index if isinstance(item, MigDevice) else str(item.index))
        elif s == "uuid":
            if item.uuid:
                names.append(item.uuid)
        elif s == "type-index":
            names.append(f"mig{item.name_for_index}" if isinstance(item, MigDevice) else f"gpu{item.index}")
    return names


def _node_dict(path: str, host_path: str, node: Optional[DeviceNode]) -> Dict[str, Any]:
    d: Dict[str, Any] = {"path": path}
    if host_path != path:
        d["hostPath"] = host_path  # needs 0.5.0; dropped when equal, as nvidia-ctk does
    if node is not None and node.major >= 0 and node.minor >= 0:
        # With type and major set the engine creates the node without stat'ing hostPath.
        d["type"] = "c"
        d["major"] = node.major
        d["minor"] = node.minor
    return d


def _known_nodes(host: Host) -> Dict[str, DeviceNode]:
    nodes: Dict[str, DeviceNode] = {n.host_path: n for n in host.control_nodes}
    for g in host.gpus:
        if g.node is not None:
            nodes[g.node.host_path] = g.node
        for n in getattr(g, "drm_nodes", ()):  # /dev/dri nodes, where discovery finds them
            nodes[n.host_path] = n
        for m in g.mig_devices:
            for n in m.cap_nodes:
                nodes[n.host_path] = n
    return nodes


def _mount_dict(m: Mount) -> Dict[str, Any]:
    return {"hostPath": m.host_path, "containerPath": m.container_path,
            "options": list(MOUNT_OPTIONS if m.read_only else IPC_MOUNT_OPTIONS)}


def spec_env() -> List[str]:
    """The spec-wide environment: only ``NVIDIA_VISIBLE_DEVICES=void``, so a legacy NVIDIA hook, if an
    engine still has one, does not inject the GPUs a second time. No ``PATH`` or ``LD_LIBRARY_PATH``:
    CDI sets variables, so either would replace the image's own value (:mod:`nvlow.cdi.layout`)."""
    return ["NVIDIA_VISIBLE_DEVICES=void"]


class _Devices(Record, frozen=False):
    """The named devices of a spec being built, the nodes of ``all`` and the warnings."""

    strategies: Sequence[str]
    devices: List[Dict[str, Any]] = field(default_factory=list)
    seen_names: Dict[str, str] = field(default_factory=dict)
    all_nodes: List[Dict[str, Any]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def add_nodes_to_all(self, nodes: List[Dict[str, Any]]) -> None:
        known = {n["path"] for n in self.all_nodes}
        self.all_nodes.extend(n for n in nodes if n["path"] not in known)

    def add_named(self, item: Union[Gpu, MigDevice], label: str, nodes: List[Dict[str, Any]]) -> None:
        for name in device_names(item, self.strategies):
            if not is_device_name(name) or name == "all":
                self.warnings.append(f"{label}: name {name!r} is not a valid CDI device name; skipped")
            elif name in self.seen_names:
                self.warnings.append(f"{label}: device name {name!r} already used by {self.seen_names[name]}; "
                                     "skipped")
            else:
                self.seen_names[name] = label
                self.devices.append({"name": name, "containerEdits": {"deviceNodes": [dict(n) for n in nodes]}})


def _collect_devices(host: Host, caps: Tuple[str, ...], strategies: Sequence[str],
                     common_paths: Set[str]) -> _Devices:
    """A device per GPU and MIG device under each naming strategy, and the nodes ``all`` gets.

    A GPU in MIG mode is not a device of its own (nvidia-ctk leaves it out
    too: with MIG enabled, CUDA runs only on its MIG devices), but ``all``
    still holds its node, and its MIG devices are named as usual.
    """
    known = _known_nodes(host)
    out = _Devices(strategies)
    for gpu in sorted(host.gpus, key=lambda g: g.index):
        items: List[Tuple[str, Union[Gpu, MigDevice]]] = [(str(gpu.index), gpu)]
        items += [(m.name_for_index, m) for m in sorted(gpu.mig_devices, key=lambda m: m.index)]
        for token, item in items:
            label = f"MIG device {token}" if isinstance(item, MigDevice) else f"GPU {token}"
            try:
                maps = device_mappings(host, select_gpus(host.gpus, token), caps)
            except (HostError, UsageError) as exc:
                out.warnings.append(f"{label} left out of the CDI spec: {exc}")
                continue
            nodes = [_node_dict(m.container_path, m.host_path, known.get(m.host_path))
                     for m in maps if m.container_path not in common_paths]
            out.add_nodes_to_all(nodes)
            if isinstance(item, MigDevice) or not item.mig_enabled:
                out.add_named(item, label, nodes)
            elif not item.mig_devices:
                out.warnings.append(f"GPU {token} is in MIG mode but has no MIG devices: only the 'all' "
                                    "device holds it")
    return out


def _driver_mounts(files: Optional[DriverFiles], driver_files: str, volume_path: Optional[str],
                   arch: Optional[str], exists: Callable[[str], bool]) -> Tuple[List[Mount], List[str]]:
    """The mounts of the driver files for ``--driver-files bind`` or ``volume``, and warnings."""
    if files is None:
        return [], []
    if driver_files != "volume":
        return driver_mounts(files, arch=arch)
    if volume_path is None:
        raise HostError("--driver-files volume needs a built driver volume")
    # The 1.0 volume stays at /usr/local/nvidia for images that look there (their own
    # LD_LIBRARY_PATH/PATH name it); its files are also bound where every image looks.
    mounts, warnings = driver_mounts(files, arch=arch, source=volume_source(volume_path, exists))
    return [Mount(volume_path, NVIDIA_DIR)] + mounts, warnings


def build_spec(
    host: Host,
    files: Optional[DriverFiles],
    *,
    capabilities: Iterable[str],
    vendor: str = DEFAULT_VENDOR,
    class_: str = DEFAULT_CLASS,
    strategies: Sequence[str] = DEFAULT_NAMING,
    driver_files: str = "bind",
    volume_path: Optional[str] = None,
    include_all: bool = True,
    arch: Optional[str] = None,
    exists: Callable[[str], bool] = os.path.isfile,
    engine_root: Optional[str] = None,
) -> GeneratedSpec:
    """The CDI spec for every GPU and MIG device of ``host``.

    ``files`` are the selected driver files (None: no mounts). ``driver_files``
    is ``bind`` (read-only binds of the host's files) or ``volume`` (binds of
    the copies in ``volume_path``, a built driver volume, which is also
    mounted at /usr/local/nvidia; ``exists`` checks the volume's files). Files
    go where :mod:`nvlow.cdi.layout` places them for ``arch`` (an ld.so.cache
    arch name, default this machine's). A GPU without a usable device node is
    left out with a warning; a host without any is an error. ``engine_root`` is how the engine
    sees the host root (``--engine-root``): host paths are written in that view
    (:class:`nvlow.plan.plan.EngineView`).
    """
    from .rules import required_version

    kind = check_kind(vendor, class_)
    caps = tuple(sorted(set(capabilities)))
    if driver_files not in CDI_DRIVER_FILE_MODES:
        raise UsageError(f"invalid --driver-files {driver_files!r} for a CDI spec", hint="use bind or volume")
    if host.wsl is not None:
        return _wsl_spec(host, files, kind=kind, driver_files=driver_files, include_all=include_all, arch=arch,
                         engine_root=engine_root)
    known = _known_nodes(host)
    common_maps = device_mappings(host, select_gpus(host.gpus, "none"), caps)  # control nodes only
    found = _collect_devices(host, caps, strategies, {m.container_path for m in common_maps})
    devices = found.devices
    if not devices:
        in_mig = [g for g in host.gpus if g.mig_enabled and not g.mig_devices]
        if in_mig:
            raise HostError(f"GPU {in_mig[0].index} is in MIG mode but has no MIG devices, and no other GPU can "
                            "be a CDI device", hint="create MIG devices (nvidia-smi mig -cgi ... -C) or turn MIG "
                                                    "mode off (nvidia-smi -mig 0)")
        raise HostError("no GPU with a usable device node was found: a CDI spec needs at least one device",
                        hint="'nvlow info' lists the GPUs; 'nvlow doctor' checks the device nodes")
    if include_all:
        devices.append({"name": "all", "containerEdits": {"deviceNodes": found.all_nodes}})
    mounts, mount_warnings = _driver_mounts(files, driver_files, volume_path, arch, exists)
    edits: Dict[str, Any] = {
        "env": spec_env(),
        "deviceNodes": [_node_dict(m.container_path, m.host_path, known.get(m.host_path)) for m in common_maps],
    }
    if mounts:
        edits["mounts"] = [_mount_dict(m) for m in mounts]
    document: Dict[str, Any] = {"cdiVersion": "", "kind": kind, "devices": devices, "containerEdits": edits}
    version, reason = required_version(document)
    if tuple(map(int, version.split("."))) > tuple(map(int, MAX_EMITTED_VERSION.split("."))):
        raise UsageError(f"the spec would need cdiVersion {version} for {reason}, which podman 4.x rejects")
    document["cdiVersion"] = version
    if engine_root is not None:
        _engine_view(document, engine_root, host.root)
    return GeneratedSpec(document, tuple(found.warnings + mount_warnings))


def _wsl_spec(host: Host, files: Optional[DriverFiles], *, kind: str, driver_files: str, include_all: bool,
              arch: Optional[str], engine_root: Optional[str]) -> GeneratedSpec:
    """The spec of a WSL2 host, as nvidia-ctk's WSL mode: one device ``all`` with ``/dev/dxg``, the
    driver files bound at their host paths (:func:`nvlow.host.wsl.placements`: link names and
    ``/usr/bin/nvidia-smi`` as second binds, not hooks), then, as on every nvlow spec, the libraries
    under their SONAMEs in the loader's default directories (:mod:`nvlow.cdi.layout`), since no
    ldconfig runs and the spec sets no ``LD_LIBRARY_PATH``."""
    from ..host.wsl import ALL_DEVICE, dxg_node, placements

    if driver_files != "bind":
        raise UsageError(f"--driver-files {driver_files} is not available on WSL2: the driver files are the "
                         "Windows driver store's", hint="use bind")
    if not include_all:
        raise UsageError("a WSL2 spec has only the device 'all' (every GPU is behind /dev/dxg)",
                         hint="drop --no-all-device")
    node = dxg_node(host)
    devices = [{"name": ALL_DEVICE, "containerEdits": {
        "deviceNodes": [_node_dict(node.container_path, node.host_path, node)]}}]
    mounts: List[Mount] = []
    warnings: List[str] = []
    if files is not None:
        mounts = [Mount(h, c) for h, c in placements(files)]
        extra, warnings = driver_mounts(files, arch=arch)
        seen = {m.container_path for m in mounts}
        mounts += [m for m in extra if m.container_path not in seen]
    edits: Dict[str, Any] = {"env": spec_env()}
    if mounts:
        edits["mounts"] = [_mount_dict(m) for m in mounts]
    document: Dict[str, Any] = {"cdiVersion": "", "kind": kind, "devices": devices, "containerEdits": edits}
    from .rules import required_version

    document["cdiVersion"] = required_version(document)[0]
    if engine_root is not None:
        _engine_view(document, engine_root, host.root)
    return GeneratedSpec(document, tuple(warnings))


def _engine_view(document: Dict[str, Any], engine_root: str, host_root: str) -> None:
    """Rewrite the host paths of every edit as the engine sees them; ``hostPath`` is dropped where it
    becomes equal to ``path`` (nvidia-ctk's shape)."""
    from ..plan.plan import EngineView

    view = EngineView(root=engine_root)
    edits = [document["containerEdits"]] + [d["containerEdits"] for d in document["devices"]]
    for edit in edits:
        for node in edit.get("deviceNodes", []):
            host_path = view.path(node.get("hostPath", node["path"]), host_root)
            node.pop("hostPath", None)
            if host_path != node["path"]:
                node["hostPath"] = host_path
        for mount in edit.get("mounts", []):
            mount["hostPath"] = view.path(mount["hostPath"], host_root)


def spec_header(driver_version: Optional[str]) -> List[str]:
    """Comment lines at the top of a YAML spec; the first marks it as nvlow's."""
    from .. import __version__

    return [
        f"Generated by nvlow {__version__} for NVIDIA driver {driver_version or 'unknown'}; do not edit.",
        "Regenerate after a driver or GPU change: nvlow cdi generate --write --if-changed",
        "Driver files sit in the loader's default directories and /usr/bin; PATH and LD_LIBRARY_PATH stay the image's.",
    ]


def render_spec(spec: GeneratedSpec, fmt: str, *, driver_version: Optional[str] = None) -> str:
    """The spec as text: ``yaml`` (``---`` first, nvlow header comment) or ``json`` (2-space indent)."""
    if fmt == "json":
        import json  # only here: json imports re, which the YAML path does without

        return json.dumps(spec.document, indent=2) + "\n"
    if fmt == "yaml":
        from .yaml import dump_yaml

        return dump_yaml(spec.document, header=spec_header(driver_version), document_start=True)
    raise UsageError(f"invalid --format {fmt!r}", hint="use yaml or json")
