"""Real NVIDIA_VISIBLE_DEVICES / NV_GPU values and NVIDIA_REQUIRE_CUDA strings against simulated hosts."""
from __future__ import annotations

import pytest

import nvlow
from nvlow.errors import SelectionError
from nvlow.plan.require import GpuFacts, HostFacts, evaluate, parse_requirements
from nvlow.plan.request import PlanRequest, selection_choice
from nvlow.plan.select import resolve_choice, select_gpus
from test_realworld_data import table

VISIBLE = table("visible-devices.txt")
REQUIRE = table("require.txt")
HOSTS = {}


def host(preset: str):
    if preset not in HOSTS:
        HOSTS[preset] = nvlow.load_host(simulate=preset)
    return HOSTS[preset]


def test_enough_values() -> None:
    assert len(VISIBLE) >= 15 and len(REQUIRE) >= 8


def _request(variable: str, value: str) -> PlanRequest:
    if variable == "NV_GPU":
        return PlanRequest(process_env=(("NV_GPU", value),))
    return PlanRequest(container_env=(("NVIDIA_VISIBLE_DEVICES", value),))


def resolve_selection(gpus, req: PlanRequest):
    return resolve_choice(gpus, selection_choice(req))


@pytest.mark.parametrize("variable, value, preset, expected, source", VISIBLE,
                         ids=[f"{r[0]}={r[1]!r}@{r[2]}" for r in VISIBLE])
def test_visible_devices(variable, value, preset, expected, source) -> None:
    gpus = host(preset).gpus
    if expected.startswith("error:"):
        with pytest.raises(SelectionError) as exc:
            resolve_selection(gpus, _request(variable, value))
        assert expected[len("error:"):] in str(exc.value)
        assert exc.value.exit_code == 2
        return
    sel = resolve_selection(gpus, _request(variable, value))
    if expected.startswith("mode="):
        assert sel.mode == expected[len("mode="):]
        assert sel.gpus == () and sel.mig_devices == ()
        return
    assert sel.mode == "devices"
    want_gpus = [int(t) for t in expected.split(",") if ":" not in t]
    want_migs = [t for t in expected.split(",") if ":" in t]
    assert [g.index for g in sel.gpus] == want_gpus
    assert [m.name_for_index for m in sel.mig_devices] == want_migs


def test_visible_devices_same_through_process_and_image_env() -> None:
    gpus = host("dgx-a100").gpus
    assert resolve_selection(gpus, PlanRequest(process_env=(("NVIDIA_VISIBLE_DEVICES", ""),))).mode == "void"
    assert resolve_selection(gpus, PlanRequest(image_env=(("NVIDIA_VISIBLE_DEVICES", ""),))).mode == "void"
    # nvlow's own --gpus keeps refusing an empty value: that is a typo, not the toolkit's "void"
    with pytest.raises(SelectionError):
        resolve_selection(gpus, PlanRequest(gpus=""))


def test_driver_r450_mig_uuid_form_resolves() -> None:
    h = host("dgx-h100-mig")
    parent = h.gpus[1]
    target = parent.mig_devices[2]
    token = f"MIG-{parent.uuid}/{target.gpu_instance_id}/{target.compute_instance_id}"
    sel = select_gpus(h.gpus, token)
    assert sel.mig_devices == (target,) and sel.gpus == ()
    with pytest.raises(SelectionError, match="has no GPU instance 9"):
        select_gpus(h.gpus, f"MIG-{parent.uuid}/9/0")


@pytest.mark.parametrize("spec, gpus, migs", [
    # all includes every MIG device, as libnvidia-container's "all" does
    ("nvidia.com/gpu=all", [0, 1, 2, 3, 4, 5, 6, 7], ["0:0", "0:1", "0:2", "0:3", "0:4", "0:5", "0:6",
                                                       "1:0", "1:1", "1:2"]),
    ("nvidia.com/gpu=0,nvidia.com/gpu=3", [0, 3], []),
    ("nvidia.com/mig=1:2", [], ["1:2"]),
    ("nvidia.com/gpu=GPU-9527f724", [0], []),
])
def test_cdi_qualified_names(spec, gpus, migs) -> None:
    sel = select_gpus(host("dgx-h100-mig").gpus, spec)
    assert [g.index for g in sel.gpus] == gpus
    assert [m.name_for_index for m in sel.mig_devices] == migs


# ---------------------------------------------------------------- NVIDIA_REQUIRE_CUDA

def _driver_branches(value: str):
    return sorted({int(c.value) for clause in parse_requirements(value).clauses for c in clause
                   if c.prop == "driver" and c.op == ">="})


@pytest.mark.parametrize("value, source", REQUIRE, ids=[r[0][:24] for r in REQUIRE])
def test_require_parses(value, source) -> None:
    req = parse_requirements(value)
    assert req.clauses[0][0].prop == "cuda" and req.clauses[0][0].op == ">="
    assert all(c.prop in ("cuda", "driver", "brand") for clause in req.clauses for c in clause)
    assert req.text == value


@pytest.mark.parametrize("value, source", REQUIRE, ids=[r[0][:24] for r in REQUIRE])
def test_require_evaluates(value, source) -> None:
    cuda = parse_requirements(value).clauses[0][0].value
    tesla = (GpuFacts("8.0", "tesla", 0),)
    # a new enough driver satisfies it through the cuda clause
    assert evaluate(parse_requirements(value), HostFacts("12.9", "575.51.03", tesla)) == (True, None)
    # an old CUDA fails, naming the cuda clause, unless a branch clause matches this driver
    ok, why = evaluate(parse_requirements(value), HostFacts("9.0", "384.130", (GpuFacts("6.1", "geforce", 0),)))
    assert not ok and why == f"unsatisfied condition: cuda>={cuda} (host CUDA 9.0)"
    for branch in _driver_branches(value):
        # the forward-compat clauses: a tesla GPU on a listed driver branch passes with any CUDA
        ok, why = evaluate(parse_requirements(value), HostFacts("9.0", f"{branch}.57.02", tesla))
        assert ok, (branch, why)


def test_require_12_4_through_the_api() -> None:
    value = next(v for v, _ in REQUIRE if v.startswith("cuda>=12.4 "))
    h = host("dgx-a100")  # 550.54.15, CUDA 12.4, brand nvidia
    sel = nvlow.resolve_gpus(h, "0")
    assert nvlow.check_requirements(h, sel, {"NVIDIA_REQUIRE_CUDA": value}) == ()
    assert nvlow.check_requirements(h, sel, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.8"}) == (
        "unsatisfied condition: cuda>=12.8 (host CUDA 12.4)",)
