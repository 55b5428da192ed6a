"""The library loader: search order under a host root, failures naming every candidate,
and nothing native loaded at import time."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from nvlow.errors import LibraryError
from nvlow.native._nvml_ffi import ffi
from nvlow.native.loader import CUDA_SONAME, FALLBACK_DIRS, NVML_SONAME, candidate_paths, load_library
from nvlow.native.probe import open_native_library
from nvlow.host.root import HostRoot
from nvlow.simulate.presets import get_preset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_failure_names_every_candidate(tmp_path) -> None:
    root = HostRoot(str(tmp_path))
    with pytest.raises(LibraryError) as err:
        load_library(ffi, NVML_SONAME, root, {})
    tried = "; ".join(f"{tmp_path}{d}/{NVML_SONAME}: not found" for d in FALLBACK_DIRS)
    assert str(err.value) == f"cannot load {NVML_SONAME} (tried: {tried})"
    assert "NVLOW_NVML_LIBRARY" in (err.value.hint or "")


def test_bad_candidate_is_reported_and_the_next_one_loads(fake_driver, tmp_path) -> None:
    fake = fake_driver(get_preset("workstation"))
    bad = tmp_path / "usr/lib64" / NVML_SONAME
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an ELF file at all, but long enough to be read as a header......")
    root = fake.install(str(tmp_path), "/usr/local/nvidia/lib64")
    loaded = load_library(ffi, NVML_SONAME, root, {})
    assert loaded.path == "/usr/local/nvidia/lib64/libnvidia-ml.so.1"
    with pytest.raises(LibraryError) as err:
        load_library(ffi, CUDA_SONAME, HostRoot(str(tmp_path / "usr")), {})
    assert str(err.value).startswith(f"cannot load {CUDA_SONAME} (tried: {tmp_path}/usr/usr/lib64/libcuda.so.1: not found;")
    # the bad file's dlopen error is part of the message when nothing loads
    os.remove(root.host("/usr/local/nvidia/lib64/libnvidia-ml.so.1"))
    with pytest.raises(LibraryError) as err2:
        load_library(ffi, NVML_SONAME, root, {})
    assert f"{bad}: " in str(err2.value) and f"{bad}: not found" not in str(err2.value)
    assert "\n" not in str(err2.value)


def test_fake_root_through_the_probe(fake_driver, tmp_path) -> None:
    fake = fake_driver(get_preset("dgx-a100"))
    root = fake.install(str(tmp_path))
    with open_native_library(root, fake.root_env) as lib:
        assert lib.loaded_paths == ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                                    "/usr/lib/x86_64-linux-gnu/libcuda.so.1")
        assert len(lib.gpus()) == 8


def test_absolute_symlinks_resolve_inside_the_root(fake_driver, tmp_path) -> None:
    fake = fake_driver(get_preset("workstation"))
    real_dir = tmp_path / "opt/nvidia-550"
    real_dir.mkdir(parents=True)
    shutil.copy(fake.libs.nvml, real_dir / "libnvidia-ml.so.550.54.15")
    (tmp_path / "usr/lib64").mkdir(parents=True)
    os.symlink("/opt/nvidia-550/libnvidia-ml.so.550.54.15", tmp_path / "usr/lib64" / NVML_SONAME)
    loaded = load_library(ffi, NVML_SONAME, HostRoot(str(tmp_path)), {})
    assert loaded.path == "/usr/lib64/libnvidia-ml.so.1"


def test_ldcache_entry_is_tried_first(fake_driver, tmp_path) -> None:
    import nvlow.host.ldcache  # noqa: F401 - breaking this import must fail the test, not skip it
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if ldconfig is None:
        pytest.skip("ldconfig not available")
    fake = fake_driver(get_preset("workstation"))
    fake.install(str(tmp_path), "/opt/nv/lib")
    fake.install(str(tmp_path), "/usr/lib64")  # a fallback that must lose to the cache
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.conf").write_text("/opt/nv/lib\n")
    proc = subprocess.run([ldconfig, "-r", str(tmp_path)], capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp_path / "etc/ld.so.cache").exists():
        pytest.skip(f"ldconfig -r failed: {proc.stderr.strip()}")
    root = HostRoot(str(tmp_path))
    candidates, tried = candidate_paths(root, NVML_SONAME, {})
    assert candidates[0] == ("/opt/nv/lib/libnvidia-ml.so.1", f"{tmp_path}/opt/nv/lib/libnvidia-ml.so.1")
    assert tried == []
    with open_native_library(root, fake.root_env) as lib:
        assert lib.loaded_paths == ("/opt/nv/lib/libnvidia-ml.so.1", "/opt/nv/lib/libcuda.so.1")


def test_corrupt_ldcache_is_a_tried_entry(tmp_path) -> None:
    import nvlow.host.ldcache  # noqa: F401 - breaking this import must fail the test, not skip it
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.cache").write_bytes(b"garbage")
    with pytest.raises(LibraryError) as err:
        load_library(ffi, NVML_SONAME, HostRoot(str(tmp_path)), {})
    assert str(err.value).startswith(f"cannot load {NVML_SONAME} (tried: {tmp_path}/etc/ld.so.cache: ")


def test_env_override_is_used_alone(tmp_path) -> None:
    missing = str(tmp_path / "nope.so")
    with pytest.raises(LibraryError) as err:
        load_library(ffi, NVML_SONAME, HostRoot("/"), {"NVLOW_NVML_LIBRARY": missing})
    assert str(err.value) == f"cannot load {NVML_SONAME} (tried: {missing}: not found)"


def test_bare_soname_only_for_the_real_root(tmp_path) -> None:
    real, _ = candidate_paths(HostRoot("/"), NVML_SONAME, {})
    fake, _ = candidate_paths(HostRoot(str(tmp_path)), NVML_SONAME, {})
    assert real[-1] == (NVML_SONAME, NVML_SONAME)
    assert all("/" in c[1] for c in fake)
    assert [c[0] for c in fake] == [d + "/" + NVML_SONAME for d in FALLBACK_DIRS]


def _run(code: str, env_extra: dict) -> str:
    env = dict(os.environ, **env_extra)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_importing_loads_no_driver_library(fake_driver) -> None:
    fake = fake_driver(get_preset("workstation"))
    code = ("import nvlow.native.nvml, nvlow.native.cuda, nvlow.native.probe, nvlow.native.loader\n"
            "print(open('/proc/self/maps').read())\n"
            "import os; from nvlow.host.root import HostRoot\n"
            "lib = nvlow.native.probe.open_native_library(HostRoot('/nonexistent'), os.environ)\n"
            "print('--- after open'); print(open('/proc/self/maps').read())\n")
    before, after = _run(code, fake.env).split("--- after open")
    assert fake.libs.nvml not in before and fake.libs.cuda not in before
    assert "libnvidia-ml" not in before and "libcuda" not in before
    assert fake.libs.nvml in after and fake.libs.cuda in after  # the check above can fail


def test_probe_import_does_not_import_pycparser() -> None:
    out = _run("import sys, nvlow.native.probe; print('pycparser' in sys.modules, 'cffi' in sys.modules)", {})
    assert out.split() == ["False", "False"]
