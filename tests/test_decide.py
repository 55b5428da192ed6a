"""The decision (nvlow.plan.decide.plan_for) against the NVIDIA Container Toolkit's semantics.

Cases are ported as facts (never code) from the toolkit's own tables:
``internal/config/image/cuda_image_test.go`` (TestGetDevicesFromEnvvar, TestGetRequirements),
``internal/config/image/capabilities_test.go`` and
``cmd/nvidia-container-runtime-hook/container_config_test.go`` (getDriverCapabilities, MIG
config/monitor in privileged containers), with both outcomes of every rule. Where nvlow
deliberately differs, the case says so (and the README lists it).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Tuple

import pytest

import nvlow
from nvlow.plan.decide import plan_for
from nvlow.errors import DriverNotLoaded, HostError, RequirementError, SelectionError, UsageError
from nvlow.model import DeviceNode
from nvlow.plan.request import PlanRequest, capabilities_choice, request_from_argv, selection_choice

A100 = nvlow.load_host(simulate="dgx-a100")
MIG = nvlow.load_host(simulate="dgx-h100-mig")


def _env(**kw: str) -> Tuple[Tuple[str, str], ...]:
    return tuple(kw.items())


def _gpus(plan: nvlow.Plan) -> List[int]:
    return [g.index for g in plan.selection.gpus]


# -- NVIDIA_VISIBLE_DEVICES ------------------------------------------------------------
@pytest.mark.parametrize("image_env, container_env, mode, gpus", [
    # toolkit: "blank NVIDIA_VISIBLE_DEVICES returns nil", "'void' ... returns nil"
    ({}, {"NVIDIA_VISIBLE_DEVICES": ""}, "void", []),
    ({}, {"NVIDIA_VISIBLE_DEVICES": "void"}, "void", []),
    ({}, {"NVIDIA_VISIBLE_DEVICES": "1,void"}, "void", []),  # a list holding void is void
    ({}, {"NVIDIA_VISIBLE_DEVICES": " , "}, "void", []),
    ({"NVIDIA_VISIBLE_DEVICES": ""}, {}, "void", []),
    # "'none' returns empty": driver files, no GPU
    ({}, {"NVIDIA_VISIBLE_DEVICES": "none"}, "none", []),
    # "set returns value", for legacy images too
    ({}, {"NVIDIA_VISIBLE_DEVICES": "1,3"}, "devices", [1, 3]),
    ({"CUDA_VERSION": "9.0"}, {"NVIDIA_VISIBLE_DEVICES": "2"}, "devices", [2]),
    # "empty env returns all for legacy image"
    ({"CUDA_VERSION": "9.0"}, {}, "devices", list(range(8))),
    # deliberate difference: with nothing set a non-legacy image gets all GPUs (the toolkit: none),
    # because the user asked nvlow for GPUs
    ({}, {}, "devices", list(range(8))),
    # -e wins over the image
    ({"NVIDIA_VISIBLE_DEVICES": "3"}, {"NVIDIA_VISIBLE_DEVICES": "4"}, "devices", [4]),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, {"NVIDIA_VISIBLE_DEVICES": "0"}, "devices", [0]),
])
def test_visible_devices(image_env: Dict[str, str], container_env: Dict[str, str], mode: str, gpus: List[int]) -> None:
    req = PlanRequest(image_env=tuple(image_env.items()), container_env=tuple(container_env.items()))
    plan = plan_for(A100, req)
    assert (plan.selection.mode, _gpus(plan)) == (mode, gpus)
    if mode == "void":
        assert plan.devices == () and plan.mounts == () and plan.env == ()


@pytest.mark.parametrize("value", ["0,all", "none,1", "all,none"])
def test_special_values_do_not_combine(value: str) -> None:
    # deliberate difference: the toolkit takes the first special value; nvlow refuses the mix
    with pytest.raises(SelectionError, match="cannot be combined"):
        plan_for(A100, PlanRequest(container_env=_env(NVIDIA_VISIBLE_DEVICES=value)))


def test_void_never_reads_the_host() -> None:
    def no_driver() -> nvlow.Host:
        raise DriverNotLoaded("no NVIDIA kernel module")

    for req in (PlanRequest(container_env=_env(NVIDIA_VISIBLE_DEVICES="void")), PlanRequest(gpus="void"),
                PlanRequest(image_env=_env(NVIDIA_VISIBLE_DEVICES=""))):
        assert plan_for(no_driver, req).devices == ()
    with pytest.raises(DriverNotLoaded):
        plan_for(no_driver, PlanRequest(container_env=_env(NVIDIA_VISIBLE_DEVICES="0")))


# -- NVIDIA_DRIVER_CAPABILITIES --------------------------------------------------------
@pytest.mark.parametrize("image_env, container_env, caps", [
    ({}, {}, ("compute", "utility")),                                   # unset: default
    ({}, {"NVIDIA_DRIVER_CAPABILITIES": ""}, ("compute", "utility")),    # set, empty: default
    ({"NVIDIA_DRIVER_CAPABILITIES": "all"}, {"NVIDIA_DRIVER_CAPABILITIES": ""}, ("compute", "utility")),
    ({"CUDA_VERSION": "9.0"}, {}, ("compat32", "compute", "display", "graphics", "ngx", "utility", "video")),
    ({"CUDA_VERSION": "9.0"}, {"NVIDIA_DRIVER_CAPABILITIES": ""}, ("compute", "utility")),
    ({"CUDA_VERSION": "9.0", "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}, {}, ("compute", "utility")),  # not legacy
    ({"CUDA_VERSION": "9.0"}, {"NVIDIA_DRIVER_CAPABILITIES": "video"}, ("video",)),
    ({}, {"NVIDIA_DRIVER_CAPABILITIES": "all"}, ("compat32", "compute", "display", "graphics", "ngx", "utility", "video")),
    ({}, {"NVIDIA_DRIVER_CAPABILITIES": "utility,compute,"}, ("compute", "utility")),
    ({"NVIDIA_DRIVER_CAPABILITIES": "utility"}, {}, ("utility",)),
])
def test_driver_capabilities(image_env: Dict[str, str], container_env: Dict[str, str], caps: Tuple[str, ...]) -> None:
    req = PlanRequest(image_env=tuple(image_env.items()), container_env=tuple(container_env.items()), require=False)
    assert plan_for(A100, req).capabilities == caps


def test_unknown_capability_is_a_usage_error() -> None:
    # the toolkit: "unsupported capabilities found in ..."
    with pytest.raises(UsageError, match="unknown driver capability: 'gpu-direct'"):
        plan_for(A100, PlanRequest(container_env=_env(NVIDIA_DRIVER_CAPABILITIES="compute,gpu-direct")))


def test_capability_sources_in_order() -> None:
    both = _env(NVIDIA_DRIVER_CAPABILITIES="video")
    assert capabilities_choice(PlanRequest(capabilities="utility", container_env=both))[0] == "--capabilities"
    assert capabilities_choice(PlanRequest(docker_gpus=("all,capabilities=utility",), container_env=both)) == \
        ("docker --gpus", "utility")
    # docker's own "gpu" capability is not a driver capability: the next source decides
    assert capabilities_choice(PlanRequest(docker_gpus=("all",), container_env=both))[1] == "video"
    assert capabilities_choice(PlanRequest(process_env=both, image_env=_env(NVIDIA_DRIVER_CAPABILITIES="all")))[1] == \
        "video"


# -- requirements on the final environment -----------------------------------------------
UNMET = _env(NVIDIA_REQUIRE_CUDA="cuda>=99.0")


@pytest.mark.parametrize("image_env, container_env, process_env, met", [
    (UNMET, (), (), False),
    (UNMET, _env(NVIDIA_DISABLE_REQUIRE="1"), (), True),       # -e disables the image's requirement
    (UNMET, _env(NVIDIA_DISABLE_REQUIRE="true"), (), True),
    (UNMET, _env(NVIDIA_DISABLE_REQUIRE="false"), (), False),
    (UNMET, (), _env(NVIDIA_DISABLE_REQUIRE="1"), True),         # nvlow's own environment too
    ((), _env(NVIDIA_REQUIRE_CUDA="cuda>=99.0"), (), False),     # -e adds a requirement
    (UNMET, _env(NVIDIA_REQUIRE_CUDA="cuda>=12.0"), (), True),   # -e replaces the image's value
    (_env(CUDA_VERSION="v11.6"), (), (), True),                 # legacy, v prefix accepted (toolkit)
    (_env(CUDA_VERSION="12.6"), (), (), False),                 # legacy: cuda>=12.6 on a 12.4 host
    (_env(CUDA_VERSION="9.0.bar"), (), (), False),              # refused by the toolkit
    (_env(CUDA_VERSION="9.0.116.50"), (), (), False),
    (_env(NVIDIA_REQUIRE_CUDA="cuda>=12.0", NVIDIA_REQUIRE_JETPACK="csv-mounts=all"), (), (), True),
])
def test_requirements_use_the_final_environment(image_env, container_env, process_env, met: bool) -> None:
    req = PlanRequest(image_env=image_env, container_env=container_env, process_env=process_env)
    if met:
        plan_for(A100, req)
        return
    with pytest.raises(RequirementError) as info:
        plan_for(A100, req)
    assert info.value.exit_code == 3
    plan_for(A100, replace(req, require=False))  # --no-require


def test_void_skips_requirements() -> None:
    plan_for(A100, PlanRequest(image_env=UNMET + _env(NVIDIA_VISIBLE_DEVICES="void")))


# -- MIG ---------------------------------------------------------------------------------
def test_all_on_a_mig_host_includes_every_mig_access_node() -> None:
    plan = plan_for(MIG, PlanRequest(require=False))
    paths = {d.container_path for d in plan.devices}
    caps = {n.container_path for g in MIG.gpus for m in g.mig_devices for n in m.cap_nodes}
    assert caps and caps <= paths
    assert len(plan.selection.mig_devices) == sum(len(g.mig_devices) for g in MIG.gpus)


def test_a_whole_mig_gpu_gets_no_access_nodes() -> None:
    mig_gpu = next(g for g in MIG.gpus if g.mig_enabled)
    plan = plan_for(MIG, PlanRequest(gpus=str(mig_gpu.index)))
    assert not [d for d in plan.devices if "nvidia-caps" in d.container_path]
    one = plan_for(MIG, PlanRequest(gpus=mig_gpu.mig_devices[0].name_for_index))
    assert [d for d in one.devices if "nvidia-caps" in d.container_path]


def _cap(minor: int) -> DeviceNode:
    return DeviceNode(f"/dev/nvidia-caps/nvidia-cap{minor}", f"/dev/nvidia-caps/nvidia-cap{minor}", 511, minor, "cap")


MIG_ADMIN = replace(MIG, mig_config_node=_cap(1), mig_monitor_node=_cap(2))


@pytest.mark.parametrize("var, node", [("NVIDIA_MIG_CONFIG_DEVICES", "nvidia-cap1"),
                                        ("NVIDIA_MIG_MONITOR_DEVICES", "nvidia-cap2")])
def test_mig_config_and_monitor(var: str, node: str) -> None:
    req = PlanRequest(gpus="none", container_env=((var, "all"),), privileged=True)
    paths = [d.container_path for d in plan_for(MIG_ADMIN, req).devices]
    assert f"/dev/nvidia-caps/{node}" in paths and "/dev/nvidia0" in paths
    # the toolkit: "cannot set MIG_CONFIG_DEVICES in non privileged container"
    with pytest.raises(UsageError, match="not privileged"):
        plan_for(MIG_ADMIN, replace(req, privileged=False))
    # without an engine command line (nvlow args) privilege is unknown: a warning
    assert any(var in w for w in plan_for(MIG_ADMIN, replace(req, privileged=None)).warnings)
    # unset or empty: nothing
    assert f"/dev/nvidia-caps/{node}" not in [d.container_path for d in plan_for(
        MIG_ADMIN, PlanRequest(gpus="none", container_env=((var, ""),), privileged=False)).devices]
    with pytest.raises(HostError, match=f"mig/{'config' if 'CONFIG' in var else 'monitor'}"):
        plan_for(replace(MIG, mig_config_node=None, mig_monitor_node=None), req)


def test_privileged_is_read_from_the_argv() -> None:
    assert request_from_argv(["docker", "run", "--privileged", "img"], {}).request.privileged is True
    assert request_from_argv(["docker", "run", "--privileged=false", "img"], {}).request.privileged is False
    assert request_from_argv(["docker", "run", "img"], {}).request.privileged is False


# -- IMEX channels -----------------------------------------------------------------------
def _imex(n: int) -> DeviceNode:
    path = f"/dev/nvidia-caps-imex-channels/channel{n}"
    return DeviceNode(path, path, 507, n, "imex")


IMEX = replace(A100, imex_channels=(_imex(0), _imex(1)))


@pytest.mark.parametrize("value, channels", [
    ("all", [0, 1]), ("1", [1]), ("0,1,0", [0, 1]), ("", []), ("void", []), ("none", []),
])
def test_imex_channels(value: str, channels: List[int]) -> None:
    plan = plan_for(IMEX, PlanRequest(gpus="0", container_env=_env(NVIDIA_IMEX_CHANNELS=value)))
    got = [int(d.container_path.rsplit("channel", 1)[1]) for d in plan.devices if "imex" in d.container_path]
    assert got == channels


@pytest.mark.parametrize("value, message", [("7", "unknown IMEX channel 7"), ("x", "invalid IMEX channel"),
                                            ("\u0663", "invalid IMEX channel"), ("9" * 50, "invalid IMEX channel")])
def test_imex_channel_errors(value: str, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        plan_for(IMEX, PlanRequest(gpus="0", container_env=_env(NVIDIA_IMEX_CHANNELS=value)))


# -- DRM nodes with graphics/display ---------------------------------------------------------
def _drm(gpu: int) -> Tuple[DeviceNode, ...]:
    return (DeviceNode(f"/dev/dri/card{gpu + 1}", f"/dev/dri/card{gpu + 1}", 226, gpu + 1, "drm"),
            DeviceNode(f"/dev/dri/renderD{128 + gpu}", f"/dev/dri/renderD{128 + gpu}", 226, 128 + gpu, "drm"))


DRM = replace(A100, gpus=tuple(replace(g, drm_nodes=_drm(g.index)) for g in A100.gpus))


@pytest.mark.parametrize("caps, expected", [
    ("graphics", ["/dev/dri/card2", "/dev/dri/renderD129"]),
    ("display", ["/dev/dri/card2", "/dev/dri/renderD129"]),
    ("compute,utility", []),
])
def test_drm_nodes_of_the_selected_gpus(caps: str, expected: List[str]) -> None:
    plan = plan_for(DRM, PlanRequest(gpus="1", capabilities=caps))
    assert [d.container_path for d in plan.devices if "/dri/" in d.container_path] == expected


# -- the engine command line ----------------------------------------------------------------
def test_rewrite_argv_does_what_exec_does() -> None:
    argv = ["docker", "run", "--rm", "--runtime=nvidia", "--device", "nvidia.com/gpu=2", "--gpus", "all", "img", "x"]
    er = request_from_argv(argv, {})
    assert er.request.cdi_devices == ("2",) and er.request.docker_gpus == ("all",)
    plan = plan_for(A100, er.request)
    out = nvlow.rewrite_argv(argv, plan)
    assert out[:3] == ["docker", "run", "--rm"] and out[-2:] == ["img", "x"]
    assert not {"--runtime=nvidia", "nvidia.com/gpu=2", "--gpus"} & set(out)
    assert out == er.rewrite(nvlow.docker_args(plan))


def test_selection_choice_is_pure() -> None:
    # the remote client and the server make the same choice without a host
    req = PlanRequest(container_env=_env(NVIDIA_VISIBLE_DEVICES="1"), image_env=_env(NVIDIA_VISIBLE_DEVICES="2"))
    assert selection_choice(req).source == "container NVIDIA_VISIBLE_DEVICES"
    assert nvlow.plan_for(A100, req).selection.source == "container NVIDIA_VISIBLE_DEVICES"


def test_request_round_trips_through_json() -> None:
    from nvlow.plan.request import request_from_dict

    req = PlanRequest(docker_gpus=("2",), cdi_devices=("0",), gpus="1", capabilities="utility",
                      container_env=_env(A="1"), process_env=_env(NV_GPU="0"), image_env=None,
                      image_labels=_env(L="x"), driver_files="plugin", require=False, privileged=True)
    assert request_from_dict(req.to_dict()) == req


@pytest.mark.parametrize("doc, message", [
    ([], "JSON object"), ({"bogus": 1}, "unknown request field"), ({"gpus": 3}, "must be a string"),
    ({"container_env": [["A"]]}, "pairs"), ({"driver_files": "hardlink"}, "driver-files mode"),
    ({"privileged": "yes"}, "true, false or null"), ({"docker_gpus": "all"}, "list of strings"),
])
def test_hostile_requests_are_usage_errors(doc: object, message: str) -> None:
    from nvlow.plan.request import request_from_dict

    with pytest.raises(UsageError, match=message):
        request_from_dict(doc)


def test_process_env_outside_the_decision_is_dropped() -> None:
    from nvlow.plan.request import request_from_dict

    req = request_from_dict({"process_env": [["LD_PRELOAD", "/x.so"], ["NV_GPU", "1"]]})
    assert req.process_env == (("NV_GPU", "1"),)
