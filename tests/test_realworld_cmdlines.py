"""Real docker/podman command lines (tests/data/realworld/cmdlines.txt): image found, injection placed, tokens kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List

import pytest

import nvlow
from nvlow.engine.argv import inject, parse_engine_argv, parse_gpus_flag
from nvlow.errors import NvlowError, UsageError
from test_realworld_data import command_lines

LINES = command_lines()
MARK = "--nvlow-injected-here"


def test_enough_command_lines() -> None:
    assert len(LINES) >= 30


def _without_replaced(argv: List[str], cmd) -> List[str]:
    """What nvlow exec keeps: everything but --gpus, --runtime=nvidia and nvidia.com CDI devices."""
    drop = set()
    for o in cmd.options:
        if (o.name == "gpus" or (o.name == "runtime" and o.value == "nvidia")
                or (o.name == "device" and (o.value or "").startswith("nvidia.com/"))):
            drop.update(range(o.start, o.end))
    return [t for i, t in enumerate(argv) if i not in drop]


def _without_gpus(argv: List[str], cmd) -> List[str]:
    drop = set()
    for o in cmd.options:
        if o.name == "gpus":
            drop.update(range(o.start, o.end))
    return [t for i, t in enumerate(argv) if i not in drop]


@pytest.mark.parametrize("line", LINES, ids=lambda c: c.id)
def test_image_found_and_injection_before_it(line) -> None:
    argv = line.argv
    cmd = parse_engine_argv(argv)
    assert cmd.command == "run"
    assert cmd.injectable
    assert cmd.image == line.image, line.source
    assert argv[cmd.image_index] == line.image
    out = inject(cmd, [MARK])
    pos = out.index(MARK)
    assert out[pos + 1] == line.image
    # every original token survives, in order (only the --gpus option is taken out)
    rest = out[:pos] + out[pos + 1:]
    assert rest == _without_gpus(argv, cmd)
    assert "--gpus" not in out[:pos] and not any(t.startswith("--gpus=") for t in out[:pos])
    # what follows the image is the container's own command, untouched
    assert out[pos + 1:] == argv[cmd.image_index:]


def _gpus_expectation(text: str):
    want = dict(part.split("=", 1) for part in text.split())
    count = int(want["count"]) if "count" in want else None
    devices = tuple(want["devices"].split(",")) if "devices" in want else ()
    caps = tuple(want["caps"].split(",")) if "caps" in want else ()
    return count, devices, caps


@pytest.mark.parametrize("line", [c for c in LINES if c.gpus], ids=lambda c: c.id)
def test_gpus_value(line) -> None:
    cmd = parse_engine_argv(line.argv)
    (value,) = cmd.get("gpus")
    if line.gpus == "error":
        with pytest.raises(UsageError) as exc:
            parse_gpus_flag(value)
        assert '"--gpus" flag' in str(exc.value)
        return
    count, devices, caps = _gpus_expectation(line.gpus)
    req = parse_gpus_flag(value)
    assert (req.count, req.devices, req.capabilities) == (count, devices, caps)


def _last_env(cmd, key: str):
    value = None
    for item in cmd.get("env"):
        k, eq, v = item.partition("=")
        if k == key and eq:
            value = v  # docker keeps the last -e of a name
    return value


@pytest.mark.parametrize("line", [c for c in LINES if c.select is not None], ids=lambda c: c.id)
def test_selection_on_dgx_a100(line, dgx_a100) -> None:
    cmd = parse_engine_argv(line.argv)
    gpus = cmd.get("gpus")
    try:
        request = nvlow.api.selection_request(
            {}, docker_gpus=gpus[-1] if gpus else None,
            container_env={"NVIDIA_VISIBLE_DEVICES": v} if (v := _last_env(cmd, "NVIDIA_VISIBLE_DEVICES")) is not None else {})
        sel = nvlow.api.choose_gpus(dgx_a100, request)
    except NvlowError as exc:
        assert line.select == "exit=2", f"{line.source}: {exc}"
        assert exc.exit_code == 2
        return
    assert line.select != "exit=2", line.source
    want = [int(i) for i in line.select.split(",") if i]
    assert [g.index for g in sel.gpus] == want


@pytest.fixture(scope="module")
def dgx_a100():
    return nvlow.load_host(simulate="dgx-a100")


def _run_exec(argv: List[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent")
    env.pop("NVIDIA_VISIBLE_DEVICES", None)
    env.pop("NV_GPU", None)
    return subprocess.run([sys.executable, "-m", "nvlow", "exec", "--simulate", "dgx-a100", "--dry-run", "--json",
                           "--", *argv], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("line", LINES, ids=lambda c: c.id)
def test_cli_exec_dry_run(line) -> None:
    argv = line.argv
    proc = _run_exec(argv)
    if line.select == "exit=2":
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert "error:" in proc.stderr and "Traceback" not in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["argv"]
    cmd = parse_engine_argv(argv)
    kept = _without_replaced(argv, cmd)
    head = kept[:cmd.image_index - (len(argv) - len(kept))]
    tail = argv[cmd.image_index:]
    # original tokens before the image, then nvlow's arguments, then the image and its command
    assert out[:len(head)] == head
    assert out[len(out) - len(tail):] == tail
    injected = out[len(head):len(out) - len(tail)]
    assert injected and all(t.startswith("--") for t in injected)
    assert any(t.startswith("--device=") and t.endswith(":/dev/nvidiactl") for t in injected)
    if line.select:
        nodes = sorted(int(t.rsplit("/dev/nvidia", 1)[1]) for t in injected
                       if t.startswith("--device=") and t.rsplit(":", 1)[1][len("/dev/nvidia"):].isdigit())
        assert nodes == [int(i) for i in line.select.split(",")]
