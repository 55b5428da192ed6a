"""The typer-free fast parser and the typer app accept the same options for args/exec, and parse every
command line (environment included) to the same values."""
from __future__ import annotations

import dataclasses

import click
import pytest
import typer.main

from nvlow.cli import plancmd
from nvlow.cli.app import app, run_app
from nvlow.cli.fast import Fallback, parse
from nvlow.cli.options import (ARGS_VALUES, ENV_OPTIONS, EXEC_ENV_OPTIONS, EXEC_FLAGS, EXEC_VALUES, FAST_FLAGS,
                               FAST_VALUES, PlanOptions)


def _params(name: str):
    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    cmd = group.commands[name]
    flags, values = set(), set()
    for p in cmd.params:
        if isinstance(p, click.Option):
            (flags if p.is_flag else values).update(o for o in p.opts if o.startswith("--") and o != "--help")
    return flags, values


def _envvars(name: str):
    group = typer.main.get_command(app)
    return {p.name: p.envvar for p in group.commands[name].params if isinstance(p, click.Option) and p.envvar}


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
EVERY_OPTION = ["--root", "/r", "--simulate", "dgx-a100", "--no-nvml", "--debug", "--json", "--no-uvm-load",
                "--gpus", "0,1", "--capabilities", "all", "--driver-files", "volume", "--volumes-dir", "/v",
                "--image", "img:1", "--no-require", "--host", "http://h:3476"]
EVERY_OPTION_EQ = ["--root=/r", "--simulate=dgx-a100", "--no-nvml", "--debug", "--json", "--no-uvm-load",
                   "--gpus=0,1", "--capabilities=all", "--driver-files=volume", "--volumes-dir=/v",
                   "--image=img:1", "--no-require", "--host=http://h:3476"]

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
    ("args-every-option", ["args", *EVERY_OPTION, "--format", "compose"], ALL_ENV,
     {"root": "/r", "simulate": "dgx-a100", "no_nvml": True, "debug": True, "json": True, "no_uvm_load": True,
      "gpus": "0,1", "capabilities": "all", "driver_files": "volume", "volumes_dir": "/v", "image": "img:1",
      "no_require": True, "host": "http://h:3476", "format": "compose"}),
    ("args-every-option-eq", ["args", *EVERY_OPTION_EQ, "--format=json"], {},
     {"root": "/r", "simulate": "dgx-a100", "no_nvml": True, "debug": True, "json": True, "no_uvm_load": True,
      "gpus": "0,1", "capabilities": "all", "driver_files": "volume", "volumes_dir": "/v", "image": "img:1",
      "no_require": True, "host": "http://h:3476", "format": "json"}),
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
    ("exec-every-option", ["exec", *EVERY_OPTION, "--dry-run", "--docker", "podman", "--", *RUN], ALL_ENV,
     {"root": "/r", "simulate": "dgx-a100", "no_nvml": True, "debug": True, "json": True, "no_uvm_load": True,
      "gpus": "0,1", "capabilities": "all", "driver_files": "volume", "volumes_dir": "/v", "image": "img:1",
      "no_require": True, "host": "http://h:3476", "dry_run": True, "docker": "podman", "engine_argv": RUN}),
    ("exec-every-option-eq", ["exec", *EVERY_OPTION_EQ, "--dry-run", "--docker=podman", *RUN], {},
     {"root": "/r", "simulate": "dgx-a100", "no_nvml": True, "debug": True, "json": True, "no_uvm_load": True,
      "gpus": "0,1", "capabilities": "all", "driver_files": "volume", "volumes_dir": "/v", "image": "img:1",
      "no_require": True, "host": "http://h:3476", "dry_run": True, "docker": "podman", "engine_argv": RUN}),
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
    # the fast parser declines these; the typer app decides (usage error or help)
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
        assert slow in (("exit", 0), ("exit", 2)), slow
        return
    fast = parse(argv, env)
    assert isinstance(slow, PlanOptions), (slow, capsys.readouterr().err)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert dataclasses.asdict(fast) == {**dataclasses.asdict(PlanOptions()), **expected}
