"""args/exec open NVML only when the request needs it (docs/nvml-lazy.md).

The CLI runs as a subprocess on a fake host root with the compiled fake libnvidia-ml/libcuda,
which log every call to ``$NVLOW_FAKE_CALL_LOG``; ``NVLOW_EAGER_NVML=1`` is the old behaviour
(NVML always, every field), the reference the lazy plans must equal."""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from nvlow.model import ProcfsFacts
from nvlow.plan.request import PlanRequest, needs_cuda_version, needs_nvml, nvml_reason
from nvlow.simulate.presets import get_preset
from test_cli_native import env_for, make_root, nvlow  # noqa: F401 - env_for is a fixture

UUIDS = ("GPU-aaaa1111", "GPU-aaaa2222", "GPU-bbbb3333")
FACTS = ProcfsFacts(gpu_uuids=UUIDS)
MIG_FACTS = ProcfsFacts(gpu_uuids=UUIDS, mig_gpus=(1,))
#: what a plan never needs: asked only by info/status/serve (NativeDriverLibrary fields="all")
NOT_FOR_PLANS = ("nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetBAR1MemoryInfo",
                 "nvmlDeviceGetNumaNodeId", "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth",
                 "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetPersistenceMode", "cuInit")


# -- the pure rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("request_", [
    PlanRequest(gpus="0"), PlanRequest(gpus="all"), PlanRequest(), PlanRequest(gpus="0,2"),
    PlanRequest(gpus="GPU-bbbb"), PlanRequest(gpus="0000:07:00.0"), PlanRequest(docker_gpus=("2",)),
    PlanRequest(docker_gpus=('"device=0,1"',)), PlanRequest(cdi_devices=("0",)), PlanRequest(gpus="nvidia.com/gpu=0"),
    PlanRequest(process_env=(("NV_GPU", "0 GPU-aaaa1"),)),
    PlanRequest(image_env=(("NVIDIA_REQUIRE_CUDA", "cuda>=12.0 driver>=535"),)),
    PlanRequest(image_env=(("NVIDIA_REQUIRE_ARCH", "arch>=8.0"),), require=False),
    PlanRequest(image_env=(("NVIDIA_REQUIRE_BRAND", "brand=tesla"), ("NVIDIA_DISABLE_REQUIRE", "true"))),
    PlanRequest(gpus="void", image_env=(("NVIDIA_REQUIRE_BRAND", "brand=tesla"),)),
    PlanRequest(container_env=(("NVIDIA_VISIBLE_DEVICES", ""),), gpus=None),
])
def test_procfs_is_enough(request_):
    assert nvml_reason(request_, FACTS) is None
    assert not needs_nvml(request_, FACTS)


@pytest.mark.parametrize("request_, facts, word", [
    (PlanRequest(gpus="MIG-0f3e"), FACTS, "MIG"),
    (PlanRequest(gpus="0:1"), FACTS, "MIG"),
    (PlanRequest(gpus="MIG-GPU-aaaa1111/1/0"), FACTS, "MIG"),
    (PlanRequest(cdi_devices=("1:0",)), FACTS, "MIG"),
    (PlanRequest(gpus="nvidia.com/mig=MIG-1234"), FACTS, "MIG"),
    (PlanRequest(gpus="all"), MIG_FACTS, "MIG"),
    (PlanRequest(), MIG_FACTS, "MIG"),
    (PlanRequest(process_env=(("NVIDIA_VISIBLE_DEVICES", "all"),)), MIG_FACTS, "MIG"),
    (PlanRequest(gpus="GPU-aaaa"), FACTS, "UUID"),  # ambiguous in procfs
    (PlanRequest(gpus="GPU-cccc"), FACTS, "UUID"),  # unknown to procfs
    (PlanRequest(gpus="0", image_env=(("NVIDIA_REQUIRE_ARCH", "arch>=8.0"),)), FACTS, "brand/architecture"),
    (PlanRequest(gpus="0", container_env=(("NVIDIA_REQUIRE_X", "brand=tesla"),)), FACTS, "brand/architecture"),
    (PlanRequest(gpus="0", container_env=(("NVIDIA_MIG_CONFIG_DEVICES", "0:0"),)), FACTS, "MIG"),
    (PlanRequest(gpus="0"), ProcfsFacts(gpu_uuids=(None,), complete=False), "procfs"),
])
def test_nvml_needed(request_, facts, word):
    reason = nvml_reason(request_, facts)
    assert reason is not None and word in reason


def test_count_and_indices_on_a_mig_host_need_no_nvml():
    assert nvml_reason(PlanRequest(docker_gpus=("2",)), MIG_FACTS) is None
    assert nvml_reason(PlanRequest(gpus="1"), MIG_FACTS) is None  # the whole GPU: procfs knows it


def test_cuda_version_only_for_a_requirement():
    assert not needs_cuda_version(PlanRequest(gpus="0"))
    assert needs_cuda_version(PlanRequest(image_env=(("CUDA_VERSION", "9.0"),)))
    assert needs_cuda_version(PlanRequest(image_labels=(("com.nvidia.cuda.version", "8.0"),)))
    assert not needs_cuda_version(PlanRequest(image_env=(("NVIDIA_REQUIRE_CUDA", "cuda>=12"),
                                                         ("NVIDIA_DISABLE_REQUIRE", "1"))))
    assert not needs_cuda_version(PlanRequest(gpus="void", image_env=(("CUDA_VERSION", "9.0"),)))


# -- the CLI on a fake root --------------------------------------------------------------------
def _calls(path):
    if not os.path.exists(path):
        return Counter()
    with open(path, encoding="utf-8") as fh:
        counts = Counter(line.strip() for line in fh if line.strip())
    os.unlink(path)
    return counts


def _pair(env, log, *args):
    """(lazy result, lazy calls, eager result, eager calls) of one nvlow command line."""
    lazy = nvlow(env, *args)
    lazy_calls = _calls(log)
    eager = nvlow({**env, "NVLOW_EAGER_NVML": "1"}, *args)
    eager_calls = _calls(log)
    assert lazy.returncode == eager.returncode, (lazy.stderr, eager.stderr)
    return lazy, lazy_calls, eager, eager_calls


@pytest.fixture()
def fake_host(tmp_path, fake_driver, env_for):
    def make(preset):
        fake = fake_driver(get_preset(preset))
        root = make_root(tmp_path, fake, preset)
        env = env_for(fake)
        env["NVLOW_FAKE_CALL_LOG"] = str(tmp_path / "calls.log")
        return root, env, env["NVLOW_FAKE_CALL_LOG"]
    return make


@pytest.mark.parametrize("gpus", ["0", "all", "3,GPU-" + get_preset("dgx-a100").gpus[5].uuid[4:14], "0000:0f:00.0"])
def test_args_without_mig_never_loads_nvml_and_equals_the_nvml_plan(fake_host, gpus):
    root, env, log = fake_host("dgx-a100")
    lazy, lazy_calls, eager, eager_calls = _pair(env, log, "args", "--root", root, "--gpus", gpus, "--json")
    assert lazy.returncode == 0, lazy.stderr
    assert lazy_calls == Counter()  # neither libnvidia-ml nor libcuda was called
    assert eager_calls["nvmlInit_v2"] == 1  # the reference did use NVML
    assert json.loads(lazy.stdout) == json.loads(eager.stdout)
    assert lazy.stderr == eager.stderr


def test_exec_dry_run_without_mig_never_loads_nvml(fake_host):
    root, env, log = fake_host("dgx-a100")
    argv = ("exec", "--dry-run", "--json", "--root", root, "--", "docker", "run", "--gpus", "2", "img")
    lazy, lazy_calls, eager, _ = _pair(env, log, *argv)
    assert lazy.returncode == 0, lazy.stderr
    assert lazy_calls == Counter()
    assert json.loads(lazy.stdout) == json.loads(eager.stdout)


def test_a_cuda_requirement_asks_libcuda_only(fake_host):
    root, env, log = fake_host("dgx-a100")
    argv = ("exec", "--dry-run", "--json", "--root", root, "--", "docker", "run",
            "-e", "NVIDIA_REQUIRE_CUDA=cuda>=12.0", "img")
    lazy, lazy_calls, eager, _ = _pair(env, log, *argv)
    assert lazy.returncode == 0, lazy.stderr
    assert lazy_calls == Counter({"cuDriverGetVersion": 1})
    assert json.loads(lazy.stdout) == json.loads(eager.stdout)
    too_new = nvlow(env, *argv[:-3], "-e", "NVIDIA_REQUIRE_CUDA=cuda>=99.0", "img")
    assert too_new.returncode == 3 and "cuda>=99.0" in too_new.stderr


def test_a_brand_requirement_opens_nvml_for_plan_fields_only(fake_host):
    root, env, log = fake_host("dgx-a100")
    argv = ("exec", "--dry-run", "--json", "--root", root, "--", "docker", "run",
            "-e", "NVIDIA_REQUIRE_BRAND=brand=nvidia", "img")
    lazy, lazy_calls, eager, eager_calls = _pair(env, log, *argv)
    assert lazy.returncode == 0, lazy.stderr
    assert lazy_calls["nvmlInit_v2"] == 1 and lazy_calls["nvmlDeviceGetBrand"] == 8
    assert not [f for f in NOT_FOR_PLANS if lazy_calls[f]]
    assert sum(lazy_calls.values()) < sum(eager_calls.values())
    assert json.loads(lazy.stdout) == json.loads(eager.stdout)


@pytest.mark.parametrize("gpus", ["all", "0:1", "0"])
def test_mig_host(fake_host, gpus):
    root, env, log = fake_host("dgx-h100-mig")
    lazy, lazy_calls, eager, _ = _pair(env, log, "args", "--root", root, "--gpus", gpus, "--json")
    assert lazy.returncode == 0, lazy.stderr
    doc = json.loads(lazy.stdout)
    assert doc == json.loads(eager.stdout)
    if gpus == "0":  # a whole GPU: procfs is enough even on a MIG host
        assert lazy_calls == Counter()
    else:
        assert lazy_calls["nvmlInit_v2"] == 1
        assert not [f for f in NOT_FOR_PLANS if lazy_calls[f]]
        assert all(g["uuid"] for g in doc["gpus"])  # MIG UUIDs, from NVML


def test_info_still_reads_nvml_whole(fake_host):
    root, env, log = fake_host("dgx-a100")
    res = nvlow(env, "info", "--root", root, "--json")
    assert res.returncode == 0, res.stderr
    calls = _calls(log)
    assert calls["nvmlInit_v2"] == 1 and calls["nvmlDeviceGetPowerManagementLimit"] == 8


def test_no_nvml_option_still_wins(fake_host):
    root, env, log = fake_host("dgx-a100")
    res = nvlow(env, "args", "--root", root, "--no-nvml", "--gpus", "MIG-0000")
    assert res.returncode == 2 and _calls(log) == Counter()


def test_nvml_order_that_is_not_bus_order_is_a_warning():
    from nvlow.host.discover import _order_check
    from nvlow.records import GpuRecord
    from nvlow.host.scan import ProcGpu, ProcScan

    scan = ProcScan("1", False, (), (ProcGpu("0000:07:00.0", 0, "GPU-a", "A", False, None, None),
                                     ProcGpu("0000:0f:00.0", 1, "GPU-b", "A", False, None, None)), ())
    bus_order = [GpuRecord(0, 0, "GPU-a", "A", "00000000:07:00.0"), GpuRecord(1, 1, "GPU-b", "A", "00000000:0F:00.0")]
    assert _order_check(scan, bus_order) == []
    swapped = [GpuRecord(0, 1, "GPU-b", "A", "00000000:0F:00.0"), GpuRecord(1, 0, "GPU-a", "A", "00000000:07:00.0")]
    assert "differs from the PCI bus order" in _order_check(scan, swapped)[0]


def test_status_does_not_ask_again_for_what_a_gpu_lacks(fake_host):
    """A field NVML answers NOT_SUPPORTED is not asked again while the library is open (serve reads
    status on every request): three readings ask a supported field three times per GPU, an unsupported
    one once, and every reading shows the same values."""
    root, env, log = fake_host("dgx-a100")
    res = nvlow(env, "status", "--root", root, "--json", "--watch", "0.01", "--count", "3")
    assert res.returncode == 0, res.stderr
    calls = _calls(log)
    readings = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(readings) == 3 and readings[0]["gpus"] == readings[2]["gpus"]
    assert calls["nvmlDeviceGetPowerUsage"] == 3 * 8
    assert calls["nvmlDeviceGetEncoderUtilization"] == 8  # NOT_SUPPORTED on this fake: asked once per GPU
    assert all(g["utilization"]["encoder"] is None for g in readings[2]["gpus"])
