"""One plan for every path: the same request gives the same plan document through the local CLI
(``nvlow exec --dry-run --json``), the Python API (``request_from_argv`` + ``plan_for``) and a
remote ``nvlow serve`` reached by the CLI's ``--host`` client (``POST /v2/plan`` over HTTP).

Requests are generated from a fixed seed over every input that takes part in the decision: the
engine ``--gpus`` flag, ``nvidia.com`` CDI devices, ``--runtime=nvidia``, ``-e`` and ``--env-file``,
nvlow's ``--gpus``/``--capabilities``/``--driver-files``, nvlow's environment and the image's
environment. An error must be the same on every path too (same exit code).
"""
from __future__ import annotations

import io
import json
import os
import random
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Dict, List, Optional, Tuple

import pytest

import nvlow
from nvlow.cli import main
from nvlow.errors import NvlowError
from nvlow.engine.image import ImageConfig
from nvlow.simulate.hosttree import simulated_host
from test_serve_support import running_server

N_REQUESTS = 120
IMAGE = "parity/image:1"

# None weighted up so that the lower-priority sources (-e, nvlow's env, the image) decide often
DOCKER_GPUS = [None] * 6 + ["all", "2", '"device=1,3"', "device=2", "0"]
CDI = [None] * 6 + ["nvidia.com/gpu=2", "nvidia.com/gpu=all"]
CONTAINER_NVD = [None, "", "void", "1", "0,2", "none", "all", "9"]
CONTAINER_CAPS = [None, "", "utility", "compute,video", "all", "graphics,display"]
PROCESS = [{}, {"NVIDIA_VISIBLE_DEVICES": "3"}, {"NV_GPU": "0 1"}, {"NVIDIA_DRIVER_CAPABILITIES": "utility"},
           {"NVIDIA_DISABLE_REQUIRE": "1"}]
IMAGE_ENV: List[Optional[Dict[str, str]]] = [
    None,
    {"PATH": "/opt/conda/bin:/usr/bin:/bin"},
    {"PATH": "/usr/local/cuda/bin:/usr/bin", "CUDA_VERSION": "12.2.0", "NVIDIA_REQUIRE_CUDA": "cuda>=12.0",
     "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
     "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64"},
    {"CUDA_VERSION": "9.0.176", "PATH": "/usr/bin"},  # legacy: all GPUs, all capabilities
    {"NVIDIA_REQUIRE_CUDA": "cuda>=13.0", "PATH": "/usr/bin"},  # unmet on a 12.4 host: exit 3
    {"NVIDIA_VISIBLE_DEVICES": "3", "NVIDIA_DRIVER_CAPABILITIES": "utility", "PATH": "/bin"},
]
NVLOW_GPUS = [None] * 6 + ["0", "device=1"]
NVLOW_CAPS = [None, None, None, "utility"]
MODES = ["bind", "bind", "plugin"]


def _generate(seed: int, n: int) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        cases.append({
            "id": i,
            "docker_gpus": rng.choice(DOCKER_GPUS), "cdi": rng.choice(CDI), "runtime": rng.random() < 0.3,
            "container_nvd": rng.choice(CONTAINER_NVD), "container_caps": rng.choice(CONTAINER_CAPS),
            "env_file": rng.random() < 0.2, "process": rng.choice(PROCESS), "image_env": rng.choice(IMAGE_ENV),
            "gpus": rng.choice(NVLOW_GPUS), "caps": rng.choice(NVLOW_CAPS), "mode": rng.choice(MODES),
        })
    return cases


CASES = _generate(20261204, N_REQUESTS)


def _engine_argv(case: Dict[str, Any], env_file: str) -> List[str]:
    argv = ["docker", "run", "--rm"]
    if case["runtime"]:
        argv.append("--runtime=nvidia")
    if case["docker_gpus"] is not None:
        argv += ["--gpus", case["docker_gpus"]]
    if case["cdi"] is not None:
        argv += ["--device", case["cdi"]]
    if case["env_file"]:
        argv += ["--env-file", env_file]
    if case["container_nvd"] is not None:
        argv += ["-e", f"NVIDIA_VISIBLE_DEVICES={case['container_nvd']}"]
    if case["container_caps"] is not None:
        argv += ["--env", f"NVIDIA_DRIVER_CAPABILITIES={case['container_caps']}"]
    return argv + [IMAGE, "nvidia-smi"]


def _nvlow_opts(case: Dict[str, Any]) -> List[str]:
    opts = ["--driver-files", case["mode"]]
    if case["gpus"] is not None:
        opts += ["--gpus", case["gpus"]]
    if case["caps"] is not None:
        opts += ["--capabilities", case["caps"]]
    return opts


def _run_cli(args: List[str], env: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if code != 0:
        return code, {"stderr": err.getvalue()}
    return 0, json.loads(out.getvalue())["plan"]


@pytest.fixture(scope="module")
def parity_env(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("parity")
    env_file = tmp / "env.list"
    env_file.write_text("# from --env-file\nNVIDIA_VISIBLE_DEVICES=1,2\nNVIDIA_DRIVER_CAPABILITIES=utility\n")
    root, _opener = simulated_host("dgx-a100")
    with running_server(tmp, "dgx-a100", root=root) as (server, _state, _log):
        yield server, str(env_file), tmp


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"req{c['id']}")
def test_same_plan_on_every_path(case: Dict[str, Any], parity_env, monkeypatch: pytest.MonkeyPatch) -> None:
    server, env_file, tmp = parity_env
    image_env = case["image_env"]

    def fake_inspect(name: str, **_kw: Any):
        assert name == IMAGE
        if image_env is None:
            return None, f"image {name} is not present locally"
        return ImageConfig(name, tuple(image_env.items()), (), "api"), None

    monkeypatch.setattr("nvlow.engine.image.inspect_image", fake_inspect)
    argv = _engine_argv(case, env_file)
    volumes = str(tmp / "volumes")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           **case["process"]}
    opts = _nvlow_opts(case) + ["--volumes-dir", volumes]

    # 1. the local CLI on the simulated host
    local_code, local_doc = _run_cli(["exec", "--simulate", "dgx-a100", "--dry-run", "--json", *opts, "--", *argv],
                                     env)
    # 2. the CLI's remote client against `nvlow serve` on the same simulated host
    host, port = server.address
    remote_code, remote_doc = _run_cli(["exec", "--host", f"http://{host}:{port}", "--dry-run", "--json", *opts,
                                        "--", *argv], env)
    # 3. the Python API
    try:
        h = nvlow.load_host(simulate="dgx-a100")
        base = nvlow.PlanRequest(gpus=case["gpus"], capabilities=case["caps"], driver_files=case["mode"],
                                 process_env=tuple(case["process"].items()))
        er = nvlow.request_from_argv(argv, env, image_env=image_env)
        from dataclasses import replace

        request = replace(er.request, gpus=base.gpus, capabilities=base.capabilities,
                          driver_files=base.driver_files)
        api_doc: Optional[Dict[str, Any]] = nvlow.plan_document(nvlow.plan_for(h, request, volumes_dir=volumes), h)
        api_code = 0
    except NvlowError as exc:
        api_code, api_doc = exc.exit_code, None

    assert local_code == api_code == remote_code, (local_code, api_code, remote_code, local_doc, remote_doc)
    if local_code != 0:
        return
    if local_doc is not None and local_doc["selection"]["mode"] == "void":
        # nothing is injected; the remote client never asks the server (nothing to ask)
        assert remote_doc == local_doc == api_doc
        return
    assert local_doc == api_doc
    assert remote_doc == local_doc


def test_generated_requests_cover_every_outcome() -> None:
    """The seed gives void plans, unmet requirements, selection errors and ordinary plans."""
    from dataclasses import replace

    h = nvlow.load_host(simulate="dgx-a100")
    kinds: Dict[str, int] = {}
    for case in CASES:
        er = nvlow.request_from_argv(_engine_argv(case, os.devnull), case["process"], image_env=case["image_env"])
        request = replace(er.request, gpus=case["gpus"], capabilities=case["caps"], driver_files="bind",
                          process_env=tuple(case["process"].items()))
        try:
            kind = nvlow.plan_for(h, request).selection.mode
        except NvlowError as exc:
            kind = f"exit{exc.exit_code}"
        kinds[kind] = kinds.get(kind, 0) + 1
    assert all(kinds.get(k, 0) >= 5 for k in ("devices", "void", "exit2", "exit3")), kinds
    assert len(CASES) >= 100

