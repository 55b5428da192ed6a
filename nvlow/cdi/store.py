"""CDI spec directories: reading specs, listing devices the way engines resolve them, atomic writes.

Engines read ``*.json`` and ``*.yaml`` files (no recursion) from ``/etc/cdi``
then ``/var/run/cdi``; a later directory has higher priority, and the same
qualified device in two files of one directory is a conflict that makes the
device unusable (CDI ``pkg/cdi/cache.go``; docs/cdi-spec-rules.md "Spec directories"). With ``--root`` the
directories are looked up under the root.

Spec files are parsed as the engines parse them: the CDI library hands
``.json`` and ``.yaml`` files alike to sigs.k8s.io/yaml (go-yaml v2), so a
JSON spec goes through :func:`~nvlow.cdi.yaml.load_yaml` too (JSON that
Python accepts but go-yaml refuses, such as a duplicate key or a ``\\/``
escape, makes the file unusable for engines). A file that cannot be parsed
is reported in one line naming the file, line and column, and skipped by
:func:`list_devices`, as engines skip it.

Example:
    >>> parse_spec_text('{"kind": "nvidia.com/gpu"}')
    {'kind': 'nvidia.com/gpu'}
    >>> parse_spec_text("kind: nvidia.com/gpu\\n")
    {'kind': 'nvidia.com/gpu'}
"""
from __future__ import annotations

import os

from ..frozen import Record
from ..errors import HostError
from ..host.root import HostRoot
from .yaml import YamlError, load_yaml

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple, Union


SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
DEFAULT_SPEC_DIR = "/var/run/cdi"
#: the issue's default file name (nvidia-ctk's is nvidia.yaml too)
DEFAULT_SPEC_BASENAME = "nvidia"
SPEC_EXTENSIONS = (".json", ".yaml")
SPEC_MODE = 0o644


def parse_spec_text(text: Union[str, bytes]) -> Any:
    """A spec document from JSON or YAML text or bytes, read as the engines' go-yaml reads it.

    Raises :class:`~nvlow.cdi.yaml.YamlError` (a ValueError and an NvlowError) naming the line and column.
    """
    return load_yaml(text)


def read_spec(path: str) -> Any:
    """Read and parse a spec file (a real path); errors are one line naming the file, line and column."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise HostError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse_spec_text(data)
    except YamlError as exc:
        raise HostError(f"{path}: not a valid JSON or YAML spec: {exc}",
                        hint=f"engines skip this file; check it with 'nvlow cdi validate {path}'") from None


def spec_files(root: HostRoot, dirs: Sequence[str] = SPEC_DIRS) -> List[Tuple[int, str]]:
    """``(priority, real path)`` of every spec file, lowest priority first, files sorted by name."""
    out: List[Tuple[int, str]] = []
    for prio, d in enumerate(dirs):
        for name in root.listdir(d):
            if name.endswith(SPEC_EXTENSIONS) and not name.startswith("."):
                path = root.host(f"{d.rstrip('/')}/{name}")
                if os.path.isfile(path):
                    out.append((prio, path))
    return out


class ListedDevice(Record):
    """A resolvable CDI device and the spec file that defines it."""

    name: str  # vendor/class=name
    spec: str

    def to_dict(self) -> Dict[str, str]:
        return {"name": self.name, "spec": self.spec}


def spec_device_names(doc: Any) -> List[str]:
    """Qualified names of the devices of a parsed spec (malformed entries skipped)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return []
    kind = doc["kind"]
    out = []
    devices = doc.get("devices")
    for dev in devices if isinstance(devices, list) else []:
        if isinstance(dev, dict) and isinstance(dev.get("name"), str) and dev["name"]:
            out.append(f"{kind}={dev['name']}")
    return out


def list_devices(root: HostRoot, dirs: Sequence[str] = SPEC_DIRS) -> Tuple[List[ListedDevice], List[str]]:
    """Devices an engine would resolve from ``dirs``, sorted by name, and warnings.

    A file with a rule problem is skipped (engines skip it too); a device in
    two files of one directory is a conflict and is left out.
    """
    from .validate import validate_document

    warnings: List[str] = []
    devices: Dict[str, Tuple[int, str]] = {}
    conflicts: Dict[str, List[str]] = {}
    for prio, path in spec_files(root, dirs):
        try:
            doc = read_spec(path)
        except HostError as exc:
            warnings.append(f"{exc}; skipped")
            continue
        problems = validate_document(doc)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            warnings.append(f"{path}: {problems[0]}{more}; skipped (see 'nvlow cdi validate {path}')")
            continue
        for name in spec_device_names(doc):
            old = devices.get(name)
            if old is not None and old[0] > prio:
                continue
            if old is not None and old[0] == prio and old[1] != path:
                conflicts.setdefault(name, [old[1]]).append(path)
                continue
            devices[name] = (prio, path)
    for name, paths in sorted(conflicts.items()):
        warnings.append(f"conflicting device {name} (specs {', '.join(paths)}): engines cannot use it")
        devices.pop(name, None)
    return [ListedDevice(n, devices[n][1]) for n in sorted(devices)], warnings


def other_specs_with_kind(root: HostRoot, kind: str, exclude: str,
                          dirs: Sequence[str] = SPEC_DIRS) -> List[Tuple[str, List[str]]]:
    """Spec files other than ``exclude`` that define devices of ``kind``: ``(path, qualified names)``."""
    out: List[Tuple[str, List[str]]] = []
    for _prio, path in spec_files(root, dirs):
        if os.path.abspath(path) == os.path.abspath(exclude):
            continue
        try:
            doc = read_spec(path)
        except HostError:
            continue
        if isinstance(doc, dict) and doc.get("kind") == kind:
            out.append((path, spec_device_names(doc)))
    return out


def existing_document(path: str) -> Optional[Any]:
    """The parsed spec at ``path``, or None when it is absent or unreadable."""
    if not os.path.isfile(path):
        return None
    try:
        return read_spec(path)
    except HostError:
        return None


def write_atomic(path: str, data: bytes, mode: int = SPEC_MODE) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same directory, fsync, rename.

    Readers (an engine watching the directory) see the old file or the new
    one, never a partial one; on any error the old file is untouched and the
    temp file is removed. The temp name ends in ``.tmp`` so engines ignore it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create {directory}: {exc.strerror or exc}",
                        hint="run as root or choose another --output") from None
    tmp: Optional[str] = None
    try:
        import tempfile  # only when writing: it imports shutil, random and more

        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        tmp = None
        _fsync_dir(directory)
    except OSError as exc:
        raise HostError(f"cannot write {path}: {exc.strerror or exc}",
                        hint="the previous spec, if any, was left in place") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is done
    finally:
        os.close(fd)
