"""Remote hosts: NV_HOST/DOCKER_HOST grammar, HTTP (v2 then v1.0 fallback) and ssh transports, error handling."""
from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nvlow.errors import RemoteError, SelectionError, UsageError
from nvlow.remote.client import RemoteTarget, parse_host, remote_plan as _remote_plan, resolve_remote, ssh_command
from nvlow.plan.request import PlanRequest, process_pairs
from test_serve_support import running_server


def remote_plan(url, *, gpus=None, capabilities=None, env=None, timeout=5.0, driver_files="bind"):
    """The old keyword form over the request model: nvlow's --gpus/--capabilities and its environment."""
    env = env or {}
    req = PlanRequest(gpus=gpus, capabilities=capabilities, process_env=process_pairs(env), driver_files=driver_files)
    return _remote_plan(url, req, env=env, timeout=timeout)


def remote_args(url, **kwargs):
    return list(remote_plan(url, **kwargs).args)


@pytest.mark.parametrize("value,expected", [
    ("10.0.0.1:", ("http", None, "10.0.0.1", 22, 3476)),
    ("10.0.0.1:80", ("http", None, "10.0.0.1", 22, 80)),
    (":", ("http", None, "localhost", 22, 3476)),
    ("http://gpu1:3476", ("http", None, "gpu1", 22, 3476)),
    ("http://gpu1", ("http", None, "gpu1", 22, 3476)),
    ("tcp://gpu1:9000", ("http", None, "gpu1", 22, 9000)),
    ("ssh://foo@10.0.0.1:22:80", ("ssh", "foo", "10.0.0.1", 22, 80)),
    ("ssh://foo@10.0.0.1:2222:", ("ssh", "foo", "10.0.0.1", 2222, 3476)),
    ("ssh://gpu1", ("ssh", None, "gpu1", 22, 3476)),
    ("ssh://[::1]:", ("ssh", None, "[::1]", 22, 3476)),
])
def test_nv_host_grammar(value, expected):
    t = parse_host(value, source="NV_HOST")
    assert (t.scheme, t.user, t.host, t.ssh_port, t.http_port) == expected


@pytest.mark.parametrize("value", ["ftp://x:", "http://a b:", "ssh://host:port:", "http://h:99999", "x:y:z"])
def test_invalid_nv_host(value):
    with pytest.raises(UsageError, match="invalid") as info:  # a usage error: exit 2
        parse_host(value, source="NV_HOST")
    assert info.value.exit_code == 2


OPT_IN = {"NVLOW_PLUGIN_ON_DOCKER_HOST": "1"}


@pytest.mark.parametrize("env,opt,expected", [
    ({}, None, None),
    ({"DOCKER_HOST": "unix:///var/run/docker.sock"}, None, None),
    # a DOCKER_HOST alone never names the plugin's host: the user opts in
    ({"DOCKER_HOST": "tcp://10.0.0.5:2376"}, None, None),
    ({"DOCKER_HOST": "ssh://me@gpu1:2200"}, None, None),
    ({"DOCKER_HOST": "tcp://10.0.0.5:2376", "NVLOW_PLUGIN_ON_DOCKER_HOST": "yes"}, None, None),
    ({"DOCKER_HOST": "tcp://10.0.0.5:2376", **OPT_IN}, None, ("http", "10.0.0.5", 3476, 22, None)),
    ({"DOCKER_HOST": "10.0.0.5:2375", **OPT_IN}, None, ("http", "10.0.0.5", 3476, 22, None)),
    ({"DOCKER_HOST": "ssh://me@gpu1:2200", **OPT_IN}, None, ("ssh", "gpu1", 3476, 2200, "me")),
    ({"DOCKER_HOST": "ssh://gpu1", **OPT_IN}, None, ("ssh", "gpu1", 3476, 22, None)),
    # TLS asked for: ssh is fine, plain HTTP is refused (below)
    ({"DOCKER_HOST": "ssh://gpu1", "DOCKER_TLS_VERIFY": "1", **OPT_IN}, None, ("ssh", "gpu1", 3476, 22, None)),
    ({"DOCKER_HOST": "tcp://a:1", "NV_HOST": "b:99"}, None, ("http", "b", 99, 22, None)),
    ({"NV_HOST": "", "DOCKER_HOST": "unix:///x"}, None, None),
    ({"NV_HOST": "b:99"}, "http://c:7", ("http", "c", 7, 22, None)),
])
def test_resolve_remote(env, opt, expected):
    t = resolve_remote(env, opt)
    got = None if t is None else (t.scheme, t.host, t.http_port, t.ssh_port, t.user)
    assert got == expected


def test_nv_host_without_docker_host_warns():
    t = resolve_remote({"NV_HOST": "10.0.0.1:"}, None)
    assert t is not None and t.warnings and "NV_HOST is set but DOCKER_HOST is not" in t.warnings[0]


def test_bad_docker_host_scheme():
    with pytest.raises(UsageError, match="invalid remote host URI in DOCKER_HOST"):
        resolve_remote({"DOCKER_HOST": "gopher://x:1", **OPT_IN}, None)


@pytest.mark.parametrize("env", [{"DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_TLS_VERIFY": "1"},
                                 {"DOCKER_HOST": "https://10.0.0.5:2376"}])
def test_tls_is_not_silently_dropped(env):
    with pytest.raises(RemoteError, match="DOCKER_TLS_VERIFY is set, but the GPU plugin API on 10.0.0.5:3476 is "
                                          "plain HTTP") as info:
        resolve_remote({**env, **OPT_IN}, None)
    assert "--host http://10.0.0.5:3476" in (info.value.hint or "")


def test_remote_docker_host_without_opt_in_is_a_note():
    from nvlow.remote.client import docker_host_note

    assert "planned from this machine" in docker_host_note({"DOCKER_HOST": "tcp://10.0.0.5:2376"})
    assert docker_host_note({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) is None
    assert docker_host_note({"DOCKER_HOST": "tcp://10.0.0.5:2376", **OPT_IN}) is None
    assert docker_host_note({"DOCKER_HOST": "unix:///run/docker.sock"}) is None


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("remote")) as (server, _state, _log):
        yield server


def test_remote_args_from_nvlow_serve(serve):
    host, port = serve.address
    args = remote_args(f"http://{host}:{port}", gpus="1", capabilities="utility", env={}, timeout=5)
    assert [a.rsplit(":", 1)[-1] for a in args if a.startswith("--device")] == ["/dev/nvidiactl", "/dev/nvidia1"]
    plan = remote_plan(f"{host}:{port}", gpus=None, capabilities=None, env={"NV_GPU": "0 2"}, timeout=5)
    assert plan.api == "v2" and plan.driver_version == "550.54.15" and plan.cuda_version == "12.4"
    assert plan.document is not None and plan.document["selection"]["gpus"] == [0, 2]


def test_remote_selection_error_is_not_spliced(serve):
    host, port = serve.address
    with pytest.raises(SelectionError, match=r"unknown GPU index: 9") as info:
        remote_args(f"http://{host}:{port}", gpus="9", capabilities=None, env={}, timeout=5)
    assert info.value.exit_code == 2


class _FakePlugin(BaseHTTPRequestHandler):
    """An original nvidia-docker-plugin: no /v2, 1.0 answers (and a broken mode)."""

    mode = "ok"

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/v1.0/docker/cli"):
            if self.mode == "error":
                self._reply(500, b"internal error, check logs for details\n")
            elif "dev=9" in self.path:
                self._reply(400, b"invalid device: 9\n")
            else:
                self.server.seen.append(self.path)
                self._reply(200, b"--volume-driver=nvidia-docker --volume=nvidia_driver_375.26:/usr/local/nvidia:ro "
                                 b"--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia0")
        elif self.path == "/v1.0/gpu/info/json":
            self._reply(200, b'{"Version":{"Driver":"375.26","CUDA":"8.0"},"Devices":[]}\n')
        else:
            self._reply(404, b"404 page not found\n")

    def do_POST(self):  # noqa: N802 - 1.0's mux answers 404 for a path it does not know
        self._reply(404, b"404 page not found\n")

    def _reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def fake_plugin(mode="ok"):
    handler = type("H", (_FakePlugin,), {"mode": mode})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_fallback_to_nvidia_docker_plugin():
    with fake_plugin() as srv:
        port = srv.server_address[1]
        plan = remote_plan(f"127.0.0.1:{port}", gpus="0,GPU-12", capabilities="compute", env={}, timeout=5)
        assert plan.api == "v1.0" and plan.driver_version == "375.26" and plan.cuda_version == "8.0"
        assert plan.args == ("--volume-driver=nvidia-docker", "--volume=nvidia_driver_375.26:/usr/local/nvidia:ro",
                             "--device=/dev/nvidiactl", "--device=/dev/nvidia-uvm", "--device=/dev/nvidia0")
        assert srv.seen == ["/v1.0/docker/cli?vol=nvidia_driver&dev=0+GPU-12"]
        assert plan.warnings and "capabilities" in plan.warnings[0]
        with pytest.raises(RemoteError, match="HTTP 400: invalid device: 9"):
            remote_args(f"127.0.0.1:{port}", gpus="9", capabilities=None, env={}, timeout=5)
        with pytest.raises(RemoteError, match="cannot express"):
            remote_args(f"127.0.0.1:{port}", gpus="none", capabilities=None, env={}, timeout=5)


def test_plugin_error_body_is_never_returned_as_args():
    with fake_plugin("error") as srv:
        with pytest.raises(RemoteError, match="HTTP 500: internal error, check logs for details"):
            remote_args(f"http://127.0.0.1:{srv.server_address[1]}", gpus=None, capabilities=None, env={}, timeout=5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_clear():
    with pytest.raises(RemoteError, match="connection refused") as info:
        remote_args(f"http://127.0.0.1:{_free_port()}", gpus=None, capabilities=None, env={}, timeout=5)
    assert "nvlow serve" in (info.value.hint or "")


def test_timeout_is_clear():
    with socket.socket() as listener:  # accepts (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(RemoteError, match="did not answer within 0.3 s"):
            remote_args(f"http://127.0.0.1:{port}", gpus=None, capabilities=None, env={}, timeout=0.3)


FAKE_SSH = r'''#!{python}
"""Stands in for ssh: records argv, then does what 'ssh -W host:port' does, to 127.0.0.1."""
import os, socket, sys, threading
with open(os.environ["FAKE_SSH_LOG"], "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\n")
port = int(sys.argv[sys.argv.index("-W") + 1].rsplit(":", 1)[1])
s = socket.create_connection(("127.0.0.1", port))
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    os.write(1, data)
'''


@pytest.fixture()
def fake_ssh(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ssh = bindir / "ssh"
    ssh.write_text(FAKE_SSH.replace("{python}", sys.executable))
    ssh.chmod(ssh.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "ssh.log"
    return {"PATH": f"{bindir}:{os.environ.get('PATH', '')}", "FAKE_SSH_LOG": str(log)}, log


def test_ssh_transport_to_nvlow_serve(serve, fake_ssh):
    env, log = fake_ssh
    port = serve.address[1]
    plan = remote_plan(f"ssh://alice@gpu-node:2222:{port}", gpus="0", capabilities=None, env=env, timeout=10)
    assert plan.api == "v2" and plan.document["selection"]["gpus"] == [0]
    argv = log.read_text().split()
    assert argv[argv.index("-W") + 1] == f"localhost:{port}"
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "alice"
    assert argv[-1] == "gpu-node"
    assert not any("StrictHostKeyChecking" in a or "UserKnownHostsFile" in a for a in argv)


def test_ssh_transport_fallback_to_v1(fake_ssh):
    env, _log = fake_ssh
    with fake_plugin() as srv:
        plan = remote_plan(RemoteTarget("ssh", "gpu-node", srv.server_address[1]), gpus=None,
                           capabilities=None, env=env, timeout=10)
    assert plan.api == "v1.0" and plan.args[0] == "--volume-driver=nvidia-docker"


def test_ssh_failure_is_clear(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ssh = bindir / "ssh"
    ssh.write_text("#!/bin/sh\necho 'ssh: connect to host gpu-node port 22: Connection refused' >&2\nexit 255\n")
    ssh.chmod(0o755)
    with pytest.raises(RemoteError, match="through ssh: ssh: connect to host gpu-node port 22: Connection refused"):
        remote_args("ssh://gpu-node:", gpus=None, capabilities=None, env={"PATH": str(bindir)}, timeout=5)


def test_ssh_missing_client():
    with pytest.raises(RemoteError, match="ssh client is not installed"):
        ssh_command(parse_host("ssh://x:"), {"PATH": "/nonexistent"}, 5)
