"""``--engine-root``: the host paths nvlow hands the engine are the engine's view of the host.

nvlow reads the host under ``--root`` (``/host`` in a container that mounts the host's ``/`` there);
dockerd needs the host's own paths. One translation step in :func:`nvlow.plan.decide.plan_for`
(:class:`nvlow.plan.plan.EngineView`) replaces the root prefix of every device and bind-mount host path;
``args``, ``exec``, ``serve`` (v1.0 and v2) and the volume plugin's mountpoints all show that view.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import nvlow
from nvlow.plan.decide import plan_for
from nvlow.host.discover import discover
from nvlow.errors import UsageError
from nvlow.plan.plan import PLUGIN_DRIVER, EngineView, check_engine_root, check_plugin_name
from nvlow.plan.render import compose_fragment, docker_args, plan_document
from nvlow.plan.request import PlanRequest
from test_serve_support import get, get_json, plugin_call, running_server, writable_root

GPU_RE = re.compile(r"^/dev/nvidia\d+$")  # what 1.0 clients (nvidia-docker-compose) count as a GPU


# --- the translation ------------------------------------------------------------------------------

@pytest.mark.parametrize("engine,host_root,path,want", [
    ("/", "/host", "/host/dev/nvidia0", "/dev/nvidia0"),
    ("/", "/host", "/host", "/"),
    ("/", "/host", "/host/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
     "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"),
    ("/", "/host", "/hostile/dev/nvidia0", "/hostile/dev/nvidia0"),  # a prefix of a name is not the root
    ("/", "/host", "/var/lib/nvlow/volumes/nvidia_driver/1", "/var/lib/nvlow/volumes/nvidia_driver/1"),  # outside
    ("/mnt/h", "/host", "/host/dev/nvidia-uvm", "/mnt/h/dev/nvidia-uvm"),
    ("/mnt/h", "/host", "/host", "/mnt/h"),
    ("/srv/chroot", "/", "/dev/nvidiactl", "/srv/chroot/dev/nvidiactl"),
    ("/", "/", "/dev/nvidia3", "/dev/nvidia3"),
    (None, "/host", "/host/dev/nvidia0", "/host/dev/nvidia0"),  # None: the engine sees what nvlow reads
])
def test_engine_path(engine, host_root, path, want):
    assert EngineView(engine).path(path, host_root) == want


@pytest.mark.parametrize("text,want", [("/", "/"), ("/host/", "/host"), ("//", "/"), ("/a/./b/", "/a/b"),
                                       ("//srv//x", "/srv/x")])
def test_check_engine_root(text, want):
    assert check_engine_root(text) == want


@pytest.mark.parametrize("text", ["", "host", "./x", "/a:b", "/a,b", "/a\nb"])
def test_bad_engine_root_is_a_usage_error(text):
    with pytest.raises(UsageError, match="invalid --engine-root") as info:
        check_engine_root(text)
    assert info.value.exit_code == 2 and info.value.hint


@pytest.mark.parametrize("name", ["nvidia-docker", "nvlow", "site_gpu.v2", "N1"])
def test_plugin_names(name):
    assert check_plugin_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "-x", "a b", "x" * 65, "nvidia-docker.spec", "é"])
def test_bad_plugin_names(name):
    with pytest.raises(UsageError, match="invalid --plugin-name"):
        check_plugin_name(name)


# --- plans ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim():
    return nvlow.load_host(simulate="dgx-a100")


def _pairs(plan):
    return [(d.host_path, d.container_path) for d in plan.devices], [(m.host_path, m.kind) for m in plan.mounts]


def test_default_view_changes_nothing(sim):
    req = PlanRequest(gpus="0,1", capabilities="all")
    assert plan_for(sim, req) == plan_for(sim, req, engine=EngineView()) == plan_for(sim, req, engine=EngineView(None))


def test_engine_root_slash_gives_plain_device_paths(sim):
    req = PlanRequest(gpus="all", capabilities="all")
    read = plan_for(sim, req)
    seen = plan_for(sim, req, engine=EngineView("/"))
    assert all(d.host_path.startswith(sim.root + "/") for d in read.devices)
    assert [d.host_path for d in seen.devices] == [d.container_path for d in seen.devices]
    assert [d.host_path for d in seen.devices] == [d.host_path[len(sim.root):] for d in read.devices]
    binds = [(a.host_path, b.host_path) for a, b in zip(read.mounts, seen.mounts)]
    assert binds and all(b == a[len(sim.root):] for a, b in binds)
    assert not any(sim.root in a for a in docker_args(seen))
    assert [a for a in docker_args(seen) if a.startswith("--device=")][:2] == [
        "--device=/dev/nvidiactl", "--device=/dev/nvidia-uvm"]
    # everything else is the same plan
    assert (seen.selection, seen.capabilities, seen.env, seen.warnings) == (
        read.selection, read.capabilities, read.env, read.warnings)
    doc = plan_document(seen, sim)
    assert all(d["host_path"] == d["container_path"] for d in doc["devices"])
    assert '"/dev/nvidia0:/dev/nvidia0"' in compose_fragment(seen)


def test_plugin_mode_names_the_plugin_and_keeps_the_volume_name(sim):
    req = PlanRequest(gpus="0", capabilities="utility", driver_files="plugin")
    assert plan_for(sim, req).volume_driver == PLUGIN_DRIVER == "nvidia-docker"
    plan = plan_for(sim, req, engine=EngineView("/", "site-gpu"))
    assert plan.volume_driver == "site-gpu"
    assert "--volume-driver=site-gpu" in docker_args(plan)
    assert "--volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro" in docker_args(plan)
    # bind mode has no volume driver, whatever the name
    assert plan_for(sim, PlanRequest(gpus="0"), engine=EngineView("/", "site-gpu")).volume_driver is None


def test_void_plan_is_untouched(sim):
    plan = plan_for(lambda: 1 / 0, PlanRequest(gpus="void"), engine=EngineView("/", "x"))  # type: ignore
    assert plan.devices == () and plan.mounts == () and plan.volume_driver is None


@pytest.fixture()
def copied_host(tmp_path):
    """A writable copy of the dgx-a100 tree discovered as a --root host (device nodes described by files)."""
    root, opener = writable_root(tmp_path)
    return root, discover(root, library_opener=opener, load_uvm=False)


def test_volume_under_the_root_is_translated_and_one_outside_is_not(copied_host, tmp_path):
    root, host = copied_host
    req = PlanRequest(gpus="0", capabilities="utility", driver_files="volume")
    inside = os.path.join(root.path, "var", "lib", "nvlow", "volumes")
    plan = plan_for(host, req, volumes_dir=inside, engine=EngineView("/"))
    vol = [m for m in plan.mounts if m.container_path == "/usr/local/nvidia"][0]
    assert vol.host_path == "/var/lib/nvlow/volumes/nvidia_driver/550.54.15"
    outside = str(tmp_path / "volumes")
    plan = plan_for(host, req, volumes_dir=outside, engine=EngineView("/"))
    vol = [m for m in plan.mounts if m.container_path == "/usr/local/nvidia"][0]
    assert vol.host_path == os.path.join(outside, "nvidia_driver", "550.54.15")
    assert [d.host_path for d in plan.devices] == ["/dev/nvidiactl", "/dev/nvidia0"]


def test_root_host_engine_root_other_dir(copied_host):
    root, host = copied_host
    plan = plan_for(host, PlanRequest(gpus="1", capabilities="utility"), engine=EngineView("/mnt/host"))
    assert [d.host_path for d in plan.devices] == ["/mnt/host/dev/nvidiactl", "/mnt/host/dev/nvidia1"]
    assert all(m.host_path.startswith("/mnt/host/") for m in plan.mounts)


# --- the command line -----------------------------------------------------------------------------

def _nvlow(*args, env=None):
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("NVLOW_", "NVIDIA_", "NV_")) and k != "DOCKER_HOST"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "nvlow", *args], capture_output=True, text=True, timeout=120,
                          env=full)


def _devices(argv):
    return [a[len("--device="):] for a in argv if a.startswith("--device=")]


@pytest.mark.parametrize("how", ["option", "env"])
def test_args_engine_root(how):
    extra, env = (["--engine-root", "/"], None) if how == "option" else ([], {"NVLOW_ENGINE_ROOT": "/"})
    r = _nvlow("args", "--simulate", "dgx-a100", "--gpus", "0,3", *extra, "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert _devices(doc["args"]) == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0",
                                     "/dev/nvidia3"]
    assert all(m["host_path"] == m["container_path"] for m in doc["mounts"] if m["kind"] == "bind"
               and not m["container_path"].startswith("/usr/local/nvidia"))
    assert not any("/simulate/" in a for a in doc["args"])


def test_args_without_engine_root_keeps_host_paths():
    r = _nvlow("args", "--simulate", "dgx-a100", "--gpus", "0", "--json")
    assert r.returncode == 0, r.stderr
    assert all(d.endswith(":" + d.rsplit(":", 1)[1]) and ":" in d for d in _devices(json.loads(r.stdout)["args"]))


def test_exec_engine_root_and_plugin_name():
    r = _nvlow("exec", "--simulate", "workstation", "--dry-run", "--json", "--engine-root", "/", "--driver-files",
               "plugin", "--", "docker", "run", "--rm", "img", "nvidia-smi",
               env={"NVLOW_PLUGIN_NAME": "site-gpu"})
    assert r.returncode == 0, r.stderr
    argv = json.loads(r.stdout)["argv"]
    assert "--volume-driver=site-gpu" in argv and argv[-2:] == ["img", "nvidia-smi"]
    assert [d for d in _devices(argv) if GPU_RE.match(d)] == ["/dev/nvidia0"]


def test_plugin_mode_default_name_is_nvidia_docker():
    r = _nvlow("args", "--simulate", "workstation", "--driver-files", "plugin")
    assert r.returncode == 0, r.stderr
    assert "--volume-driver=nvidia-docker" in r.stdout.split()


@pytest.mark.parametrize("args,env,message", [
    (["--engine-root", "host"], None, "invalid --engine-root (NVLOW_ENGINE_ROOT) 'host'"),
    ([], {"NVLOW_ENGINE_ROOT": "a:b"}, "invalid --engine-root (NVLOW_ENGINE_ROOT) 'a:b'"),
    (["--plugin-name", "../x"], None, "invalid --plugin-name (NVLOW_PLUGIN_NAME) '../x'"),
])
def test_bad_values_exit_2_with_one_line(args, env, message):
    r = _nvlow("args", "--simulate", "workstation", *args, env=env)
    assert r.returncode == 2 and r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if line.startswith("nvlow: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"nvlow: error: {message}: ")
    assert any(line.startswith("nvlow: hint:") for line in r.stderr.splitlines())


# --- serve ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine_view_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engineroot")
    with running_server(tmp, engine_root="/", plugin=True) as (server, state, _log):
        yield server, state


def test_v1_docker_cli_json_has_plain_devices(engine_view_server):
    server, _state = engine_view_server
    status, doc = get_json(server, "/docker/cli/json")
    assert status == 200 and doc["VolumeDriver"] == "nvidia-docker"
    assert [d for d in doc["Devices"] if GPU_RE.match(d)] == [f"/dev/nvidia{i}" for i in range(8)]
    assert doc["Devices"][:3] == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    _s, _h, body = get(server, "/v1.0/docker/cli?dev=2")
    assert body.decode() == ("--volume-driver=nvidia-docker --volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro "
                             "--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia-uvm-tools "
                             "--device=/dev/nvidia2")


def test_v2_is_in_the_engine_view(engine_view_server):
    server, state = engine_view_server
    status, doc = get_json(server, "/v2/args?gpus=1&capabilities=utility")
    assert status == 200
    assert [(d["host_path"], d["container_path"]) for d in doc["devices"]] == [
        ("/dev/nvidiactl", "/dev/nvidiactl"), ("/dev/nvidia1", "/dev/nvidia1")]
    assert not any(state.cache.root.path in m["host_path"] for m in doc["mounts"])


def test_plugin_mountpoints_are_in_the_engine_view(tmp_path):
    root, _opener = writable_root(tmp_path)
    volumes = os.path.join(root.path, "var", "lib", "nvlow", "volumes")
    with running_server(tmp_path, engine_root="/", plugin=True, root=root, volumes_dir=volumes) as (server, state, _l):
        name = "nvidia_driver_550.54.15"
        want = "/var/lib/nvlow/volumes/nvidia_driver/550.54.15"
        sock = server.plugin_socket
        assert plugin_call(sock, "/VolumeDriver.Get", {"Name": name})[1] == {
            "Volume": {"Name": name, "Mountpoint": want}, "Err": ""}
        assert plugin_call(sock, "/VolumeDriver.Mount", {"Name": name, "ID": "c1"})[1] == {"Mountpoint": want,
                                                                                            "Err": ""}
        assert os.path.isdir(os.path.join(volumes, "nvidia_driver", "550.54.15", "lib64"))  # built where nvlow writes
        assert plugin_call(sock, "/VolumeDriver.Path", {"Name": name})[1] == {"Mountpoint": want, "Err": ""}
        assert plugin_call(sock, "/VolumeDriver.List")[1] == {"Volumes": [{"Name": name, "Mountpoint": want}],
                                                              "Err": ""}
        status, doc = get_json(server, "/v2/args?gpus=0&driver_files=volume")
        assert status == 200 and {"host_path": want, "container_path": "/usr/local/nvidia", "read_only": True,
                                  "kind": "bind"} in doc["mounts"]


def test_cdi_generate_writes_the_engine_view(tmp_path) -> None:
    """``cdi generate --engine-root /``: device and mount host paths as the engine sees them; a node's
    hostPath is dropped where it equals its path (nvidia-ctk's shape)."""
    from nvlow.cdi.spec import build_spec
    from nvlow.host.driverfiles import select_driver_files

    root, opener = writable_root(tmp_path)
    host = discover(root, library_opener=opener, load_uvm=False)
    files = select_driver_files(root, host.driver_version or "", {"compute", "utility"})
    plain = build_spec(host, files, capabilities=("compute", "utility")).document
    viewed = build_spec(host, files, capabilities=("compute", "utility"), engine_root="/").document
    nodes = viewed["containerEdits"]["deviceNodes"] + [n for d in viewed["devices"]
                                                        for n in d["containerEdits"]["deviceNodes"]]
    assert nodes and all("hostPath" not in n for n in nodes)
    assert all(n.get("hostPath", "").startswith(root.path) for n in plain["containerEdits"]["deviceNodes"])
    mounts = viewed["containerEdits"]["mounts"]
    assert mounts and all(not m["hostPath"].startswith(root.path) for m in mounts)
    assert [m["containerPath"] for m in mounts] == [m["containerPath"] for m in plain["containerEdits"]["mounts"]]
