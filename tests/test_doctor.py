"""nvlow doctor: both outcomes of every check, on simulated presets and modified fake roots."""
from __future__ import annotations

import os
import shutil
from typing import Any, Dict, Optional, Tuple

import pytest

from nvlow import doctor as d
from nvlow.errors import EngineError, LibraryError
from nvlow.records import GpuRecord, SystemInfo
from nvlow.host.root import HostRoot, file_node_reader
from nvlow.simulate.fakelib import open_simulated_library
from nvlow.simulate.hosttree import build_tree
from nvlow.simulate.presets import get_preset


def make_root(tmp_path, preset_name: str) -> HostRoot:
    dest = tmp_path / preset_name
    dest.mkdir()
    build_tree(str(dest), get_preset(preset_name))
    return HostRoot(str(dest), node_reader=file_node_reader)


class FakeLib:
    def __init__(self, system: SystemInfo, records: Tuple[GpuRecord, ...] = ()) -> None:
        self._system, self._records, self.loaded_paths = system, records, ("/x/libnvidia-ml.so.1",)

    def system(self) -> SystemInfo:
        return self._system

    def gpus(self) -> Tuple[GpuRecord, ...]:
        return self._records

    def status(self):  # pragma: no cover - not used
        return ()

    def close(self) -> None:
        pass


class FakeEngine:
    def __init__(self, info: Optional[Dict[str, Any]] = None, error: Optional[str] = None) -> None:
        self._info, self._error = info or {}, error

    def version(self) -> Dict[str, Any]:
        if self._error:
            raise EngineError(self._error, hint="start dockerd")
        return {"Version": "28.2.2", "ApiVersion": "1.50"}

    def info(self) -> Dict[str, Any]:
        return self._info


def ctx_for(root: HostRoot, preset_name: str, **kw: Any) -> d.DoctorContext:
    preset = get_preset(preset_name)
    opener = kw.pop("opener", lambda r: open_simulated_library(preset))
    return d.DoctorContext(root=root, env={}, library_opener=opener, **kw)


def by_check(results, name):
    return [r for r in results if r.check == name]


def statuses(results, name):
    return [r.status for r in by_check(results, name)]


@pytest.fixture()
def a100(tmp_path):
    return make_root(tmp_path, "dgx-a100")


def test_healthy_host_all_ok_but_stale_copy(a100):
    results = d.run_doctor(ctx_for(a100, "dgx-a100", engine_factory=lambda h: FakeEngine()))
    assert statuses(results, "kernel module") == ["ok"]
    assert statuses(results, "driver libraries") == ["ok"]
    assert statuses(results, "library version") == ["ok"]
    assert statuses(results, "cuda driver") == ["ok"]
    assert statuses(results, "device nodes")[0] == "ok"
    assert statuses(results, "persistence mode") == ["ok"]
    assert statuses(results, "container engine") == ["ok"]
    # the simulated tree carries a stale libcuda of driver 535 (an old .run install)
    stale = by_check(results, "stale libraries")[0]
    assert stale.status == "warn" and "libcuda.so.535.104.05" in stale.message and stale.fix
    doc = d.doctor_document(results)
    assert doc["ok"] is True and doc["schema_version"] == 1


def test_kernel_module_missing(tmp_path):
    root = make_root(tmp_path, "no-driver")
    results = d.run_doctor(ctx_for(root, "no-driver"))
    r = by_check(results, "kernel module")[0]
    assert r.status == "fail" and "not loaded" in r.message and r.fix
    assert by_check(results, "driver libraries")[0].status == "fail"
    assert by_check(results, "device nodes")[0].status == "skip"
    assert d.doctor_document(results)["ok"] is False
    text = d.format_doctor(results)
    assert "[fail] kernel module" in text and "fix:" in text


def test_library_version_mismatch(a100):
    lib = FakeLib(SystemInfo("545.23.08", "12.545.23.08", "12.3"))
    results = d.run_doctor(ctx_for(a100, "dgx-a100", opener=lambda r: lib))
    r = by_check(results, "library version")[0]
    assert r.status == "fail" and "Driver/library version mismatch" in r.message
    assert "545.23.08" in r.message and "550.54.15" in r.message and "reboot" in r.fix


def test_library_not_loadable(a100):
    def opener(root):
        raise LibraryError("cannot load libnvidia-ml.so.1 (tried: /usr/lib64/libnvidia-ml.so.1: not found)")

    results = d.run_doctor(ctx_for(a100, "dgx-a100", opener=opener))
    r = by_check(results, "driver libraries")[0]
    assert r.status == "fail" and "tried:" in r.message and r.fix
    assert by_check(results, "persistence mode")[0].status == "skip"


def test_cuda_version_unknown(a100):
    lib = FakeLib(SystemInfo("550.54.15", "12.550.54.15", None))
    results = d.run_doctor(ctx_for(a100, "dgx-a100", opener=lambda r: lib))
    assert statuses(results, "cuda driver") == ["warn"]


def test_no_stale_copies(tmp_path):
    root = make_root(tmp_path, "dgx-a100")
    from nvlow.host.ldcache import read_ldcache
    from nvlow.simulate.ldcache_writer import build_ldcache

    cache = read_ldcache(root)
    keep = [(e.key, e.value, e.flags) for e in cache.entries if "535.104.05" not in e.value
            and not root.realpath(e.value).endswith("535.104.05")]
    with open(root.host("/etc/ld.so.cache"), "wb") as fh:
        fh.write(build_ldcache(keep))
    results = d.run_doctor(ctx_for(root, "dgx-a100"))
    assert statuses(results, "stale libraries") == ["ok"]
    assert statuses(results, "damaged libraries") == []  # an intact install: no such line


def test_damaged_libraries_of_the_running_driver(tmp_path):
    root = make_root(tmp_path, "dgx-a100")
    libcuda = root.realpath("/usr/lib/x86_64-linux-gnu/libcuda.so.1")
    open(root.host(libcuda), "wb").close()  # emptied by a full disk during an install
    results = d.run_doctor(ctx_for(root, "dgx-a100"))
    damaged = by_check(results, "damaged libraries")
    assert [r.status for r in damaged] == ["warn"]
    assert f"{libcuda} (not a readable ELF file)" in damaged[0].message and "reinstall the driver" in damaged[0].fix


def test_device_nodes_missing_and_uvm_missing(a100):
    os.unlink(a100.host("/dev/nvidia3"))
    os.unlink(a100.host("/dev/nvidia-uvm"))
    results = d.run_doctor(ctx_for(a100, "dgx-a100"))
    fails = [r for r in by_check(results, "device nodes") if r.status == "fail"]
    assert fails and "0000:4e:00.0" in fails[0].message and "nvidia-smi" in fails[0].fix
    uvm = by_check(results, "nvidia-uvm")[0]
    assert uvm.status == "warn" and "nvidia-modprobe -u -c=0" in uvm.fix


def test_nvidiactl_missing(a100):
    os.unlink(a100.host("/dev/nvidiactl"))
    results = d.run_doctor(ctx_for(a100, "dgx-a100"))
    assert any(r.status == "fail" and "nvidiactl" in r.message for r in by_check(results, "device nodes"))


def test_persistence_off(tmp_path):
    root = make_root(tmp_path, "workstation")
    results = d.run_doctor(ctx_for(root, "workstation"))
    r = by_check(results, "persistence mode")[0]
    assert r.status == "warn" and "GPU(s) 0" in r.message and "nvidia-persistenced" in r.fix


def test_engine_unreachable_and_runtime_notes(a100):
    results = d.run_doctor(ctx_for(a100, "dgx-a100", engine_factory=lambda h: FakeEngine(
        error="cannot reach the Docker engine at unix:///var/run/docker.sock: no such file")))
    r = by_check(results, "container engine")[0]
    assert r.status == "fail" and "cannot reach" in r.message and r.fix
    info = {"Runtimes": {"runc": {}, "nvidia": {}}, "DefaultRuntime": "nvidia", "CDISpecDirs": ["/etc/cdi"]}
    results = d.run_doctor(ctx_for(a100, "dgx-a100", engine_factory=lambda h: FakeEngine(info)))
    assert statuses(results, "nvidia runtime") == ["warn"]
    assert statuses(results, "engine CDI") == ["ok"]
    info["DefaultRuntime"] = "runc"
    results = d.run_doctor(ctx_for(a100, "dgx-a100", engine_factory=lambda h: FakeEngine(info)))
    assert statuses(results, "nvidia runtime") == ["ok"]
    assert statuses(d.run_doctor(ctx_for(a100, "dgx-a100")), "container engine") == ["skip"]


def test_cdi_specs_stale_and_fresh(a100):
    os.makedirs(a100.host("/etc/cdi"))
    spec = '{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "containerEdits": {"mounts": [{"hostPath": ' \
           '"/usr/lib/x86_64-linux-gnu/libcuda.so.%s", "containerPath": "/x"}]}, "devices": []}'
    with open(a100.host("/etc/cdi/nvidia.json"), "w") as fh:
        fh.write(spec % "535.104.05")
    r = by_check(d.run_doctor(ctx_for(a100, "dgx-a100")), "CDI specs")[0]
    assert r.status == "warn" and "535.104.05" in r.message and "cdi generate" in r.fix
    with open(a100.host("/etc/cdi/nvidia.json"), "w") as fh:
        fh.write(spec % "550.54.15")
    assert statuses(d.run_doctor(ctx_for(a100, "dgx-a100")), "CDI specs") == ["ok"]


def test_cgroup_versions(a100):
    assert statuses(d.run_doctor(ctx_for(a100, "dgx-a100")), "cgroup") == ["skip"]
    os.makedirs(a100.host("/sys/fs/cgroup"))
    r = by_check(d.run_doctor(ctx_for(a100, "dgx-a100")), "cgroup")[0]
    assert r.status == "ok" and "cgroup v1" in r.message and "daemon-reload" in r.message
    open(a100.host("/sys/fs/cgroup/cgroup.controllers"), "w").close()
    assert "cgroup v2" in by_check(d.run_doctor(ctx_for(a100, "dgx-a100")), "cgroup")[0].message


def test_a_crashing_check_does_not_hide_the_others(a100, monkeypatch):
    def boom(ctx):
        raise RuntimeError("bug")

    monkeypatch.setattr(d, "CHECKS", (boom,) + d.CHECKS[1:])
    results = d.run_doctor(ctx_for(a100, "dgx-a100"))
    assert results[0].status == "fail" and "check crashed: RuntimeError: bug" in results[0].message
    assert len(results) > 5


def test_doctor_cli_exit_codes(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, NVLOW_CACHE_DIR=str(tmp_path / "c"))
    ok = subprocess.run([sys.executable, "-m", "nvlow", "doctor", "--simulate", "dgx-a100", "--no-engine", "--json"],
                        env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "nvlow", "doctor", "--simulate", "no-driver", "--no-engine"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "[fail] kernel module" in bad.stdout
    shutil.rmtree(tmp_path / "c", ignore_errors=True)


# --- engine: docker or podman; GPUs; ld.so.cache ----------------------------------------------------

@pytest.mark.parametrize("podman,status", [("/usr/bin/podman", "ok"), (None, "fail")])
def test_engine_check_passes_with_podman_only(a100, podman, status):
    results = d.run_doctor(ctx_for(a100, "dgx-a100", podman_finder=lambda: podman, engine_factory=lambda h: FakeEngine(
        error="cannot reach the Docker engine at unix:///var/run/docker.sock: no such file")))
    r = by_check(results, "container engine")[0]
    assert r.status == status
    if podman:
        assert "Podman at /usr/bin/podman" in r.message
    else:
        assert "Podman" in r.fix
    # docker reachable: ok either way, podman not asked
    results = d.run_doctor(ctx_for(a100, "dgx-a100", podman_finder=lambda: 1 / 0, engine_factory=lambda h: FakeEngine()))
    assert statuses(results, "container engine") == ["ok"]


def test_gpus_check(tmp_path, a100):
    assert statuses(d.run_doctor(ctx_for(a100, "dgx-a100")), "GPUs") == ["ok"]
    root = make_root(tmp_path, "no-gpu")
    r = by_check(d.run_doctor(ctx_for(root, "no-gpu")), "GPUs")[0]
    assert r.status == "fail" and "sees no GPU" in r.message and "lspci" in r.fix
    root = make_root(tmp_path, "no-driver")
    assert statuses(d.run_doctor(ctx_for(root, "no-driver")), "GPUs") == ["skip"]


@pytest.mark.parametrize("content,needle", [
    (None, "is missing"), (b"", "not an ld.so.cache file"), (b"garbage\n" * 10, "not an ld.so.cache file"),
    (b"glibc-ld.so.cache1.1" + bytes(28), "lists no libraries"),
])
def test_ld_cache_check_fails(a100, content, needle):
    path = a100.host("/etc/ld.so.cache")
    os.remove(path)
    if content is not None:
        with open(path, "wb") as fh:
            fh.write(content)
    r = by_check(d.run_doctor(ctx_for(a100, "dgx-a100")), "ld.so.cache")[0]
    assert r.status == "fail" and needle in r.message and "ldconfig" in r.fix


def test_ld_cache_check_ok(a100):
    r = by_check(d.run_doctor(ctx_for(a100, "dgx-a100")), "ld.so.cache")[0]
    assert r.status == "ok" and "NVIDIA" in r.message
