"""WSL2: detection, the toolkit's WSL-mode file set, args/cdi on the ``wsl2`` preset, hostile trees.

The table tests port the cases of the NVIDIA Container Toolkit's WSL code
(pkg/nvcdi/driver-wsl_test.go: the nvidia-smi link; pkg/nvcdi/driver-wsl.go and
internal/discover/ldconfig.go: store choice, extra files, ldcache folders), docs/wsl2.md.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from nvlow.errors import HostError
from nvlow.host.discover import discover
from nvlow.host.root import HostRoot, file_node_reader
from nvlow.host.wsl import (REQUIRED_DRIVER_STORE_FILES, SMI_LINK, additional_store_files, is_lib_name,
                            is_wsl_layout, ldcache_folders, misc_minor, pick_driver_store, smi_target)
from nvlow.plan.decide import plan_for
from nvlow.plan.request import PlanRequest
from nvlow.simulate.hosttree import simulated_host
from nvlow.simulate.wsltree import DXG_MINOR, INTEL_STORE, NVIDIA_STORE

# -- ported table tests -----------------------------------------------------------------------------

# TestNvidiaSMISymlinkHook: (description, container paths of the mounts, link target or None)
SMI_CASES = [
    ("no mounts returns no hooks", [], None),
    ("no nvidia-smi returns no hooks", ["/not-nvidia-smi", "/also-not-nvidia-smi"], None),
    ("nvidia-smi must be in path", ["/not-nvidia-smi", "/also-not-nvidia-smi"], None),
    ("nvidia-smi returns hook", ["nvidia-smi"], "nvidia-smi"),
    ("checks basename", ["/some/path/nvidia-smi", "/nvidia-smi/but-not"], "/some/path/nvidia-smi"),
    ("returns first match", ["/some/path/nvidia-smi", "/another/path/nvidia-smi"], "/some/path/nvidia-smi"),
]


@pytest.mark.parametrize("description,paths,expected", SMI_CASES, ids=[c[0] for c in SMI_CASES])
def test_smi_link_target(description, paths, expected):
    assert smi_target(paths) == expected


LIB_NAMES = [
    ("libcuda.so.1.1", True), ("libdxcore.so", True), ("libcuda_loader.so", True),
    ("libnvidia-ml.so.1", True), ("lib.so", False), ("libfoo.sox", False), ("nvcubins.bin", False),
    ("nvidia-smi", False), ("/usr/lib/wsl/lib/libdxcore.so", True), ("libfoo.so.bak", True),
]


@pytest.mark.parametrize("name,expected", LIB_NAMES)
def test_is_lib_name(name, expected):
    assert is_lib_name(name) is expected


@pytest.mark.parametrize("stores,expected", [
    ([], None),
    ([("/d/iigd", ["libigd12umd64.so"])], None),
    ([("/d/iigd", ["igdml64.dll"]), ("/d/nv", ["libcuda.so.1.1"])], "/d/nv"),
    ([("/d/nv1", ["libcuda.so.1.1"]), ("/d/nv2", ["libcuda.so.1.1"])], "/d/nv1"),  # the first, as count 1
    ([("/d/nv", ["libcuda.so.1", "libcuda.so"])], None),  # the stub names do not mark a store
])
def test_pick_driver_store(stores, expected):
    assert pick_driver_store(stores) == expected


def test_additional_files_exclude_required_and_group_by_pattern():
    names = list(REQUIRED_DRIVER_STORE_FILES) + ["nvlddmkm.sys", "zz.dll", "libzz.so.1", "a.bin", "libaa.so",
                                                  "nv_dispi.inf"]
    assert additional_store_files(names) == ["libaa.so", "libzz.so.1", "a.bin", "zz.dll"]


def test_ldcache_folders_are_the_library_directories_in_order():
    paths = ["/s/libcuda.so.1.1", "/s/nvcubins.bin", "/s/nvidia-smi", "/l/libdxcore.so", "/s/libnvdxgdmal.so.1"]
    assert ldcache_folders(paths) == ("/s", "/l")
    assert ldcache_folders(["/s/nvidia-smi"]) == ()


@pytest.mark.parametrize("dxg,wsl_dir,procfs,expected", [
    (True, True, False, True), (True, False, False, False), (False, True, False, False), (True, True, True, False),
])
def test_detection(dxg, wsl_dir, procfs, expected):
    assert is_wsl_layout(dxg, wsl_dir, procfs) is expected


def test_misc_minor():
    assert misc_minor("183 hw_random\n125 dxg\n") == 125
    assert misc_minor("183 hw_random\n") is None
    assert misc_minor("x dxg\n") is None


# -- the wsl2 preset through the pipeline ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    env = {"NVLOW_CACHE_DIR": str(tmp_path_factory.mktemp("nvlow-cache"))}
    root, opener = simulated_host("wsl2", env)
    return root, opener, env


def test_wsl2_host(sim):
    root, opener, _ = sim
    host = discover(root, library_opener=opener)
    assert host.wsl is not None and host.wsl.usable
    assert (host.wsl.dxg.container_path, host.wsl.dxg.major, host.wsl.dxg.minor) == ("/dev/dxg", 10, DXG_MINOR)
    assert host.wsl.driver_store == NVIDIA_STORE  # not the Intel store
    assert host.wsl.library_dirs == (NVIDIA_STORE, "/usr/lib/wsl/lib")
    assert host.control_nodes == () and host.warnings == ()
    assert (host.driver_version, host.source, len(host.gpus), host.gpus[0].minor) == ("560.94", "nvml", 1, None)
    paths = [f.path for f in host.wsl.files.all()]
    assert "/usr/lib/wsl/lib/libdxcore.so" in paths
    assert all(f"{NVIDIA_STORE}/{n}" in paths for n in REQUIRED_DRIVER_STORE_FILES)
    assert f"{NVIDIA_STORE}/nvcuda64.dll" in paths
    assert not any(p.endswith((".sys", ".inf", "lib.so.d")) or p.startswith(INTEL_STORE) for p in paths)
    cuda = next(f for f in host.wsl.files.libraries64 if f.path == f"{NVIDIA_STORE}/libcuda.so.1.1")
    assert cuda.names == ("libcuda.so.1.1", "libcuda.so.1")
    assert host.to_dict()["wsl"]["driver_store"] == NVIDIA_STORE


def test_wsl2_plan(sim):
    root, opener, _ = sim
    host = discover(root, library_opener=opener)
    plan = plan_for(host, PlanRequest(gpus="all", image_env=(("PATH", "/usr/bin"), ("LD_LIBRARY_PATH", "/opt/x"))))
    assert [d.container_path for d in plan.devices] == ["/dev/dxg"]
    binds = {m.container_path: m.host_path for m in plan.mounts}
    assert all(m.read_only for m in plan.mounts)
    assert binds[f"{NVIDIA_STORE}/libcuda.so.1"] == binds[f"{NVIDIA_STORE}/libcuda.so.1.1"]  # the ldconfig link
    assert binds[SMI_LINK] == binds[f"{NVIDIA_STORE}/nvidia-smi"]
    assert binds["/usr/lib/wsl/lib/libdxcore.so"].endswith("/usr/lib/wsl/lib/libdxcore.so")
    assert plan.env_dict() == {"LD_LIBRARY_PATH": f"/opt/x:{NVIDIA_STORE}:/usr/lib/wsl/lib"}  # PATH untouched
    assert plan.warnings == ()


def test_wsl2_without_nvml_has_one_gpu_for_all(sim):
    root, opener, _ = sim
    host = discover(root, library_opener=opener, use_nvml=False)
    assert [g.index for g in host.gpus] == [0] and host.driver_version is None and host.source == "wsl"
    plan = plan_for(host, PlanRequest(gpus="0"))
    assert [d.container_path for d in plan.devices] == ["/dev/dxg"]


def test_wsl2_subset_selection_warns(sim):
    from nvlow.frozen import replace

    root, opener, _ = sim
    host = discover(root, library_opener=opener)
    two = replace(host, gpus=host.gpus + (replace(host.gpus[0], index=1, uuid="GPU-other"),))
    plan = plan_for(two, PlanRequest(gpus="1"))
    assert any("sees all 2 GPUs" in w for w in plan.warnings)


def test_wsl2_volume_mode_is_refused(sim):
    from nvlow.errors import UsageError

    root, opener, _ = sim
    host = discover(root, library_opener=opener)
    with pytest.raises(UsageError, match="not available on WSL2"):
        plan_for(host, PlanRequest(gpus="all", driver_files="plugin"))


def test_wsl2_cdi_spec(sim):
    from nvlow.cdi.spec import build_spec
    from nvlow.cdi.rules import validate_document

    root, opener, _ = sim
    host = discover(root, library_opener=opener)
    spec = build_spec(host, host.wsl.files, capabilities=("compute", "utility"), arch="x86-64")
    doc = spec.document
    assert [d["name"] for d in doc["devices"]] == ["all"]
    assert [n["path"] for n in doc["devices"][0]["containerEdits"]["deviceNodes"]] == ["/dev/dxg"]
    assert "deviceNodes" not in doc["containerEdits"] and doc["containerEdits"]["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    paths = [m["containerPath"] for m in doc["containerEdits"]["mounts"]]
    assert len(paths) == len(set(paths))
    for p in (f"{NVIDIA_STORE}/libcuda.so.1.1", f"{NVIDIA_STORE}/libcuda.so.1", SMI_LINK,
              "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libdxcore.so"):
        assert p in paths
    assert validate_document(doc) == []


# -- hostile trees ----------------------------------------------------------------------------------------

@pytest.fixture
def tree(sim, tmp_path):
    root, _, _ = sim
    dest = str(tmp_path / "root")
    shutil.copytree(root.path, dest, symlinks=True)
    return dest


def _host(path):
    return discover(HostRoot(path, node_reader=file_node_reader), use_nvml=False)


def test_dxg_regular_file(tree):
    with open(os.path.join(tree, "dev/dxg"), "w") as fh:
        fh.write("not a device\n")
    host = _host(tree)
    assert host.wsl is not None and not host.wsl.usable
    assert any("dev/dxg is not a character device" in w for w in host.warnings)
    with pytest.raises(HostError, match="no GPU container can work without it"):
        plan_for(host, PlanRequest(gpus="all"))


def test_dxg_symlink_out_of_the_root(tree):
    os.unlink(os.path.join(tree, "dev/dxg"))
    os.symlink("/dev/null", os.path.join(tree, "dev/dxg"))
    host = _host(tree)
    assert any("is a symbolic link, not a character device" in w for w in host.warnings)
    with pytest.raises(HostError):
        plan_for(host, PlanRequest(gpus="all"))


def test_dxg_wrong_minor(tree):
    with open(os.path.join(tree, "dev/dxg"), "w") as fh:
        fh.write(f"nvlow-simulated-char 10:{DXG_MINOR + 1}\n")
    host = _host(tree)
    assert any("gives dxg the minor" in w for w in host.warnings)


def test_truncated_libdxcore(tree):
    path = os.path.join(tree, "usr/lib/wsl/lib/libdxcore.so")
    with open(path, "rb") as fh:
        head = fh.read(40)
    with open(path, "wb") as fh:
        fh.write(head)
    host = _host(tree)
    assert [w for w in host.warnings if "libdxcore.so" in w and "not used" in w]
    assert all("\n" not in w for w in host.warnings)
    assert not any(f.path == "/usr/lib/wsl/lib/libdxcore.so" for f in host.wsl.files.all())
    plan = plan_for(host, PlanRequest(gpus="all"))
    assert "/usr/lib/wsl/lib/libdxcore.so" not in [m.container_path for m in plan.mounts]


def test_store_library_linked_out_of_the_root(tree):
    target = os.path.join(tree, NVIDIA_STORE.lstrip("/"), "libnvdxgdmal.so.1")
    os.unlink(target)
    os.symlink("/../../../../etc/passwd", target)  # absolute links resolve inside the root: a missing file
    os.unlink(os.path.join(tree, NVIDIA_STORE.lstrip("/"), "libcuda_loader.so"))
    os.symlink("../" * 12 + "etc/hostname", os.path.join(tree, NVIDIA_STORE.lstrip("/"), "libcuda_loader.so"))
    host = _host(tree)
    used = [f.host_path for f in host.wsl.files.all()]
    assert all(p.startswith(os.path.realpath(tree)) for p in used)
    assert not any(p.endswith(("libnvdxgdmal.so.1", "libcuda_loader.so")) for p in used)


def test_no_nvidia_driver_store(tree):
    shutil.rmtree(os.path.join(tree, NVIDIA_STORE.lstrip("/")))
    host = _host(tree)
    assert any("holds libcuda.so.1.1" in w for w in host.warnings)
    with pytest.raises(HostError, match="no NVIDIA driver store"):
        plan_for(host, PlanRequest(gpus="all"))


def test_a_linux_host_with_dxg_but_a_kernel_module_is_not_wsl(sim, tmp_path):
    root, _, _ = sim
    dest = str(tmp_path / "r")
    shutil.copytree(root.path, dest, symlinks=True)
    os.makedirs(os.path.join(dest, "proc/driver/nvidia"))
    from nvlow.errors import DriverNotLoaded

    with pytest.raises(DriverNotLoaded):  # the Linux scanner runs: an empty /proc/driver/nvidia has no version
        discover(HostRoot(dest, node_reader=file_node_reader), use_nvml=False)


# -- the command line ----------------------------------------------------------------------------------

def _cli(env, *args):
    run_env = dict(os.environ)
    run_env.update(env)
    for key in ("NVIDIA_VISIBLE_DEVICES", "NV_GPU", "NVIDIA_DRIVER_CAPABILITIES", "NVLOW_SIMULATE"):
        run_env.pop(key, None)
    run_env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return subprocess.run([sys.executable, "-m", "nvlow", *args], env=run_env, capture_output=True, text=True,
                          timeout=60)


def test_cli_hostile_root_gives_one_line(tree, sim):
    _, _, env = sim
    # under --root the real node reader sees the simulated /dev/dxg file: not a character device
    res = _cli(env, "args", "--root", tree)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.startswith("nvlow: error:")]) == 1
    assert "/dev/dxg" in res.stderr
    res = _cli(env, "info", "--root", tree, "--json")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert json.loads(res.stdout)["wsl"]["dxg"] is None


def test_cli_exec_dry_run(sim):
    _, _, env = sim
    res = _cli(env, "exec", "--simulate", "wsl2", "--dry-run", "--json", "--", "docker", "run", "--gpus", "all", "img")
    assert res.returncode == 0, res.stderr
    argv = json.loads(res.stdout)["argv"]
    assert [a.rsplit(":", 1)[1] for a in argv if a.startswith("--device=")] == ["/dev/dxg"]
    assert any(a.endswith(":/usr/bin/nvidia-smi:ro") for a in argv)


def test_simulated_nvidia_smi_runs(sim):
    import platform

    from nvlow.simulate.drivertree import binary_line

    root, _, _ = sim
    for path in (f"{NVIDIA_STORE}/nvidia-smi", "/usr/lib/wsl/lib/nvidia-smi"):
        real = root.host(path)
        assert os.access(real, os.X_OK)
        if platform.machine() == "x86_64":
            proc = subprocess.run([real, "-L"], capture_output=True, timeout=30)
            assert proc.stdout.decode() == binary_line("nvidia-smi", "wsl2", "560.94")
