"""CDI spec building: device names, nodes, mounts, env, version, golden documents."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import pytest

from nvlow.cdi import layout
from nvlow.cdi.spec import (build_spec, check_kind, device_names, parse_naming_strategies, render_spec,
                            spec_env)
from nvlow.cdi.validate import validate_document
from nvlow.cdi.yaml import load_yaml
from nvlow.errors import HostError, UsageError
from nvlow.model import DeviceNode, DriverFile, DriverFiles, Gpu, Host, MigDevice

V = "550.54.15"
LIB = "/usr/lib/x86_64-linux-gnu"


@pytest.fixture(autouse=True)
def x86_64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The specs below are those of an x86-64 host, whatever machine runs the tests."""
    monkeypatch.setattr(layout, "native_arch", lambda: "x86-64")


def make_host(root: str = "/", *, mig: bool = True, uuids: bool = True, gpu1_node: bool = True) -> Host:
    """Two GPUs; GPU 0 in MIG mode with one MIG device (caps 237:12/13); uvm on major 510."""
    pre = "" if root == "/" else root

    def node(path: str, major: int, minor: int, kind: str) -> DeviceNode:
        return DeviceNode(pre + path, path, major, minor, kind)

    migs: Tuple[MigDevice, ...] = ()
    if mig:
        migs = (MigDevice("MIG-aaaa-0000" if uuids else None, 0, 0, 1, 0,
                          cap_nodes=(node("/dev/nvidia-caps/nvidia-cap12", 237, 12, "cap"),
                                     node("/dev/nvidia-caps/nvidia-cap13", 237, 13, "cap"))),)
    g0 = Gpu(0, 0, "GPU-0000" if uuids else None, "0000:07:00.0", "H100", mig_enabled=mig, mig_devices=migs,
             node=node("/dev/nvidia0", 195, 0, "gpu"))
    g1 = Gpu(1, 1, "GPU-1111" if uuids else None, "0000:0f:00.0", "H100",
             node=node("/dev/nvidia1", 195, 1, "gpu") if gpu1_node else None)
    controls = (node("/dev/nvidiactl", 195, 255, "ctl"), node("/dev/nvidia-uvm", 510, 0, "uvm"),
                node("/dev/nvidia-uvm-tools", 510, 1, "uvm-tools"), node("/dev/nvidia-modeset", 195, 254, "modeset"))
    return Host(root, V, "12.4", "procfs", (g0, g1), control_nodes=controls)


def make_files(root: str = "/") -> DriverFiles:
    pre = "" if root == "/" else root
    return DriverFiles(
        libraries64=(DriverFile(f"{pre}{LIB}/libcuda.so.{V}", "lib64", "compute",
                                (f"libcuda.so.{V}", "libcuda.so.1", "libcuda.so"), "libcuda.so.1"),),
        binaries=(DriverFile(f"{pre}/usr/bin/nvidia-smi", "bin", "utility", ("nvidia-smi",)),),
        ipcs=(DriverFile(f"{pre}/run/nvidia-persistenced/socket", "ipc", "utility", ("socket",),
                         path="/run/nvidia-persistenced/socket"),),
    )


RO = ["ro", "nosuid", "nodev", "bind"]
N0 = {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}
N1 = {"path": "/dev/nvidia1", "type": "c", "major": 195, "minor": 1}
CAP12 = {"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 237, "minor": 12}
CAP13 = {"path": "/dev/nvidia-caps/nvidia-cap13", "type": "c", "major": 237, "minor": 13}

#: the spec-wide environment: no PATH, no LD_LIBRARY_PATH (CDI would replace the image's values)
ENV = ["NVIDIA_VISIBLE_DEVICES=void"]
SOCKET_OPTIONS = ["nosuid", "nodev", "bind"]


def lib_mount(name: str, lib_dir: str, host: str = f"{LIB}/libcuda.so.{V}") -> Dict[str, Any]:
    return {"hostPath": host, "containerPath": f"{lib_dir}/{name}", "options": RO}


GOLDEN: Dict[str, Any] = {
    "cdiVersion": "0.5.0",
    "kind": "nvidia.com/gpu",
    "devices": [
        # GPU 0 is in MIG mode: no "0"/"GPU-0000" device, only its MIG device
        {"name": "0:0", "containerEdits": {"deviceNodes": [N0, CAP12, CAP13]}},
        {"name": "MIG-aaaa-0000", "containerEdits": {"deviceNodes": [N0, CAP12, CAP13]}},
        {"name": "1", "containerEdits": {"deviceNodes": [N1]}},
        {"name": "GPU-1111", "containerEdits": {"deviceNodes": [N1]}},
        {"name": "all", "containerEdits": {"deviceNodes": [N0, CAP12, CAP13, N1]}},
    ],
    "containerEdits": {
        "env": ENV,
        "deviceNodes": [
            {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255},
            {"path": "/dev/nvidia-uvm", "type": "c", "major": 510, "minor": 0},
            {"path": "/dev/nvidia-uvm-tools", "type": "c", "major": 510, "minor": 1},
        ],
        "mounts": [
            {"hostPath": "/usr/bin/nvidia-smi", "containerPath": "/usr/bin/nvidia-smi", "options": RO},
            lib_mount("libcuda.so.1", LIB), lib_mount("libcuda.so", LIB),
            lib_mount("libcuda.so.1", "/usr/lib64"), lib_mount("libcuda.so", "/usr/lib64"),
            {"hostPath": "/run/nvidia-persistenced/socket", "containerPath": "/run/nvidia-persistenced/socket",
             "options": SOCKET_OPTIONS},
        ],
    },
}


def test_golden_document() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute", "utility"))
    assert spec.document == GOLDEN
    assert spec.warnings == ()
    assert validate_document(spec.document) == []
    assert spec.qualified_names()[:3] == ["nvidia.com/gpu=0:0", "nvidia.com/gpu=MIG-aaaa-0000", "nvidia.com/gpu=1"]


def test_golden_json_and_yaml_text() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute", "utility"))
    text = render_spec(spec, "json")
    assert text == json.dumps(GOLDEN, indent=2) + "\n"
    yaml_text = render_spec(spec, "yaml", driver_version=V)
    assert yaml_text.startswith("---\n# Generated by nvlow ")
    assert f"for NVIDIA driver {V}; do not edit." in yaml_text.splitlines()[1]
    assert '\ncdiVersion: "0.5.0"\nkind: nvidia.com/gpu\ndevices:\n- name: "0:0"\n  containerEdits:\n' in yaml_text
    assert '\n- name: "1"\n' in yaml_text
    assert "PATH=" not in yaml_text
    assert load_yaml(yaml_text) == GOLDEN


def test_root_prefixed_host_paths() -> None:
    spec = build_spec(make_host("/srv/fake"), make_files("/srv/fake"), capabilities=("compute",))
    doc = spec.document
    assert doc["devices"][0]["containerEdits"]["deviceNodes"][0] == {
        "path": "/dev/nvidia0", "hostPath": "/srv/fake/dev/nvidia0", "type": "c", "major": 195, "minor": 0}
    assert doc["containerEdits"]["deviceNodes"][0]["hostPath"] == "/srv/fake/dev/nvidiactl"
    assert doc["containerEdits"]["mounts"][1] == lib_mount("libcuda.so.1", LIB, f"/srv/fake{LIB}/libcuda.so.{V}")
    assert doc["cdiVersion"] == "0.5.0"


@pytest.mark.parametrize("caps, nodes", [
    (("utility",), ["/dev/nvidiactl"]),
    (("compute",), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]),
    (("video",), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]),
    (("display",), ["/dev/nvidiactl", "/dev/nvidia-modeset"]),
    (("compute", "display"), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]),
])
def test_control_nodes_follow_capabilities(caps: Tuple[str, ...], nodes: List[str]) -> None:
    spec = build_spec(make_host(), None, capabilities=caps)
    assert [n["path"] for n in spec.document["containerEdits"]["deviceNodes"]] == nodes
    assert "mounts" not in spec.document["containerEdits"]


@pytest.mark.parametrize("strategies, names", [
    (("index",), ["0:0", "1", "all"]),
    (("uuid",), ["MIG-aaaa-0000", "GPU-1111", "all"]),
    (("type-index",), ["mig0:0", "gpu1", "all"]),
    (("type-index", "index"), ["mig0:0", "0:0", "gpu1", "1", "all"]),
])
def test_naming_strategies(strategies: Tuple[str, ...], names: List[str]) -> None:
    spec = build_spec(make_host(), None, capabilities=("compute",), strategies=strategies)
    assert [d["name"] for d in spec.document["devices"]] == names


def test_version_is_the_minimum_the_content_needs() -> None:
    # uuid/type-index names and no hostPath: the 0.3.0 baseline is enough
    assert build_spec(make_host(), None, capabilities=(), strategies=("uuid",)).document["cdiVersion"] == "0.3.0"
    assert build_spec(make_host(), None, capabilities=(), strategies=("type-index",)).document["cdiVersion"] == "0.3.0"
    # a hostPath (root prefix) needs 0.5.0 even without numeric names
    spec = build_spec(make_host("/srv/fake"), None, capabilities=(), strategies=("uuid",))
    assert spec.document["cdiVersion"] == "0.5.0"


def test_no_all_device_and_custom_kind() -> None:
    spec = build_spec(make_host(mig=False), None, capabilities=(), vendor="example.org", class_="accel",
                      strategies=("index",), include_all=False)
    assert spec.kind == "example.org/accel"
    assert [d["name"] for d in spec.document["devices"]] == ["0", "1"]


def test_gpu_without_node_is_left_out_with_a_warning() -> None:
    spec = build_spec(make_host(gpu1_node=False, mig=False), None, capabilities=(), strategies=("index",))
    assert [d["name"] for d in spec.document["devices"]] == ["0", "all"]
    assert spec.warnings == ("GPU 1 left out of the CDI spec: GPU 1 (0000:0f:00.0) has no usable device node "
                             "/dev/nvidia1",)


def test_missing_uuids_are_skipped() -> None:
    spec = build_spec(make_host(uuids=False), None, capabilities=())
    assert [d["name"] for d in spec.document["devices"]] == ["0:0", "1", "all"]


def test_invalid_uuid_name_is_skipped_with_a_warning() -> None:
    host = make_host(mig=False)
    bad = host.gpus[1].__class__(**{**host.gpus[1].__dict__, "uuid": "GPU-x/y"})
    host = host.__class__(**{**host.__dict__, "gpus": (host.gpus[0], bad)})
    spec = build_spec(host, None, capabilities=())
    assert [d["name"] for d in spec.document["devices"]] == ["0", "GPU-0000", "1", "all"]
    assert spec.warnings == ("GPU 1: name 'GPU-x/y' is not a valid CDI device name; skipped",)


def test_duplicate_names_are_skipped_with_a_warning() -> None:
    host = make_host(mig=False)
    dup = host.gpus[1].__class__(**{**host.gpus[1].__dict__, "uuid": "GPU-0000"})
    host = host.__class__(**{**host.__dict__, "gpus": (host.gpus[0], dup)})
    spec = build_spec(host, None, capabilities=())
    assert [d["name"] for d in spec.document["devices"]] == ["0", "GPU-0000", "1", "all"]
    assert spec.warnings == ("GPU 1: device name 'GPU-0000' already used by GPU 0; skipped",)


def test_host_without_usable_gpus_is_an_error() -> None:
    host = make_host(mig=False)
    host = host.__class__(**{**host.__dict__, "gpus": ()})
    with pytest.raises(HostError, match="no GPU with a usable device node"):
        build_spec(host, None, capabilities=())


def test_missing_nvidiactl_is_an_error() -> None:
    host = make_host()
    host = host.__class__(**{**host.__dict__, "control_nodes": host.control_nodes[1:]})
    with pytest.raises(HostError, match="/dev/nvidiactl is missing"):
        build_spec(host, None, capabilities=())


VOLUME = "/var/lib/nvlow/volumes/nvidia_driver/" + V


def test_volume_mode_binds_the_volume_files() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute",), driver_files="volume",
                      volume_path=VOLUME, exists=lambda path: True)
    vlib = f"{VOLUME}/lib64/libcuda.so.{V}"
    assert spec.document["containerEdits"]["mounts"] == [
        # images made for nvidia-docker 1.0 find it where their own LD_LIBRARY_PATH points ...
        {"hostPath": VOLUME, "containerPath": "/usr/local/nvidia", "options": RO},
        # ... and every other image finds its copies where its loader and PATH look
        {"hostPath": f"{VOLUME}/bin/nvidia-smi", "containerPath": "/usr/bin/nvidia-smi", "options": RO},
        lib_mount("libcuda.so.1", LIB, vlib), lib_mount("libcuda.so", LIB, vlib),
        lib_mount("libcuda.so.1", "/usr/lib64", vlib), lib_mount("libcuda.so", "/usr/lib64", vlib),
        {"hostPath": "/run/nvidia-persistenced/socket", "containerPath": "/run/nvidia-persistenced/socket",
         "options": SOCKET_OPTIONS},
    ]
    assert spec.document["containerEdits"]["env"] == ENV
    assert spec.warnings == ()


def test_volume_mode_falls_back_to_host_files_the_volume_lacks() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute",), driver_files="volume",
                      volume_path=VOLUME, exists=lambda path: "/bin/" in path)
    mounts = spec.document["containerEdits"]["mounts"]
    assert mounts[1]["hostPath"] == f"{VOLUME}/bin/nvidia-smi"
    assert mounts[2] == lib_mount("libcuda.so.1", LIB)
    assert spec.warnings == (f"libcuda.so.{V} is not in the driver volume {VOLUME} (built earlier for other "
                             "capabilities): bound from the host; remove the volume directory to have it rebuilt",)


def test_volume_mode_errors() -> None:
    with pytest.raises(HostError, match="needs a built driver volume"):
        build_spec(make_host(), make_files(), capabilities=(), driver_files="volume")
    with pytest.raises(UsageError, match="invalid --driver-files 'plugin'"):
        build_spec(make_host(), make_files(), capabilities=(), driver_files="plugin")


# ---------------------------------------------------------------- MIG: no whole-GPU device in MIG mode

def _gpu(index: int, *, mig_enabled: bool, migs: int) -> Gpu:
    def cap(minor: int) -> DeviceNode:
        return DeviceNode(f"/dev/nvidia-caps/nvidia-cap{minor}", f"/dev/nvidia-caps/nvidia-cap{minor}", 237, minor,
                          "cap")

    devices = tuple(MigDevice(f"MIG-{index}{i}", index, i, i + 1, 0,
                              cap_nodes=(cap(100 * index + 2 * i), cap(100 * index + 2 * i + 1)))
                    for i in range(migs))
    return Gpu(index, index, f"GPU-{index}", None, "A100", mig_enabled=mig_enabled, mig_devices=devices,
               node=DeviceNode(f"/dev/nvidia{index}", f"/dev/nvidia{index}", 195, index, "gpu"))


def _host_of(*gpus: Gpu) -> Host:
    ctl = DeviceNode("/dev/nvidiactl", "/dev/nvidiactl", 195, 255, "ctl")
    return Host("/", V, "12.4", "procfs", gpus, control_nodes=(ctl,))


# (id, GPU 0's MIG mode and MIG device count, names, warnings); GPU 1 is a plain GPU in every case
MIG_RULES = [
    ("plain GPU is a device", False, 0, ["0", "GPU-0", "1", "GPU-1", "all"], ()),
    ("MIG mode: only the MIG devices", True, 2, ["0:0", "MIG-00", "0:1", "MIG-01", "1", "GPU-1", "all"], ()),
    ("MIG mode without MIG devices", True, 0, ["1", "GPU-1", "all"],
     ("GPU 0 is in MIG mode but has no MIG devices: only the 'all' device holds it",)),
]


@pytest.mark.parametrize("rule", MIG_RULES, ids=[r[0] for r in MIG_RULES])
def test_mig_mode_gpu_is_no_device_of_its_own(rule: Any) -> None:
    _id, mig_enabled, migs, names, warnings = rule
    spec = build_spec(_host_of(_gpu(0, mig_enabled=mig_enabled, migs=migs), _gpu(1, mig_enabled=False, migs=0)),
                      None, capabilities=())
    devices = {d["name"]: [n["path"] for n in d["containerEdits"]["deviceNodes"]] for d in spec.document["devices"]}
    assert list(devices) == names
    assert spec.warnings == warnings
    caps = [f"/dev/nvidia-caps/nvidia-cap{m}" for m in range(2 * migs)]
    # "all" keeps every GPU node and every MIG device's access nodes
    assert devices["all"] == ["/dev/nvidia0", *caps, "/dev/nvidia1"]
    for i in range(migs):
        assert devices[f"0:{i}"] == ["/dev/nvidia0", *caps[2 * i:2 * i + 2]]
    assert validate_document(spec.document) == []


def test_only_mig_gpus_without_mig_devices_is_an_error() -> None:
    with pytest.raises(HostError, match="GPU 0 is in MIG mode but has no MIG devices") as err:
        build_spec(_host_of(_gpu(0, mig_enabled=True, migs=0)), None, capabilities=())
    assert "nvidia-smi mig" in (err.value.hint or "")


# ---------------------------------------------------------------- where the driver files go

def _lib(name: str, soname: str, kind: str = "lib64", *extra: str) -> DriverFile:
    d = "/usr/lib/i386-linux-gnu" if kind == "lib32" else LIB
    return DriverFile(f"{d}/{name}.{V}", kind, "compute", (f"{name}.{V}", soname, *extra), soname)


@pytest.mark.parametrize("arch, dirs64", [
    ("x86-64", ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")),
    ("aarch64", ("/usr/lib/aarch64-linux-gnu", "/usr/lib64")),
    ("ppc64le", ("/usr/lib/powerpc64le-linux-gnu", "/usr/lib64")),
])
def test_libraries_go_to_the_loaders_default_dirs(arch: str, dirs64: Tuple[str, ...]) -> None:
    files = DriverFiles(libraries64=(_lib("libcuda.so", "libcuda.so.1", "lib64", "libcuda.so"),
                                     _lib("libnvidia-ml.so", "libnvidia-ml.so.1")),
                        libraries32=(_lib("libcuda.so", "libcuda.so.1", "lib32"),))
    mounts, warnings = layout.driver_mounts(files, arch=arch)
    assert warnings == []
    targets = [m.container_path for m in mounts]
    assert targets == [f"{d}/{n}" for d in dirs64 for n in ("libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1")] + [
        "/usr/lib/i386-linux-gnu/libcuda.so.1", "/usr/lib/libcuda.so.1"]
    assert all(m.read_only for m in mounts)
    assert not any(t.startswith("/usr/local/nvidia") for t in targets)


def test_native_arch_picks_the_multiarch_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "native_arch", lambda: "aarch64")
    spec = build_spec(make_host(), make_files(), capabilities=("compute",))
    targets = [m["containerPath"] for m in spec.document["containerEdits"]["mounts"]]
    assert "/usr/lib/aarch64-linux-gnu/libcuda.so.1" in targets and "/usr/lib64/libcuda.so.1" in targets
    assert f"{LIB}/libcuda.so.1" not in targets


@pytest.mark.parametrize("kind, host_path, container_paths", [
    ("bin", "/usr/bin/nvidia-smi", ["/usr/bin/nvidia-smi"]),
    ("bin", "/opt/nvidia/bin/nvidia-smi", ["/usr/bin/nvidia-smi"]),
    ("config", "/etc/vulkan/icd.d/nvidia_icd.json", ["/etc/vulkan/icd.d/nvidia_icd.json"]),
    ("firmware", f"/lib/firmware/nvidia/{V}/gsp_ga10x.bin", [f"/lib/firmware/nvidia/{V}/gsp_ga10x.bin"]),
    ("ipc", "/run/nvidia-persistenced/socket", ["/run/nvidia-persistenced/socket"]),
])
def test_binaries_in_usr_bin_other_files_at_host_paths(kind: str, host_path: str,
                                                       container_paths: List[str]) -> None:
    f = DriverFile("/srv/root" + host_path, kind, "utility", (host_path.rsplit("/", 1)[1],), path=host_path)
    field = {"bin": "binaries", "config": "configs", "firmware": "firmware", "ipc": "ipcs"}[kind]
    mounts, _w = layout.driver_mounts(DriverFiles(**{field: (f,)}), arch="x86-64")  # type: ignore[arg-type]
    assert [m.container_path for m in mounts] == container_paths
    assert [m.host_path for m in mounts] == ["/srv/root" + host_path]
    assert mounts[0].read_only is (kind != "ipc")


def test_a_container_path_is_bound_once() -> None:
    a = _lib("libnvidia-ml.so", "libnvidia-ml.so.1")
    b = DriverFile(f"/opt/other/libnvidia-ml.so.{V}", "lib64", "utility", (f"libnvidia-ml.so.{V}", "libnvidia-ml.so.1"))
    mounts, _w = layout.driver_mounts(DriverFiles(libraries64=(a, b)), arch="x86-64")
    assert [(m.host_path, m.container_path) for m in mounts] == [
        (a.host_path, f"{LIB}/libnvidia-ml.so.1"), (a.host_path, "/usr/lib64/libnvidia-ml.so.1")]


# (id, env entry, in the spec?) - only PATH and LD_LIBRARY_PATH must go
ENV_RULES = [
    ("legacy hook guard kept", "NVIDIA_VISIBLE_DEVICES=void", True),
    ("no PATH", "PATH=", False),
    ("no LD_LIBRARY_PATH", "LD_LIBRARY_PATH=", False),
]


@pytest.mark.parametrize("rule", ENV_RULES, ids=[r[0] for r in ENV_RULES])
def test_env_leaves_the_image_environment_alone(rule: Any) -> None:
    _id, entry, present = rule
    for mode, extra in (("bind", {}), ("volume", {"volume_path": VOLUME, "exists": lambda p: True})):
        env = build_spec(make_host(), make_files(), capabilities=("compute",), driver_files=mode,
                         **extra).document["containerEdits"]["env"]  # type: ignore[arg-type]
        assert any(e.startswith(entry) for e in env) is present, (mode, env)


def test_env() -> None:
    assert spec_env() == GOLDEN["containerEdits"]["env"]


@pytest.mark.parametrize("values, expected", [
    ([], ("index", "uuid")),
    (["uuid"], ("uuid",)),
    (["index, type-index", "INDEX"], ("index", "type-index")),
])
def test_parse_naming_strategies(values: List[str], expected: Tuple[str, ...]) -> None:
    assert parse_naming_strategies(values) == expected


def test_parse_naming_strategies_rejects_unknown() -> None:
    with pytest.raises(UsageError, match="invalid --device-name-strategy 'gpu'"):
        parse_naming_strategies(["index,gpu"])


@pytest.mark.parametrize("vendor, class_, ok", [
    ("nvidia.com", "gpu", True), ("example.org", "my_gpu-2", True),
    ("-nvidia.com", "gpu", False), ("nvidia.com", "g pu", False), ("nvidia.com", "g.pu", False),
    ("", "gpu", False), ("nvidia.com", "", False), ("nvidia.com-", "gpu", False), ("nvidia.com", "gpu" * 22, False),
])
def test_check_kind(vendor: str, class_: str, ok: bool) -> None:
    if ok:
        assert check_kind(vendor, class_) == f"{vendor}/{class_}"
    else:
        with pytest.raises(UsageError):
            check_kind(vendor, class_)


def test_device_names_for_gpu() -> None:
    gpu = Gpu(3, 3, "GPU-abc", None, None)
    assert device_names(gpu, ("index", "uuid", "type-index")) == ["3", "GPU-abc", "gpu3"]


def test_preset_spec_is_valid() -> None:
    """Golden facts for a simulated DGX H100 with MIG (needs the simulated host tree)."""
    import nvlow.simulate.proctree  # noqa: F401 - breaking this import must fail the test, not skip it
    from nvlow.host.discover import discover
    from nvlow.host.driverfiles import select_driver_files
    from nvlow.simulate.hosttree import simulated_host

    root, opener = simulated_host("dgx-h100-mig")
    host = discover(root, library_opener=opener)
    assert host.driver_version
    files = select_driver_files(root, host.driver_version, ("compute", "utility"))
    spec = build_spec(host, files, capabilities=("compute", "utility"))
    assert validate_document(spec.document) == []
    names = [d["name"] for d in spec.document["devices"]]
    assert names[-1] == "all" and len(names) == len(set(names))
    migs = [m for g in host.gpus for m in g.mig_devices]
    whole = [g for g in host.gpus if not g.mig_enabled]
    assert migs and len(whole) < len(host.gpus)
    assert len(names) == 2 * (len(whole) + len(migs)) + 1
    for g in host.gpus:
        assert (str(g.index) in names) is (not g.mig_enabled)
    all_paths = [n["path"] for n in spec.document["devices"][-1]["containerEdits"]["deviceNodes"]]
    assert [p for p in all_paths if p.startswith("/dev/nvidia") and p[11:].isdigit()] == [
        f"/dev/nvidia{g.minor}" for g in host.gpus]
    assert set(all_paths) >= {n.container_path for m in migs for n in m.cap_nodes}
    for m in migs:
        assert m.name_for_index in names
    assert load_yaml(render_spec(spec, "yaml")) == spec.document
    for mount in spec.document["containerEdits"]["mounts"]:
        assert mount["hostPath"].startswith(root.path)
    assert spec.document["containerEdits"]["env"] == ENV
