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


def _start(args, tmp_path):
    env = dict(os.environ)
    env.pop("NVLOW_SIMULATE", None)
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
        sock = str(sockdir / "nvlow.sock")
        assert plugin_call(sock, "/Plugin.Activate")[1] == {"Implements": ["VolumeDriver"]}
        assert (tmp_path / "spec" / "nvlow.spec").read_text() == f"unix://{sock}\n"
        assert not any("warning: listening" in line for line in lines)
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert "received SIGTERM, stopping" in err and "stopped" in err
    assert '"GET /healthz HTTP/1.1" 200' in err  # --verbose: one line per request
    assert not os.path.exists(sockdir / "nvlow.sock")


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
