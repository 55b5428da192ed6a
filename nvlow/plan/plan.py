"""The container plan: which device nodes, mounts and environment a container gets.

What a container gets is decided by :func:`nvlow.plan.decide.plan_for`; :func:`build_plan`
places it (device mappings, mounts, merged environment). Every output format (docker
args, JSON, compose, REST API) renders a :class:`Plan`.

Example:
    >>> m = Mount("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "/usr/local/nvidia/lib64/libcuda.so.1")
    >>> m.read_only
    True
"""
from __future__ import annotations


from ..frozen import Record, replace
from ..errors import HostError, UsageError
from ..model import DeviceNode, DriverFile, DriverFiles, Host
from ..text import ASCII_ALNUM, listed
from .select import Selection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple


#: how the driver's files reach the container (:func:`build_plan`'s ``mode``): read-only binds of each
#: file, a copy under ``NVIDIA_DIR`` (:mod:`nvlow.plan.volume`), or the named volume of ``nvlow serve``
DRIVER_FILE_MODES = ("bind", "volume", "plugin")
NVIDIA_DIR = "/usr/local/nvidia"
NVIDIA_BIN = NVIDIA_DIR + "/bin"
NVIDIA_LIB64 = NVIDIA_DIR + "/lib64"
NVIDIA_LIB32 = NVIDIA_DIR + "/lib"
LD_LIBRARY_PATH_ADDITIONS = (NVIDIA_LIB64, NVIDIA_LIB32)
PATH_ADDITIONS = (NVIDIA_BIN,)
#: libvdpau loads the driver named by the X server from ``$VDPAU_DRIVER_PATH/libvdpau_nvidia.so.1``, then
#: from its own module directory ``<libdir>/vdpau/``, then as a bare ``libvdpau_nvidia.so`` (no ``.1``): a
#: driver under ``/usr/local/nvidia/lib64`` is found only through this variable (docs/driver-file-selection.md, "VDPAU")
VDPAU_ENV = "VDPAU_DRIVER_PATH"
VDPAU_SUBDIR = "vdpau"
#: the volume driver name of ``--driver-files plugin`` and of ``nvlow serve``'s plugin: nvidia-docker 1.0's
#: name, which every 1.0 client and script types (``--volume-driver=nvidia-docker``); a site that runs
#: another name sets ``serve --plugin-name`` and ``NVLOW_PLUGIN_NAME`` for the CLI
PLUGIN_DRIVER = "nvidia-docker"
#: a legacy plugin name dockerd can find as ``<name>.spec``/``.sock``/``.json`` (one path component)
_PLUGIN_NAME_CHARS = ASCII_ALNUM | frozenset("_.-")


class DeviceMapping(Record):
    """A device node passed with ``--device``.

    Example:
        >>> DeviceMapping("/dev/nvidia0", "/dev/nvidia0").permissions
        'rwm'
    """

    host_path: str
    container_path: str
    permissions: str = "rwm"

    def to_dict(self) -> Dict[str, Any]:
        return {"host_path": self.host_path, "container_path": self.container_path}


class Mount(Record):
    """A read-only (by default) mount. ``kind`` is ``bind`` or ``volume`` (named volume).

    Example:
        >>> Mount("nvidia_driver_550.54.15", "/usr/local/nvidia", kind="volume").to_dict()["read_only"]
        True
    """

    host_path: str
    container_path: str
    read_only: bool = True
    kind: str = "bind"

    def to_dict(self) -> Dict[str, Any]:
        return {"host_path": self.host_path, "container_path": self.container_path,
                "read_only": self.read_only, "kind": self.kind}


class Plan(Record):
    """Everything a GPU container needs, engine-independent.

    Example:
        >>> import nvlow
        >>> plan = nvlow.make_plan(nvlow.load_host(simulate="dgx-a100"), "0", "utility")
        >>> (plan.driver_version, [d.container_path for d in plan.devices])
        ('550.54.15', ['/dev/nvidiactl', '/dev/nvidia0'])
    """

    driver_version: Optional[str]
    cuda_version: Optional[str]
    selection: Selection
    capabilities: Tuple[str, ...]
    driver_files_mode: str
    devices: Tuple[DeviceMapping, ...]
    mounts: Tuple[Mount, ...]
    env: Tuple[Tuple[str, str], ...]
    volume_driver: Optional[str] = None
    warnings: Tuple[str, ...] = ()
    #: the driver files the plan was built from (None for a void plan); ``nvlow list`` shows them
    files: Optional[DriverFiles] = None

    def env_dict(self) -> Dict[str, str]:
        return dict(self.env)


def _is_plugin_name(name: str) -> bool:
    """1-64 ASCII letters, digits, ``_``, ``.``, ``-``, the first a letter or digit."""
    return 0 < len(name) <= 64 and name[0] in ASCII_ALNUM and _PLUGIN_NAME_CHARS.issuperset(name)


def check_plugin_name(name: str, option: str = "--plugin-name") -> str:
    """``name`` when it can be a legacy Docker plugin name (a file name in dockerd's plugin directories).

    Example:
        >>> check_plugin_name("nvidia-docker")
        'nvidia-docker'
    """
    if not isinstance(name, str) or not _is_plugin_name(name) or name.endswith((".spec", ".sock", ".json")):
        raise UsageError(f"invalid {option} {str(name)[:80]!r}: a plugin name is 1-64 letters, digits, '_', '.' "
                         "or '-', starting with a letter or digit",
                         hint=f"use the name clients pass to --volume-driver, e.g. {PLUGIN_DRIVER}")
    return name


def check_engine_root(path: str, option: str = "--engine-root") -> str:
    """``path`` normalised, when it can be the root the container engine sees the host at.

    Example:
        >>> check_engine_root("/host/")
        '/host'
    """
    import posixpath

    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in ":,\n\r\0"):
        raise UsageError(f"invalid {option} {str(path)[:80]!r}: it must be an absolute path without ':' or ','",
                         hint="name the directory the engine sees as the host's /, usually /")
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


class EngineView(Record):
    """How the container engine sees what nvlow reads: where the host root is for the engine and
    which name its volume plugin has.

    nvlow reads the host under ``--root`` (``/host`` in a container that mounts the host's ``/``
    there); the engine that runs the container needs the host's own paths. :meth:`path` replaces the
    root prefix of a path nvlow read with ``root`` (None: the same as nvlow's root, no change);
    paths outside nvlow's root stay as they are.

    Example:
        >>> EngineView(root="/").path("/host/dev/nvidia0", host_root="/host")
        '/dev/nvidia0'
        >>> EngineView(root="/").path("/var/lib/nvlow/volumes", host_root="/host")
        '/var/lib/nvlow/volumes'
    """

    root: Optional[str] = None
    plugin_name: str = PLUGIN_DRIVER

    def path(self, path: str, host_root: str) -> str:
        """``path`` (a real path nvlow read under ``host_root``) as the engine sees it."""
        if self.root is None:
            return path
        base = host_root.rstrip("/") or "/"
        if base == "/":
            rel = path
        elif path == base:
            rel = "/"
        elif path.startswith(base + "/"):
            rel = path[len(base):]
        else:
            return path
        engine = self.root.rstrip("/")
        return (engine + rel) if rel != "/" else (engine or "/")

    def apply(self, plan: "Plan", host_root: str) -> "Plan":
        """The plan with device and bind-mount host paths in the engine's view and this plugin name
        (the one translation step :func:`nvlow.plan.decide.plan_for` applies to every plan it returns)."""
        devices = tuple(replace(d, host_path=self.path(d.host_path, host_root)) for d in plan.devices)
        mounts = tuple(m if m.kind != "bind" else replace(m, host_path=self.path(m.host_path, host_root))
                       for m in plan.mounts)
        driver = self.plugin_name if plan.volume_driver is not None else None
        if (devices, mounts, driver) == (plan.devices, plan.mounts, plan.volume_driver):
            return plan
        return replace(plan, devices=devices, mounts=mounts, volume_driver=driver)


def driver_file_mounts(files: DriverFiles, *, include_nvidia_dir: bool = True) -> List[Mount]:
    """Bind mounts placing driver files where programs look for them.

    Libraries go to ``/usr/local/nvidia/lib64`` (32-bit: ``lib``) under their
    SONAME and extra link names (``libcuda.so``); binaries to
    ``/usr/local/nvidia/bin``; config files, IPC sockets and firmware at their
    usual host paths. With ``include_nvidia_dir=False`` only the files outside
    /usr/local/nvidia are returned (volume and plugin modes).
    """
    mounts: List[Mount] = []
    if include_nvidia_dir:
        for f in files.binaries:
            mounts.append(Mount(f.host_path, f"{NVIDIA_BIN}/{f.names[0]}"))
        for lib_dir, libs in ((NVIDIA_LIB64, files.libraries64), (NVIDIA_LIB32, files.libraries32)):
            for f in libs:
                for name in container_library_names(f):
                    mounts.append(Mount(f.host_path, f"{lib_dir}/{name}"))
    for f in files.configs + files.firmware:
        mounts.append(Mount(f.host_path, f.path or f.host_path))
    for f in files.ipcs:
        mounts.append(Mount(f.host_path, f.path or f.host_path, read_only=False))
    return mounts


def damaged_files_warning(files: DriverFiles) -> Optional[str]:
    """One line naming the driver files left out as damaged or gone (:meth:`DriverFiles.damaged`), or None."""
    damaged = files.damaged()
    if not damaged:
        return None
    shown = listed([f"{path} ({reason})" for path, reason in damaged], 3)
    return (f"driver files left out, damaged or gone: {shown}; the container will lack them: reinstall the "
            "driver (a partial install or a full disk leaves truncated files) and run ldconfig")


def is_vdpau_driver(f: DriverFile) -> bool:
    """Whether ``f`` is NVIDIA's VDPAU driver, which libvdpau looks for in a ``vdpau/`` directory
    (:data:`VDPAU_ENV`), not on the loader's path."""
    return f.names[0].startswith("libvdpau_nvidia.so")


def container_library_names(f: DriverFile) -> Tuple[str, ...]:
    """The names a library is bound under: its SONAME and link names (real name if it has no SONAME)."""
    names = tuple(n for n in f.names[1:] if n)
    return names if names else f.names[:1]


def device_mappings(host: Host, selection: Selection, capabilities: Iterable[str],
                    extra: Sequence[DeviceNode] = ()) -> List[DeviceMapping]:
    """Device nodes for a selection: control nodes, GPU nodes, their DRM nodes with ``graphics`` or
    ``display`` (the toolkit's graphics discoverer mounts ``/dev/dri/cardN``/``renderDN`` of the
    selected GPUs, internal/discover/graphics.go), MIG caps, then ``extra`` (stable order)."""
    caps = set(capabilities)
    nodes: List[DeviceNode] = []
    if selection.is_void:
        return []
    if host.wsl is not None:  # WSL2: every GPU is behind /dev/dxg (nvlow.host.wsl)
        from ..host.wsl import dxg_node

        nodes = [dxg_node(host)] + list(extra)
        return [DeviceMapping(n.host_path, n.container_path) for n in nodes]
    ctl = host.control("ctl")
    if ctl is None:
        raise HostError(
            f"{_node_path(host, '/dev/nvidiactl')} is missing or not the character device 195:255: "
            "no GPU container can work without it",
            hint="create it with 'nvidia-modprobe -c 0' or by running 'nvidia-smi' once as root",
        )
    nodes.append(ctl)
    if caps & {"compute", "video"}:
        nodes.extend(n for n in (host.control("uvm"), host.control("uvm-tools")) if n is not None)
    if "display" in caps and host.control("modeset") is not None:
        nodes.append(host.control("modeset"))  # type: ignore[arg-type]
    parents = {g.index: g for g in host.gpus}
    wanted_gpus = list(selection.gpus)
    for mig in selection.mig_devices:
        parent = parents.get(mig.parent_index)
        if parent is not None and parent not in wanted_gpus:
            wanted_gpus.append(parent)
    wanted_gpus.sort(key=lambda g: g.index)
    for gpu in wanted_gpus:
        if gpu.node is None:
            raise HostError(
                f"GPU {gpu.index} ({gpu.bus_id or gpu.uuid}) has no usable device node"
                + (f" /dev/nvidia{gpu.minor}" if gpu.minor is not None else " (unknown minor number)"),
                hint="check 'nvlow doctor'; the node can be created with 'nvidia-modprobe -c <minor>'",
            )
        nodes.append(gpu.node)
    if caps & {"graphics", "display"}:
        for gpu in wanted_gpus:
            nodes.extend(gpu.drm_nodes)
    for mig in selection.mig_devices:
        if not mig.cap_nodes:
            raise HostError(
                f"MIG device {mig.uuid or mig.name_for_index} has no /dev/nvidia-caps access nodes",
                hint="create them with 'nvidia-modprobe -f /proc/driver/nvidia/capabilities/...' or reload the driver",
            )
        nodes.extend(mig.cap_nodes)
    nodes.extend(extra)
    seen = set()
    out: List[DeviceMapping] = []
    for n in nodes:
        if n.container_path not in seen:
            seen.add(n.container_path)
            out.append(DeviceMapping(n.host_path, n.container_path))
    return out


def _node_path(host: Host, path: str) -> str:
    return path if host.root == "/" else host.root.rstrip("/") + path


def merge_search_path(current: Optional[str], additions: Sequence[str], *,
                      prepend: Sequence[str] = ()) -> Optional[str]:
    """``current`` (a colon list) plus the ``additions`` it lacks, appended, and the
    ``prepend`` entries it lacks, first (CUDA forward-compat libraries must come
    before the driver's, docs/driver-file-selection.md "CUDA forward compatibility"); None when nothing is missing.
    Empty entries are dropped.

    Example:
        >>> merge_search_path("/usr/bin:/bin", ["/usr/local/nvidia/bin"])
        '/usr/bin:/bin:/usr/local/nvidia/bin'
        >>> merge_search_path("/usr/local/nvidia/bin:/bin", ["/usr/local/nvidia/bin"]) is None
        True
    """
    parts = [p for p in (current or "").split(":") if p]
    head: List[str] = []
    tail: List[str] = []
    for entry in prepend:
        if entry and entry not in parts and entry not in head:
            head.append(entry)
    for entry in additions:
        if entry and entry not in parts and entry not in head and entry not in tail:
            tail.append(entry)
    if not head and not tail:
        return None
    return ":".join(head + parts + tail)


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_env(image_env: Optional[Mapping[str, str]], explicit_env: Mapping[str, str],
                  mode: str, *, lib_dirs: Sequence[str] = LD_LIBRARY_PATH_ADDITIONS,
                  bin_dirs: Sequence[str] = PATH_ADDITIONS, vdpau_dir: Optional[str] = None,
                  ) -> Tuple[List[Tuple[str, str]], List[str]]:
    """PATH and LD_LIBRARY_PATH additions (``bin_dirs``, ``lib_dirs``), merged with the image's own values,
    and :data:`VDPAU_ENV` set to ``vdpau_dir`` (where the VDPAU driver is placed) unless the image sets it.

    ``explicit_env`` holds variables the user already sets on the engine
    command line: those are never touched. Without the image's environment
    PATH is left alone (setting it would replace the image's PATH), while
    LD_LIBRARY_PATH is still set, since without it a non-CUDA image cannot load
    the driver libraries; the warning says it may replace the image's value.
    """
    env: List[Tuple[str, str]] = []
    warnings: List[str] = []
    if mode == "void":
        return env, warnings
    if "LD_LIBRARY_PATH" not in explicit_env:
        current = image_env.get("LD_LIBRARY_PATH") if image_env is not None else None
        merged = merge_search_path(current, lib_dirs)
        if merged is not None:
            env.append(("LD_LIBRARY_PATH", merged))
    if image_env is None and not bin_dirs and "LD_LIBRARY_PATH" not in explicit_env:
        warnings.append("image environment unknown: LD_LIBRARY_PATH is set to the driver's directories "
                        "(replacing any value the image sets); pass --image IMAGE, or have the image "
                        "present locally, to merge it")
    elif image_env is None and bin_dirs and not {"PATH", "LD_LIBRARY_PATH"} <= set(explicit_env):
        warnings.append("image environment unknown: LD_LIBRARY_PATH is set to the driver's directories "
                        "(replacing any value the image sets) and PATH is left as the image sets it "
                        f"(driver binaries are in {':'.join(bin_dirs)}); pass --image IMAGE, "
                        "or have the image present locally, to merge both")
    if "PATH" not in explicit_env and image_env is not None and bin_dirs:
        merged = merge_search_path(image_env.get("PATH", DEFAULT_PATH), bin_dirs)
        if merged is not None:
            env.append(("PATH", merged))
    if vdpau_dir is not None and VDPAU_ENV not in explicit_env and VDPAU_ENV not in (image_env or {}):
        env.append((VDPAU_ENV, vdpau_dir))
    return env, warnings


def build_plan(
    host: Host,
    selection: Selection,
    capabilities: Iterable[str],
    files: Optional[DriverFiles],
    *,
    mode: str = "bind",
    volume_path: Optional[str] = None,
    image_env: Optional[Mapping[str, str]] = None,
    explicit_env: Optional[Mapping[str, str]] = None,
    extra_devices: Sequence[DeviceNode] = (),
) -> Plan:
    """Place devices, mounts and environment for ``selection`` (called by :func:`nvlow.plan.decide.plan_for`,
    which decides the selection, capabilities, files and extra device nodes).

    ``mode`` is the driver-files mode: ``bind`` (per-file read-only binds),
    ``volume`` (``volume_path`` mounted at /usr/local/nvidia, built by
    :mod:`nvlow.plan.volume`) or ``plugin`` (named volume served by ``nvlow serve``).
    """
    caps = tuple(sorted(set(capabilities)))
    if mode not in DRIVER_FILE_MODES:
        raise HostError(f"unknown driver-files mode: {mode}", hint="use bind, volume or plugin")
    devices = device_mappings(host, selection, caps, extra_devices)
    mounts: List[Mount] = []
    volume_driver = None
    notes: List[str] = []
    if host.wsl is not None and not selection.is_void:
        from ..host.wsl import placements, subset_warning

        if mode != "bind":
            raise UsageError(f"--driver-files {mode} is not available on WSL2: the driver files are the "
                             "Windows driver store's, bound where the toolkit binds them", hint="use bind")
        note = subset_warning(len(selection.gpus), len(host.gpus))
        notes = [note] if note else []
        mounts = [Mount(h, c) for h, c in placements(files)] if files is not None else []
    elif not selection.is_void and files is not None:
        if mode == "bind":
            mounts = driver_file_mounts(files)
        else:
            if mode == "volume":
                if volume_path is None:
                    raise HostError("volume mode needs a built driver volume")
                mounts.append(Mount(volume_path, NVIDIA_DIR))
            else:
                volume_driver = PLUGIN_DRIVER
                mounts.append(Mount(f"nvidia_driver_{host.driver_version}", NVIDIA_DIR, kind="volume"))
            mounts.extend(driver_file_mounts(files, include_nvidia_dir=False))
    for m in mounts:
        for p in (m.host_path, m.container_path):
            if ":" in p:
                raise HostError(f"path {p!r} contains ':', which docker -v cannot express",
                                hint="move the driver files or the --root to a path without ':'")
    if host.wsl is not None:  # the toolkit's ldconfig folders; nvidia-smi is bound into /usr/bin
        env, warnings = container_env(image_env, explicit_env or {}, selection.mode,
                                      lib_dirs=host.wsl.library_dirs, bin_dirs=())
        warnings = notes + warnings
    else:
        vdpau = files is not None and any(is_vdpau_driver(f) for f in files.libraries64)
        env, warnings = container_env(image_env, explicit_env or {}, selection.mode,
                                      vdpau_dir=NVIDIA_LIB64 if vdpau else None)
    if files is not None:
        # a corrupt ld.so.cache is survivable (the usual directories are searched) but must be said
        damaged = damaged_files_warning(files)
        warnings = [reason for _path, reason in files.skipped if reason.startswith("corrupt")] \
            + ([damaged] if damaged else []) + warnings
    return Plan(
        driver_version=host.driver_version,
        cuda_version=host.cuda_version,
        selection=selection,
        capabilities=caps,
        driver_files_mode=mode,
        devices=tuple(devices),
        mounts=tuple(mounts),
        env=tuple(env),
        volume_driver=volume_driver,
        warnings=tuple(warnings),
        files=files,
    )
