"""The typer-free fast parser and the typer app accept the same options for args/exec, and parse every
command line (environment included) to the same values."""
from __future__ import annotations

import dataclasses
import re

import click
import pytest
import typer.main

from nvlow.cli import plancmd
from nvlow.cli.app import app, run_app
from nvlow.cli.fast import Fallback, parse
from nvlow.cli.options import (ARGS_VALUES, ENV_OPTIONS, EXEC_ENV_OPTIONS, EXEC_FLAGS, EXEC_VALUES, FAST_FLAGS,
                               FAST_VALUES, PlanOptions)


def _command(name: str):
    cmd = typer.main.get_command(app)
    for word in name.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[word]
    return cmd


def _params(name: str):
    cmd = _command(name)
    flags, values = set(), set()
    for p in cmd.params:
        if isinstance(p, click.Option):
            (flags if p.is_flag else values).update(o for o in p.opts if o.startswith("--") and o != "--help")
    return flags, values


def _envvars(name: str):
    return {p.name: p.envvar for p in _command(name).params if isinstance(p, click.Option) and p.envvar}


@pytest.mark.parametrize("name,flags,values", [
    ("args", set(FAST_FLAGS), set(FAST_VALUES) | set(ARGS_VALUES)),
    ("exec", set(FAST_FLAGS) | set(EXEC_FLAGS), set(FAST_VALUES) | set(EXEC_VALUES)),
])
def test_same_options(name, flags, values):
    assert _params(name) == (flags, values)


@pytest.mark.parametrize("name,table", [("args", ENV_OPTIONS), ("exec", {**ENV_OPTIONS, **EXEC_ENV_OPTIONS})])
def test_same_environment_variables(name, table):
    assert _envvars(name) == table


def test_fast_parser_spellings():
    opts = parse(["exec", "--gpus=0,1", "--root", "/r", "--dry-run", "--", "docker", "run", "img"], {})
    assert (opts.gpus, opts.root, opts.dry_run, opts.engine_argv) == ("0,1", "/r", True, ["docker", "run", "img"])
    opts = parse(["exec", "--json", "docker", "run", "--gpus", "1", "img"], {"NVLOW_SIMULATE": "dgx-a100"})
    assert opts.engine_argv == ["docker", "run", "--gpus", "1", "img"] and opts.simulate == "dgx-a100"
    assert parse(["exec"], {"NV_DOCKER": "sudo docker"}).docker == "sudo docker"
    # args has no --docker, so NV_DOCKER is not its business (the typer app leaves it None too)
    assert parse(["args"], {"NV_DOCKER": "sudo docker"}).docker is None


@pytest.mark.parametrize("argv", [
    ["args", "--help"], ["args", "-h"], ["args", "--gpus"], ["args", "--bogus"], ["args", "extra"],
    ["exec", "--format", "json"], ["args", "--dry-run"],
])
def test_fast_parser_falls_back(argv):
    with pytest.raises(Fallback):
        parse(argv, {})


# --- the same argv + environment through both parsers ----------------------------------------------

X = {"NVLOW_ROOT": "/x"}
SIM = {"NVLOW_SIMULATE": "workstation"}
NVD = {"NV_DOCKER": "sudo docker -D"}
ALL_ENV = {**X, **SIM, **NVD}
RUN = ["docker", "run", "--rm", "img", "nvidia-smi"]
ER = {"NVLOW_ENGINE_ROOT": "/e"}
PN = {"NVLOW_PLUGIN_NAME": "site-gpu"}
EVERY_OPTION = ["--root", "/r", "--simulate", "dgx-a100", "--no-nvml", "--debug", "--json", "--no-uvm-load",
                "--gpus", "0,1", "--capabilities", "all", "--driver-files", "volume", "--volumes-dir", "/v",
                "--image", "img:1", "--no-require", "--engine-root", "/",
                "--plugin-name", "nvd", "--quiet"]
EVERY_OPTION_EQ = ["--root=/r", "--simulate=dgx-a100", "--no-nvml", "--debug", "--json", "--no-uvm-load",
                   "--gpus=0,1", "--capabilities=all", "--driver-files=volume", "--volumes-dir=/v",
                   "--image=img:1", "--no-require", "--engine-root=/", "--plugin-name=nvd", "-q"]
EVERY_VALUE = {"root": "/r", "simulate": "dgx-a100", "no_nvml": True, "debug": True, "json": True,
               "no_uvm_load": True, "gpus": "0,1", "capabilities": "all", "driver_files": "volume",
               "volumes_dir": "/v", "image": "img:1", "no_require": True, "engine_root": "/",
               "plugin_name": "nvd", "quiet": True}
# --host and --simulate together are a usage error (checked after parsing, on both paths): --host alone
EVERY_REMOTE = ["--root", "/r", "--host", "http://h:3476", "--gpus", "1"]

# (id, argv, environment, expected values that differ from PlanOptions() — None for "the fast parser
# falls back and the typer app decides alone")
CASES = [
    ("args-plain", ["args"], {}, {}),
    ("args-env-root", ["args"], X, {"root": "/x"}),
    ("args-root-slash-beats-env", ["args", "--root", "/"], X, {}),
    ("args-root-eq-slash-beats-env", ["args", "--root=/"], X, {}),
    ("args-root-beats-env", ["args", "--root", "/y"], X, {"root": "/y"}),
    ("args-root-empty-beats-env", ["args", "--root="], X, {"root": ""}),
    ("args-root-empty-value", ["args", "--root", ""], X, {"root": ""}),
    ("args-env-root-empty", ["args"], {"NVLOW_ROOT": ""}, {}),
    ("args-root-after-other", ["args", "--gpus", "0", "--root", "/"], X, {"gpus": "0"}),
    ("args-root-repeated-last-wins", ["args", "--root", "/a", "--root", "/"], X, {}),
    ("args-root-repeated-eq", ["args", "--root=/", "--root=/b"], X, {"root": "/b"}),
    ("args-env-simulate", ["args"], SIM, {"simulate": "workstation"}),
    ("args-simulate-beats-env", ["args", "--simulate", "dgx-a100"], SIM, {"simulate": "dgx-a100"}),
    ("args-simulate-empty-beats-env", ["args", "--simulate="], SIM, {"simulate": ""}),
    ("args-env-simulate-empty", ["args"], {"NVLOW_SIMULATE": ""}, {}),
    ("args-root-and-env-simulate", ["args", "--root", "/"], {**X, **SIM}, {"simulate": "workstation"}),
    ("args-nv-docker-ignored", ["args"], NVD, {}),
    ("args-all-env", ["args", "--json"], ALL_ENV, {"root": "/x", "simulate": "workstation", "json": True}),
    ("args-every-option", ["args", *EVERY_OPTION, "--format", "compose"], {**ALL_ENV, **ER, **PN},
     {**EVERY_VALUE, "format": "compose"}),
    ("args-every-option-eq", ["args", *EVERY_OPTION_EQ, "--format=json"], {}, {**EVERY_VALUE, "format": "json"}),
    ("args-engine-root", ["args", "--root", "/host", "--engine-root", "/"], {}, {"root": "/host", "engine_root": "/"}),
    ("args-env-engine-root", ["args"], ER, {"engine_root": "/e"}),
    ("args-engine-root-beats-env", ["args", "--engine-root=/"], ER, {"engine_root": "/"}),
    ("args-engine-root-empty-beats-env", ["args", "--engine-root="], ER, {"engine_root": ""}),
    ("args-env-engine-root-empty", ["args"], {"NVLOW_ENGINE_ROOT": ""}, {}),
    ("args-env-root-and-engine-root", ["args"], {**X, **ER}, {"root": "/x", "engine_root": "/e"}),
    ("args-plugin-name", ["args", "--driver-files", "plugin", "--plugin-name", "nvd"], {},
     {"driver_files": "plugin", "plugin_name": "nvd"}),
    ("args-env-plugin-name", ["args"], PN, {"plugin_name": "site-gpu"}),
    ("args-plugin-name-beats-env", ["args", "--plugin-name", "nvidia-docker"], PN, {"plugin_name": "nvidia-docker"}),
    ("args-env-plugin-name-empty", ["args"], {"NVLOW_PLUGIN_NAME": ""}, {}),
    ("args-gpus-repeated", ["args", "--gpus", "0", "--gpus=1,2"], {}, {"gpus": "1,2"}),
    ("args-flag-repeated", ["args", "--json", "--json"], {}, {"json": True}),
    ("args-gpus-empty", ["args", "--gpus", ""], {}, {"gpus": ""}),
    ("args-gpus-eq-empty", ["args", "--gpus="], {}, {"gpus": ""}),
    ("args-value-looks-like-option", ["args", "--gpus", "--json"], {}, {"gpus": "--json"}),
    ("args-value-with-equals", ["args", "--image", "reg/x:1", "--host=ssh://u@h=1"], {},
     {"image": "reg/x:1", "host": "ssh://u@h=1"}),
    ("exec-dashdash", ["exec", "--", *RUN], {}, {"engine_argv": RUN}),
    ("exec-no-dashdash", ["exec", *RUN], {}, {"engine_argv": RUN}),
    ("exec-options-then-engine", ["exec", "--json", "--dry-run", *RUN], {},
     {"json": True, "dry_run": True, "engine_argv": RUN}),
    ("exec-engine-has-nvlow-options", ["exec", "docker", "run", "--gpus", "1", "--root", "/z", "img"], X,
     {"root": "/x", "engine_argv": ["docker", "run", "--gpus", "1", "--root", "/z", "img"]}),
    ("exec-root-slash-beats-env", ["exec", "--root", "/", "--", *RUN], X, {"engine_argv": RUN}),
    ("exec-env-root", ["exec", "--", *RUN], X, {"root": "/x", "engine_argv": RUN}),
    ("exec-env-docker", ["exec", "--", *RUN], NVD, {"docker": "sudo docker -D", "engine_argv": RUN}),
    ("exec-docker-beats-env", ["exec", "--docker", "podman", "--", *RUN], NVD,
     {"docker": "podman", "engine_argv": RUN}),
    ("exec-docker-eq-beats-env", ["exec", "--docker=docker", *RUN], NVD, {"docker": "docker", "engine_argv": RUN}),
    ("exec-docker-empty-beats-env", ["exec", "--docker=", "--", *RUN], NVD, {"docker": "", "engine_argv": RUN}),
    ("exec-env-docker-empty", ["exec", *RUN], {"NV_DOCKER": ""}, {"engine_argv": RUN}),
    ("exec-all-env", ["exec", "--dry-run", "--", *RUN], ALL_ENV,
     {"root": "/x", "simulate": "workstation", "docker": "sudo docker -D", "dry_run": True, "engine_argv": RUN}),
    ("exec-every-option", ["exec", *EVERY_OPTION, "--dry-run", "--docker", "podman", "--", *RUN],
     {**ALL_ENV, **ER, **PN}, {**EVERY_VALUE, "dry_run": True, "docker": "podman", "engine_argv": RUN}),
    ("exec-every-option-eq", ["exec", *EVERY_OPTION_EQ, "--dry-run", "--docker=podman", *RUN], {},
     {**EVERY_VALUE, "dry_run": True, "docker": "podman", "engine_argv": RUN}),
    ("exec-engine-root", ["exec", "--engine-root", "/", "--", *RUN], {}, {"engine_root": "/", "engine_argv": RUN}),
    ("exec-env-engine-root-and-plugin", ["exec", *RUN], {**ER, **PN},
     {"engine_root": "/e", "plugin_name": "site-gpu", "engine_argv": RUN}),
    ("exec-engine-options-belong-to-the-engine", ["exec", "docker", "run", "--engine-root", "/", "img"], {},
     {"engine_argv": ["docker", "run", "--engine-root", "/", "img"]}),
    ("exec-plugin-name-eq-beats-env", ["exec", "--plugin-name=a", "--", *RUN], PN,
     {"plugin_name": "a", "engine_argv": RUN}),
    ("exec-second-dashdash-kept", ["exec", "--", "docker", "run", "--", "img"], {},
     {"engine_argv": ["docker", "run", "--", "img"]}),
    ("exec-dashdash-inside-engine", ["exec", "docker", "run", "--", "img"], {},
     {"engine_argv": ["docker", "run", "--", "img"]}),
    ("exec-only-dashdash", ["exec", "--"], {}, {}),
    ("exec-nothing", ["exec"], SIM, {"simulate": "workstation"}),
    ("exec-dash-is-engine", ["exec", "-", "x"], {}, {"engine_argv": ["-", "x"]}),
    ("exec-gpus-repeated", ["exec", "--gpus", "0", "--gpus", "1", "--", *RUN], {}, {"gpus": "1", "engine_argv": RUN}),
    ("exec-simulate-beats-env", ["exec", "--simulate", "dgx-h100-mig", "--dry-run", *RUN], SIM,
     {"simulate": "dgx-h100-mig", "dry_run": True, "engine_argv": RUN}),
    ("args-remote-host", ["args", *EVERY_REMOTE], {}, {"root": "/r", "host": "http://h:3476", "gpus": "1"}),
    # global options before the command name, as docker/podman/nvidia-ctk take them
    ("global-simulate-args", ["--simulate", "dgx-a100", "args"], {}, {"simulate": "dgx-a100"}),
    ("global-root-json-args", ["--root", "/x", "--json", "args"], {}, {"root": "/x", "json": True}),
    ("global-eq-args", ["--root=/y", "--no-nvml", "--debug", "args", "--gpus", "0"], X,
     {"root": "/y", "no_nvml": True, "debug": True, "gpus": "0"}),
    ("global-and-local-last-wins", ["--root", "/a", "args", "--root", "/b"], {}, {"root": "/b"}),
    ("global-simulate-beats-env", ["--simulate", "dgx-a100", "args"], SIM, {"simulate": "dgx-a100"}),
    ("global-exec", ["--simulate", "workstation", "--json", "exec", "--dry-run", "--", *RUN], {},
     {"simulate": "workstation", "json": True, "dry_run": True, "engine_argv": RUN}),
    ("global-exec-no-dashdash", ["--root", "/r", "exec", *RUN], {}, {"root": "/r", "engine_argv": RUN}),
    ("global-quiet-short", ["exec", "-q", "--", *RUN], {}, {"quiet": True, "engine_argv": RUN}),
    # the fast parser declines these; the typer app decides (usage error or help)
    ("fallback-global-not-global", ["--gpus", "0", "args"], {}, None),
    ("fallback-global-missing-command", ["--root", "/x"], {}, None),
    ("fallback-global-help", ["--json", "--help"], {}, None),
    ("fallback-help", ["args", "--help"], {}, None),
    ("fallback-short-help", ["exec", "-h"], {}, None),
    ("fallback-missing-value", ["args", "--gpus"], X, None),
    ("fallback-unknown-option", ["args", "--bogus"], {}, None),
    ("fallback-args-positional", ["args", "extra"], {}, None),
    ("fallback-args-dashdash", ["args", "--", "x"], {}, None),
    ("fallback-exec-format", ["exec", "--format", "json", "--", *RUN], {}, None),
    ("fallback-args-dry-run", ["args", "--dry-run"], {}, None),
    ("fallback-args-docker", ["args", "--docker", "podman"], NVD, None),
    ("fallback-flag-with-value", ["exec", "--json=1", "--", *RUN], {}, None),
    ("fallback-missing-value-exec", ["exec", "--root"], X, None),
    ("fallback-missing-engine-root", ["args", "--engine-root"], ER, None),
    ("fallback-plugin-name-flag-only", ["exec", "--plugin-name"], PN, None),
]


def _typer(argv, env, monkeypatch):
    """The PlanOptions the typer app hands to run_args/run_exec, or ("exit", code) when it decides otherwise."""
    seen = []
    monkeypatch.setattr(plancmd, "run_args", lambda opts, _env: seen.append(opts) or 0)
    monkeypatch.setattr(plancmd, "run_exec", lambda opts, _env: seen.append(opts) or 0)
    for var in (*ENV_OPTIONS.values(), *EXEC_ENV_OPTIONS.values()):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    code = run_app(list(argv), False)
    if seen:
        assert code == 0 and len(seen) == 1
        return seen[0]
    return ("exit", code)


def test_enough_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,env,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_parser_and_typer_agree(argv, env, expected, monkeypatch, capsys):
    slow = _typer(argv, env, monkeypatch)
    if expected is None:
        with pytest.raises(Fallback):
            parse(argv, env)
        # typer decides: help (0) or a usage error (2), and never runs the command
        usage = 2
        assert slow in (("exit", 0), ("exit", usage)), slow
        return
    fast = parse(argv, env)
    assert isinstance(slow, PlanOptions), (slow, capsys.readouterr().err)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert dataclasses.asdict(fast) == {**dataclasses.asdict(PlanOptions()), **expected}


# --- nvidia-docker 1.0's command-line behaviour where `nvlow exec` replaces the wrapper ------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

FAKE_DOCKER = "#!/bin/sh\necho \"ARGV: $*\"\nexit 7\n"


def _nvlow(*args, env=None, path_dir=None):
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("NVLOW_", "NVIDIA_", "NV_")) and k not in ("DOCKER_HOST", "CUDA_VISIBLE_DEVICES")}
    if path_dir is not None:
        full["PATH"] = f"{path_dir}:{full.get('PATH', '/usr/bin:/bin')}"
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "nvlow", *args], capture_output=True, text=True, timeout=120,
                          env=full)


@pytest.fixture()
def fake_docker(tmp_path):
    """A `docker` on PATH that prints its arguments and exits 7 (what exec ran, and that its status passes)."""
    d = tmp_path / "bin"
    d.mkdir()
    script = d / "docker"
    script.write_text(FAKE_DOCKER)
    script.chmod(0o755)
    return d


PASS_THROUGH = [
    ["docker", "ps"], ["docker", "ps", "-a", "--format", "{{.ID}}"], ["docker", "volume", "ls"],
    ["docker", "volume", "create", "-d", "nvidia-docker", "--name", "nvidia_driver_550.54.15"],
    ["docker", "--version"], ["docker", "version"], ["docker", "-H", "unix:///x.sock", "images"],
    ["docker", "container", "ls"], ["docker", "build", "-t", "x", "."], ["docker", "exec", "-it", "c", "sh"],
    ["docker", "start", "-a", "c"], ["docker", "compose", "up"], ["docker", "image", "inspect", "img"],
    ["docker"], ["podman", "ps"],
]


@pytest.mark.parametrize("argv", PASS_THROUGH, ids=[" ".join(a) for a in PASS_THROUGH])
def test_exec_passes_other_commands_through_unchanged(argv, tmp_path):
    # NVLOW_ROOT points at an empty directory: a command that is not run/create never reads the host
    r = _nvlow("exec", "--dry-run", "--json", "--", *argv, env={"NVLOW_ROOT": str(tmp_path), "NV_GPU": "0"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"schema_version": 1, "argv": argv, "plan": None}
    assert r.stderr == ""


def test_exec_runs_a_pass_through_command_and_keeps_its_exit_status(fake_docker, tmp_path):
    r = _nvlow("exec", "--", "docker", "volume", "ls", "--format", "{{.Name}}", path_dir=fake_docker,
               env={"NVLOW_ROOT": str(tmp_path)})
    assert (r.returncode, r.stdout) == (7, "ARGV: volume ls --format {{.Name}}\n")


def test_nv_docker_replaces_the_engine_command(fake_docker):
    # 1.0: NV_DOCKER is split on whitespace ("sudo docker -D") and used for the final exec
    r = _nvlow("exec", "--", "docker", "ps", path_dir=fake_docker, env={"NV_DOCKER": "docker -D --log-level warn"})
    assert (r.returncode, r.stdout) == (7, "ARGV: -D --log-level warn ps\n")
    r = _nvlow("exec", "--simulate", "workstation", "--dry-run", "--json", "--", "docker", "run", "--rm", "img",
               env={"NV_DOCKER": "sudo docker -D"})
    argv = json.loads(r.stdout)["argv"]
    assert argv[:4] == ["sudo", "docker", "-D", "run"] and argv[-1] == "img"


def _uuid_prefix(index):
    import nvlow

    return nvlow.load_host(simulate="dgx-a100").gpus[index].uuid[:12]


@pytest.mark.parametrize("nv_gpu,want", [("1,3", ["/dev/nvidia1", "/dev/nvidia3"]),
                                         ("2 0", ["/dev/nvidia0", "/dev/nvidia2"]),  # 1.0: spaces too
                                         ("uuid:5", ["/dev/nvidia5"])])  # 1.0: GPU-UUID prefixes
def test_nv_gpu_selects_gpus(nv_gpu, want):
    if nv_gpu.startswith("uuid:"):
        nv_gpu = _uuid_prefix(int(nv_gpu[5:]))
    r = _nvlow("exec", "--simulate", "dgx-a100", "--engine-root", "/", "--dry-run", "--json", "--",
               "docker", "run", "--rm", "img", env={"NV_GPU": nv_gpu})
    assert r.returncode == 0, r.stderr
    argv = json.loads(r.stdout)["argv"]
    assert [a[len("--device="):] for a in argv if re.match(r"--device=/dev/nvidia\d+$", a)] == want


def test_nv_gpu_unknown_device_is_exit_2():
    r = _nvlow("exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run", "img", env={"NV_GPU": "9"})
    assert r.returncode == 2 and "nvlow: error:" in r.stderr and "9" in r.stderr


def test_nv_host_asks_a_remote_nvlow_serve(tmp_path):
    from test_serve_support import running_server

    with running_server(tmp_path, engine_root="/") as (server, _state, _log):
        host, port = server.address
        r = _nvlow("exec", "--dry-run", "--json", "--driver-files", "plugin", "--", "docker", "run", "--rm", "img",
                   env={"NV_HOST": f"{host}:{port}", "NV_GPU": "2", "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 0, r.stderr
    argv = json.loads(r.stdout)["argv"]
    assert "--volume-driver=nvidia-docker" in argv
    assert "--volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro" in argv
    assert [a for a in argv if re.match(r"--device=/dev/nvidia\d+$", a)] == ["--device=/dev/nvidia2"]
    assert argv[:3] == ["docker", "run", "--rm"] and argv[-1] == "img"


# ----------------------------------------------------------------------------- fast host commands
from nvlow.cli import main as cli_main  # noqa: E402
from nvlow.cli.fast import HOST_ENV, HOST_FLAGS, HOST_VALUES, parse_host_command  # noqa: E402


@pytest.mark.parametrize("name", sorted(HOST_FLAGS))
def test_host_commands_have_the_typer_options(name):
    cmd = _command(name)
    shorts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts
              if not o.startswith("--") and o != "-h"}
    assert _params(name) == (set(HOST_FLAGS[name]), set(HOST_VALUES[name]) - shorts)
    assert shorts <= set(HOST_VALUES[name]) | set(HOST_FLAGS[name])
    assert _envvars(name) == HOST_ENV[name]


HOST_CASES = [
    (["info", "--simulate", "dgx-a100"], {}),
    (["info", "--json", "--no-nvml"], {"NVLOW_SIMULATE": "workstation"}),
    (["--simulate", "dgx-h100-mig", "--json", "info"], {}),
    (["info", "--simulate=no-driver"], {}),
    (["info", "--root", "/nonexistent-root"], {}),
    (["list", "--simulate", "dgx-a100", "--gpus", "1,3", "--capabilities", "utility"], {}),
    (["list", "--json", "--gpus=all"], {"NVLOW_SIMULATE": "dgx-a100"}),
    (["list", "--simulate", "dgx-a100", "--gpus", "9"], {}),
    (["list", "--simulate", "dgx-a100", "--capabilities", "bogus"], {}),
    (["status", "--simulate", "dgx-a100", "--json"], {}),
    (["status", "--simulate", "dgx-a100", "--no-nvml"], {}),
    (["status", "--simulate", "dgx-a100", "--watch", "0.01", "--count", "1", "--json"], {}),
    (["status", "--simulate", "dgx-a100", "--count", "2"], {}),
    (["doctor", "--simulate", "dgx-a100", "--no-engine", "--json"], {}),
    (["doctor", "--simulate", "no-driver", "--no-engine"], {}),
    (["doctor", "--no-engine", "--no-nvml"], {"NVLOW_SIMULATE": "workstation"}),
    (["cdi", "generate", "--simulate", "dgx-a100"], {}),
    (["cdi", "generate", "--simulate", "dgx-h100-mig", "--json", "--device-name-strategy", "uuid",
      "--device-name-strategy=type-index", "--capabilities", "utility", "--no-all-device"], {}),
    (["--simulate", "workstation", "cdi", "generate", "--format", "json", "--vendor", "example.com",
      "--class", "device"], {}),
    (["cdi", "generate", "--driver-files", "plugin"], {"NVLOW_SIMULATE": "dgx-a100"}),
    (["cdi", "generate", "--simulate", "dgx-a100", "--format", "toml"], {}),
    (["cdi", "generate", "--simulate", "dgx-a100", "--write"], {}),
    (["cdi", "generate", "--simulate", "wsl2", "--engine-root", "/host"], {}),
]


@pytest.mark.parametrize("argv,env", HOST_CASES, ids=[" ".join(c[0]) for c in HOST_CASES])
def test_host_commands_fast_and_typer_agree(argv, env, monkeypatch, capsys):
    """The same command line run by the fast parser and by the typer app: same output, same status."""
    for var in ("NVLOW_ROOT", "NVLOW_SIMULATE", "NVLOW_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parse_host_command(argv, dict(env))  # the fast parser takes it (no Fallback)
    fast_code = cli_main(list(argv))
    fast = capsys.readouterr()
    slow_code = run_app(list(argv), False)
    slow = capsys.readouterr()
    assert (fast_code, fast.out, fast.err) == (slow_code, slow.out, slow.err)


@pytest.mark.parametrize("argv", [
    ["info", "--help"], ["info", "-h"], ["info", "--bogus"], ["info", "extra"], ["info", "--root"],
    ["info", "--json=1"], ["list", "--dry-run"], ["status", "--watch", "x"], ["status", "--count", "1.5"],
    ["doctor", "--gpus", "0"], ["status", "--no-uvm-load"], ["cdi", "list"], ["serve"],
    ["cdi", "generate", "--help"], ["cdi", "generate", "-o=x.yaml"], ["cdi", "generate", "extra"],
    ["cdi", "validate", "x.yaml"], ["cdi"],
])
def test_host_command_fast_parser_falls_back(argv):
    with pytest.raises(Fallback):
        parse_host_command(argv, {})


def test_host_command_values_and_environment():
    cmd = parse_host_command(["status", "--watch=2.5", "--count", "3", "--root", "/r"], {"NVLOW_ROOT": "/env"})
    assert (cmd.name, cmd.options.root, cmd.extra) == ("status", "/r", {"watch": 2.5, "count": 3})
    cmd = parse_host_command(["--json", "doctor", "--no-engine"], {"NVLOW_SIMULATE": "dgx-a100"})
    assert (cmd.options.json, cmd.options.simulate, cmd.extra) == (True, "dgx-a100", {"no_engine": True})


#: what start-up never pays on these paths: typer/click and the modules behind most of its old cost
#: (typing, dataclasses, inspect), and ``re`` (~6 ms with enum/functools/collections) with ``json`` and
#: ``tempfile``, which import it (exec reads the Engine API's answer with nvlow.engine.jsondoc); JSON output
#: (--json) needs json, so re
_NO_TYPER = ("typer", "click", "typing", "dataclasses", "inspect")
_NO_RE = _NO_TYPER + ("re", "enum", "json", "tempfile")
#: a spec written to stdout reads none: the YAML reader and its scalar rules (with math), the spec store, the
#: validator's field checks; nor does it build a plan request
_NO_SPEC_READING = _NO_RE + ("nvlow.cdi.store", "nvlow.cdi.yaml_load", "nvlow.cdi.yaml_scalar", "math",
                             "nvlow.cdi.field_rules", "nvlow.cdi.validate", "nvlow.plan.request")


@pytest.mark.parametrize("argv,heavy", [
    (["args", "--simulate", "dgx-a100"], _NO_RE),
    (["args", "--simulate", "dgx-a100", "--gpus", "1,2", "--capabilities", "all", "--mofed"], _NO_RE),
    (["args", "--simulate", "dgx-a100", "--json"], _NO_TYPER),
    (["info", "--simulate", "dgx-a100"], _NO_RE),
    (["cdi", "generate", "--simulate", "dgx-a100"], _NO_SPEC_READING),
    (["list", "--simulate", "dgx-a100"], _NO_RE),
    (["doctor", "--simulate", "dgx-a100", "--no-engine"], _NO_RE),
    (["status", "--simulate", "dgx-a100", "--json"], _NO_TYPER),
    # no engine answers here: the image is asked of the docker CLI through subprocess, which imports re (by
    # way of locale) on Python 3.13; exec with an Engine API that answers is pinned in tests/test_engine.py
    (["exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run", "img"], _NO_TYPER),
])
def test_hot_commands_import_no_heavy_module(argv, heavy, tmp_path):
    """Start-up is paid on every wrapped `docker run`: these commands import neither typer/click nor
    the modules that cost most of it (typing, dataclasses, inspect), and the common ones no ``re``."""
    # measured against what the interpreter had already loaded (an editable install's import hook
    # loads typing on some Pythons before any nvlow code runs)
    code = ("import sys\nbefore = set(sys.modules)\nfrom nvlow.cli import main\ntry:\n    main(%r)\n"
            "except SystemExit:\n    pass\nheavy = %r\n"
            "sys.stderr.write('HEAVY=%%s' %% sorted(m for m in heavy if m in sys.modules and m not in before))"
            % (argv, heavy))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NV_", "DOCKER_"))}
    env["NVLOW_CACHE_DIR"] = str(tmp_path)  # the tree is built before the timed run: building may import more
    subprocess.run([sys.executable, "-m", "nvlow", "args", "--simulate", "dgx-a100"], capture_output=True,
                   timeout=60, env=env)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert res.stderr.rsplit("HEAVY=", 1)[-1] == "[]", res.stderr


@pytest.mark.parametrize("runner", ["module", "script"])
@pytest.mark.parametrize("argv,collecting", [
    (["args", "--simulate", "workstation"], False),
    (["status", "--simulate", "workstation"], False),
    (["status", "--simulate", "workstation", "--watch", "0.01", "--count", "2"], True),  # runs until Ctrl-C
])
def test_short_commands_run_without_the_cyclic_collector(runner, argv, collecting, tmp_path):
    """``python -m nvlow`` and the installed script turn the cyclic collector off (a command frees
    everything at exit; its passes cost ~0.5 ms of start-up): both entry points, one behaviour; a
    command that runs on (status --watch, and serve: tests/test_serve_cli.py) turns it back on."""
    script = os.path.join(os.path.dirname(plancmd.__file__), "script", "nvlow")
    run = ("runpy.run_module('nvlow', run_name='__main__')" if runner == "module"
           else "runpy.run_path(%r, run_name='__main__')" % script)
    code = ("import atexit, gc, runpy, sys\n"
            "atexit.register(lambda: sys.stderr.write('GC=%%s' %% gc.isenabled()))\n"
            "sys.argv = %r\n" % (["nvlow", *argv],) + run)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NV_", "DOCKER_"))}
    env["NVLOW_CACHE_DIR"] = str(tmp_path)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0 and res.stderr.endswith(f"GC={collecting}"), res.stderr
