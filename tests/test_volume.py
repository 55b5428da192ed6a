"""The driver volume: layout, atomic build, races, copy fallback, recovery from killed builds."""
from __future__ import annotations

import errno
import multiprocessing
import os

import pytest

from nvlow import volume as vol
from nvlow.errors import HostError
from nvlow.model import DriverFile, DriverFiles


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
    assert os.listdir(os.path.join(volumes, "nvidia_driver")) == []
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
    assert sorted(os.listdir(os.path.join(volumes, "nvidia_driver"))) == ["550.54.15"]
    assert vol.is_complete(paths[0])


def test_unwritable_volumes_dir(tmp_path, files):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HostError, match="cannot create volume directory"):
        vol.ensure_volume(files, "550.54.15", str(blocker / "v"))
