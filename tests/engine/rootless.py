"""A throwaway unprivileged user with rootless Podman, for tests/engine/test_engine_rootless.py.

:func:`create_rootless_user` (as root) makes, under one fresh 0755 directory ``base``:

- a user ``nvlrl<8 hex>`` (``useradd -m``, home ``base/home``) with 65536 subordinate uids and gids in a
  range nobody else in /etc/subuid, /etc/subgid uses (``usermod --add-subuids/--add-subgids``; Debian's
  ``uidmap`` package provides newuidmap/newgidmap, setup_engines.sh installs it);
- ``XDG_RUNTIME_DIR`` ``base/run`` (0700, the user's);
- ``~/.config/containers/containers.conf`` (runc, ``cgroup_manager = "cgroupfs"``, ``events_logger = "file"``,
  ``netns = "none"``) and ``storage.conf`` (``vfs``: no fuse-overlayfs, /dev/fuse is 0600 here);
- a copy of nvlow and its pure-Python dependencies in ``base/py`` (the test venv's interpreter may live
  where the user cannot read, such as /root/.pyenv) run with an interpreter the user can execute;
- the test image, imported with ``podman import`` from setup_engines.sh's ``rootfs.tar`` with the same
  configuration as the rootful image (nothing is pulled).

Every command runs as ``timeout -k 10 T runuser -u USER -- env -i HOME=... XDG_RUNTIME_DIR=... PATH=...``.
:meth:`RootlessUser.destroy` (always called by the fixture) runs ``podman system reset -f`` as the user,
ends the user's remaining processes by PID (TERM, then KILL), ``userdel -r`` and removes ``base``.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import nvlow

#: subordinate ids per user: the image's ``nobody`` (65534) must be mapped
SUBID_COUNT = 65536
#: the lowest subordinate id the harness hands out (above Debian's defaults for the first users)
SUBID_FLOOR = 1_000_000
COMMAND_TIMEOUT_S = 120
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: modules nvlow needs at run time besides the standard library (cffi only for NVML: --no-nvml runs without)
_DEPENDENCIES = ("click", "typer", "cffi", "pycparser", "_cffi_backend")


class Unavailable(Exception):
    """A prerequisite of rootless Podman is missing (the message says which and how to get it)."""


def missing_prerequisites() -> List[str]:
    """What this machine lacks for the harness (empty: all there)."""
    out = []
    if os.geteuid() != 0:
        out.append("root (useradd, runuser)")
    for tool, package in (("useradd", "passwd"), ("usermod", "passwd"), ("userdel", "passwd"),
                          ("runuser", "util-linux"), ("newuidmap", "uidmap"), ("newgidmap", "uidmap"),
                          ("podman", "podman"), ("timeout", "coreutils")):
        if shutil.which(tool, path=PATH) is None:
            out.append(f"{tool} (Debian package {package})")
    return out


def _subid_ranges() -> List[Tuple[int, int]]:
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        ranges.append((int(parts[1]), int(parts[1]) + int(parts[2])))
        except FileNotFoundError:
            pass
    return ranges


def free_subid_start(ranges: Sequence[Tuple[int, int]], count: int = SUBID_COUNT, floor: int = SUBID_FLOOR) -> int:
    """The first multiple of ``count`` at or above ``floor`` whose ``count`` ids overlap no range ``[a, b)``."""
    start = floor
    while any(start < b and a < start + count for a, b in ranges):
        start += count
    return start


def _run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S, check: bool = True,
         **kwargs) -> "subprocess.CompletedProcess[str]":  # type: ignore[no-untyped-def]
    proc = subprocess.run(["timeout", "-k", "10", str(int(timeout)), *argv], capture_output=True, text=True,
                          timeout=timeout + 30, **kwargs)
    if check and proc.returncode != 0:
        raise Unavailable(f"{' '.join(argv)} -> rc {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc


class RootlessUser:
    """The user, its directories, and runners; build with :func:`create_rootless_user`."""

    def __init__(self, base: str, name: str) -> None:
        self.base = base
        self.name = name
        self.home = os.path.join(base, "home")
        self.runtime_dir = os.path.join(base, "run")
        self.pydir = os.path.join(base, "py")
        self.python: Optional[str] = None
        self.created = False
        self.uid = -1
        self.gid = -1

    # ---------------------------------------------------------------- running as the user
    def env(self) -> Dict[str, str]:
        """The whole environment of the user's commands (``env -i``)."""
        return {"HOME": self.home, "XDG_RUNTIME_DIR": self.runtime_dir, "PATH": PATH, "USER": self.name,
                "LOGNAME": self.name, "LANG": "C.UTF-8", "PYTHONPATH": self.pydir, "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, *argv: str, timeout: float = COMMAND_TIMEOUT_S, check: bool = False,
            cwd: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
        """``timeout runuser -u USER -- env -i ... ARGV`` (from ``cwd``, default the home directory)."""
        env = [f"{k}={v}" for k, v in self.env().items()]
        return _run(["runuser", "-u", self.name, "--", "env", "-i", *env, *argv], timeout=timeout, check=check,
                    cwd=cwd or self.home)

    def podman(self, *args: str, timeout: float = COMMAND_TIMEOUT_S,
               check: bool = False) -> "subprocess.CompletedProcess[str]":
        return self.run("podman", *args, timeout=timeout, check=check)

    def nvlow_argv(self, *args: str) -> List[str]:
        """``PYTHON -m nvlow ARGS`` with the user's copy of nvlow."""
        assert self.python is not None
        return [self.python, "-m", "nvlow", *args]

    def nvlow(self, *args: str, timeout: float = COMMAND_TIMEOUT_S) -> "subprocess.CompletedProcess[str]":
        return self.run(*self.nvlow_argv(*args), timeout=timeout)

    # ---------------------------------------------------------------- set up
    def _create_user(self) -> None:
        start = free_subid_start(_subid_ranges())
        _run(["useradd", "-m", "-d", self.home, "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0",
              self.name])
        self.created = True
        ids = f"{start}-{start + SUBID_COUNT - 1}"
        _run(["usermod", "--add-subuids", ids, "--add-subgids", ids, self.name])
        import pwd

        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        os.makedirs(self.runtime_dir, mode=0o700)
        os.chown(self.runtime_dir, self.uid, self.gid)

    def _write_config(self) -> None:
        conf = os.path.join(self.home, ".config", "containers")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "containers.conf"), "w", encoding="utf-8") as fh:
            fh.write('[containers]\nnetns = "none"\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                     'events_logger = "file"\n')
        with open(os.path.join(conf, "storage.conf"), "w", encoding="utf-8") as fh:
            fh.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{self.home}/.local/share/containers/storage"\n'
                     f'runroot = "{self.runtime_dir}/containers"\n')
        for d in (os.path.join(self.home, ".config"), conf):
            os.chown(d, self.uid, self.gid)
        for f in os.listdir(conf):
            os.chown(os.path.join(conf, f), self.uid, self.gid)

    def _install_nvlow(self) -> None:
        """nvlow (this checkout's package) and its dependencies, copied where the user can read them."""
        os.makedirs(self.pydir)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(os.path.dirname(nvlow.__file__), os.path.join(self.pydir, "nvlow"), ignore=ignore)
        import importlib.util

        for name in _DEPENDENCIES:  # located, not imported
            spec = importlib.util.find_spec(name)
            path = spec.origin if spec is not None else None
            if not path or not os.path.isfile(path):
                continue
            if os.path.basename(path) == "__init__.py":
                shutil.copytree(os.path.dirname(path), os.path.join(self.pydir, name), ignore=ignore)
            else:
                shutil.copy2(path, self.pydir)
        for dirpath, dirnames, filenames in os.walk(self.pydir):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)
        candidates = [os.path.realpath(sys.executable), "/usr/bin/python3",
                      *(p for p in (shutil.which("python3", path=PATH),) if p)]
        tried = []
        for python in dict.fromkeys(candidates):
            proc = self.run(python, "-c", "import sys, nvlow.cli, typer, click; "
                            "assert sys.version_info >= (3, 9); print(sys.executable)", check=False)
            if proc.returncode == 0:
                self.python = python
                return
            tried.append(f"{python}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:] or proc.returncode}")
        raise Unavailable("no Python >= 3.9 that the unprivileged user can run with nvlow's dependencies "
                          f"(tried {'; '.join(tried)}); install python3 (Debian package python3)")

    def _load_image(self, rootfs_tar: str, image: str, changes: Sequence[str]) -> None:
        tar = os.path.join(self.base, "rootfs.tar")
        shutil.copyfile(rootfs_tar, tar)
        os.chown(tar, self.uid, self.gid)
        args = [a for c in changes for a in ("-c", c)]
        proc = self.podman("import", "--quiet", *args, tar, image)
        if proc.returncode != 0:
            raise Unavailable(f"rootless podman import failed (rc {proc.returncode}): {proc.stderr.strip()[-800:]}")
        os.unlink(tar)
        proc = self.podman("run", "--rm", "--pull", "never", "--network", "none", image, "sh", "-c", "echo ok")
        if proc.returncode != 0 or proc.stdout.strip() != "ok":
            raise Unavailable(f"rootless podman smoke run failed (rc {proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).strip()[-800:]}")

    # ---------------------------------------------------------------- tear down
    def _user_pids(self) -> List[int]:
        pids = []
        for status in glob.glob("/proc/[0-9]*/status"):
            try:
                with open(status, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == self.uid:
                                pids.append(int(status.split("/")[2]))
                            break
            except (OSError, ValueError):
                continue
        return [p for p in pids if p != os.getpid()]

    def _end_processes(self) -> List[str]:
        """TERM every process still running as the user, then KILL those alive 5 s later."""
        notes = []
        pids = self._user_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}") and p in self._user_pids()]
            time.sleep(0.1)
        for pid in pids:
            notes.append(f"pid {pid} of {self.name} ignored SIGTERM; sent SIGKILL")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return notes

    def destroy(self) -> List[str]:
        """Undo everything (idempotent, never raises); returns notes on what needed force."""
        notes: List[str] = []
        if self.created and self.uid >= 0:
            try:
                self.podman("system", "reset", "-f", timeout=60)
            except (OSError, subprocess.SubprocessError) as exc:
                notes.append(f"podman system reset: {exc}")
            notes += self._end_processes()
            try:
                proc = _run(["userdel", "-r", self.name], timeout=60, check=False)
                if proc.returncode not in (0, 12):  # 12: home removed with warnings (mail spool absent)
                    notes.append(f"userdel -r {self.name}: rc {proc.returncode} {proc.stderr.strip()}")
            except (OSError, subprocess.SubprocessError) as exc:
                notes.append(f"userdel: {exc}")
            self.created = False
        if os.path.isdir(self.base):
            # vfs layers can hold read-only directories; the user is gone, so root removes them
            subprocess.run(["chmod", "-R", "u+rwX", self.base], capture_output=True, timeout=120)
            shutil.rmtree(self.base, ignore_errors=True)
            if os.path.exists(self.base):
                notes.append(f"could not remove {self.base}")
        return notes


def create_rootless_user(rootfs_tar: str, image: str, changes: Sequence[str]) -> RootlessUser:
    """Create and configure the user (see the module docstring); raises :class:`Unavailable` with the reason.
    On failure everything made so far is removed again."""
    missing = missing_prerequisites()
    if missing:
        raise Unavailable("rootless podman needs " + ", ".join(missing))
    if not os.path.isfile(rootfs_tar):
        raise Unavailable(f"{rootfs_tar} is missing (setup_engines.sh start writes it)")
    base = tempfile.mkdtemp(prefix="nvlow-rootless-")
    os.chmod(base, 0o755)
    user = RootlessUser(base, "nvlrl" + uuid.uuid4().hex[:8])
    try:
        user._create_user()
        user._write_config()
        user._install_nvlow()
        user._load_image(rootfs_tar, image, changes)
    except BaseException:
        user.destroy()
        raise
    return user


def user_readable_dir(prefix: str) -> str:
    """A fresh 0755 directory under /tmp (pytest's tmp_path is 0700 root: the user could not enter it)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path
