"""The README's "Set up": a wheel of this checkout installed into a fresh venv runs `nvlow args --simulate`.

No network: the wheel is built with this interpreter's setuptools (no build isolation) from a copy of the
sources, and installed with ``--no-index --no-deps``; the dependencies (cffi, typer-slim, click) come
from this interpreter's site-packages through a ``.pth`` line (a directory added that way has its own
``.pth`` files ignored, so the editable nvlow of the test venv does not leak in).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(argv: list, cwd: Path, env: dict, timeout: int = 120) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")  # the build backend (pyproject's [build-system]); in the test extra
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "PYTHON"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")

    # 1. the wheel, from a clean copy of what the build needs (no build/ or egg-info in the checkout)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "nvlow", src / "nvlow", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    res = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "-q", "-w", str(dist), str(src)], tmp_path, env)
    assert res.returncode == 0, res.stdout + res.stderr
    wheels = glob.glob(str(dist / "nvlow-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        metadata = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for member in ("nvlow/py.typed", "nvlow/native/_nvml_ffi.py", "nvlow/native/_cuda_ffi.py",
                   "nvlow/simulate/presets.py", "nvlow/cli/__init__.py"):
        assert member in names, member
    assert any(line.replace(" ", "").startswith("Requires-Dist:click<9") for line in metadata.splitlines()), metadata

    # 2. a fresh venv (no pip of its own); the dependencies come from this interpreter's site-packages
    venv = tmp_path / "venv"
    res = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    assert res.returncode == 0, res.stdout + res.stderr
    vpy = venv / "bin" / "python"
    res = _run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env)
    site = Path(res.stdout.strip())
    import cffi
    import click
    import typer

    # this interpreter's pip installs into the venv (pip >= 22.3: --python); no ensurepip, which is slow
    res = _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-index", "--no-deps",
                wheels[0]], tmp_path, env)
    assert res.returncode == 0, res.stdout + res.stderr
    # then the dependencies' directories (after the install: where nvlow itself is installed non-editable
    # beside them, pip would otherwise see it "already satisfied" there and install nothing)
    deps = sorted({str(Path(m.__file__).resolve().parent.parent) for m in (cffi, click, typer)})  # type: ignore[arg-type]
    (site / "nvlow-test-deps.pth").write_text("".join(d + "\n" for d in deps))

    # 3. the installed package is the wheel's, typed, with the generated ffi modules
    res = _run([str(vpy), "-c", "import nvlow, os; print(os.path.dirname(nvlow.__file__))"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    pkg = Path(res.stdout.strip())
    assert pkg.parent == site, pkg
    for member in ("py.typed", "native/_nvml_ffi.py", "native/_cuda_ffi.py"):
        assert (pkg / member).is_file(), member
    res = _run([str(vpy), "-c", "import nvlow.native._nvml_ffi, nvlow.native._cuda_ffi"], tmp_path, env)
    assert res.returncode == 0, res.stderr

    # 4. the README's set-up command, through the installed console script
    res = _run([str(venv / "bin" / "nvlow"), "args", "--simulate", "dgx-a100"], tmp_path, env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("--device="), res.stdout
    assert "/dev/nvidiactl:/dev/nvidiactl" in res.stdout

    # 5. that command is the plain script (nvlow/cli/script/nvlow), its "#!python" line rewritten to the
    # venv's interpreter; an entry-point wrapper would import re (~6 ms) before nvlow runs
    script = venv / "bin" / "nvlow"
    first = script.read_text().splitlines()[0]
    assert first.startswith("#!") and "python" in first and first != "#!python", first
    probe = ("import sys\nbefore = set(sys.modules)\nsys.argv = [%r, 'args', '--simulate', 'dgx-a100']\n"
             "try:\n    exec(compile(open(%r).read(), 'nvlow', 'exec'), {'__name__': '__main__'})\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in ('re', 'enum', 'typing', 'typer') if m in sys.modules and m not in before))"
             % (str(script), str(script)))
    res = _run([str(vpy), "-c", probe], tmp_path, env)
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == "[]", res.stdout + res.stderr
