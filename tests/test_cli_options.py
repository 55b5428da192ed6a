"""The typer-free fast parser and the typer app accept the same options for args/exec."""
from __future__ import annotations

import click
import pytest
import typer.main

from nvlow.cli.app import app
from nvlow.cli.fast import Fallback, parse
from nvlow.cli.options import ARGS_VALUES, EXEC_FLAGS, EXEC_VALUES, FAST_FLAGS, FAST_VALUES


def _params(name: str):
    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    cmd = group.commands[name]
    flags, values = set(), set()
    for p in cmd.params:
        if isinstance(p, click.Option):
            (flags if p.is_flag else values).update(o for o in p.opts if o.startswith("--") and o != "--help")
    return flags, values


@pytest.mark.parametrize("name,flags,values", [
    ("args", set(FAST_FLAGS), set(FAST_VALUES) | set(ARGS_VALUES)),
    ("exec", set(FAST_FLAGS) | set(EXEC_FLAGS), set(FAST_VALUES) | set(EXEC_VALUES)),
])
def test_same_options(name, flags, values):
    assert _params(name) == (flags, values)


def test_fast_parser_spellings():
    opts = parse(["exec", "--gpus=0,1", "--root", "/r", "--dry-run", "--", "docker", "run", "img"], {})
    assert (opts.gpus, opts.root, opts.dry_run, opts.engine_argv) == ("0,1", "/r", True, ["docker", "run", "img"])
    opts = parse(["exec", "--json", "docker", "run", "--gpus", "1", "img"], {"NVLOW_SIMULATE": "dgx-a100"})
    assert opts.engine_argv == ["docker", "run", "--gpus", "1", "img"] and opts.simulate == "dgx-a100"
    assert parse(["args"], {"NV_DOCKER": "sudo docker"}).docker == "sudo docker"


@pytest.mark.parametrize("argv", [
    ["args", "--help"], ["args", "-h"], ["args", "--gpus"], ["args", "--bogus"], ["args", "extra"],
    ["exec", "--format", "json"], ["args", "--dry-run"],
])
def test_fast_parser_falls_back(argv):
    with pytest.raises(Fallback):
        parse(argv, {})
