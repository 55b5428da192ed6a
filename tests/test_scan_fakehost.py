"""Discovery over the engine tests' fake host (real mknod'd nodes, the stat-based node reader).

The ``mig`` variant of ``tests/engine/fakehost.py`` must give procfs-only discovery GPU 0's MIG devices with
their GI/CI access nodes, plus the MIG config and monitor nodes; the default variant has none of them.
"""
from __future__ import annotations

import os
import shutil
import stat

import pytest

from nvlow.host.discover import discover
from nvlow.host.root import HostRoot

from engine.fakehost import (CAP_CONFIG_MINOR, CAP_MONITOR_MINOR, MIG_INSTANCES, FakeHost, build_fake_host,
                              char_majors)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the fake host needs root (mknod, ldconfig -r)"),
    pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="gcc is missing"),
    pytest.mark.skipif(shutil.which("ldconfig") is None and not os.path.exists("/sbin/ldconfig"),
                       reason="ldconfig is missing"),
]


@pytest.fixture(scope="module")
def mig_host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    return build_fake_host(str(tmp_path_factory.mktemp("fakehost-mig")), mig=True)


def test_mig_variant_nodes_are_real_and_free_on_this_kernel(mig_host: FakeHost) -> None:
    assert mig_host.caps_major is not None and mig_host.caps_major != mig_host.uvm_major
    with open("/proc/devices", encoding="ascii") as fh:
        assert mig_host.caps_major not in char_majors(fh.read())
    with open(mig_host.host("/proc/devices"), encoding="ascii") as fh:
        assert char_majors(fh.read())[mig_host.caps_major] == ("nvidia-caps",)
    caps = mig_host.cap_nodes
    assert len(caps) == 2 + 2 * len(MIG_INSTANCES)
    for name, node in caps.items():
        st = os.lstat(mig_host.host(node.path))
        assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (node.major, node.minor)
        assert stat.S_IMODE(st.st_mode) == (0o400 if node.minor == CAP_CONFIG_MINOR else 0o444), name


def test_mig_variant_discovery(mig_host: FakeHost) -> None:
    host = discover(HostRoot(mig_host.root), use_nvml=False, load_uvm=False)
    assert host.source == "procfs" and host.warnings == ()
    gpu0, gpu1 = host.gpus
    assert gpu0.mig_enabled is True and gpu1.mig_devices == ()
    assert [(m.gpu_instance_id, m.compute_instance_id) for m in gpu0.mig_devices] == [
        (gi, ci) for _gpu, gi, ci in MIG_INSTANCES]
    for mig, (gpu, gi, ci) in zip(gpu0.mig_devices, MIG_INSTANCES):
        want = mig_host.mig_cap_nodes(gpu, gi, ci)
        assert [(n.host_path, n.container_path, n.major, n.minor) for n in mig.cap_nodes] == [
            (mig_host.host(w.path), w.path, w.major, w.minor) for w in want]
    assert host.mig_config_node is not None and host.mig_monitor_node is not None
    assert (host.mig_config_node.container_path, host.mig_config_node.major, host.mig_config_node.minor) == (
        f"/dev/nvidia-caps/nvidia-cap{CAP_CONFIG_MINOR}", mig_host.caps_major, CAP_CONFIG_MINOR)
    assert host.mig_monitor_node.minor == CAP_MONITOR_MINOR
    assert host.imex_channels == () and all(g.drm_nodes == () for g in host.gpus)


def test_default_variant_has_no_mig(tmp_path: object) -> None:
    plain = build_fake_host(str(tmp_path))
    assert plain.caps_major is None and plain.cap_nodes == {} and plain.mig_instances == ()
    assert sorted(plain.nodes) == ["nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidia1",
                                   "nvidiactl"]
    host = discover(HostRoot(plain.root), use_nvml=False, load_uvm=False)
    assert all(g.mig_devices == () for g in host.gpus)
    assert (host.mig_config_node, host.mig_monitor_node) == (None, None)
