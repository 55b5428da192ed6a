"""CLI conventions ("first ten minutes"): global options before the command, the options every command
takes, choices named in errors, --quiet, hermetic --simulate, exec's exit codes, bad inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import pytest

from nvlow.cli import main
from nvlow.cli.options import SIMULATE_PRESETS, hoist_globals


def cli(*args: str, env: Optional[Dict[str, str]] = None, capsys=None, monkeypatch=None) -> Tuple[int, str, str]:
    for var in ("NVLOW_ROOT", "NVLOW_SIMULATE", "NV_HOST", "NV_GPU", "NVIDIA_VISIBLE_DEVICES", "NV_DOCKER"):
        monkeypatch.delenv(var, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out = capsys.readouterr()
    return code, out.out, out.err


def sub(*args: str, env: Optional[Dict[str, str]] = None, path_dir: Optional[str] = None
        ) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("NVLOW_", "NVIDIA_", "NV_")) and k not in ("DOCKER_HOST", "CUDA_VISIBLE_DEVICES")}
    if "NVLOW_CACHE_DIR" in os.environ:
        full["NVLOW_CACHE_DIR"] = os.environ["NVLOW_CACHE_DIR"]
    if path_dir is not None:
        full["PATH"] = f"{path_dir}:{full.get('PATH', '/usr/bin:/bin')}"
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "nvlow", *args], capture_output=True, text=True, timeout=120,
                          env=full)


# --- 1. global options before the command ---------------------------------------------------------

@pytest.mark.parametrize("argv,want", [
    (["--simulate", "dgx-a100", "info"], ["info", "--simulate", "dgx-a100"]),
    (["--root", "/x", "--json", "list"], ["list", "--root", "/x", "--json"]),
    (["--root=/x", "--no-nvml", "--debug", "status", "--watch", "1"],
     ["status", "--root=/x", "--no-nvml", "--debug", "--watch", "1"]),
    (["--json", "cdi", "list", "--spec-dir", "/d"], ["cdi", "list", "--json", "--spec-dir", "/d"]),
    (["--simulate", "workstation", "exec", "--", "docker", "run", "img"],
     ["exec", "--simulate", "workstation", "--", "docker", "run", "img"]),
    # unchanged: nothing global first, or something else before the command
    (["info", "--json"], ["info", "--json"]),
    (["--version"], ["--version"]),
    (["--json", "--help"], ["--json", "--help"]),
    (["--gpus", "0", "args"], ["--gpus", "0", "args"]),
    (["--root", "/x"], ["--root", "/x"]),
    (["--json"], ["--json"]),
])
def test_hoist_globals(argv: List[str], want: List[str]) -> None:
    assert hoist_globals(argv) == want


@pytest.mark.parametrize("argv", [
    ["--simulate", "dgx-a100", "info"], ["--simulate", "dgx-a100", "--json", "info"],
    ["--simulate", "dgx-a100", "--json", "list"], ["--simulate", "dgx-a100", "args"],
    ["--simulate", "dgx-a100", "--json", "exec", "--dry-run", "--", "docker", "run", "img"],
    ["--simulate", "dgx-a100", "doctor", "--no-engine"], ["--simulate", "dgx-a100", "--json", "cdi", "list"],
    ["--simulate", "dgx-a100", "--json", "cdi", "generate"], ["--simulate", "dgx-a100", "--json", "status"],
])
def test_global_first_runs_every_command(argv: List[str], capsys, monkeypatch) -> None:
    code, out, err = cli(*argv, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    assert "simulated host 'dgx-a100'" in err or argv[-2:] == ["cdi", "list"]
    if "--json" in argv:
        json.loads(out)


def test_global_first_matches_global_last(capsys, monkeypatch) -> None:
    first = cli("--simulate", "dgx-a100", "--json", "list", capsys=capsys, monkeypatch=monkeypatch)
    last = cli("list", "--simulate", "dgx-a100", "--json", capsys=capsys, monkeypatch=monkeypatch)
    assert first == last and first[0] == 0


# --- 2. every command takes --root --simulate --no-nvml --json --debug ---------------------------

@pytest.mark.parametrize("cmd", [["args"], ["info"], ["list"], ["status"], ["doctor"], ["cdi", "generate"],
                                 ["cdi", "list"], ["cdi", "validate"], ["serve"], ["exec"]])
def test_every_command_takes_the_common_options(cmd: List[str], capsys, monkeypatch) -> None:
    code, out, _err = cli(*cmd, "--help", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0
    for opt in ("--root", "--simulate", "--no-nvml", "--json", "--debug"):
        assert opt in out, (cmd, opt)


def test_host_with_simulate_is_a_usage_error(capsys, monkeypatch) -> None:
    for argv in (["args", "--simulate", "dgx-a100", "--host", "http://h:1"],
                 ["--simulate", "dgx-a100", "args", "--host=http://h:1"],
                 ["exec", "--simulate", "dgx-a100", "--host", "http://h:1", "--dry-run", "--", "docker", "run", "i"],
                 ["args", "--host", "http://h:1", "--bogus"]):
        code, out, err = cli(*argv, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 2 and out == "", err
        if "--bogus" not in argv:
            assert "--host and --simulate cannot be combined" in err


def test_status_no_nvml_and_count(capsys, monkeypatch) -> None:
    code, _out, err = cli("status", "--simulate", "dgx-a100", "--no-nvml", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "--no-nvml" in err and "nvlow info --no-nvml" in err
    code, _out, err = cli("status", "--simulate", "dgx-a100", "--watch", "1", "--count", "-3", capsys=capsys,
                          monkeypatch=monkeypatch)
    assert code == 2 and "--count needs a positive number" in err and "-3" in err
    code, out, err = cli("status", "--simulate", "dgx-a100", "--json", "--watch", "0.01", "--count", "2",
                         capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and len(out.splitlines()) == 2, err


def test_doctor_no_nvml_skips_nothing_silently(capsys, monkeypatch) -> None:
    code, out, err = cli("doctor", "--simulate", "dgx-a100", "--no-engine", "--json", "--no-nvml",
                         capsys=capsys, monkeypatch=monkeypatch)
    doc = json.loads(out)
    libs = [c for c in doc["checks"] if c["check"] == "driver libraries"]
    assert libs[0]["status"] == "fail" and "--no-nvml" in libs[0]["message"]
    code, out, err = cli("doctor", "--simulate", "dgx-a100", "--no-engine", "--json", capsys=capsys,
                         monkeypatch=monkeypatch)
    assert [c["status"] for c in json.loads(out)["checks"] if c["check"] == "driver libraries"] == ["ok"]


def test_serve_json_is_refused(capsys, monkeypatch) -> None:
    code, out, err = cli("serve", "--json", "--simulate", "dgx-a100", "--no-plugin", capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 2 and out == "" and "no JSON output" in err


def test_cdi_generate_json(capsys, monkeypatch) -> None:
    code, out, err = cli("cdi", "generate", "--simulate", "dgx-a100", "--json", capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 0, err
    assert json.loads(out)["kind"] == "nvidia.com/gpu"
    code, out, err = cli("cdi", "generate", "--simulate", "dgx-a100", "--json", "--format", "yaml", capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 2 and "--json and --format yaml disagree" in err


def test_cdi_list_honours_simulate(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NVLOW_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = cli("cdi", "list", "--simulate", "dgx-a100", "--json", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["devices"] == [], err
    spec = tmp_path / "spec.yaml"
    code, _out, err = cli("cdi", "generate", "--simulate", "dgx-a100", "--output", str(spec), capsys=capsys,
                          monkeypatch=monkeypatch)
    assert code == 0, err
    # a spec placed in the simulated tree's /etc/cdi (as a real host's) is listed; NVLOW_SIMULATE counts too
    from nvlow.simulate.hosttree import simulated_root
    from nvlow.simulate.presets import get_preset

    root = simulated_root(get_preset("dgx-a100"), {"NVLOW_CACHE_DIR": str(tmp_path / "cache")})
    os.makedirs(root.host("/etc/cdi"))
    os.replace(spec, root.host("/etc/cdi/nvidia.yaml"))
    code, out, err = cli("cdi", "list", env={"NVLOW_SIMULATE": "dgx-a100"}, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and "nvidia.com/gpu=0" in out.splitlines(), err


def test_cdi_list_missing_spec_dir(tmp_path, capsys, monkeypatch) -> None:
    code, out, err = cli("cdi", "list", "--root", str(tmp_path), "--spec-dir", "/nonexistent", capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 2 and out == "" and "--spec-dir /nonexistent: no such directory" in err
    os.makedirs(tmp_path / "etc/cdi")
    code, _out, err = cli("cdi", "list", "--root", str(tmp_path), "--spec-dir", "/etc/cdi", capsys=capsys,
                          monkeypatch=monkeypatch)
    assert code == 0, err


@pytest.mark.parametrize("cmd", [["cdi", "list"], ["cdi", "validate", "/nonexistent.yaml"]])
def test_cdi_list_validate_accept_no_nvml(cmd: List[str], tmp_path, capsys, monkeypatch) -> None:
    with_flag = cli(*cmd, "--root", str(tmp_path), "--no-nvml", capsys=capsys, monkeypatch=monkeypatch)
    without = cli(*cmd, "--root", str(tmp_path), capsys=capsys, monkeypatch=monkeypatch)
    assert with_flag == without and with_flag[0] != 2


# --- 3. choices shown and validated; completion -----------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["args", "--simulate", "dgx-a100", "--format", "xml"], "invalid --format 'xml': choose one of shell, json, compose"),
    (["args", "--simulate", "dgx-a100", "--driver-files", "magic"],
     "invalid --driver-files 'magic': choose one of bind, volume, plugin"),
    (["args", "--simulate", "nope"], "unknown simulation preset: 'nope'"),
    (["cdi", "generate", "--simulate", "dgx-a100", "--driver-files", "plugin"], "choose one of bind, volume"),
    (["cdi", "generate", "--simulate", "dgx-a100", "--device-name-strategy", "x"],
     "choose from index, uuid, type-index"),
    (["completion", "tcsh"], "invalid shell 'tcsh': choose one of bash, zsh, fish"),
])
def test_bad_choice_is_one_line_exit_2(argv: List[str], needle: str, capsys, monkeypatch) -> None:
    code, out, err = cli(*argv, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and out == "", err
    errors = [line for line in err.splitlines() if line.startswith("nvlow: error:")]
    assert len(errors) == 1 and needle in errors[0]


def test_simulate_presets_are_the_real_ones() -> None:
    from nvlow.simulate.presets import PRESET_NAMES

    assert tuple(SIMULATE_PRESETS) == tuple(PRESET_NAMES)


@pytest.mark.parametrize("cmd,metavar", [
    (["args"], "[shell|json|compose]"), (["args"], "[bind|volume|plugin]"), (["args"], "CAP[,CAP...]"),
    (["exec"], "[dgx-a100|"), (["cdi", "generate"], "[yaml|json]"), (["cdi", "generate"], "[index|uuid|type-index]"),
    (["cdi", "generate"], "[bind|volume]"),
])
def test_choices_in_help(cmd: List[str], metavar: str, capsys, monkeypatch) -> None:
    code, out, _err = cli(*cmd, "--help", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and metavar in "".join(out.split())


@pytest.mark.parametrize("shell,needle", [("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")])
def test_completion_script(shell: str, needle: str, capsys, monkeypatch) -> None:
    code, out, err = cli("completion", shell, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    assert "_NVLOW_COMPLETE" in out and needle in out


# --- 4. --quiet ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("quiet", [[], ["--quiet"], ["-q"]])
def test_quiet_drops_notes_but_not_errors(quiet: List[str], capsys, monkeypatch) -> None:
    code, out, err = cli("args", "--simulate", "dgx-a100", *quiet, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and out
    assert (err == "") == bool(quiet), err
    code, out, err = cli("args", "--simulate", "dgx-a100", "--gpus", "9", *quiet, capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 2 and "nvlow: error:" in err
    assert ("simulated host" in err) != bool(quiet)


# --- 5. hermetic simulation ---------------------------------------------------------------------------

def test_cdi_write_under_simulate_needs_output(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NVLOW_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = cli("cdi", "generate", "--simulate", "dgx-a100", "--write", capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 2 and "--output" in err
    cache = tmp_path / "cache"
    assert not any(p.name.endswith((".yaml", ".json")) for p in cache.rglob("*") if "cdi" in str(p))
    target = tmp_path / "out" / "nvidia.yaml"
    os.makedirs(target.parent)
    code, out, err = cli("cdi", "generate", "--simulate", "dgx-a100", "--write", "--output", str(target),
                         capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and target.is_file(), err


# --- 6. exec exit codes ---------------------------------------------------------------------------

@pytest.fixture()
def bindir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "docker").write_text("#!/bin/sh\nexit 3\n")
    (d / "docker").chmod(0o755)
    (d / "noexec").write_text("#!/bin/sh\nexit 0\n")
    (d / "noexec").chmod(0o644)
    return d


@pytest.mark.parametrize("argv,code,needle", [
    (["exec", "--", "docker", "ps"], 3, None),  # the engine's own status passes through
    (["exec", "--", "nvlow-no-such-engine", "ps"], 127, "install Docker or Podman"),
    (["exec", "--docker", "{bindir}/noexec", "--", "docker", "ps"], 126, "executable"),
    (["exec", "--simulate", "dgx-a100", "--", "docker", "run", "img"], 2, "only works with --dry-run"),
    (["exec", "--gpus", "0,,1", "--", "docker", "run", "img"], 2, "empty entry"),
    (["exec", "--bogus", "--", "docker", "run", "img"], 2, None),  # typer's usage error
    (["exec", "--dry-run", "--bogus", "--", "docker", "run", "img"], 2, None),
    # --dry-run runs nothing: the usual codes
    (["exec", "--simulate", "dgx-a100", "--dry-run", "--gpus", "9", "--", "docker", "run", "img"], 2, "9"),
])
def test_exec_exit_codes(argv: List[str], code: int, needle: Optional[str], bindir, tmp_path) -> None:
    argv = [a.replace("{bindir}", str(bindir)) for a in argv]
    r = sub(*argv, path_dir=str(bindir), env={"NVLOW_ROOT": str(tmp_path)})
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if needle:
        errors = [line for line in r.stderr.splitlines() if line.startswith("nvlow: error:")]
        assert len(errors) == 1 and needle in r.stderr
    if code == 126:
        assert "install Docker or Podman" not in r.stderr


# --- 7. bad inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("gpus,ok", [("0,,1", False), (",0", False), ("0,", False), ("0,1", True),
                                     ("all", True)])
def test_gpus_empty_entry(gpus: str, ok: bool, capsys, monkeypatch) -> None:
    code, _out, err = cli("args", "--simulate", "dgx-a100", "--gpus", gpus, capsys=capsys, monkeypatch=monkeypatch)
    if ok:
        assert code == 0, err
    else:
        assert code == 2 and f"invalid --gpus '{gpus}': empty entry" in err


def test_nvidia_visible_devices_garbage_names_the_token(capsys, monkeypatch) -> None:
    code, _out, err = cli("args", "--simulate", "dgx-a100", env={"NVIDIA_VISIBLE_DEVICES": "garbage"},
                          capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "garbage" in err


def test_completion_requests_are_answered() -> None:
    r = sub(env={"_NVLOW_COMPLETE": "complete_bash", "COMP_WORDS": "nvlow args --dr", "COMP_CWORD": "2"})
    assert r.returncode == 0 and r.stdout.split() == ["--driver-files"], r.stderr
