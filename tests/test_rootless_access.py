"""Rootless Podman and device-node permissions (nvlow/cli/rootless.py, docs/host-devices.md section 6).

The access checks run for real: ``access(2)`` on files of a fake host root, as an unprivileged user (a
forked child that drops to uid 65534 when the tests run as root). The end-to-end run with a real rootless
podman is tests/engine/test_engine_rootless.py.
"""
from __future__ import annotations

import grp  # noqa: F401  (imported before a child drops root: the standard library may be unreadable then)
import json
import os
import pathlib
import pwd  # noqa: F401
import shutil
import stat
import tempfile
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import pytest

from nvlow.cli import rootless
from nvlow.engine.argv import parse_engine_argv
from nvlow.host.root import HostRoot

NOBODY = 65534


@pytest.fixture
def tmp_path() -> Iterator[pathlib.Path]:
    """A fresh 0755 directory under the system temp dir (pytest's own is 0700: uid 65534 could not enter)."""
    path = tempfile.mkdtemp(prefix="nvlow-rootless-unit-")
    os.chmod(path, 0o755)
    try:
        yield pathlib.Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_user(fn: Callable[[], object], *, uid: int = NOBODY, gid: int = NOBODY,
             groups: Sequence[int] = ()) -> object:
    """``fn()`` run as ``uid``/``gid`` with supplementary ``groups`` (a forked child when root; in this
    process, as the current user, otherwise). The result travels back as JSON."""
    if os.geteuid() != 0:
        return json.loads(json.dumps(fn()))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            data = json.dumps(fn()).encode()
        except BaseException as exc:  # noqa: BLE001
            data = json.dumps({"child error": repr(exc)}).encode()
            code = 1
        os.write(w, data)
        os.close(w)
        os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks) or b"null")
    assert os.waitstatus_to_exitcode(status) == 0 if hasattr(os, "waitstatus_to_exitcode") else True, result
    return result


def _fake_root(tmp_path, modes: Sequence[Tuple[str, int, Optional[int]]]) -> Tuple[str, List[Tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """A root under a directory every user can enter, with plain files standing for nodes:
    (host path, mode, group or None)."""
    base = tmp_path / "world"
    base.mkdir()
    os.chmod(base, 0o755)
    root = base / "root"
    pairs = []
    for path, mode, group in modes:
        real = root / path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(real.parent, 0o755)
        real.write_text("")
        if group is not None:
            os.chown(real, -1, group)
        os.chmod(real, mode)
        pairs.append((str(real), path))
    return str(root), pairs


def _unprivileged_ids() -> Tuple[int, int]:
    return (NOBODY, NOBODY) if os.geteuid() == 0 else (os.geteuid(), os.getegid())


# ---------------------------------------------------------------- who runs the engine

@pytest.mark.parametrize(("argv", "env", "euid", "expected"), [
    (["podman", "run", "img"], {}, 1000, True),
    (["/usr/bin/podman", "--log-level", "debug", "run", "img"], {}, 1000, True),
    (["podman", "run", "img"], {}, 0, False),                                   # rootful podman
    (["docker", "run", "img"], {}, 1000, False),                                # the daemon opens the nodes
    (["sudo", "podman", "run", "img"], {}, 1000, False),                        # root runs podman
    (["podman", "--remote", "run", "img"], {}, 1000, False),                    # a podman service does
    (["podman", "-r", "run", "img"], {}, 1000, False),
    (["podman", "--url", "unix:///run/podman/podman.sock", "run", "img"], {}, 1000, False),
    (["podman", "--connection", "prod", "run", "img"], {}, 1000, False),
    (["podman-remote", "run", "img"], {}, 1000, False),
    (["podman", "run", "img"], {"CONTAINER_HOST": "unix:///run/podman/podman.sock"}, 1000, False),
    (["podman", "--remote=false", "run", "img"], {}, 1000, True),
])
def test_the_rule_applies_only_to_podman_run_as_the_user(argv, env, euid, expected) -> None:  # type: ignore[no-untyped-def]
    assert rootless.applies(parse_engine_argv(argv), env, euid=euid) is expected


# ---------------------------------------------------------------- access(2) as the user

def test_world_accessible_nodes_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, pairs = _fake_root(tmp_path, [("/dev/nvidiactl", 0o666, None), ("/dev/nvidia0", 0o666, None),
                                        ("/dev/nvidia-caps/nvidia-cap4", 0o444, None)])
    uid, gid = _unprivileged_ids()
    found = _as_user(lambda: [p.path for p in rootless.problems(HostRoot(root), pairs, euid=uid, egid=gid)])
    assert found == []


def test_a_root_only_node_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # as root: a 0600 root file seen by nobody; otherwise: a 0000 file of the current user
    mode = 0o600 if os.geteuid() == 0 else 0o000
    root, pairs = _fake_root(tmp_path, [("/dev/nvidiactl", 0o666, None), ("/dev/nvidia1", mode, None)])
    uid, gid = _unprivileged_ids()

    def run() -> object:
        return [(p.path, p.mode, p.group_only) for p in rootless.problems(HostRoot(root), pairs, euid=uid, egid=gid)]

    assert _as_user(run) == [[pairs[1][0], stat.filemode(stat.S_IFREG | mode), False]]


def test_read_only_is_enough_for_capability_nodes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, pairs = _fake_root(tmp_path, [("/dev/nvidia-caps/nvidia-cap4", 0o444, None), ("/dev/nvidia0", 0o444, None)])
    uid, gid = _unprivileged_ids()
    found = _as_user(lambda: [p.path for p in rootless.problems(HostRoot(root), pairs, euid=uid, egid=gid)])
    assert found == [pairs[1][0]]  # /dev/nvidia0 must also be writable


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file a group and drop to another user")
def test_access_through_a_supplementary_group_only_is_flagged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    group = 44  # any gid other than the user's own
    root, pairs = _fake_root(tmp_path, [("/dev/nvidia0", 0o660, group), ("/dev/nvidiactl", 0o660, NOBODY)])

    def run() -> object:
        return [(p.path, p.group_only) for p in rootless.problems(HostRoot(root), pairs, euid=NOBODY, egid=NOBODY)]

    # the supplementary group opens it on the host, not in the container; the primary group is mapped
    assert _as_user(run, groups=[group]) == [[pairs[0][0], True]]
    # without the group: not openable at all
    assert _as_user(run) == [[pairs[0][0], False]]


# ---------------------------------------------------------------- the message

def _check(tmp_path, argv: Sequence[str], modes, env=None):  # type: ignore[no-untyped-def]
    root, pairs = _fake_root(tmp_path, modes)
    uid, gid = _unprivileged_ids()
    cmd = parse_engine_argv(list(argv))
    return pairs, _as_user(lambda: list(rootless.check(HostRoot(root), pairs, cmd, env or {}, euid=uid, egid=gid)))


def test_message_names_the_node_and_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mode = 0o600 if os.geteuid() == 0 else 0o000
    pairs, (error, hint, warnings) = _check(tmp_path, ["podman", "run", "img"],
                                            [("/dev/nvidiactl", 0o666, None), ("/dev/nvidia1", mode, None)])
    assert warnings == []
    assert "\n" not in error and "\n" not in hint
    assert error.startswith("rootless podman runs the container as ")
    assert f"who cannot open {pairs[1][0]} (" in error and pairs[0][0] not in error
    assert error.endswith("the container would start without a usable GPU")
    assert f"'sudo chmod 0666 {pairs[1][0]}'" in hint
    assert "NVreg_DeviceFileMode=0666" in hint and 'udev rule with MODE="0666"' in hint
    assert "sudo podman" in hint


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file a group")
def test_group_owned_node_hint_names_the_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import grp as _grp

    video = _grp.getgrnam("video").gr_gid if "video" in [g.gr_name for g in _grp.getgrall()] else 44
    name = _grp.getgrgid(video).gr_name
    _, (error, hint, _w) = _check(tmp_path, ["podman", "run", "img"], [("/dev/nvidia0", 0o660, video)])
    assert f":{name})" in error
    assert f"add nobody to group {name} (usermod -aG GROUP nobody" in hint and "--group-add keep-groups" in hint


def test_no_message_when_the_nodes_open_or_the_engine_is_not_rootless_podman(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mode = 0o600 if os.geteuid() == 0 else 0o000
    modes = [("/dev/nvidia1", mode, None)]
    _, result = _check(tmp_path, ["docker", "run", "img"], modes)
    assert result == [None, None, []]
    (tmp_path / "world").rename(tmp_path / "world-docker")
    _, result = _check(tmp_path, ["sudo", "podman", "run", "img"], modes)
    assert result == [None, None, []]
    (tmp_path / "world").rename(tmp_path / "world-sudo")
    _, result = _check(tmp_path, ["podman", "run", "img"], [("/dev/nvidia1", 0o666, None)])
    assert result == [None, None, []]
