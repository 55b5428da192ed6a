"""The Docker volume plugin on its unix socket: protocol, errors, atomic builds, recovery from a killed build."""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from nvlow.plan import volume as vol
from test_serve_support import get, get_json, plugin_call, running_server

NAME = "nvidia_driver_550.54.15"


@pytest.fixture()
def plugin(tmp_path):
    with running_server(tmp_path, plugin=True) as (server, state, log):
        yield server.plugin_socket, state, log


def test_socket_is_root_only(plugin):
    sock, _state, _log = plugin
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700


def test_activate_and_capabilities(plugin):
    sock, _s, _l = plugin
    assert plugin_call(sock, "/Plugin.Activate") == (200, {"Implements": ["VolumeDriver"]})
    assert plugin_call(sock, "/VolumeDriver.Capabilities") == (200, {"Capabilities": {"Scope": "local"}})


@pytest.mark.parametrize("accept", [None, "application/json", "application/vnd.docker.plugins.v1+json"])
def test_accept_header_is_checked(plugin, accept):
    sock, _s, log = plugin
    status, _body = plugin_call(sock, "/Plugin.Activate", accept=accept)
    assert status == 406
    assert any("unsupported plugin API" in line for line in log.lines)


def test_only_post(plugin):
    sock, _s, _l = plugin
    assert plugin_call(sock, "/VolumeDriver.List", method="GET")[0] == 405
    assert plugin_call(sock, "/VolumeDriver.Nope")[0] == 404


def test_volume_lifecycle(plugin):
    sock, state, _l = plugin
    path = os.path.join(state.volumes_dir, "nvidia_driver", "550.54.15")
    # the running driver's volume exists for dockerd before it is built (its Mount builds it)
    assert plugin_call(sock, "/VolumeDriver.List") == (200, {"Volumes": [{"Name": NAME, "Mountpoint": path}],
                                                              "Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Get", {"Name": NAME}) == (
        200, {"Volume": {"Name": NAME, "Mountpoint": path}, "Err": ""})
    assert not os.path.exists(path)
    assert plugin_call(sock, "/VolumeDriver.Create", {"Name": NAME, "Opts": {}}) == (200, {"Err": ""})
    assert os.path.isfile(os.path.join(path, "bin", "nvidia-smi"))
    assert os.path.islink(os.path.join(path, "lib64", "libcuda.so.1"))
    assert plugin_call(sock, "/VolumeDriver.Get", {"Name": NAME}) == (
        200, {"Volume": {"Name": NAME, "Mountpoint": path}, "Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Mount", {"Name": NAME, "ID": "abc"}) == (
        200, {"Mountpoint": path, "Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Path", {"Name": NAME}) == (200, {"Mountpoint": path, "Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Unmount", {"Name": NAME, "ID": "abc"}) == (200, {"Err": ""})
    assert plugin_call(sock, "/VolumeDriver.List") == (200, {"Volumes": [{"Name": NAME, "Mountpoint": path}],
                                                              "Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Remove", {"Name": NAME}) == (200, {"Err": ""})
    assert not os.path.exists(path)
    # Mount of the running driver's volume rebuilds it
    assert plugin_call(sock, "/VolumeDriver.Mount", {"Name": NAME}) == (200, {"Mountpoint": path, "Err": ""})
    assert vol.is_complete(path)


@pytest.mark.parametrize("endpoint,name,err", [
    ("/VolumeDriver.Create", "nvidia_driver_1.2.3",
     "invalid volume version: nvidia_driver_1.2.3 (the running driver is 550.54.15, the volume is for 1.2.3)"),
    ("/VolumeDriver.Create", "nvidia_driver", "bad volume format: nvidia_driver"),
    ("/VolumeDriver.Mount", "other_1.0", "unsupported volume: other_1.0"),
    ("/VolumeDriver.Mount", "nvidia_driver_1.0", "no such volume: nvidia_driver_1.0"),
    ("/VolumeDriver.Path", "nvidia_driver_1.0", "no such volume: nvidia_driver_1.0"),
    ("/VolumeDriver.Get", "nvidia_driver_375.26", "no such volume: nvidia_driver_375.26"),
    ("/VolumeDriver.Unmount", "../../etc_1", "bad volume format: ../../etc_1"),
    ("/VolumeDriver.Remove", "x y_1", "bad volume format: x y_1"),
])
def test_errors_come_back_in_err(plugin, endpoint, name, err):
    sock, _s, _l = plugin
    assert plugin_call(sock, endpoint, {"Name": name}) == (200, {"Err": err})


def test_malformed_bodies(plugin):
    from test_serve_support import UnixHTTPConnection

    sock, _s, _l = plugin
    for body in (b"{not json", b"[1,2]", b'{"Name": 5}'):
        conn = UnixHTTPConnection(sock)
        conn.request("POST", "/VolumeDriver.Mount", body=body,
                     headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
        assert conn.getresponse().status == 400
        conn.close()
    assert plugin_call(sock, "/Plugin.Activate")[0] == 200


KILLED_BUILD = textwrap.dedent("""
    import os, sys, time
    from nvlow.plan import volume
    from nvlow.host.driverfiles import select_driver_files
    from nvlow.host.root import HostRoot, file_node_reader
    root = HostRoot(sys.argv[1], node_reader=file_node_reader)
    files = select_driver_files(root, "550.54.15", ("compute", "graphics", "utility", "video"))
    real_place = volume._place
    count = [0]
    def slow_place(src, dst, *rest):
        count[0] += 1
        if count[0] == 3:
            print("midway", flush=True)
            time.sleep(60)  # killed here
        return real_place(src, dst, *rest)
    volume._place = slow_place
    volume.ensure_volume(files, "550.54.15", sys.argv[2])
""")


def test_killed_build_never_yields_a_half_volume(tmp_path):
    with running_server(tmp_path, plugin=True) as (server, state, _log):
        sock = server.plugin_socket
        proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, state.cache.root.path, state.volumes_dir],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "midway"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        base = os.path.join(state.volumes_dir, "nvidia_driver")
        leftovers = [n for n in os.listdir(base) if n.startswith(".tmp-")]
        assert len(leftovers) == 1 and str(proc.pid) in leftovers[0]
        # the half-built directory is invisible to the plugin: only the final (not yet built) path is named
        final = os.path.join(base, "550.54.15")
        assert plugin_call(sock, "/VolumeDriver.List")[1] == {"Volumes": [{"Name": NAME, "Mountpoint": final}],
                                                              "Err": ""}
        assert plugin_call(sock, "/VolumeDriver.Get", {"Name": NAME})[1] == {
            "Volume": {"Name": NAME, "Mountpoint": final}, "Err": ""}
        assert not os.path.exists(final)
        # Mount builds a complete one and sweeps the dead build's directory
        status, answer = plugin_call(sock, "/VolumeDriver.Mount", {"Name": NAME})
        assert status == 200 and answer["Err"] == "" and vol.is_complete(answer["Mountpoint"])
        assert [n for n in os.listdir(base) if n.startswith(".tmp-")] == []
        assert os.listdir(os.path.join(answer["Mountpoint"], "bin"))


def test_prepare_socket_dir_tightens_permissions(tmp_path):
    from nvlow.serve.server import prepare_socket_dir

    d = tmp_path / "sockdir"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    sock = prepare_socket_dir(str(d))
    assert sock == str(d / "nvidia-docker.sock") and stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert prepare_socket_dir(str(d), "site-gpu") == str(d / "site-gpu.sock")


def test_write_spec(tmp_path):
    from nvlow.serve.server import write_spec

    spec = write_spec(str(tmp_path / "plugins"), "/run/nvlow/nvidia-docker.sock")
    assert spec == str(tmp_path / "plugins" / "nvidia-docker.spec")
    assert open(spec).read() == "unix:///run/nvlow/nvidia-docker.sock\n"
    assert write_spec(str(tmp_path / "plugins"), "/run/nvlow/nvidia-docker.sock") == spec
    other = write_spec(str(tmp_path / "plugins"), "/run/nvlow/site-gpu.sock", "site-gpu")
    assert other == str(tmp_path / "plugins" / "site-gpu.spec")


def _inodes(path):
    return {os.path.join(d, n): os.lstat(os.path.join(d, n)).st_ino
            for d, dirs, names in os.walk(path) for n in names + dirs}


def test_mount_reuses_the_volume_the_cli_built(tmp_path):
    with running_server(tmp_path, plugin=True) as (server, state, log):
        built = vol.ensure_driver_volume(state.cache.root, "550.54.15", state.volumes_dir)
        before = _inodes(built.path)
        assert plugin_call(server.plugin_socket, "/VolumeDriver.Mount", {"Name": NAME}) == (
            200, {"Mountpoint": built.path, "Err": ""})
        assert _inodes(built.path) == before
        assert not any("driver volume" in line for line in log.lines)


def test_cli_reuses_the_volume_the_plugin_built(tmp_path):
    with running_server(tmp_path, plugin=True) as (server, state, log):
        status, answer = plugin_call(server.plugin_socket, "/VolumeDriver.Create", {"Name": NAME})
        assert (status, answer) == (200, {"Err": ""})
        path = vol.volume_path(state.volumes_dir, "550.54.15")
        assert any(line.startswith("nvlow serve: built driver volume") for line in log.lines)
        before = _inodes(path)
        again = vol.ensure_driver_volume(state.cache.root, "550.54.15", state.volumes_dir)
        assert not again.created and _inodes(path) == before
        # lib/ has the 32-bit libraries (nvidia-docker 1.0's layout), whoever built it
        assert "libcuda.so.550.54.15" in os.listdir(os.path.join(path, "lib"))


def test_mount_rebuilds_a_stale_volume(tmp_path):
    from nvlow.host.driverfiles import select_driver_files

    with running_server(tmp_path, plugin=True) as (server, state, log):
        # what nvlow serve built before the one definition: 4 capabilities, no compat32, no manifest
        old = select_driver_files(state.cache.root, "550.54.15", ("compute", "graphics", "utility", "video"))
        path = vol.ensure_volume(old, "550.54.15", state.volumes_dir).path
        os.unlink(os.path.join(path, vol.MANIFEST_NAME))
        assert os.listdir(os.path.join(path, "lib")) == []
        assert plugin_call(server.plugin_socket, "/VolumeDriver.Mount", {"Name": NAME}) == (
            200, {"Mountpoint": path, "Err": ""})
        assert "libcuda.so.550.54.15" in os.listdir(os.path.join(path, "lib"))
        assert vol.read_manifest(path) is not None
        assert any(line.startswith("nvlow serve: rebuilt driver volume") for line in log.lines)
        assert sorted(n for n in os.listdir(os.path.dirname(path)) if not n.startswith(".lock-")) == ["550.54.15"]


# --- names: one strict check before any filesystem call; paths proven inside the volumes dir ------------

NAMED_ENDPOINTS = ("/VolumeDriver.Create", "/VolumeDriver.Remove", "/VolumeDriver.Mount", "/VolumeDriver.Unmount",
                   "/VolumeDriver.Path", "/VolumeDriver.Get")
BAD_NAMES = ["nvidia_driver_..", "nvidia_driver_.", "nvidia_driver_550.54.15\n", "nvidia_driver_550.54.15/..",
             "nvidia_driver_../../etc", "nvidia_driver_1..2", "nvidia_driver_.550", "nvidia_driver_550.",
             "nvidia_driver_", "nvidia_driver_" + "1" * 33, "nvidia_driver_\u0665\u0665\u0660",
             "nvidia_driver_550.54.15\x00", "nvidia_driver_ 550", "nvidia_driver_550 .54"]


def _snapshot(top):
    return sorted((os.path.relpath(os.path.join(d, n), top), os.lstat(os.path.join(d, n)).st_ino)
                  for d, dirs, names in os.walk(top) for n in dirs + names)


def test_bad_names_are_refused_before_touching_the_volumes_dir(plugin):
    sock, state, _l = plugin
    assert plugin_call(sock, "/VolumeDriver.Create", {"Name": NAME}) == (200, {"Err": ""})
    before = _snapshot(state.volumes_dir)
    wrong = []
    for name in BAD_NAMES:
        for endpoint in NAMED_ENDPOINTS:
            status, answer = plugin_call(sock, endpoint, {"Name": name, "ID": "x"})
            if (status, answer) != (200, {"Err": f"bad volume format: {vol.show_name(name)}"}):
                wrong.append((endpoint, name, status, answer))
    assert wrong == []
    assert _snapshot(state.volumes_dir) == before
    assert vol.is_complete(vol.volume_path(state.volumes_dir, "550.54.15"))


def test_bad_name_creates_nothing(tmp_path):
    with running_server(tmp_path, plugin=True) as (server, state, _log):
        for endpoint in NAMED_ENDPOINTS:
            plugin_call(server.plugin_socket, endpoint, {"Name": "nvidia_driver_..", "ID": "x"})
        assert not os.path.exists(state.volumes_dir)


def test_remove_with_a_trailing_newline_keeps_the_volume(plugin):
    # `$` matches before a trailing newline: the old check read this as 550.54.15 and removed it
    sock, state, _l = plugin
    assert plugin_call(sock, "/VolumeDriver.Create", {"Name": NAME}) == (200, {"Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Remove", {"Name": NAME + "\n"}) == (
        200, {"Err": "bad volume format: 'nvidia_driver_550.54.15\\n'"})
    assert vol.is_complete(vol.volume_path(state.volumes_dir, "550.54.15"))


def _outside_copy(tmp_path, state):
    """A complete volume outside the volumes dir (built there, then moved away)."""
    path = vol.ensure_driver_volume(state.cache.root, "550.54.15", state.volumes_dir).path
    outside = str(tmp_path / "outside")
    os.rename(path, outside)
    return path, outside


@pytest.mark.parametrize("endpoint", ["/VolumeDriver.Mount", "/VolumeDriver.Path", "/VolumeDriver.Get",
                                      "/VolumeDriver.Remove", "/VolumeDriver.Create"])
def test_a_symlinked_volume_is_refused(tmp_path, endpoint):
    with running_server(tmp_path, plugin=True) as (server, state, _log):
        path, outside = _outside_copy(tmp_path, state)
        os.symlink(outside, path)
        status, answer = plugin_call(server.plugin_socket, endpoint, {"Name": NAME, "ID": "x"})
        assert status == 200 and answer.keys() == {"Err"}
        assert answer["Err"] == (f"driver volume {path} is a symlink; nvlow does not follow symlinks there: {NAME}")
        assert os.path.islink(path) and vol.is_complete(outside)
        assert plugin_call(server.plugin_socket, "/VolumeDriver.List")[1] == {"Volumes": [], "Err": ""}


def test_a_symlinked_volumes_base_is_refused(tmp_path):
    with running_server(tmp_path, plugin=True) as (server, state, _log):
        path = vol.ensure_driver_volume(state.cache.root, "550.54.15", state.volumes_dir).path
        base = os.path.dirname(path)
        moved = str(tmp_path / "outside-base")
        os.rename(base, moved)
        os.symlink(moved, base)
        for endpoint in ("/VolumeDriver.Mount", "/VolumeDriver.Get", "/VolumeDriver.Remove", "/VolumeDriver.List"):
            status, answer = plugin_call(server.plugin_socket, endpoint, {"Name": NAME})
            assert status == 200 and answer["Err"].startswith(
                f"volume directory {base} is a symlink; nvlow does not follow symlinks there"), endpoint
        assert vol.is_complete(os.path.join(moved, "550.54.15"))


# --- mounts are counted; Remove refuses a mounted volume --------------------------------------------------

def test_remove_refuses_a_mounted_volume(plugin):
    sock, state, _l = plugin
    path = vol.volume_path(state.volumes_dir, "550.54.15")
    for caller in ("a", "b", "a"):
        assert plugin_call(sock, "/VolumeDriver.Mount", {"Name": NAME, "ID": caller}) == (
            200, {"Mountpoint": path, "Err": ""})
    in_use = f"volume is in use: {NAME} (mounted 3 times; stop the containers using it first)"
    assert plugin_call(sock, "/VolumeDriver.Remove", {"Name": NAME}) == (200, {"Err": in_use})
    assert plugin_call(sock, "/VolumeDriver.Unmount", {"Name": NAME, "ID": "a"}) == (200, {"Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Unmount", {"Name": NAME, "ID": "b"}) == (200, {"Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Unmount", {"Name": NAME, "ID": "b"}) == (200, {"Err": ""})  # no-op
    assert plugin_call(sock, "/VolumeDriver.Remove", {"Name": NAME}) == (
        200, {"Err": f"volume is in use: {NAME} (mounted 1 time; stop the containers using it first)"})
    assert vol.is_complete(path)
    assert plugin_call(sock, "/VolumeDriver.Unmount", {"Name": NAME, "ID": "a"}) == (200, {"Err": ""})
    assert plugin_call(sock, "/VolumeDriver.Remove", {"Name": NAME}) == (200, {"Err": ""})
    assert not os.path.exists(path)


# --- the socket directory ----------------------------------------------------------------------------------

def test_prepare_socket_dir_refuses_a_symlink(tmp_path):
    from nvlow.errors import UsageError
    from nvlow.serve.server import prepare_socket_dir

    target = tmp_path / "elsewhere"
    target.mkdir()
    os.chmod(target, 0o755)
    link = tmp_path / "sockdir"
    link.symlink_to(target)
    with pytest.raises(UsageError, match=f"plugin socket directory {link} is a symlink; nvlow does not follow it"):
        prepare_socket_dir(str(link))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755  # not chmod-ed through the link
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="is a symlink"):
        prepare_socket_dir(str(dangling))
    assert not os.path.exists(tmp_path / "nowhere")


def test_prepare_socket_dir_on_a_read_only_filesystem_says_so(tmp_path, monkeypatch):
    import errno

    from nvlow.errors import UsageError
    from nvlow.serve import server

    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(server.os, "makedirs", read_only)
    with pytest.raises(UsageError, match="cannot create plugin socket directory .*: Read-only file system") as info:
        server.prepare_socket_dir(str(tmp_path / "sockdir"))
    assert info.value.hint == "the directory is read-only: choose another --plugin-socket-dir"


def test_write_spec_does_not_write_through_a_symlinked_temp_file(tmp_path):
    from nvlow.serve.server import write_spec

    spec_dir = tmp_path / "plugins"
    spec_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (spec_dir / f"nvidia-docker.spec.tmp-{os.getpid()}").symlink_to(victim)
    spec = write_spec(str(spec_dir), "/run/nvlow/nvidia-docker.sock")
    assert open(spec).read() == "unix:///run/nvlow/nvidia-docker.sock\n" and victim.read_text() == "keep\n"
    assert not os.path.islink(spec)


# --- the plugin name: nvidia-docker 1.0's, and nobody else's --------------------------------------

import socket  # noqa: E402

from nvlow.errors import UsageError  # noqa: E402
from nvlow.serve.server import check_plugin_name_free, plugin_claims, prepare_socket_dir, socket_alive  # noqa: E402


@pytest.fixture()
def short_tmp():
    """A short temporary directory: unix socket paths are limited to 107 bytes."""
    import pathlib
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="nvl-")
    try:
        yield pathlib.Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def live_socket(short_tmp):
    """A unix socket some other process serves (listening, never answering)."""
    d = short_tmp / "other"
    d.mkdir()
    path = str(d / "nvidia-docker.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    try:
        yield path
    finally:
        s.close()


def _dead_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what a killed plugin leaves
    return str(path)


def _dirs(tmp_path):
    dirs = [tmp_path / "run-docker-plugins", tmp_path / "etc-docker-plugins", tmp_path / "usr-lib-docker-plugins"]
    for d in dirs:
        d.mkdir(exist_ok=True)
    return [str(d) for d in dirs]


def test_socket_alive(short_tmp, live_socket):
    tmp_path = short_tmp
    assert socket_alive(live_socket)
    assert not socket_alive(_dead_socket(tmp_path / "dead.sock"))
    assert not socket_alive(str(tmp_path / "missing.sock"))
    (tmp_path / "file.sock").write_text("")
    assert not socket_alive(str(tmp_path / "file.sock"))


def test_no_claims_no_notes(tmp_path):
    run, etc, usr = _dirs(tmp_path)
    assert check_plugin_name_free("nvidia-docker", f"{tmp_path}/mine/nvidia-docker.sock",
                                  f"{etc}/nvidia-docker.spec", [run, etc, usr]) == []


def test_a_spec_of_a_live_plugin_is_refused(tmp_path, live_socket):
    run, etc, usr = _dirs(tmp_path)
    spec = f"{etc}/nvidia-docker.spec"
    with open(spec, "w") as fh:
        fh.write(f"unix://{live_socket}\n")
    with pytest.raises(UsageError) as info:
        check_plugin_name_free("nvidia-docker", f"{tmp_path}/mine/nvidia-docker.sock", spec, [run, etc, usr])
    assert str(info.value) == (f"{spec} (unix://{live_socket}) already registers a Docker plugin named "
                               "'nvidia-docker'; nvlow will not take the name from it")
    assert "systemctl stop nvidia-docker" in info.value.hint and "--plugin-name" in info.value.hint
    assert info.value.exit_code == 2 and open(spec).read() == f"unix://{live_socket}\n"  # untouched


def test_its_own_spec_is_fine_and_a_stale_one_is_replaced(short_tmp):
    tmp_path = short_tmp
    run, etc, usr = _dirs(tmp_path)
    mine = f"{tmp_path}/mine/nvidia-docker.sock"
    spec = f"{etc}/nvidia-docker.spec"
    with open(spec, "w") as fh:
        fh.write(f"unix://{mine}\n")
    assert check_plugin_name_free("nvidia-docker", mine, spec, [run, etc, usr]) == []
    dead = _dead_socket(tmp_path / "old.sock")  # e.g. nvidia-docker-plugin killed with -9
    with open(spec, "w") as fh:
        fh.write(f"unix://{dead}")
    notes = check_plugin_name_free("nvidia-docker", mine, spec, [run, etc, usr])
    assert notes == [f"replacing the stale plugin spec {spec} (it named unix://{dead}, which nobody serves)"]


def test_a_spec_an_admin_installed_for_this_socket_is_fine(tmp_path):
    run, etc, usr = _dirs(tmp_path)
    mine = f"{tmp_path}/mine/nvidia-docker.sock"
    with open(f"{usr}/nvidia-docker.spec", "w") as fh:
        fh.write(f"  unix://{mine}  \n")
    assert check_plugin_name_free("nvidia-docker", mine, None, [run, etc, usr]) == []


@pytest.mark.parametrize("where", ["run/nvidia-docker.sock", "run/nvidia-docker/nvidia-docker.sock",
                                   "etc/nvidia-docker.json", "usr/nvidia-docker.spec",
                                   "etc/nvidia-docker/nvidia-docker.spec"])
def test_other_claims_are_refused(short_tmp, where):
    tmp_path = short_tmp
    run, etc, usr = _dirs(tmp_path)
    base = {"run": run, "etc": etc, "usr": usr}[where.split("/")[0]]
    path = os.path.join(base, *where.split("/")[1:])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".sock"):
        _dead_socket(path)  # even a dead socket elsewhere: nvlow does not delete what it did not make
    else:
        with open(path, "w") as fh:
            fh.write('{"Name": "nvidia-docker", "Addr": "tcp://127.0.0.1:9"}' if path.endswith(".json")
                     else f"unix://{tmp_path}/gone.sock")
    assert plugin_claims("nvidia-docker", [run, etc, usr]) == [path]
    with pytest.raises(UsageError, match=f"^{re.escape(path)}.* already registers a Docker plugin named "
                                         "'nvidia-docker'"):
        check_plugin_name_free("nvidia-docker", f"{tmp_path}/mine/nvidia-docker.sock",
                               f"{etc}/nvidia-docker.spec", [run, etc, usr])


def test_another_name_is_not_a_conflict(tmp_path, live_socket):
    run, etc, usr = _dirs(tmp_path)
    with open(f"{etc}/nvidia-docker.spec", "w") as fh:
        fh.write(f"unix://{live_socket}\n")
    assert check_plugin_name_free("site-gpu", f"{tmp_path}/mine/site-gpu.sock", f"{etc}/site-gpu.spec",
                                  [run, etc, usr]) == []


def test_prepare_socket_dir_refuses_a_live_socket_and_replaces_a_dead_one(short_tmp, live_socket):
    tmp_path = short_tmp
    d = os.path.dirname(live_socket)
    os.chmod(d, 0o700)
    with pytest.raises(UsageError, match=f"another process serves the plugin socket {re.escape(live_socket)}"):
        prepare_socket_dir(d)
    assert socket_alive(live_socket)
    dead_dir = tmp_path / "dead"
    dead_dir.mkdir(mode=0o700)
    dead = _dead_socket(dead_dir / "nvidia-docker.sock")
    assert prepare_socket_dir(str(dead_dir)) == dead and not os.path.exists(dead)


# --- volumes a previous plugin of the name left in dockerd ------------------------------------------

def test_volume_from_a_previous_plugin_answers_get_list_path_and_mounts(tmp_path):
    """dockerd remembers nvidia_driver_<v> from nvidia-docker-plugin 1.0 (another volumes directory): the
    running driver's volume must exist for Get/List/Path before anything built it, and Mount builds it."""
    with running_server(tmp_path, plugin=True) as (server, state, _log):
        sock = server.plugin_socket
        path = vol.volume_path(state.volumes_dir, "550.54.15")
        assert plugin_call(sock, "/VolumeDriver.Get", {"Name": NAME})[1] == {
            "Volume": {"Name": NAME, "Mountpoint": path}, "Err": ""}
        assert plugin_call(sock, "/VolumeDriver.Path", {"Name": NAME})[1] == {"Mountpoint": path, "Err": ""}
        assert plugin_call(sock, "/VolumeDriver.List")[1] == {"Volumes": [{"Name": NAME, "Mountpoint": path}],
                                                              "Err": ""}
        assert plugin_call(sock, "/VolumeDriver.Mount", {"Name": NAME, "ID": "ctr"})[1] == {"Mountpoint": path,
                                                                                             "Err": ""}
        assert vol.is_complete(path) and os.path.islink(os.path.join(path, "lib64", "libcuda.so.1"))
        assert plugin_call(sock, "/VolumeDriver.Unmount", {"Name": NAME, "ID": "ctr"})[1] == {"Err": ""}
        # another driver's volume is still unknown unless it is on disk
        assert plugin_call(sock, "/VolumeDriver.Get", {"Name": "nvidia_driver_375.26"})[1] == {
            "Err": "no such volume: nvidia_driver_375.26"}


def test_a_1_0_volume_directory_is_rebuilt_on_mount(tmp_path):
    """nvidia-docker-plugin 1.0's own layout (hard links, no manifest) in the volumes directory."""
    with running_server(tmp_path, plugin=True) as (server, state, _log):
        path = vol.volume_path(state.volumes_dir, "550.54.15")
        os.makedirs(os.path.join(path, "lib64"))
        os.makedirs(os.path.join(path, "bin"))
        with open(os.path.join(path, "bin", "nvidia-smi"), "w") as fh:
            fh.write("old")
        sock = server.plugin_socket
        assert plugin_call(sock, "/VolumeDriver.Get", {"Name": NAME})[1]["Volume"]["Mountpoint"] == path
        assert plugin_call(sock, "/VolumeDriver.Mount", {"Name": NAME, "ID": "x"})[1] == {"Mountpoint": path,
                                                                                           "Err": ""}
        assert vol.is_complete(path) and os.path.isfile(os.path.join(path, ".nvlow-manifest.json"))


def test_custom_plugin_name_is_reported(tmp_path):
    with running_server(tmp_path, plugin=True, plugin_name="site-gpu") as (server, _state, _log):
        assert server.plugin_socket.endswith("/site-gpu.sock")
        status, doc = get_json(server, "/docker/cli/json")
        assert status == 200 and doc["VolumeDriver"] == "site-gpu"
        _s, _h, body = get(server, "/docker/cli")
        assert body.decode().startswith("--volume-driver=site-gpu --volume=nvidia_driver_550.54.15:")
        status, doc = get_json(server, "/v2/args?gpus=0&driver_files=plugin")
        assert doc["volume_driver"] == "site-gpu" and "--volume-driver=site-gpu" in doc["args"]
