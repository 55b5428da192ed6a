"""Golden outputs of ``args``/``list``/``info`` over the named presets, run as real subprocesses.

The generated tree's location is replaced by ``$ROOT`` before comparing.
Regenerate after a deliberate change with ``NVLOW_UPDATE_GOLDEN=1 pytest tests/test_cli_golden.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from goldens import check_golden



@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = dict(os.environ)
    env["NVLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("nvlow-cache"))
    for key in ("NVIDIA_VISIBLE_DEVICES", "NV_GPU", "NVIDIA_DRIVER_CAPABILITIES", "NVLOW_SIMULATE", "NV_DOCKER"):
        env.pop(key, None)
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return env


def nvlow(env, *args, extra_env=None):
    run_env = dict(env)
    run_env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "nvlow", *args], env=run_env, capture_output=True, text=True,
                          timeout=60)


def tree_of(env, preset):
    out = nvlow(env, "info", "--simulate", preset, "--json")
    return json.loads(out.stdout)["root"]


CASES = [
    ("dgx-a100", ("args",)),
    ("dgx-a100", ("args", "--json")),
    ("dgx-a100", ("args", "--format", "compose", "--gpus", "0")),
    ("dgx-a100", ("list",)),
    ("dgx-a100", ("info",)),
    ("dgx-a100", ("info", "--json")),
    ("dgx-h100-mig", ("args", "--gpus", "0:1,1:2,3", "--json")),
    ("dgx-h100-mig", ("list", "--gpus", "1:1")),
    ("dgx-h100-mig", ("info", "--json")),
    ("dgx-h100-mig", ("list", "--gpus", "2", "--gds", "--mofed", "--gdrcopy", "--nvswitch", "--json")),
    ("workstation", ("args", "--capabilities", "all")),
    ("workstation", ("list", "--capabilities", "graphics,display,compat32", "--json")),
    ("workstation", ("info",)),
    ("no-gpu", ("args",)),
    ("no-gpu", ("info", "--json")),
    ("wsl2", ("info",)),
    ("wsl2", ("info", "--json")),
    ("wsl2", ("args",)),
    ("wsl2", ("cdi", "generate", "--format", "json")),
]


@pytest.mark.parametrize("preset,args", CASES, ids=[f"{p}-{'_'.join(a)}" for p, a in CASES])
def test_golden(cli_env, preset, args):
    res = nvlow(cli_env, *args, "--simulate", preset)
    assert res.returncode == 0, res.stderr
    assert f"simulated host '{preset}'" in res.stderr
    assert "Traceback" not in res.stderr
    root = tree_of(cli_env, preset)
    name = f"{preset}--{'_'.join(a.strip('-').replace(',', '+').replace(':', '.') for a in args)}.txt"
    check_golden(name, res.stdout.replace(root, "$ROOT"))


def test_args_is_usable_as_docker_arguments(cli_env):
    import shlex

    res = nvlow(cli_env, "args", "--simulate", "dgx-a100", "--gpus", "GPU-" + "x" * 0 + tree_uuid(cli_env, 2))
    tokens = shlex.split(res.stdout)
    devices = [t for t in tokens if t.startswith("--device=")]
    assert [d.rsplit(":", 1)[1] for d in devices] == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                                       "/dev/nvidia2"]
    for t in tokens:
        assert t.startswith(("--device=", "--volume=", "--env="))


def tree_uuid(env, index):
    out = nvlow(env, "info", "--simulate", "dgx-a100", "--json")
    return json.loads(out.stdout)["gpus"][index]["uuid"][4:]


@pytest.mark.parametrize("args,extra_env,code,message", [
    (("args", "--simulate", "nope"), {}, 2, "unknown simulation preset: 'nope'"),
    (("args", "--simulate", "no-driver"), {}, 1, "NVIDIA kernel module not loaded"),
    (("info", "--simulate", "no-driver"), {}, 1, "NVIDIA kernel module not loaded"),
    (("list", "--simulate", "no-driver"), {}, 1, "NVIDIA kernel module not loaded"),
    (("args", "--simulate", "dgx-a100", "--gpus", "9"), {}, 2, "unknown GPU index: 9"),
    (("args", "--simulate", "dgx-a100", "--gpus", "0:0"), {}, 2, "GPU 0 is not in MIG mode"),
    (("args", "--simulate", "dgx-a100"), {"NV_GPU": "GPU-"}, 2, "incomplete GPU UUID"),
    (("args", "--simulate", "dgx-a100", "--capabilities", "compute,warp"), {}, 2, "warp"),
    (("args", "--simulate", "dgx-a100", "--driver-files", "magic"), {}, 2, "invalid --driver-files 'magic'"),
    (("args", "--simulate", "dgx-a100", "--format", "xml"), {}, 2, "invalid --format 'xml'"),
    # exec without --dry-run: nvlow's own failure before the engine runs keeps the contract's codes
    (("exec", "--simulate", "dgx-a100", "--", "docker", "run", "img"), {}, 2, "only works with --dry-run"),
    (("exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run", "--bogus", "img"), {}, 2,
     "unknown docker run option: --bogus"),
    (("args", "--root", "/nonexistent-root"), {}, 2, "is not a directory"),
    (("info", "--root", "/nonexistent-root"), {}, 2, "is not a directory"),
])
def test_errors_are_one_clear_line(cli_env, args, extra_env, code, message):
    res = nvlow(cli_env, *args, extra_env=extra_env)
    assert res.returncode == code, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("nvlow: error:")]
    assert len(errors) == 1


def test_debug_shows_traceback(cli_env):
    res = nvlow(cli_env, "args", "--simulate", "dgx-a100", "--gpus", "9", "--debug")
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_exec_dry_run_json_and_pass_through(cli_env):
    res = nvlow(cli_env, "exec", "--simulate", "dgx-a100", "--dry-run", "--json", "--",
                "docker", "run", "--rm", "--gpus", '"device=1,3"', "-it", "busybox", "sh", "-c", "true")
    assert res.returncode == 0, res.stderr
    argv = json.loads(res.stdout)["argv"]
    image = argv.index("busybox")
    assert argv[:4] == ["docker", "run", "--rm", "-it"]
    assert argv[image:] == ["busybox", "sh", "-c", "true"]
    assert "--gpus" not in argv
    injected = argv[4:image]
    assert [a.rsplit(":", 1)[1] for a in injected if a.startswith("--device=")][-2:] == ["/dev/nvidia1", "/dev/nvidia3"]
    res = nvlow(cli_env, "exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "ps", "-a")
    assert res.stdout == "docker ps -a\n"


def test_fast_path_does_not_import_typer(cli_env):
    code = ("import sys; from nvlow.cli import main\n"
            "try:\n    main(['args', '--simulate', 'dgx-a100'])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('TYPER=%s' % ('typer' in sys.modules or 'click' in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=60)
    assert "TYPER=False" in res.stderr


def test_import_nvlow_is_light():
    code = ("import sys, nvlow; bad = [m for m in ('typer', 'click', 'pycparser', 'cffi', '_cffi_backend') "
            "if m in sys.modules]; print(bad)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "[]"


def test_help_goes_through_typer(cli_env):
    res = nvlow(cli_env, "args", "--help")
    assert res.returncode == 0 and "--gpus" in res.stdout and "--driver-files" in res.stdout
