"""GPU selection: every syntax, every source, every error (table-driven)."""
from __future__ import annotations

import pytest

from nvlow.errors import SelectionError
from nvlow.model import DeviceNode, Gpu, MigDevice
from nvlow.plan.request import PlanRequest, selection_choice
from nvlow.plan.select import resolve_choice, select_count, select_gpus


def _node(minor: int) -> DeviceNode:
    return DeviceNode(f"/dev/nvidia{minor}", f"/dev/nvidia{minor}", 195, minor, "gpu")


MIGS = (
    MigDevice("MIG-11111111-aaaa-bbbb-cccc-000000000000", 1, 0, 1, 0, "3g.40gb"),
    MigDevice("MIG-22222222-aaaa-bbbb-cccc-000000000000", 1, 1, 2, 0, "1c.3g.40gb"),
)
GPUS = (
    Gpu(0, 0, "GPU-0a1b2c3d-0000-0000-0000-000000000000", "0000:07:00.0", "A100", node=_node(0)),
    Gpu(1, 1, "GPU-0a1b9999-0000-0000-0000-000000000000", "0000:0f:00.0", "A100", node=_node(1),
        mig_enabled=True, mig_devices=MIGS),
    Gpu(2, 2, "GPU-ffff0000-0000-0000-0000-000000000000", "0000:47:00.0", "A100", node=_node(2), mig_enabled=False),
)


@pytest.mark.parametrize("spec,gpus,migs,mode", [
    ("all", [0, 1, 2], [], "devices"),
    ("ALL", [0, 1, 2], [], "devices"),
    ("none", [], [], "none"),
    ("void", [], [], "void"),
    ("0", [0], [], "devices"),
    ("2,0", [0, 2], [], "devices"),  # index order, not request order
    ("0,0,0", [0], [], "devices"),  # duplicates removed
    (" 1 , 2 ", [1, 2], [], "devices"),
    ("GPU-0a1b2c3d-0000-0000-0000-000000000000", [0], [], "devices"),
    ("gpu-0a1b2c3d-0000-0000-0000-000000000000", [0], [], "devices"),  # case-insensitive
    ("GPU-ffff", [2], [], "devices"),  # unambiguous prefix
    ("00000000:0F:00.0", [1], [], "devices"),  # NVML spelling
    ("0000:47:00.0", [2], [], "devices"),  # procfs spelling
    ("0:7:0.0", [0], [], "devices"),  # short domain
    ("7:00.0", [0], [], "devices"),  # no domain
    ("1:1", [], ["MIG-2"], "devices"),
    ("1:0,1:1", [], ["MIG-1", "MIG-2"], "devices"),
    ("MIG-22222222-aaaa-bbbb-cccc-000000000000", [], ["MIG-2"], "devices"),
    ("MIG-1111", [], ["MIG-1"], "devices"),
    ("0,1:0", [0], ["MIG-1"], "devices"),
])
def test_selection_syntax(spec, gpus, migs, mode):
    sel = select_gpus(GPUS, spec)
    assert [g.index for g in sel.gpus] == gpus
    assert [m.uuid[:5] for m in sel.mig_devices] == migs
    assert sel.mode == mode


@pytest.mark.parametrize("spec,message", [
    ("3", "unknown GPU index: 3"),
    ("GPU-0a1b", "ambiguous GPU UUID prefix 'GPU-0a1b'"),
    ("GPU-deadbeef", "unknown GPU UUID: GPU-deadbeef"),
    ("GPU-", "incomplete GPU UUID"),
    ("2:0", "GPU 2 is not in MIG mode"),
    ("0:0", "GPU 0 is not in MIG mode"),
    ("1:5", "GPU 1 has no MIG device in slot 5"),
    ("9:0", "unknown GPU index in MIG device 9:0"),
    ("0000:99:00.0", "unknown GPU PCI bus id: 0000:99:00.0"),
    ("foo", "invalid GPU identifier: 'foo'"),
    ("0,all", "'all' cannot be combined"),
    ("", "empty GPU selection"),
])
def test_selection_errors_name_the_token(spec, message):
    with pytest.raises(SelectionError) as exc:
        select_gpus(GPUS, spec)
    assert message in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("spec,gpus", [
    ("0 2", [0, 2]),
    ("0,2", [0, 2]),
    ("GPU-ffff 1", [1, 2]),
    ("", [0, 1, 2]),
])
def test_nv_gpu_grammar(spec, gpus):
    sel = select_gpus(GPUS, spec, nv_gpu=True)
    assert [g.index for g in sel.gpus] == gpus


def test_nv_gpu_rejects_other_tokens():
    with pytest.raises(SelectionError, match="invalid device in NV_GPU: 0000:07:00.0"):
        select_gpus(GPUS, "0000:07:00.0", nv_gpu=True)


def test_count():
    assert [g.index for g in select_count(GPUS, 2).gpus] == [0, 1]
    assert [g.index for g in select_count(GPUS, -1).gpus] == [0, 1, 2]
    with pytest.raises(SelectionError, match="--gpus 4 requested but this host has 3 GPUs"):
        select_count(GPUS, 4)


def _env(name, value):
    return ((name, value),)


@pytest.mark.parametrize("req,source,gpus", [
    (PlanRequest(), "default", [0, 1, 2]),
    (PlanRequest(docker_gpus=("device=1",), gpus="0", process_env=_env("NVIDIA_VISIBLE_DEVICES", "2")),
     "docker --gpus", [1]),
    (PlanRequest(docker_gpus=("1",), gpus="2"), "docker --gpus", [0]),
    (PlanRequest(cdi_devices=("2",), gpus="0"), "CDI device", [2]),
    (PlanRequest(gpus="device=2", container_env=_env("NVIDIA_VISIBLE_DEVICES", "0")), "--gpus", [2]),
    (PlanRequest(container_env=_env("NVIDIA_VISIBLE_DEVICES", "1"), process_env=_env("NVIDIA_VISIBLE_DEVICES", "0")),
     "container NVIDIA_VISIBLE_DEVICES", [1]),
    (PlanRequest(process_env=(("NVIDIA_VISIBLE_DEVICES", "0"), ("NV_GPU", "1"))), "NVIDIA_VISIBLE_DEVICES", [0]),
    (PlanRequest(process_env=_env("NV_GPU", "1 2"), image_env=_env("NVIDIA_VISIBLE_DEVICES", "0")), "NV_GPU", [1, 2]),
    (PlanRequest(image_env=_env("NVIDIA_VISIBLE_DEVICES", "2")), "image NVIDIA_VISIBLE_DEVICES", [2]),
    (PlanRequest(image_env=_env("CUDA_VERSION", "9.0")), "legacy image", [0, 1, 2]),
])
def test_first_source_wins(req, source, gpus):
    sel = resolve_choice(GPUS, selection_choice(req))
    assert sel.source == source
    assert [g.index for g in sel.gpus] == gpus
