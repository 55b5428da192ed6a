"""The driver volume: layout, atomic build, races, copy fallback, recovery from killed builds."""
from __future__ import annotations

import errno
import multiprocessing
import os

import pytest

from nvlow.plan import volume as vol
from nvlow.errors import HostError
from nvlow.model import DriverFile, DriverFiles


def _entries(base):
    """What a volumes base dir holds, without the lock files (``.lock-<version>``, kept on purpose)."""
    return sorted(n for n in os.listdir(base) if not n.startswith(".lock-"))


@pytest.fixture()
def files(tmp_path):
    src = tmp_path / "host"
    (src / "lib").mkdir(parents=True)
    (src / "bin").mkdir()
    (src / "lib" / "libcuda.so.550.54.15").write_bytes(b"\x7fELF cuda")
    (src / "lib" / "libnvidia-ml.so.550.54.15").write_bytes(b"\x7fELF nvml")
    (src / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho smi\n")
    return DriverFiles(
        libraries64=(
            DriverFile(str(src / "lib" / "libcuda.so.550.54.15"), "lib64", "compute",
                       ("libcuda.so.550.54.15", "libcuda.so.1", "libcuda.so"), "libcuda.so.1"),
            DriverFile(str(src / "lib" / "libnvidia-ml.so.550.54.15"), "lib64", "utility",
                       ("libnvidia-ml.so.550.54.15", "libnvidia-ml.so.1"), "libnvidia-ml.so.1"),
        ),
        binaries=(DriverFile(str(src / "bin" / "nvidia-smi"), "bin", "utility", ("nvidia-smi",)),),
    )


def test_layout_and_reuse(tmp_path, files):
    volumes = str(tmp_path / "volumes")
    res = vol.ensure_volume(files, "550.54.15", volumes)
    assert res.created and res.path == os.path.join(volumes, "nvidia_driver", "550.54.15")
    lib64 = os.path.join(res.path, "lib64")
    assert sorted(os.listdir(lib64)) == ["libcuda.so", "libcuda.so.1", "libcuda.so.550.54.15",
                                         "libnvidia-ml.so.1", "libnvidia-ml.so.550.54.15"]
    assert os.readlink(os.path.join(lib64, "libcuda.so.1")) == "libcuda.so.550.54.15"
    with open(os.path.join(lib64, "libcuda.so")) as fh:
        assert fh.read() == "\x7fELF cuda"
    assert os.listdir(os.path.join(res.path, "bin")) == ["nvidia-smi"]
    assert os.path.isdir(os.path.join(res.path, "lib"))
    assert res.linked == 3 and res.copied == 0
    again = vol.ensure_volume(files, "550.54.15", volumes)
    assert not again.created and again.path == res.path
    assert vol.list_volumes(volumes) == ["550.54.15"]
    assert vol.find_volume(volumes, "550.54.15") == res.path
    assert vol.remove_volume(volumes, "550.54.15") and vol.list_volumes(volumes) == []


def test_cross_device_link_falls_back_to_copy(tmp_path, files, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", src)

    monkeypatch.setattr(vol.os, "link", no_link)
    res = vol.ensure_volume(files, "550.54.15", str(tmp_path / "v"))
    assert res.copied == 3 and res.linked == 0
    assert os.path.getsize(os.path.join(res.path, "lib64", "libnvidia-ml.so.550.54.15")) == len(b"\x7fELF nvml")


def test_failed_build_leaves_nothing(tmp_path, files):
    bad = DriverFiles(libraries64=files.libraries64 + (
        DriverFile(str(tmp_path / "missing.so.1"), "lib64", "compute", ("missing.so.1",)),))
    volumes = str(tmp_path / "v")
    with pytest.raises(HostError, match="cannot build driver volume .*550.54.15"):
        vol.ensure_volume(bad, "550.54.15", volumes)
    assert _entries(os.path.join(volumes, "nvidia_driver")) == []
    assert vol.find_volume(volumes, "550.54.15") is None


def test_killed_build_is_never_returned_and_is_cleaned(tmp_path, files):
    volumes = str(tmp_path / "v")
    base = os.path.join(volumes, "nvidia_driver")
    # what a build killed midway leaves: a temp dir of a dead pid, no final dir
    dead = os.path.join(base, ".tmp-550.54.15-999999999-abcdef")
    os.makedirs(os.path.join(dead, "lib64"))
    # and an incomplete final directory (e.g. from an older tool) must not be returned
    os.makedirs(os.path.join(base, "550.54.15", "lib64"))
    assert vol.find_volume(volumes, "550.54.15") is None
    res = vol.ensure_volume(files, "550.54.15", volumes)
    assert res.created and vol.is_complete(res.path)
    assert not os.path.exists(dead)


def _race(args):
    files, volumes = args
    return vol.ensure_volume(files, "550.54.15", volumes).path


def test_parallel_builders_agree(tmp_path, files):
    volumes = str(tmp_path / "v")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        paths = pool.map(_race, [(files, volumes)] * 12)
    assert set(paths) == {os.path.join(volumes, "nvidia_driver", "550.54.15")}
    assert _entries(os.path.join(volumes, "nvidia_driver")) == ["550.54.15"]
    assert vol.is_complete(paths[0])


def test_unwritable_volumes_dir(tmp_path, files):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HostError, match="cannot create volume directory"):
        vol.ensure_volume(files, "550.54.15", str(blocker / "v"))


# --- one driver volume for the CLI, `nvlow serve` and the plugin, with a manifest --------------------

import json  # noqa: E402

from nvlow.simulate.hosttree import simulated_host  # noqa: E402
from nvlow.simulate.presets import get_preset  # noqa: E402

NAMES = {"dgx-a100": "550.54.15", "workstation": "560.35.03"}


def _cli(preset, volumes):
    """What `nvlow args --driver-files volume` does (make_plan -> the volume)."""
    import nvlow

    host = nvlow.load_host(simulate=preset)
    plan = nvlow.make_plan(host, "all", "utility", driver_files_mode="volume", volumes_dir=volumes)
    (path,) = [m.host_path for m in plan.mounts if m.container_path == "/usr/local/nvidia"]
    return path


def _direct(preset, volumes):
    """The call make_plan makes: ensure_driver_volume(root, version, volumes_dir)."""
    root, _opener = simulated_host(preset)
    return vol.ensure_driver_volume(root, get_preset(preset).driver_version, volumes).path


def _state(preset, volumes):
    from nvlow.serve.cache import DiscoveryCache
    from nvlow.serve.server import ServeState

    root, opener = simulated_host(preset)
    return ServeState(DiscoveryCache(root, opener, load_uvm=False), volumes_dir=volumes, stream=_Quiet())


class _Quiet:
    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.extend(t for t in text.splitlines() if t)

    def flush(self):
        pass


def _serve(preset, volumes):
    """`nvlow serve`'s /v2/args?driver_files=volume path."""
    state = _state(preset, volumes)
    return state.ensure_driver_volume(state.cache.host().driver_version).path


def _plugin(preset, volumes):
    """dockerd's VolumeDriver.Mount on the plugin."""
    from nvlow.serve import volume_plugin

    state = _state(preset, volumes)
    name = f"nvidia_driver_{state.cache.host().driver_version}"
    answer = volume_plugin.mount(state, {"Name": name})
    assert answer["Err"] == ""
    return answer["Mountpoint"]


BUILDERS = {"cli": _cli, "direct": _direct, "serve": _serve, "plugin": _plugin}


def _tree(path):
    """{relative path: ("link", target) or ("file", size)} of a volume, manifest excluded."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, path)
            if rel in (vol.MANIFEST_NAME, vol.COMPLETE_MARKER):
                continue
            out[rel] = ("link", os.readlink(p)) if os.path.islink(p) else ("file", os.path.getsize(p))
    return out


@pytest.mark.parametrize("preset", sorted(NAMES))
@pytest.mark.parametrize("first,second", [(a, b) for a in BUILDERS for b in BUILDERS if a != b])
def test_whoever_builds_first_the_volume_holds_the_same_files(tmp_path, preset, first, second):
    volumes = str(tmp_path / "v")
    path = BUILDERS[first](preset, volumes)
    before = _tree(path)
    ino = os.stat(path).st_ino
    manifest_stat = os.stat(os.path.join(path, vol.MANIFEST_NAME))
    assert BUILDERS[second](preset, volumes) == path
    # the second caller found exactly what it would have built: nothing was rebuilt
    assert os.stat(path).st_ino == ino
    after = os.stat(os.path.join(path, vol.MANIFEST_NAME))
    assert (after.st_ino, after.st_mtime_ns) == (manifest_stat.st_ino, manifest_stat.st_mtime_ns)
    assert _tree(path) == before
    # and it is the volume of every capability, compat32 included
    root, _o = simulated_host(preset)
    files = vol.driver_volume_files(root, NAMES[preset])
    assert {f"lib/{f.names[0]}" for f in files.libraries32} <= set(before)
    assert {f"lib64/{f.names[0]}" for f in files.libraries64} <= set(before)


def test_cli_and_serve_trees_are_identical(tmp_path):
    a = _tree(_cli("dgx-a100", str(tmp_path / "a")))
    b = _tree(_serve("dgx-a100", str(tmp_path / "b")))
    c = _tree(_plugin("dgx-a100", str(tmp_path / "c")))
    assert a == b == c
    files = vol.driver_volume_files(simulated_host("dgx-a100")[0], "550.54.15")
    want = {f"bin/{f.names[0]}" for f in files.binaries} | {f"lib64/{f.names[0]}" for f in files.libraries64} | {
        f"lib/{f.names[0]}" for f in files.libraries32}
    assert {k for k, v in a.items() if v[0] == "file"} == want
    assert files.libraries32 and len(want) >= 26  # 26 on this preset when the one definition was written


def _elf_class(path):
    with open(path, "rb") as fh:
        head = fh.read(5)
    assert head[:4] == b"\x7fELF"
    return {1: 32, 2: 64}[head[4]]


def test_lib_holds_the_32bit_libraries_1_0_put_there(tmp_path):
    # nvidia-docker 1.0 (src/nvidia/volumes.go, 1.0 branch) filled lib/ with the ld.so.cache's 32-bit
    # matches of its library list: libcuda, libnvidia-ml, -ptxjitcompiler, -opencl, the GL ones, ...
    path = _direct("workstation", str(tmp_path / "v"))
    lib = os.path.join(path, "lib")
    v = NAMES["workstation"]
    for stem in ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-opencl.so",
                 "libnvidia-glcore.so", "libGLX_nvidia.so", "libEGL_nvidia.so"):
        real = os.path.join(lib, f"{stem}.{v}")
        assert os.path.isfile(real) and not os.path.islink(real), stem
        assert _elf_class(real) == 32
    assert os.readlink(os.path.join(lib, "libcuda.so.1")) == f"libcuda.so.{v}"
    assert os.readlink(os.path.join(lib, "libcuda.so")) == f"libcuda.so.{v}"
    assert os.readlink(os.path.join(lib, "libnvidia-ml.so.1")) == f"libnvidia-ml.so.{v}"
    for name in os.listdir(os.path.join(path, "lib64")):
        p = os.path.join(path, "lib64", name)
        if not os.path.islink(p):
            assert _elf_class(p) == 64


def test_manifest_contents(tmp_path):
    path = _direct("dgx-a100", str(tmp_path / "v"))
    with open(os.path.join(path, vol.MANIFEST_NAME)) as fh:
        doc = json.load(fh)
    assert doc["schema"] == vol.MANIFEST_SCHEMA and doc["driver_version"] == "550.54.15"
    files = [tuple(e) for e in doc["files"]]
    assert files == sorted(files) and len(files) >= 26
    for rel, src, size, mtime in files:
        st = os.stat(src)
        assert os.path.realpath(src) == src and (st.st_size, st.st_mtime_ns) == (size, mtime)
        assert os.path.getsize(os.path.join(path, rel)) == size
    links = [tuple(e) for e in doc["links"]]
    assert links == sorted(links) and ("lib64/libcuda.so", "libcuda.so.550.54.15") in links
    assert vol.read_manifest(path) == vol.volume_manifest(vol.driver_volume_files(
        simulated_host("dgx-a100")[0], "550.54.15"), "550.54.15")


def _legacy_volume(volumes, files):
    """What nvlow before the manifest (or nvlow serve's old 4-capability selection) left on disk."""
    path = vol.ensure_volume(files, "550.54.15", volumes).path
    os.unlink(os.path.join(path, vol.MANIFEST_NAME))
    assert vol.is_complete(path) and vol.read_manifest(path) is None
    return path


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
@pytest.mark.parametrize("stale", ["legacy", "other-selection", "foreign-manifest", "missing-file"])
def test_stale_volume_is_rebuilt(tmp_path, monkeypatch, exchange, stale):
    from nvlow.host.driverfiles import select_driver_files

    swaps = []
    real_exchange = vol._exchange
    monkeypatch.setattr(vol, "_exchange", lambda a, b: swaps.append(exchange and real_exchange(a, b)) or swaps[-1])
    volumes = str(tmp_path / "v")
    root, _o = simulated_host("dgx-a100")
    old_files = select_driver_files(root, "550.54.15", ("compute", "graphics", "utility", "video"))
    if stale == "legacy":
        path = _legacy_volume(volumes, old_files)
    else:
        path = vol.ensure_volume(old_files, "550.54.15", volumes).path
    if stale == "foreign-manifest":
        path = _direct("dgx-a100", volumes)
        with open(os.path.join(path, vol.MANIFEST_NAME), "w") as fh:
            json.dump({"schema": 99, "files": []}, fh)
    elif stale == "missing-file":
        path = _direct("dgx-a100", volumes)
        os.unlink(os.path.join(path, "lib", "libcuda.so.550.54.15"))
    assert os.listdir(os.path.join(path, "lib")) == [] or stale in ("foreign-manifest", "missing-file")
    swaps.clear()
    res = vol.ensure_driver_volume(root, "550.54.15", volumes)
    assert res.created and res.replaced and res.path == path
    assert swaps == [exchange]  # one swap: atomic where renameat2 works, else rename away + rename in
    assert "libcuda.so.550.54.15" in os.listdir(os.path.join(path, "lib"))
    assert vol.read_manifest(path) is not None
    # nothing else is left next to it, and a second call reuses it
    assert _entries(os.path.dirname(path)) == ["550.54.15"]
    assert not vol.ensure_driver_volume(root, "550.54.15", volumes).created


def test_identical_volume_is_reused_untouched(tmp_path, monkeypatch):
    volumes = str(tmp_path / "v")
    root, _o = simulated_host("dgx-a100")
    first = vol.ensure_driver_volume(root, "550.54.15", volumes)
    assert first.created and not first.replaced
    snap = {rel: os.lstat(os.path.join(first.path, rel)) for rel in _tree(first.path)}
    dir_stat = os.stat(first.path)

    def no_build(*a, **k):
        raise AssertionError("rebuilt an identical volume")

    monkeypatch.setattr(vol, "_build", no_build)
    again = vol.ensure_driver_volume(root, "550.54.15", volumes)
    assert (again.created, again.replaced, again.path) == (False, False, first.path)
    assert (os.stat(first.path).st_ino, os.stat(first.path).st_mtime_ns) == (dir_stat.st_ino, dir_stat.st_mtime_ns)
    for rel, st in snap.items():
        now = os.lstat(os.path.join(first.path, rel))
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), rel


def test_changed_source_file_rebuilds(tmp_path, files):
    volumes = str(tmp_path / "v")
    first = vol.ensure_volume(files, "550.54.15", volumes)
    src = files.libraries64[0].host_path
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # reinstalled driver file, same version
    again = vol.ensure_volume(files, "550.54.15", volumes)
    assert again.created and again.replaced and again.path == first.path
    assert (src, st.st_mtime_ns + 10**9) in {(e[1], e[3]) for e in vol.read_manifest(again.path).files}


def test_old_nvlow_marker_is_still_written(tmp_path, files):
    # nvlow before the manifest reused any directory with .nvlow-complete; keep it so that an older
    # `nvlow serve` still running does not tear down a new volume
    path = vol.ensure_volume(files, "550.54.15", str(tmp_path / "v")).path
    with open(os.path.join(path, vol.COMPLETE_MARKER)) as fh:
        assert fh.read().splitlines() == sorted(
            f"{e[0]}\t{e[1]}" for e in vol.read_manifest(path).files)


def test_unknown_driver_version(tmp_path):
    root, _o = simulated_host("dgx-a100")
    with pytest.raises(HostError, match="driver version is unknown"):
        vol.ensure_driver_volume(root, None, str(tmp_path))


def test_default_volumes_dir(monkeypatch, files):
    seen = []
    monkeypatch.setattr(vol, "volume_manifest", lambda f, v: seen.append(v) or (_ for _ in ()).throw(OSError(1, "x")))
    monkeypatch.setattr(vol.os, "makedirs", lambda *a, **k: seen.append(a[0]))
    with pytest.raises(HostError, match="/var/lib/nvlow/volumes/nvidia_driver/550.54.15"):
        vol.ensure_volume(files, "550.54.15", None)
    assert seen[0] == "/var/lib/nvlow/volumes/nvidia_driver"


def test_remove_volume_renames_first(tmp_path, files):
    volumes = str(tmp_path / "v")
    path = vol.ensure_volume(files, "550.54.15", volumes).path
    assert vol.remove_volume(volumes, "550.54.15")
    assert _entries(os.path.dirname(path)) == []
    assert not vol.remove_volume(volumes, "550.54.15")


def _race_replace(args):
    volumes, exchange = args
    if not exchange:
        vol._exchange = lambda a, b: False
    root, _o = simulated_host("dgx-a100")
    res = vol.ensure_driver_volume(root, "550.54.15", volumes)
    return res.path, res.created


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_parallel_rebuilds_of_a_stale_volume_agree(tmp_path, exchange):
    from nvlow.host.driverfiles import select_driver_files

    volumes = str(tmp_path / "v")
    root, _o = simulated_host("dgx-a100")
    _legacy_volume(volumes, select_driver_files(root, "550.54.15", ("utility",)))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        results = pool.map(_race_replace, [(volumes, exchange)] * 12)
    path = vol.volume_path(volumes, "550.54.15")
    assert {p for p, _c in results} == {path} and any(c for _p, c in results)
    assert _entries(os.path.dirname(path)) == ["550.54.15"]
    want = vol.volume_manifest(vol.driver_volume_files(root, "550.54.15"), "550.54.15")
    assert vol._holds(path, want)


def test_exchange_swaps_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "y").write_text("b")
    if not vol._exchange(str(a), str(b)):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert os.listdir(a) == ["y"] and os.listdir(b) == ["x"]


# --- names and paths: one strict check; nothing outside the volumes directory ------------------------------

BAD_VERSIONS = ["..", ".", "", "550.54.15\n", "550.54.15/..", "../x", "1..2", ".550", "550.", "5 5", "1" * 33,
                "\u0665\u0665\u0660", "550.54.15\x00", "550\\54", "+1", "1e3"]


def test_version_and_name_checks():
    for good in ("550.54.15", "560.35.03", "390.157", "1", "1.0", "1" * 32):
        assert vol.is_valid_version(good) and vol.volume_name_version(f"nvidia_driver_{good}") == good
    for bad in BAD_VERSIONS:
        assert not vol.is_valid_version(bad), ascii(bad)
        assert vol.volume_name_version(f"nvidia_driver_{bad}") is None, ascii(bad)
    for other in ("nvidia_driver", "nvidia_driver550", "other_550.54.15", "NVIDIA_DRIVER_550", None, 550):
        assert vol.volume_name_version(other) is None


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=ascii)
def test_every_entry_point_refuses_a_bad_version_and_touches_nothing(tmp_path, files, bad):
    volumes = tmp_path / "v"
    (volumes / "nvidia_driver" / "keep").mkdir(parents=True)
    calls = [lambda: vol.ensure_volume(files, bad, str(volumes)),
             lambda: vol.remove_volume(str(volumes), bad),
             lambda: vol.find_volume(str(volumes), bad),
             lambda: vol.volume_path(str(volumes), bad),
             lambda: vol.volume_exists(str(volumes), bad)]
    for call in calls:
        with pytest.raises(HostError, match="invalid driver version .* for a driver volume"):
            call()
    with pytest.raises(HostError, match="invalid driver version"):
        with vol.volume_lock(str(volumes), bad):
            pass
    assert sorted(os.listdir(volumes)) == ["nvidia_driver"] and os.listdir(volumes / "nvidia_driver") == ["keep"]


def test_a_symlink_in_place_of_the_volume_is_refused(tmp_path, files):
    volumes = str(tmp_path / "v")
    path = vol.ensure_volume(files, "550.54.15", volumes).path
    outside = str(tmp_path / "outside")
    os.rename(path, outside)
    os.symlink(outside, path)
    for call in (lambda: vol.ensure_volume(files, "550.54.15", volumes), lambda: vol.find_volume(volumes, "550.54.15"),
                 lambda: vol.remove_volume(volumes, "550.54.15")):
        with pytest.raises(HostError, match=f"driver volume {path} is a symlink; nvlow does not follow"):
            call()
    assert vol.list_volumes(volumes) == [] and vol.is_complete(outside) and os.path.islink(path)
    assert not vol.is_complete(path)  # never through the link


def test_a_symlinked_manifest_is_not_read(tmp_path, files):
    path = vol.ensure_volume(files, "550.54.15", str(tmp_path / "v")).path
    real = os.path.join(str(tmp_path), "manifest.json")
    os.rename(os.path.join(path, vol.MANIFEST_NAME), real)
    os.symlink(real, os.path.join(path, vol.MANIFEST_NAME))
    assert vol.read_manifest(path) is None
    os.unlink(os.path.join(path, vol.COMPLETE_MARKER))
    assert not vol.is_complete(path)


def test_a_path_out_of_the_volumes_dir_is_refused(tmp_path):
    with pytest.raises(HostError, match="outside the driver volumes directory"):
        vol._inside(str(tmp_path), str(tmp_path / "nvidia_driver" / ".." / "x"))
    assert vol._inside(str(tmp_path), str(tmp_path / "nvidia_driver" / "1.0")).endswith("/1.0")


def test_driver_file_names_that_leave_the_volume_are_refused(tmp_path, files):
    bad = DriverFiles(libraries64=(DriverFile(files.libraries64[0].host_path, "lib64", "compute", ("../../x.so",)),))
    with pytest.raises(HostError, match=r"refusing driver file name \.\./\.\./x\.so"):
        vol.ensure_volume(bad, "550.54.15", str(tmp_path / "v"))
    link = DriverFiles(libraries64=(DriverFile(files.libraries64[0].host_path, "lib64", "compute",
                                               ("libcuda.so.550.54.15", ".."), ".."),))
    with pytest.raises(HostError, match="refusing driver file name"):
        vol.volume_manifest(link, "550.54.15")


def test_read_only_volumes_dir_hint(monkeypatch, files, tmp_path):
    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(vol.os, "makedirs", read_only)
    with pytest.raises(HostError, match="cannot create volume directory .*: Read-only file system") as info:
        vol.ensure_volume(files, "550.54.15", str(tmp_path / "v"))
    assert info.value.hint == "the directory is read-only: choose another --volumes-dir DIR"


def test_no_pid_liveness_test_is_left():
    import inspect

    source = inspect.getsource(vol)
    assert "_pid_alive" not in source and "os.kill" not in source


# --- the lock --------------------------------------------------------------------------------------------------

def test_volume_lock_serializes_threads_and_is_reentrant(tmp_path):
    import threading

    volumes = str(tmp_path / "v")
    inside, overlaps = [0], []

    def worker():
        for _ in range(20):
            with vol.volume_lock(volumes, "550.54.15"):
                with vol.volume_lock(volumes, "550.54.15"):  # re-entrant in a thread
                    inside[0] += 1
                    if inside[0] != 1:
                        overlaps.append(inside[0])
                    inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert os.listdir(os.path.join(volumes, "nvidia_driver")) == [".lock-550.54.15"]


def test_a_symlinked_lock_file_is_refused(tmp_path):
    volumes = tmp_path / "v"
    (volumes / "nvidia_driver").mkdir(parents=True)
    target = tmp_path / "target"
    target.write_text("x")
    (volumes / "nvidia_driver" / ".lock-550.54.15").symlink_to(target)
    with pytest.raises(HostError, match="lock file .* is a symlink"):
        with vol.volume_lock(str(volumes), "550.54.15"):
            pass
    assert target.read_text() == "x"
