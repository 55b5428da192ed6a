"""Rootless Podman: can the user who runs the engine open the device nodes nvlow passes?

A rootful engine (dockerd, ``sudo podman``, a podman service reached with ``--remote``) opens the nodes
as root, so the permissions of the user who typed the command do not matter. Rootless Podman runs the
container as that user inside a user namespace: a ``--device`` node is bind-mounted, shows up owned by
``nobody`` and opens only when its host mode lets the user open it. The container starts anyway, without
a usable GPU, so ``nvlow exec`` says so first (docs/host-devices.md, section 6).

The rule (:func:`applies`): nvlow's effective uid is not 0, the engine program is ``podman`` run directly
(no ``sudo`` prefix, not ``podman-remote``, no ``--remote``/``--url``/``--connection``/``--host``, no
``CONTAINER_HOST``/``CONTAINER_CONNECTION``), the plan is local, and the paths are nvlow's own (no
``--engine-root``, no ``--simulate``). Then every node is checked with ``access(2)`` through the host root
(:func:`problems`): read and write, read only for ``/dev/nvidia-caps/*`` (the driver makes those 0444 or
0400). A node the user cannot open is an error; one the user opens only through a supplementary group is a
warning, since the OCI runtime drops those groups unless crun keeps them (``--group-add keep-groups``).
"""
from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Mapping, Optional, Sequence, Tuple

    from ..engine.argv import EngineCommand
    from ..host.root import HostRoot

#: podman global options that send the command to a podman service (which may run as root)
_REMOTE_OPTIONS = frozenset({"remote", "url", "connection", "host"})
#: environment variables that make podman a remote client
_REMOTE_ENV = ("CONTAINER_HOST", "CONTAINER_CONNECTION")
#: nodes the container only reads (the driver creates them 0444, the MIG config node 0400)
_READ_ONLY_PREFIXES = ("/dev/nvidia-caps/",)


def applies(cmd: EngineCommand, env: Mapping[str, str], *, euid: int) -> bool:
    """True when ``cmd`` runs rootless Podman as the calling user (``euid``), so the nodes must open for it.

    Example:
        >>> from nvlow.engine.argv import parse_engine_argv
        >>> applies(parse_engine_argv(["podman", "run", "img"]), {}, euid=1000)
        True
        >>> applies(parse_engine_argv(["docker", "run", "img"]), {}, euid=1000)
        False
        >>> applies(parse_engine_argv(["sudo", "podman", "run", "img"]), {}, euid=1000)
        False
        >>> applies(parse_engine_argv(["podman", "--remote", "run", "img"]), {}, euid=1000)
        False
        >>> applies(parse_engine_argv(["podman", "run", "img"]), {}, euid=0)
        False
    """
    if euid == 0 or cmd.engine != "podman" or cmd.engine_index != 0:
        return False
    program = os.path.basename(cmd.argv[0]).lower()
    if program.startswith("podman-remote"):
        return False
    if any(o.name in _REMOTE_OPTIONS and (o.name != "remote" or (o.value or "true").lower() in ("1", "t", "true"))
           for o in cmd.global_options):
        return False
    return not any(env.get(k) for k in _REMOTE_ENV)


def _keeps_groups(cmd: EngineCommand) -> bool:
    if "keep-groups" in cmd.get("group-add"):
        return True
    return any(a.replace(" ", "") in ("run.oci.keep_original_groups=1", "io.crun.keep_original_groups=1")
               for a in cmd.get("annotation"))


class NodeProblem:
    """One node the container's user cannot open: real path, ``ls -l`` style mode and owner, and whether
    only a supplementary group grants access (``group_only``)."""

    __slots__ = ("path", "mode", "owner", "group", "gid", "group_only")

    def __init__(self, path: str, mode: str, owner: str, group: str, gid: int, group_only: bool) -> None:
        self.path, self.mode, self.owner, self.group, self.gid, self.group_only = (
            path, mode, owner, group, gid, group_only)

    def describe(self) -> str:
        return f"{self.path} ({self.mode} {self.owner}:{self.group})"


def _name(kind: str, ident: int) -> str:
    try:
        if kind == "user":
            import pwd

            return pwd.getpwuid(ident).pw_name
        import grp

        return grp.getgrgid(ident).gr_name
    except (KeyError, ImportError):
        return str(ident)


def problems(root: HostRoot, real_paths: Sequence[Tuple[str, str]], *, euid: int, egid: int,
             ) -> List[NodeProblem]:
    """The nodes of ``real_paths`` (``(real path, container path)``) that rootless Podman's container could
    not open: ``access(2)`` fails, or only a supplementary group of the user allows it (the runtime drops
    those). ``euid``/``egid`` are the user's (the owner and primary group are mapped into the container)."""
    out: List[NodeProblem] = []
    for real, container in real_paths:
        want = os.R_OK if container.startswith(_READ_ONLY_PREFIXES) else os.R_OK | os.W_OK
        base = root.path.rstrip("/")
        inside = not base or real.startswith(base + "/")
        try:
            st = os.stat(real)
        except OSError:
            continue  # discovery checked the node; a vanished one is the engine's to report
        bits = {os.R_OK: 4, os.W_OK: 2}
        need = sum(v for k, v in bits.items() if want & k)
        mode = st.st_mode
        allowed = root.access(real[len(base):], want) if inside else os.access(real, want)
        owner_ok = st.st_uid == euid and ((mode >> 6) & need) == need
        other_ok = (mode & need) == need
        primary_ok = st.st_gid == egid and ((mode >> 3) & need) == need
        # granted by neither owner, primary group nor others: a supplementary group (dropped in the container)
        # or an ACL entry for the user (kept: the container's root is the user), told apart by membership
        group_only = allowed and not (owner_ok or other_ok or primary_ok) and st.st_gid in os.getgroups()
        if allowed and not group_only:
            continue
        out.append(NodeProblem(real, stat.filemode(mode), _name("user", st.st_uid), _name("group", st.st_gid),
                               st.st_gid, group_only))
    return out


def check(root: HostRoot, devices: Sequence[Tuple[str, str]], cmd: EngineCommand, env: Mapping[str, str], *,
          euid: Optional[int] = None, egid: Optional[int] = None) -> Tuple[Optional[str], Optional[str], List[str]]:
    """``(error, hint, warnings)`` for the device nodes ``devices`` (``(real path, container path)``, a plan's
    ``--device`` pairs) when :func:`applies`; ``error`` is None when the user opens every node (then
    ``warnings`` may name nodes it opens only through a supplementary group). ``euid``/``egid`` default to
    this process's; ``access(2)`` always asks for this process's own user."""
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    if not applies(cmd, env, euid=euid):
        return None, None, []
    found = problems(root, devices, euid=euid, egid=egid)
    user = _name("user", euid)
    denied = [p for p in found if not p.group_only]
    grouped = [p for p in found if p.group_only]
    warnings: List[str] = []
    if grouped and not _keeps_groups(cmd):
        warnings.append(
            f"{user} opens {', '.join(p.describe() for p in grouped)} only as a member of group "
            f"{'/'.join(sorted({p.group for p in grouped}))}, which the OCI runtime drops in a rootless container: "
            "add --group-add keep-groups (crun only; runc cannot keep groups) or make the node 0666")
    if not denied:
        return None, None, warnings
    error = (f"rootless podman runs the container as {user} (uid {euid}), who cannot open "
             f"{', '.join(p.describe() for p in denied)}: the container would start without a usable GPU")
    paths = " ".join(p.path for p in denied)
    groups = sorted({p.group for p in denied if p.gid != 0})
    group_fix = (f"; or add {user} to group {'/'.join(groups)} (usermod -aG GROUP {user}, log in again) and run "
                 "podman with --group-add keep-groups (crun only)") if groups else ""
    hint = (f"make the nodes 0666 as the NVIDIA driver does by default (kernel module option "
            f"NVreg_DeviceFileMode=0666, or a udev rule with MODE=\"0666\"; 'sudo chmod 0666 {paths}' lasts until "
            f"the node is re-created){group_fix}; or run the container as root (sudo podman ...)")
    return error, hint, warnings
