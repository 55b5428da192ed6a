"""What a remote answer may put on a ``docker run`` command line: data checked item by item, never argv.

A remote ``nvlow serve`` answers a plan document and an nvidia-docker-plugin a line of options;
both come from the network, so neither reaches the engine as given. The client keeps only

* device nodes under NVIDIA's names (``/dev/nvidia*``, ``/dev/nvidia-caps/...``,
  ``/dev/nvidia-caps-imex-channels/channelN``, ``/dev/dri/cardN|renderDN``), and the multi-node
  nodes (``/dev/nvidia-fsN``, ``/dev/infiniband/uverbsN|rdma_cm``, ``/dev/gdrdrv``,
  ``/dev/nvidia-nvswitch*``) only for a feature the request asked for, with a host path that
  is the same node (it ends with the container path; a server under ``--root`` prefixes it);
* read-only binds of driver files into the places nvlow uses (``/usr/local/nvidia/{bin,lib,lib64}``,
  the driver's config, firmware and X.Org/GBM paths), writable binds only for the driver's IPC
  sockets, and the driver volume ``nvidia_driver_<version>`` at ``/usr/local/nvidia``;
* the volume drivers ``nvlow``/``nvidia-docker``, the variables ``PATH``/``LD_LIBRARY_PATH`` and
  ``VDPAU_DRIVER_PATH=/usr/local/nvidia/lib64``;

and renders the arguments itself (:func:`nvlow.plan.render.docker_args`). Anything else is refused with
an error naming the item (``--privileged``, ``-v /:/host``, ``--cap-add``, a ``..`` path).

Example:
    >>> check_v1_args(("--volume-driver=nvidia-docker", "--device=/dev/nvidia0"), "plugin")
    ('--volume-driver=nvidia-docker', '--device=/dev/nvidia0')
    >>> check_v1_args(("--privileged",), "plugin")
    Traceback (most recent call last):
    ...
    nvlow.errors.RemoteError: plugin answered an option nvlow never passes on: '--privileged'
"""
from __future__ import annotations


from ..errors import RemoteError
from ..text import lazy_re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple


_DEVICE = lazy_re(r"/dev/(?:nvidiactl|nvidia-uvm|nvidia-uvm-tools|nvidia-modeset|nvidia[0-9]{1,4}"
                     r"|nvidia-caps/nvidia-cap[0-9]{1,7}|nvidia-caps-imex-channels/channel[0-9]{1,7}"
                     r"|dri/card[0-9]{1,4}|dri/renderD[0-9]{1,4})")
#: the multi-node feature nodes (nvlow.host.extradevices), accepted only for a feature the request asked for
_FEATURE_DEVICE = {
    "gds": lazy_re(r"/dev/nvidia-fs[0-9]{1,4}"),
    "mofed": lazy_re(r"/dev/infiniband/(?:uverbs[0-9]{1,4}|rdma_cm)"),
    "gdrcopy": lazy_re(r"/dev/gdrdrv"),
    "nvswitch": lazy_re(r"/dev/nvidia-nvswitch(?:ctl|[0-9]{1,4})"),
}
_LIBRARY = lazy_re(r"lib[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,200}\.so(?:\.[0-9A-Za-z_]{1,20}){0,6}")
_VOLUME = lazy_re(r"nvidia_driver_[0-9]{1,6}(?:\.[0-9]{1,6}){1,3}")
_VOLUME_DRIVERS = ("nvlow", "nvidia-docker")
NVIDIA_DIR = "/usr/local/nvidia"
_FIRMWARE = lazy_re(r"/(?:usr/)?lib/firmware/nvidia/[0-9.]{1,20}/[A-Za-z0-9_.-]{1,100}\.bin")
_XORG = lazy_re(r"/[A-Za-z0-9_./-]{1,200}/xorg/modules/[A-Za-z0-9_/-]{0,100}/"
                   r"(?:nvidia_drv\.so|libglxserver_nvidia\.so(?:\.[0-9.]{1,20})?)")
_XORG_CONF = lazy_re(r"/(?:usr/share|etc)/X11/xorg\.conf\.d/[A-Za-z0-9_.-]{0,60}nvidia[A-Za-z0-9_.-]{0,60}\.conf")
_GBM = lazy_re(r"/[A-Za-z0-9_./-]{1,200}/gbm/nvidia-drm_gbm\.so")
_ENV = ("PATH", "LD_LIBRARY_PATH")
#: variables with the one value nvlow gives them
_ENV_FIXED = {"VDPAU_DRIVER_PATH": NVIDIA_DIR + "/lib64"}
_MAX_ITEMS = 2048


def _clean_path(path: Any, what: str, where: str) -> str:
    """An absolute, normalised path without separators docker would read (``:``, ``,``) or control bytes."""
    import posixpath

    if not isinstance(path, str) or not path.startswith("/") or len(path) > 4096:
        raise RemoteError(f"{where} answered an invalid {what}: {str(path)[:80]!r}")
    if posixpath.normpath(path) != path or any(c in path for c in ":,\n\r\0"):
        raise RemoteError(f"{where} answered a {what} nvlow refuses: {path[:80]!r}")
    return path


def _known_file_targets() -> Tuple[str, ...]:
    from ..host.capabilities import CONFIG_FILES

    return tuple(p for p, _cap in CONFIG_FILES)


def _ipc_targets() -> Tuple[str, ...]:
    from ..host.capabilities import DEFAULT_MPS_PIPE_DIR, IPC_PATHS

    return tuple(p for p, _cap in IPC_PATHS) + (DEFAULT_MPS_PIPE_DIR,)


def _binaries() -> Tuple[str, ...]:
    from ..host.capabilities import BINARIES

    return tuple(b for names in BINARIES.values() for b in names)


def _bind_allowed(host: str, container: str, read_only: bool) -> bool:
    base = container.rsplit("/", 1)[1]
    host_base = host.rsplit("/", 1)[1]
    head = container.rsplit("/", 1)[0]
    if head in (NVIDIA_DIR + "/lib64", NVIDIA_DIR + "/lib"):
        return read_only and bool(_LIBRARY.fullmatch(base)) and bool(_LIBRARY.fullmatch(host_base))
    if head == NVIDIA_DIR + "/bin":
        return read_only and base in _binaries() and host_base == base
    if container == NVIDIA_DIR:  # --driver-files volume: the built volume directory
        return read_only and bool(_VOLUME.fullmatch("nvidia_driver_" + host_base)) and \
            host.rsplit("/", 2)[-2] == "nvidia_driver"
    if container in _ipc_targets():
        return host.endswith(container)  # sockets stay writable
    if _GBM.fullmatch(container) or _XORG.fullmatch(container):
        return read_only and (host.endswith(container) or bool(_LIBRARY.fullmatch(host_base)))
    known = container in _known_file_targets() or _FIRMWARE.fullmatch(container) or _XORG_CONF.fullmatch(container)
    return read_only and bool(known) and host.endswith(container)


def _devices(doc: Mapping[str, Any], where: str, features: Tuple[str, ...] = ()) -> List[Any]:
    from ..plan.plan import DeviceMapping

    out = []
    for item in _items(doc, "devices", where):
        container = _clean_path(item.get("container_path"), "device path", where)
        host = _clean_path(item.get("host_path"), "device path", where)
        known = bool(_DEVICE.fullmatch(container)) or any(
            f in _FEATURE_DEVICE and _FEATURE_DEVICE[f].fullmatch(container) for f in features)
        if not known or not host.endswith(container):
            raise RemoteError(f"{where} answered a device that is not an NVIDIA device node: {host[:80]}:{container}")
        out.append(DeviceMapping(host, container))
    return out


def _mounts(doc: Mapping[str, Any], volume_driver: Optional[str], where: str) -> List[Any]:
    from ..plan.plan import Mount

    out = []
    for item in _items(doc, "mounts", where):
        kind, read_only = item.get("kind"), item.get("read_only")
        container = _clean_path(item.get("container_path"), "mount target", where)
        if kind == "volume":
            name = item.get("host_path")
            ok = isinstance(name, str) and bool(_VOLUME.fullmatch(name)) and container == NVIDIA_DIR \
                and read_only is True and volume_driver is not None
            if not ok:
                raise RemoteError(f"{where} answered a volume nvlow refuses: {str(name)[:80]}:{container}")
            out.append(Mount(name, container, True, "volume"))  # type: ignore[arg-type]
            continue
        host = _clean_path(item.get("host_path"), "mount source", where)
        if kind != "bind" or not isinstance(read_only, bool) or not _bind_allowed(host, container, read_only):
            raise RemoteError(f"{where} answered a mount nvlow refuses: {host[:80]}:{container}"
                              + ("" if read_only else " (writable)"))
        out.append(Mount(host, container, read_only, "bind"))
    return out


def _items(doc: Mapping[str, Any], key: str, where: str) -> List[Dict[str, Any]]:
    value = doc.get(key)
    if not isinstance(value, list) or len(value) > _MAX_ITEMS or not all(isinstance(v, dict) for v in value):
        raise RemoteError(f"{where} answered a plan without a valid {key!r} list")
    return value


def _env(doc: Mapping[str, Any], where: str) -> List[Tuple[str, str]]:
    value = doc.get("env")
    if not isinstance(value, dict):
        raise RemoteError(f"{where} answered a plan without a valid 'env' object")
    out = []
    for key, val in value.items():
        if key in _ENV_FIXED and val == _ENV_FIXED[key]:
            out.append((key, val))
            continue
        if key not in _ENV:
            raise RemoteError(f"{where} answered an environment variable nvlow never sets: {str(key)[:40]!r}",
                              hint="nvlow passes on only PATH, LD_LIBRARY_PATH and VDPAU_DRIVER_PATH="
                                   + _ENV_FIXED["VDPAU_DRIVER_PATH"])
        if not isinstance(val, str) or len(val) > 8192 or any(c in val for c in "\n\r\0") or \
                not all(p.startswith("/") for p in val.split(":") if p):
            raise RemoteError(f"{where} answered an invalid {key} value: {str(val)[:80]!r}")
        out.append((key, val))
    return out


def checked_args(doc: Mapping[str, Any], where: str, plugin_names: Tuple[str, ...] = (),
                 features: Tuple[str, ...] = ()) -> List[str]:
    """The docker arguments of a remote plan document, rebuilt from its checked devices, mounts,
    volume driver and environment (the document's own ``args`` are never used). ``plugin_names``
    are volume drivers accepted besides nvidia-docker/nvlow (the client's own NVLOW_PLUGIN_NAME);
    ``features`` are the multi-node features the request asked for, whose nodes (``/dev/nvidia-fsN``,
    ``/dev/infiniband/uverbsN``, ...) are then accepted too."""
    from ..plan.plan import Plan
    from ..plan.render import docker_args
    from ..plan.select import Selection

    driver = doc.get("volume_driver")
    if driver is not None and driver not in _VOLUME_DRIVERS + plugin_names:
        raise RemoteError(f"{where} answered a volume driver nvlow refuses: {str(driver)[:40]!r}")
    plan = Plan(None, None, Selection(()), (), "bind", tuple(_devices(doc, where, features)),
                tuple(_mounts(doc, driver, where)), tuple(_env(doc, where)), driver)
    return docker_args(plan)


_V1_OPTION = lazy_re(r"--(volume-driver|volume|device)=(.*)")


def check_v1_args(args: Tuple[str, ...], where: str) -> Tuple[str, ...]:
    """An nvidia-docker-plugin ``/docker/cli`` answer: only its volume driver, its driver volume and
    NVIDIA device nodes (1.0 answered exactly these, nvidia-docker ``src/nvidia-docker-plugin/rest.go``)."""
    for arg in args:
        m = _V1_OPTION.fullmatch(arg)
        ok = False
        if m and m.group(1) == "volume-driver":
            ok = m.group(2) in _VOLUME_DRIVERS
        elif m and m.group(1) == "volume":
            name, _, rest = m.group(2).partition(":")
            ok = bool(_VOLUME.fullmatch(name)) and rest in (NVIDIA_DIR + ":ro", NVIDIA_DIR)
        elif m:
            ok = bool(_DEVICE.fullmatch(m.group(2)))
        if not ok:
            raise RemoteError(f"{where} answered an option nvlow never passes on: {arg[:80]!r}")
    return args
