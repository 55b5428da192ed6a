"""Multi-node training devices (GDS, MOFED, GDRCopy, NVSwitch): discovery, the request, the plan, remote answers.

Cases ported from the NVIDIA Container Toolkit: ``internal/modifier/cdi.go`` (``gatedDevices``: exactly
``enabled``), ``internal/discover/{gds,mofed,gdrcopy,nvswitch}_test.go`` and ``pkg/nvcdi/lib_test.go``
(which nodes each feature finds; an empty root finds none), ``internal/devices/devices.go`` (char devices
only, checked with lstat).
"""
from __future__ import annotations

import os

import pytest

import nvlow
from nvlow.errors import RemoteError, UsageError
from nvlow.host.extradevices import parse_feature_node, parse_misc
from nvlow.host.procfs import majors_by_name
from nvlow.host.root import HostRoot, file_node_reader
from nvlow.host.scan import scan_host
from nvlow.plan.decide import plan_for
from nvlow.plan.request import PlanRequest, request_from_argv, request_from_dict, requested_features
from nvlow.remote.answer import checked_args
from nvlow.simulate.presets import get_preset
from nvlow.simulate.proctree import feature_majors, write_proc_dev_tree


# -- pure parsers -----------------------------------------------------------------------------
@pytest.mark.parametrize("rel,want", [
    ("nvidia-fs0", ("gds", 0)), ("nvidia-fs15", ("gds", 15)), ("nvidia-fs", None), ("nvidia-fs01", None),
    ("nvidia-fsx", None), ("infiniband/uverbs0", ("mofed", 0)), ("infiniband/rdma_cm", ("mofed", -1)),
    ("infiniband/umad0", None), ("uverbs0", None), ("gdrdrv", ("gdrcopy", -1)), ("gdrdrv0", None),
    ("nvidia-nvswitchctl", ("nvswitch", -1)), ("nvidia-nvswitch3", ("nvswitch", 3)), ("nvidia-nvswitch", None),
    ("nvidia0", None), ("nvidia-nvlink", None), ("nvidia-fs٣", None),
])
def test_feature_node_names(rel, want):
    assert parse_feature_node(rel) == want


def test_proc_devices_and_misc_parsers():
    text = "Character devices:\n 10 misc\n231 infiniband_verbs\n508 nvidia-nvswitch\n509 infiniband_verbs\n\n" \
           "Block devices:\n231 infiniband_verbs\n"
    assert majors_by_name(text) == {"misc": (10,), "infiniband_verbs": (231, 509), "nvidia-nvswitch": (508,)}
    assert parse_misc(" 58 rdma_cm\n200 tun\n\nx y\n999999999999999999999999 big\n") == {"rdma_cm": 58, "tun": 200}


# -- the request: which features are asked for -------------------------------------------------
ENV_CASES = [
    # (image env, -e env, flags, wanted)
    ({}, None, (), ()),
    ({"NVIDIA_GDS": "enabled"}, None, (), ("gds",)),
    ({"NVIDIA_GDS": "ENABLED"}, None, (), ()),          # the toolkit compares with == "enabled"
    ({"NVIDIA_GDS": "true"}, None, (), ()),
    ({"NVIDIA_GDS": "1"}, None, (), ()),
    ({"NVIDIA_GDS": " enabled"}, None, (), ()),
    ({"NVIDIA_GDS": ""}, None, (), ()),
    ({"NVIDIA_MOFED": "enabled"}, {}, (), ("mofed",)),
    ({}, {"NVIDIA_MOFED": "enabled"}, (), ("mofed",)),   # -e alone
    ({"NVIDIA_MOFED": "enabled"}, {"NVIDIA_MOFED": "disabled"}, (), ()),  # -e overrides the image
    ({"NVIDIA_MOFED": "disabled"}, {"NVIDIA_MOFED": "enabled"}, (), ("mofed",)),
    ({"NVIDIA_GDRCOPY": "enabled", "NVIDIA_NVSWITCH": "enabled"}, None, (), ("gdrcopy", "nvswitch")),
    ({}, None, ("nvswitch", "gds"), ("gds", "nvswitch")),  # flags, in the toolkit's order
    ({"NVIDIA_GDS": "disabled"}, {"NVIDIA_GDS": "no"}, ("gds",), ("gds",)),  # a flag always asks
    ({"NVIDIA_GDS": "enabled", "NVIDIA_MOFED": "enabled", "NVIDIA_GDRCOPY": "enabled",
      "NVIDIA_NVSWITCH": "enabled"}, None, (), ("gds", "mofed", "gdrcopy", "nvswitch")),
]


@pytest.mark.parametrize("image,container,flags,want", ENV_CASES)
def test_requested_features(image, container, flags, want):
    req = PlanRequest(image_env=tuple(image.items()), container_env=None if container is None else
                      tuple(container.items()), features=flags)
    assert tuple(f for f, _ in requested_features(req)) == want


def test_nvlow_own_environment_does_not_ask():
    # only the container's environment and nvlow's flags count, as the toolkit reads the OCI process env
    er = request_from_argv(["docker", "run", "img"], {"NVIDIA_GDS": "enabled"})
    assert requested_features(er.request) == ()


def test_engine_argv_e_and_env_file(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("NVIDIA_NVSWITCH=enabled\n")
    er = request_from_argv(["docker", "run", "--env-file", str(env_file), "-e", "NVIDIA_GDRCOPY=enabled", "img"], {})
    assert requested_features(er.request) == (("gdrcopy", "container NVIDIA_GDRCOPY=enabled"),
                                              ("nvswitch", "container NVIDIA_NVSWITCH=enabled"))


def test_request_round_trip_and_validation():
    assert "features" not in PlanRequest().to_dict()  # servers from before the features keep working
    doc = PlanRequest(features=("mofed", "gds")).to_dict()
    assert doc["features"] == ["mofed", "gds"]
    assert request_from_dict(doc).features == ("gds", "mofed")
    with pytest.raises(UsageError, match="unknown feature 'rdma'"):
        request_from_dict({"features": ["rdma"]})
    with pytest.raises(UsageError):
        request_from_dict({"features": "gds"})


# -- the plan ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def h100():
    return nvlow.load_host(simulate="dgx-h100-mig")


@pytest.fixture(scope="module")
def a100():
    return nvlow.load_host(simulate="dgx-a100")


def _paths(plan):
    return [d.container_path for d in plan.devices]


@pytest.mark.parametrize("var,want", [
    ("NVIDIA_GDS", ["/dev/nvidia-fs%d" % n for n in range(16)]),
    ("NVIDIA_MOFED", ["/dev/infiniband/uverbs%d" % n for n in range(8)] + ["/dev/infiniband/rdma_cm"]),
    ("NVIDIA_GDRCOPY", ["/dev/gdrdrv"]),
    ("NVIDIA_NVSWITCH", ["/dev/nvidia-nvswitchctl"] + ["/dev/nvidia-nvswitch%d" % n for n in range(4)]),
])
def test_each_feature_adds_its_nodes(h100, var, want):
    base = _paths(plan_for(h100, PlanRequest(gpus="2")))
    plan = plan_for(h100, PlanRequest(gpus="2", image_env=((var, "enabled"),)))
    assert _paths(plan) == base + want
    assert not [w for w in plan.warnings if "requested" in w]
    off = plan_for(h100, PlanRequest(gpus="2", image_env=((var, "Enabled"),)))
    assert _paths(off) == base


def test_missing_feature_is_a_warning_naming_feature_and_path(a100):
    plan = plan_for(a100, PlanRequest(gpus="0", container_env=(("NVIDIA_GDS", "enabled"), ("NVIDIA_GDRCOPY", "enabled"))))
    assert _paths(plan) == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0"]
    assert any("gds requested (container NVIDIA_GDS=enabled)" in w and "/dev/nvidia-fs*" in w for w in plan.warnings)
    assert any("gdrcopy" in w and "/dev/gdrdrv" in w for w in plan.warnings)


def test_workstation_has_none(tmp_path):
    host = nvlow.load_host(simulate="workstation")
    assert host.feature_nodes == ()
    plan = plan_for(host, PlanRequest(features=("nvswitch",)))
    assert any("/dev/nvidia-nvswitchctl" in w for w in plan.warnings)


def test_void_gets_nothing_none_gets_the_nodes(h100):
    void = plan_for(h100, PlanRequest(gpus="void", features=("gds",)))
    assert void.devices == () and not void.warnings
    none = plan_for(h100, PlanRequest(gpus="none", features=("gdrcopy",)))
    assert "/dev/gdrdrv" in _paths(none) and "/dev/nvidia0" not in _paths(none)


def test_info_json_reports_them(h100, a100):
    doc = h100.to_dict()["feature_nodes"]
    assert sorted(doc) == ["gdrcopy", "gds", "mofed", "nvswitch"]
    assert doc["gdrcopy"][0]["container_path"] == "/dev/gdrdrv" and doc["gdrcopy"][0]["kind"] == "gdrcopy"
    assert a100.to_dict()["feature_nodes"]["gds"] == []
    assert len(a100.features("nvswitch")) == 7 and len(a100.features("mofed")) == 9


# -- hostile and broken trees ---------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    write_proc_dev_tree(str(tmp_path), get_preset("dgx-h100-mig"))
    return tmp_path


def _scan(root):
    return scan_host(HostRoot(str(root), node_reader=file_node_reader), load_uvm=False)


def _found(scan):
    return [n.container_path for n in scan.feature_nodes]


def test_tree_finds_all(tree):
    scan = _scan(tree)
    assert len(_found(scan)) == 16 + 9 + 1 + 5
    assert not [w for w in scan.warnings if "infiniband" in w or "nvidia-fs" in w]


def test_empty_root_finds_nothing(tmp_path):
    (tmp_path / "dev").mkdir()
    write_proc_dev_tree(str(tmp_path), get_preset("no-gpu"))
    assert _scan(tmp_path).feature_nodes == ()


def test_symlink_escape_is_refused(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "kmsg"
    outside.write_text("nvlow-simulated-char %d:0\n" % feature_majors(get_preset("dgx-h100-mig"))["gdrdrv"])
    os.remove(tree / "dev/gdrdrv")
    os.symlink(str(outside), tree / "dev/gdrdrv")
    scan = _scan(tree)
    assert "/dev/gdrdrv" not in _found(scan)
    assert any("gdrdrv is a symbolic link" in w for w in scan.warnings)


def test_symlinked_directory_leaving_the_root_is_refused(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("ib")
    for name in os.listdir(tree / "dev/infiniband"):
        os.rename(tree / "dev/infiniband" / name, outside / name)
    os.rmdir(tree / "dev/infiniband")
    os.symlink(str(outside), tree / "dev/infiniband")
    scan = _scan(tree)
    assert not [p for p in _found(scan) if "infiniband" in p]
    assert any("outside" in w and "uverbs0" in w for w in scan.warnings)


def test_regular_file_and_fifo_are_not_char_devices(tree):
    (tree / "dev/nvidia-fs3").write_text("just a file\n")
    os.remove(tree / "dev/nvidia-nvswitch1")
    os.mkfifo(tree / "dev/nvidia-nvswitch1")
    scan = _scan(tree)  # must not block on the FIFO
    assert "/dev/nvidia-fs3" not in _found(scan) and "/dev/nvidia-fs2" in _found(scan)
    assert "/dev/nvidia-nvswitch1" not in _found(scan) and "/dev/nvidia-nvswitch0" in _found(scan)
    assert any("nvidia-fs3 is not a character device" in w for w in scan.warnings)
    assert any("nvidia-nvswitch1 is not a character device" in w for w in scan.warnings)


def test_wrong_major_is_refused(tree):
    (tree / "dev/gdrdrv").write_text("nvlow-simulated-char 1:3\n")  # /dev/null's numbers
    (tree / "dev/infiniband/uverbs2").write_text("nvlow-simulated-char 195:0\n")
    scan = _scan(tree)
    assert "/dev/gdrdrv" not in _found(scan) and "/dev/infiniband/uverbs2" not in _found(scan)
    assert any("gdrdrv is 1:3" in w for w in scan.warnings)


def test_rdma_cm_minor_comes_from_proc_misc(tree):
    (tree / "dev/infiniband/rdma_cm").write_text("nvlow-simulated-char 10:200\n")  # tun's minor
    scan = _scan(tree)
    assert "/dev/infiniband/rdma_cm" not in _found(scan)
    assert any("rdma_cm is 10:200, expected 10:58" in w for w in scan.warnings)
    (tree / "proc/misc").write_text("200 tun\n")
    scan = _scan(tree)
    assert "/dev/infiniband/rdma_cm" not in _found(scan)
    assert any("lists no rdma_cm" in w for w in scan.warnings)


def test_nodes_without_their_proc_devices_line_are_not_used(tree):
    text = (tree / "proc/devices").read_text()
    (tree / "proc/devices").write_text("\n".join(line for line in text.splitlines() if "nvidia-fs" not in line) + "\n")
    scan = _scan(tree)
    assert not [p for p in _found(scan) if "nvidia-fs" in p]
    assert any("no 'nvidia-fs' device" in w for w in scan.warnings)


# -- remote answers ----------------------------------------------------------------------------
def _doc(*devices):
    return {"devices": [{"host_path": h, "container_path": c} for h, c in devices], "mounts": [], "env": {}}


def test_remote_accepts_feature_nodes_only_when_asked():
    doc = _doc(("/dev/nvidiactl", "/dev/nvidiactl"), ("/dev/infiniband/uverbs0", "/dev/infiniband/uverbs0"))
    with pytest.raises(RemoteError, match="not an NVIDIA device node"):
        checked_args(doc, "remote")
    with pytest.raises(RemoteError):
        checked_args(doc, "remote", features=("gds",))
    args = checked_args(doc, "remote", features=("mofed",))
    assert "--device=/dev/infiniband/uverbs0" in args


@pytest.mark.parametrize("host,container", [
    ("/dev/kmsg", "/dev/gdrdrv"),                        # another node behind the name
    ("/dev/infiniband/umad0", "/dev/infiniband/umad0"),  # not a toolkit MOFED node
    ("/dev/nvidia-fs0/../null", "/dev/nvidia-fs0"),
    ("/dev/nvidia-nvswitch", "/dev/nvidia-nvswitch"),
])
def test_remote_refuses_lookalikes(host, container):
    with pytest.raises(RemoteError):
        checked_args(_doc((host, container)), "remote", features=("gds", "mofed", "gdrcopy", "nvswitch"))


# -- the command line --------------------------------------------------------------------------
def test_flags_reach_the_request():
    from nvlow.cli.fast import parse
    from nvlow.cli.plancmd import base_request

    opts = parse(["args", "--nvswitch", "--gds"], {})
    assert base_request(opts, {}).features == ("gds", "nvswitch")
