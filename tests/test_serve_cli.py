"""``nvlow serve`` as a process: startup log, REST and plugin, non-loopback warning, SIGTERM graceful stop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from test_serve_support import plugin_call

LAUNCH = ("import sys, typer; from nvlow.cli.servecmd import register; app = typer.Typer(); "
          "register(app); app.command('noop')(lambda: None); app(sys.argv[1:], prog_name='nvlow')")


def _start(args, tmp_path, env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVLOW_")} | dict(env or {})
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for _ in range(50):  # bounded: the startup log is a handful of lines
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "serving remote API at " in line:
            addr = line.rsplit(" ", 1)[1].strip()
            return proc, addr, lines
    proc.kill()
    proc.wait()
    pytest.fail("nvlow serve did not start: " + "\n".join(lines))


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_serve_simulated_rest_and_plugin(tmp_path):
    sockdir = tmp_path / "run"
    args = ["--simulate", "dgx-a100", "--listen", "127.0.0.1:0", "--plugin-socket-dir", str(sockdir),
            "--plugin-spec-dir", str(tmp_path / "spec"), "--volumes-dir", str(tmp_path / "vol"), "--verbose"]
    proc, addr, lines = _start(args, tmp_path)
    try:
        with urllib.request.urlopen(f"http://{addr}/healthz", timeout=10) as r:
            assert json.load(r)["simulated"] == "dgx-a100"
        with urllib.request.urlopen(f"http://{addr}/docker/cli?dev=0", timeout=10) as r:
            assert r.read().decode().endswith(":/dev/nvidia0")
        sock = str(sockdir / "nvidia-docker.sock")
        assert plugin_call(sock, "/Plugin.Activate")[1] == {"Implements": ["VolumeDriver"]}
        assert (tmp_path / "spec" / "nvidia-docker.spec").read_text() == f"unix://{sock}\n"
        assert not any("warning: listening" in line for line in lines)
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert "received SIGTERM, stopping" in err and "stopped" in err
    assert '"GET /healthz HTTP/1.1" 200' in err  # --verbose: one line per request
    assert not os.path.exists(sockdir / "nvidia-docker.sock")


def test_non_loopback_listen_needs_confirmation(tmp_path):
    r = subprocess.run([sys.executable, "-c", LAUNCH, "serve", "--simulate", "workstation", "--listen", "0.0.0.0:0",
                        "--no-plugin"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--listen 0.0.0.0:0 would serve the API beyond this machine" in r.stderr
    assert "--allow-remote-clients" in r.stderr
    proc, _addr, lines = _start(["--simulate", "workstation", "--listen", "0.0.0.0:0", "--allow-remote-clients",
                                 "--no-plugin"], tmp_path)
    code, _err = _stop(proc)
    assert code == 0
    assert any("warning: listening on 0.0.0.0:" in line and "no authentication" in line for line in lines)


def test_bad_listen_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-c", LAUNCH, "serve", "--simulate", "workstation", "--listen", "nowhere"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nvlow: error: invalid --listen 'nowhere'" in r.stderr


# --- the plugin name and the engine's view -----------------------------------------------------------

import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402


@pytest.fixture()
def short_tmp():
    d = tempfile.mkdtemp(prefix="nvl-")  # unix socket paths are limited to 107 bytes
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _get_json(addr, path):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
        return json.load(r)


def test_plugin_name_option_and_environment(short_tmp):
    for args, env in ((["--plugin-name", "site-gpu"], {}), ([], {"NVLOW_PLUGIN_NAME": "site-gpu"})):
        sockdir, spec = short_tmp / "run", short_tmp / "spec"
        proc, addr, lines = _start(["--simulate", "workstation", "--listen", "127.0.0.1:0", "--plugin-socket-dir",
                                    str(sockdir), "--plugin-spec-dir", str(spec), "--volumes-dir",
                                    str(short_tmp / "vol"), *args], short_tmp, env=env)
        try:
            assert _get_json(addr, "/docker/cli/json")["VolumeDriver"] == "site-gpu"
            assert (spec / "site-gpu.spec").read_text() == f"unix://{sockdir}/site-gpu.sock\n"
            activate = plugin_call(str(sockdir / "site-gpu.sock"), "/Plugin.Activate")
            assert activate[1] == {"Implements": ["VolumeDriver"]}
            assert any(f"serving plugin API 'site-gpu' at {sockdir}/site-gpu.sock" in line for line in lines)
        finally:
            assert _stop(proc)[0] == 0
        shutil.rmtree(spec)


def test_refuses_a_name_another_plugin_claims(short_tmp):
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(short_tmp / "nvidia-docker-plugin.sock"))
    other.listen(1)
    spec = short_tmp / "spec" / "nvidia-docker.spec"
    spec.parent.mkdir()
    spec.write_text(f"unix://{short_tmp}/nvidia-docker-plugin.sock\n")
    try:
        r = subprocess.run([sys.executable, "-c", LAUNCH, "serve", "--simulate", "workstation", "--listen",
                            "127.0.0.1:0", "--plugin-socket-dir", str(short_tmp / "run"), "--plugin-spec-dir",
                            str(spec.parent)], capture_output=True, text=True, timeout=60)
    finally:
        other.close()
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("nvlow: error:")]
    assert errors == [f"nvlow: error: {spec} (unix://{short_tmp}/nvidia-docker-plugin.sock) already registers a "
                      "Docker plugin named 'nvidia-docker'; nvlow will not take the name from it"]
    assert any(line.startswith("nvlow: hint: stop the other plugin") and "--plugin-name" in line
               for line in r.stderr.splitlines())
    assert spec.read_text() == f"unix://{short_tmp}/nvidia-docker-plugin.sock\n"
    assert not (short_tmp / "run").exists()  # refused before anything was created


def test_replaces_its_stale_spec_and_socket(short_tmp):
    sockdir = short_tmp / "run"
    sockdir.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sockdir / "nvidia-docker.sock"))
    dead.close()
    spec = short_tmp / "spec" / "nvidia-docker.spec"
    spec.parent.mkdir()
    spec.write_text(f"unix://{short_tmp}/old/nvidia-docker.sock\n")  # a crashed earlier instance elsewhere
    proc, addr, lines = _start(["--simulate", "workstation", "--listen", "127.0.0.1:0", "--plugin-socket-dir",
                                str(sockdir), "--plugin-spec-dir", str(spec.parent), "--volumes-dir",
                                str(short_tmp / "vol")], short_tmp)
    try:
        assert any(f"replacing the stale plugin spec {spec}" in line for line in lines)
        assert spec.read_text() == f"unix://{sockdir}/nvidia-docker.sock\n"
        assert plugin_call(str(sockdir / "nvidia-docker.sock"), "/Plugin.Activate")[0] == 200
        # a second server on the same socket is refused while this one runs
        r = subprocess.run([sys.executable, "-c", LAUNCH, "serve", "--simulate", "workstation", "--listen",
                            "127.0.0.1:0", "--plugin-socket-dir", str(sockdir), "--plugin-spec-dir", ""],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert f"nvlow: error: another process serves the plugin socket {sockdir}/nvidia-docker.sock" in r.stderr
    finally:
        assert _stop(proc)[0] == 0


def test_engine_root_gives_1_0_clients_plain_devices(tmp_path):
    proc, addr, _lines = _start(["--simulate", "dgx-a100", "--listen", "127.0.0.1:0", "--no-plugin",
                                 "--engine-root", "/"], tmp_path)
    try:
        devices = _get_json(addr, "/v1.0/docker/cli/json?dev=0+1")["Devices"]
    finally:
        _stop(proc)
    assert devices == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0", "/dev/nvidia1"]
    assert all(re.match(r"^/dev/nvidia(\d+|ctl|-uvm|-uvm-tools)$", d) for d in devices)


@pytest.mark.parametrize("args,message", [
    (["--engine-root", "host"], "invalid --engine-root 'host'"),
    (["--plugin-name", "a/b"], "invalid --plugin-name 'a/b'"),
])
def test_bad_engine_root_or_plugin_name(args, message):
    r = subprocess.run([sys.executable, "-c", LAUNCH, "serve", "--simulate", "workstation", "--listen",
                        "127.0.0.1:0", "--no-plugin", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"nvlow: error: {message}" in r.stderr


def test_serve_turns_the_cyclic_collector_back_on(tmp_path):
    """The `nvlow` script and ``python -m nvlow`` start with the collector off (short commands); serve,
    which runs for days, must turn it back on."""
    launch = ("import atexit, gc, sys; gc.disable(); "
              "atexit.register(lambda: sys.stderr.write('GC=%s\\n' % gc.isenabled())); " + LAUNCH)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVLOW_")}
    proc = subprocess.Popen([sys.executable, "-c", launch, "serve", "--simulate", "workstation", "--listen",
                             "127.0.0.1:0", "--no-plugin"], stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(50):
        line = proc.stderr.readline()
        if not line or "serving remote API at " in line:
            break
    code, err = _stop(proc)
    assert code == 0 and "GC=True" in err, err
