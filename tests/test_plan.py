"""Plan building and rendering on hand-built hosts (no discovery involved)."""
from __future__ import annotations

import json

import pytest

from nvlow.errors import HostError
from nvlow.model import DeviceNode, DriverFile, DriverFiles, Gpu, Host, MigDevice
from nvlow.plan.plan import build_plan, container_env, merge_search_path
from nvlow.plan.render import compose_fragment, docker_args, plan_document, shell_line
from nvlow.plan.select import select_gpus


def node(path: str, major: int, minor: int, kind: str) -> DeviceNode:
    return DeviceNode("/r" + path, path, major, minor, kind)


CTL = node("/dev/nvidiactl", 195, 255, "ctl")
UVM = node("/dev/nvidia-uvm", 510, 0, "uvm")
UVMT = node("/dev/nvidia-uvm-tools", 510, 1, "uvm-tools")
MODESET = node("/dev/nvidia-modeset", 195, 254, "modeset")
CAPS = tuple(node(f"/dev/nvidia-caps/nvidia-cap{n}", 511, n, "cap") for n in (138, 139, 147, 148))
MIGS = (
    MigDevice("MIG-a", 1, 0, 1, 0, "3g.40gb", cap_nodes=CAPS[0:2]),
    MigDevice("MIG-b", 1, 1, 2, 0, "3g.40gb", cap_nodes=CAPS[2:4]),
)
HOST = Host(
    root="/r", driver_version="550.54.15", cuda_version="12.4", source="nvml",
    gpus=(
        Gpu(0, 0, "GPU-a", "0000:07:00.0", "A100", node=node("/dev/nvidia0", 195, 0, "gpu")),
        Gpu(1, 1, "GPU-b", "0000:0f:00.0", "H100", node=node("/dev/nvidia1", 195, 1, "gpu"),
            mig_enabled=True, mig_devices=MIGS),
    ),
    control_nodes=(CTL, UVM, UVMT, MODESET),
)
LIB = "/r/usr/lib/x86_64-linux-gnu/"
FILES = DriverFiles(
    libraries64=(
        DriverFile(LIB + "libcuda.so.550.54.15", "lib64", "compute",
                   ("libcuda.so.550.54.15", "libcuda.so.1", "libcuda.so"), "libcuda.so.1"),
        DriverFile(LIB + "libnvidia-ml.so.550.54.15", "lib64", "utility",
                   ("libnvidia-ml.so.550.54.15", "libnvidia-ml.so.1"), "libnvidia-ml.so.1"),
    ),
    libraries32=(
        DriverFile("/r/usr/lib/i386-linux-gnu/libcuda.so.550.54.15", "lib32", "compute",
                   ("libcuda.so.550.54.15", "libcuda.so.1", "libcuda.so"), "libcuda.so.1"),
    ),
    binaries=(DriverFile("/r/usr/bin/nvidia-smi", "bin", "utility", ("nvidia-smi",)),),
    configs=(DriverFile("/r/etc/OpenCL/vendors/nvidia.icd", "config", "compute", ("nvidia.icd",),
                        path="/etc/OpenCL/vendors/nvidia.icd"),),
    ipcs=(DriverFile("/r/run/nvidia-persistenced/socket", "ipc", "utility", ("socket",),
                     path="/run/nvidia-persistenced/socket"),),
)


def test_bind_plan_args_exact():
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["compute", "utility"], FILES,
                      image_env={"PATH": "/usr/bin:/bin"})
    assert docker_args(plan) == [
        "--device=/r/dev/nvidiactl:/dev/nvidiactl",
        "--device=/r/dev/nvidia-uvm:/dev/nvidia-uvm",
        "--device=/r/dev/nvidia-uvm-tools:/dev/nvidia-uvm-tools",
        "--device=/r/dev/nvidia0:/dev/nvidia0",
        "--volume=/r/usr/bin/nvidia-smi:/usr/local/nvidia/bin/nvidia-smi:ro",
        f"--volume={LIB}libcuda.so.550.54.15:/usr/local/nvidia/lib64/libcuda.so.1:ro",
        f"--volume={LIB}libcuda.so.550.54.15:/usr/local/nvidia/lib64/libcuda.so:ro",
        f"--volume={LIB}libnvidia-ml.so.550.54.15:/usr/local/nvidia/lib64/libnvidia-ml.so.1:ro",
        "--volume=/r/usr/lib/i386-linux-gnu/libcuda.so.550.54.15:/usr/local/nvidia/lib/libcuda.so.1:ro",
        "--volume=/r/usr/lib/i386-linux-gnu/libcuda.so.550.54.15:/usr/local/nvidia/lib/libcuda.so:ro",
        "--volume=/r/etc/OpenCL/vendors/nvidia.icd:/etc/OpenCL/vendors/nvidia.icd:ro",
        "--volume=/r/run/nvidia-persistenced/socket:/run/nvidia-persistenced/socket",
        "--env=LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib",
        "--env=PATH=/usr/bin:/bin:/usr/local/nvidia/bin",
    ]


def test_utility_only_has_no_uvm_and_display_adds_modeset():
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["utility"], None)
    assert [d.container_path for d in plan.devices] == ["/dev/nvidiactl", "/dev/nvidia0"]
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["display", "graphics"], None)
    assert "/dev/nvidia-modeset" in [d.container_path for d in plan.devices]


def test_mig_device_brings_parent_and_caps():
    plan = build_plan(HOST, select_gpus(HOST.gpus, "1:1"), ["utility"], None)
    assert [d.container_path for d in plan.devices] == [
        "/dev/nvidiactl", "/dev/nvidia1",
        "/dev/nvidia-caps/nvidia-cap147", "/dev/nvidia-caps/nvidia-cap148",
    ]


def test_void_injects_nothing_and_none_injects_no_gpu():
    assert docker_args(build_plan(HOST, select_gpus(HOST.gpus, "void"), ["compute"], FILES)) == []
    plan = build_plan(HOST, select_gpus(HOST.gpus, "none"), ["utility"], FILES)
    assert [d.container_path for d in plan.devices] == ["/dev/nvidiactl"]
    assert plan.mounts  # driver files still there, as with NVIDIA_VISIBLE_DEVICES=none


def test_missing_ctl_and_missing_gpu_node_are_clear_errors():
    bare = Host(root="/r", driver_version="1", cuda_version=None, source="procfs", gpus=HOST.gpus)
    with pytest.raises(HostError, match="/r/dev/nvidiactl is missing"):
        build_plan(bare, select_gpus(bare.gpus, "0"), ["utility"], None)
    nonode = Host(root="/", driver_version="1", cuda_version=None, source="procfs",
                  gpus=(Gpu(0, 3, "GPU-x", "0000:01:00.0", "T4"),), control_nodes=(CTL,))
    with pytest.raises(HostError, match="GPU 0 .* has no usable device node /dev/nvidia3"):
        build_plan(nonode, select_gpus(nonode.gpus, "0"), ["utility"], None)


def test_volume_and_plugin_modes():
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["utility"], FILES, mode="volume",
                      volume_path="/var/lib/nvlow/volumes/nvidia_driver/550.54.15")
    assert "--volume=/var/lib/nvlow/volumes/nvidia_driver/550.54.15:/usr/local/nvidia:ro" in docker_args(plan)
    assert not any(a.startswith("--volume=") and "/usr/local/nvidia/lib64" in a for a in docker_args(plan))
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["utility"], FILES, mode="plugin")
    args = docker_args(plan)
    assert "--volume-driver=nvidia-docker" in args
    assert "--volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro" in args


def test_colon_in_path_is_refused():
    files = DriverFiles(binaries=(DriverFile("/a:b/nvidia-smi", "bin", "utility", ("nvidia-smi",)),))
    with pytest.raises(HostError, match="contains ':'"):
        build_plan(HOST, select_gpus(HOST.gpus, "0"), ["utility"], files)


@pytest.mark.parametrize("current,additions,expected", [
    (None, ["/a", "/b"], "/a:/b"),
    ("", ["/a"], "/a"),
    ("/x:/a", ["/a", "/b"], "/x:/a:/b"),
    ("/a:/b", ["/a", "/b"], None),
    ("/x::/y", ["/a"], "/x:/y:/a"),
])
def test_merge_search_path(current, additions, expected):
    assert merge_search_path(current, additions) == expected


@pytest.mark.parametrize("image_env,explicit,expected", [
    # CUDA images already have both: add nothing
    ({"PATH": "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/bin",
      "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64"}, {}, []),
    # busybox-like image with only PATH
    ({"PATH": "/bin"}, {}, [("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"),
                            ("PATH", "/bin:/usr/local/nvidia/bin")]),
    # image without PATH gets the default PATH plus ours
    ({}, {}, [("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"),
              ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/nvidia/bin")]),
    # the user's own -e wins: never touched
    ({"PATH": "/bin"}, {"PATH": "/mine", "LD_LIBRARY_PATH": "/x"}, []),
    # image unknown: PATH left alone
    (None, {}, [("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64:/usr/local/nvidia/lib")]),
])
def test_container_env(image_env, explicit, expected):
    env, _warnings = container_env(image_env, explicit, "devices")
    assert env == expected


@pytest.mark.parametrize("image_env,explicit,expected", [
    ({"PATH": "/bin", "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"}, {},
     [("PATH", "/bin:/usr/local/nvidia/bin"), ("VDPAU_DRIVER_PATH", "/usr/local/nvidia/lib64")]),
    (None, {}, [("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"),
                ("VDPAU_DRIVER_PATH", "/usr/local/nvidia/lib64")]),
    # the image's or the user's own value is kept
    ({"PATH": "/bin", "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/nvidia/lib",
      "VDPAU_DRIVER_PATH": "/opt/vdpau"}, {}, [("PATH", "/bin:/usr/local/nvidia/bin")]),
    ({"PATH": "/bin", "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"},
     {"VDPAU_DRIVER_PATH": "/mine"}, [("PATH", "/bin:/usr/local/nvidia/bin")]),
])
def test_container_env_names_the_vdpau_driver_directory(image_env, explicit, expected):
    env, _warnings = container_env(image_env, explicit, "devices", vdpau_dir="/usr/local/nvidia/lib64")
    assert env == expected


VDPAU = DriverFile(LIB + "vdpau/libvdpau_nvidia.so.550.54.15", "lib64", "video",
                   ("libvdpau_nvidia.so.550.54.15", "libvdpau_nvidia.so.1"), "libvdpau_nvidia.so.1")


@pytest.mark.parametrize("mode", ["bind", "volume", "plugin"])
def test_the_vdpau_driver_is_found_through_vdpau_driver_path(mode):
    """libvdpau looks for the driver in $VDPAU_DRIVER_PATH, then its own <libdir>/vdpau, never on
    LD_LIBRARY_PATH under the driver's SONAME: under /usr/local/nvidia only the variable finds it."""
    files = DriverFiles(libraries64=FILES.libraries64 + (VDPAU,))
    volume = "/var/lib/nvlow/volumes/nvidia_driver/550.54.15" if mode == "volume" else None
    with_video = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["video"], files, mode=mode, volume_path=volume)
    assert ("VDPAU_DRIVER_PATH", "/usr/local/nvidia/lib64") in with_video.env
    if mode == "bind":
        assert "--volume=/r/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.550.54.15:" \
               "/usr/local/nvidia/lib64/libvdpau_nvidia.so.1:ro" in docker_args(with_video)
    without = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["compute"], FILES, mode=mode, volume_path=volume)
    assert "VDPAU_DRIVER_PATH" not in dict(without.env)
    void = build_plan(HOST, select_gpus(HOST.gpus, "void"), ["video"], files, mode=mode, volume_path=volume)
    assert void.env == ()


@pytest.mark.parametrize("skipped,expected", [
    ((), None),
    ((("/l/libcuda.so.1.2", "stale copy from driver 1.1 (running 1.2)"),), None),
    ((("/l/libcuda.so.1.2", "not a readable ELF file"), ("/l/libnvidia-ml.so.1", "listed in ld.so.cache but not a file")),
     "driver files left out, damaged or gone: /l/libcuda.so.1.2 (not a readable ELF file), /l/libnvidia-ml.so.1 "
     "(listed in ld.so.cache but not a file); the container will lack them: reinstall the driver (a partial "
     "install or a full disk leaves truncated files) and run ldconfig"),
    (tuple((f"/l/lib{n}.so.1.2", "not a readable ELF file") for n in "abcde"),
     "driver files left out, damaged or gone: /l/liba.so.1.2 (not a readable ELF file), /l/libb.so.1.2 (not a "
     "readable ELF file), /l/libc.so.1.2 (not a readable ELF file) and 2 more; the container will lack them: "
     "reinstall the driver (a partial install or a full disk leaves truncated files) and run ldconfig"),
])
def test_damaged_driver_files_are_one_warning(skipped, expected):
    files = DriverFiles(libraries64=FILES.libraries64, skipped=skipped)
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0"), ["compute"], files, image_env={})
    assert [w for w in plan.warnings if "damaged" in w] == ([expected] if expected else [])


def test_json_document_and_compose():
    plan = build_plan(HOST, select_gpus(HOST.gpus, "0,1:0"), ["utility"], FILES, image_env={"PATH": "/bin"})
    doc = plan_document(plan, HOST)
    assert doc["schema_version"] == 1
    assert doc["driver_version"] == "550.54.15" and doc["cuda_version"] == "12.4"
    assert [g["uuid"] for g in doc["gpus"]] == ["GPU-a", "MIG-a"]
    assert doc["devices"][0] == {"host_path": "/r/dev/nvidiactl", "container_path": "/dev/nvidiactl"}
    assert doc["mounts"][0] == {"host_path": "/r/usr/bin/nvidia-smi",
                                "container_path": "/usr/local/nvidia/bin/nvidia-smi",
                                "read_only": True, "kind": "bind"}
    assert doc["env"]["PATH"] == "/bin:/usr/local/nvidia/bin"
    assert doc["args"] == docker_args(plan)
    json.dumps(doc)
    text = compose_fragment(plan)
    assert '  - "/r/dev/nvidiactl:/dev/nvidiactl"' in text
    assert '    target: "/usr/local/nvidia/bin/nvidia-smi"' in text
    assert '  PATH: "/bin:/usr/local/nvidia/bin"' in text


def test_shell_line_quotes():
    assert shell_line(["--env=A=b c", "--device=/dev/x"]) == "'--env=A=b c' --device=/dev/x"
