"""CDI spec building: device names, nodes, mounts, env, version, golden documents."""
from __future__ import annotations

import json
from typing import Any, Dict, Tuple

import pytest

from nvlow.cdi.spec import (build_spec, check_kind, device_names, parse_naming_strategies, render_spec,
                            spec_env)
from nvlow.cdi.validate import validate_document
from nvlow.cdi.yaml import load_yaml
from nvlow.errors import HostError, UsageError
from nvlow.model import DeviceNode, DriverFile, DriverFiles, Gpu, Host, MigDevice

V = "550.54.15"
LIB = "/usr/lib/x86_64-linux-gnu"


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

GOLDEN: Dict[str, Any] = {
    "cdiVersion": "0.5.0",
    "kind": "nvidia.com/gpu",
    "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [N0]}},
        {"name": "GPU-0000", "containerEdits": {"deviceNodes": [N0]}},
        {"name": "0:0", "containerEdits": {"deviceNodes": [N0, CAP12, CAP13]}},
        {"name": "MIG-aaaa-0000", "containerEdits": {"deviceNodes": [N0, CAP12, CAP13]}},
        {"name": "1", "containerEdits": {"deviceNodes": [N1]}},
        {"name": "GPU-1111", "containerEdits": {"deviceNodes": [N1]}},
        {"name": "all", "containerEdits": {"deviceNodes": [N0, CAP12, CAP13, N1]}},
    ],
    "containerEdits": {
        "env": ["NVIDIA_VISIBLE_DEVICES=void",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/nvidia/bin",
                "LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib"],
        "deviceNodes": [
            {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255},
            {"path": "/dev/nvidia-uvm", "type": "c", "major": 510, "minor": 0},
            {"path": "/dev/nvidia-uvm-tools", "type": "c", "major": 510, "minor": 1},
        ],
        "mounts": [
            {"hostPath": "/usr/bin/nvidia-smi", "containerPath": "/usr/local/nvidia/bin/nvidia-smi", "options": RO},
            {"hostPath": f"{LIB}/libcuda.so.{V}", "containerPath": "/usr/local/nvidia/lib64/libcuda.so.1",
             "options": RO},
            {"hostPath": f"{LIB}/libcuda.so.{V}", "containerPath": "/usr/local/nvidia/lib64/libcuda.so",
             "options": RO},
            {"hostPath": "/run/nvidia-persistenced/socket", "containerPath": "/run/nvidia-persistenced/socket",
             "options": ["nosuid", "nodev", "bind"]},
        ],
    },
}


def test_golden_document() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute", "utility"))
    assert spec.document == GOLDEN
    assert spec.warnings == ()
    assert validate_document(spec.document) == []
    assert spec.qualified_names()[:3] == ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-0000", "nvidia.com/gpu=0:0"]


def test_golden_json_and_yaml_text() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute", "utility"))
    text = render_spec(spec, "json")
    assert text == json.dumps(GOLDEN, indent=2) + "\n"
    yaml_text = render_spec(spec, "yaml", driver_version=V)
    assert yaml_text.startswith("---\n# Generated by nvlow ")
    assert f"for NVIDIA driver {V}; do not edit." in yaml_text.splitlines()[1]
    assert '\ncdiVersion: "0.5.0"\nkind: nvidia.com/gpu\ndevices:\n- name: "0"\n  containerEdits:\n' in yaml_text
    assert '\n- name: "0:0"\n' in yaml_text
    assert load_yaml(yaml_text) == GOLDEN


def test_root_prefixed_host_paths() -> None:
    spec = build_spec(make_host("/srv/fake"), make_files("/srv/fake"), capabilities=("compute",))
    doc = spec.document
    assert doc["devices"][0]["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/nvidia0", "hostPath": "/srv/fake/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]
    assert doc["containerEdits"]["deviceNodes"][0]["hostPath"] == "/srv/fake/dev/nvidiactl"
    assert doc["containerEdits"]["mounts"][1] == {
        "hostPath": f"/srv/fake{LIB}/libcuda.so.{V}", "containerPath": "/usr/local/nvidia/lib64/libcuda.so.1",
        "options": RO}
    assert doc["cdiVersion"] == "0.5.0"


@pytest.mark.parametrize("caps, nodes", [
    (("utility",), ["/dev/nvidiactl"]),
    (("compute",), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]),
    (("video",), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]),
    (("display",), ["/dev/nvidiactl", "/dev/nvidia-modeset"]),
    (("compute", "display"), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]),
])
def test_control_nodes_follow_capabilities(caps: Tuple[str, ...], nodes: list) -> None:
    spec = build_spec(make_host(), None, capabilities=caps)
    assert [n["path"] for n in spec.document["containerEdits"]["deviceNodes"]] == nodes
    assert "mounts" not in spec.document["containerEdits"]


@pytest.mark.parametrize("strategies, names", [
    (("index",), ["0", "0:0", "1", "all"]),
    (("uuid",), ["GPU-0000", "MIG-aaaa-0000", "GPU-1111", "all"]),
    (("type-index",), ["gpu0", "mig0:0", "gpu1", "all"]),
    (("type-index", "index"), ["gpu0", "0", "mig0:0", "0:0", "gpu1", "1", "all"]),
])
def test_naming_strategies(strategies: Tuple[str, ...], names: list) -> None:
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
    assert [d["name"] for d in spec.document["devices"]] == ["0", "0:0", "1", "all"]


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


def test_volume_mode_mounts_the_volume_dir() -> None:
    spec = build_spec(make_host(), make_files(), capabilities=("compute",), driver_files="volume",
                      volume_path="/var/lib/nvlow/volumes/nvidia_driver/" + V)
    assert spec.document["containerEdits"]["mounts"] == [
        {"hostPath": "/var/lib/nvlow/volumes/nvidia_driver/" + V, "containerPath": "/usr/local/nvidia",
         "options": RO},
        {"hostPath": "/run/nvidia-persistenced/socket", "containerPath": "/run/nvidia-persistenced/socket",
         "options": ["nosuid", "nodev", "bind"]},
    ]
    with pytest.raises(HostError, match="needs a built driver volume"):
        build_spec(make_host(), make_files(), capabilities=(), driver_files="volume")
    with pytest.raises(UsageError, match="invalid --driver-files 'plugin'"):
        build_spec(make_host(), make_files(), capabilities=(), driver_files="plugin")


def test_env() -> None:
    assert spec_env() == GOLDEN["containerEdits"]["env"]


@pytest.mark.parametrize("values, expected", [
    ([], ("index", "uuid")),
    (["uuid"], ("uuid",)),
    (["index, type-index", "INDEX"], ("index", "type-index")),
])
def test_parse_naming_strategies(values: list, expected: Tuple[str, ...]) -> None:
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
    pytest.importorskip("nvlow.simulate.proctree")
    from nvlow.discover import discover
    from nvlow.driverfiles import select_driver_files
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
    assert len(names) == 2 * (len(host.gpus) + len(migs)) + 1
    for m in migs:
        assert m.name_for_index in names
    assert load_yaml(render_spec(spec, "yaml")) == spec.document
    for mount in spec.document["containerEdits"]["mounts"]:
        assert mount["hostPath"].startswith(root.path)
