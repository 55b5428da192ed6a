"""``nvlow args`` and ``nvlow exec``: selection, requirements, plan, argv injection."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import UsageError
from ..model import Host
from ..plan import DRIVER_FILE_MODES, Plan, build_plan
from .options import PlanOptions
from .session import env_assignments, first, load_host, note, warn

ARGS_FORMATS = ("shell", "json", "compose")


@dataclass
class EngineContext:
    """What the engine argv tells about the container (exec) or nothing (args)."""

    image: Optional[str] = None
    engine: str = "docker"
    engine_prefix: Tuple[str, ...] = ("docker",)
    container_env: Optional[Dict[str, str]] = None
    docker_gpus: Optional[str] = None


def _image_config(opts: PlanOptions, ctx: EngineContext, env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    if not ctx.image:
        return None
    from ..image import inspect_image

    config, reason = inspect_image(ctx.image, engine=ctx.engine, engine_argv=list(ctx.engine_prefix),
                                   docker_host=env.get("DOCKER_HOST"))
    if config is None:
        note(f"{reason}; image requirement checks skipped")
    return config


def make_plan(opts: PlanOptions, env: Mapping[str, str], ctx: EngineContext) -> Tuple[Plan, Host]:
    """Everything between the options and a :class:`Plan`."""
    from ..driverfiles import DEFAULT_CAPABILITIES, parse_capabilities, select_driver_files
    from ..select import SelectionRequest, resolve_selection

    if opts.driver_files not in DRIVER_FILE_MODES:
        raise UsageError(f"invalid --driver-files {opts.driver_files!r}", hint="use bind, volume or plugin")
    root, host = load_host(opts, env)
    config = _image_config(opts, ctx, env)
    image_env: Optional[Dict[str, str]] = dict(config.env) if config is not None else None
    cenv = ctx.container_env or {}

    docker_count: Optional[int] = None
    docker_devices: Optional[str] = None
    docker_caps: Optional[str] = None
    if ctx.docker_gpus is not None:
        from ..argv import parse_gpus_flag

        req = parse_gpus_flag(ctx.docker_gpus)
        if req.devices:
            docker_devices = ",".join(req.devices)
        else:
            docker_count = req.count if req.count is not None else -1
        caps = [c for c in req.capabilities if c != "gpu"]
        docker_caps = ",".join(caps) if caps else None

    selection = resolve_selection(host.gpus, SelectionRequest(
        docker_gpus_count=docker_count, docker_gpus_devices=docker_devices, cli_gpus=opts.gpus,
        container_env=cenv.get("NVIDIA_VISIBLE_DEVICES"), process_env=env.get("NVIDIA_VISIBLE_DEVICES"),
        nv_gpu=env.get("NV_GPU"),
        image_env=image_env.get("NVIDIA_VISIBLE_DEVICES") if image_env else None,
    ))
    caps_text = first(opts.capabilities, docker_caps, cenv.get("NVIDIA_DRIVER_CAPABILITIES"),
                      env.get("NVIDIA_DRIVER_CAPABILITIES"),
                      image_env.get("NVIDIA_DRIVER_CAPABILITIES") if image_env else None)
    capabilities = parse_capabilities(caps_text) if caps_text else DEFAULT_CAPABILITIES

    if config is not None and not opts.no_require and not selection.is_void:
        _check_requirements(config, host, selection)

    files = None
    volume_path = None
    if not selection.is_void:
        if not host.driver_version:
            from ..errors import HostError

            raise HostError("the NVIDIA driver version is unknown, so its files cannot be selected",
                            hint="check /proc/driver/nvidia/version ('nvlow doctor')")
        files = select_driver_files(root, host.driver_version, capabilities)
        if opts.driver_files == "volume":
            from ..volume import DEFAULT_VOLUMES_DIR, ensure_volume

            result = ensure_volume(files, host.driver_version, opts.volumes_dir or DEFAULT_VOLUMES_DIR)
            volume_path = result.path
    plan = build_plan(host, selection, capabilities, files, mode=opts.driver_files, volume_path=volume_path,
                      image_env=image_env if config is not None else None, explicit_env=cenv)
    for w in plan.warnings:
        warn(w)
    return plan, host


def _check_requirements(config, host: Host, selection) -> None:  # type: ignore[no-untyped-def]
    from ..require import GpuFacts, HostFacts, check_image, requirement_error

    gpus = list(selection.gpus)
    parents = {g.index: g for g in host.gpus}
    for m in selection.mig_devices:
        if m.parent_index in parents and parents[m.parent_index] not in gpus:
            gpus.append(parents[m.parent_index])
    facts = HostFacts(cuda_version=host.cuda_version, driver_version=host.driver_version,
                      gpus=tuple(GpuFacts(arch=g.compute_capability, brand=g.brand) for g in gpus))
    failures = check_image(dict(config.env), dict(config.labels), facts)
    if failures:
        raise requirement_error(failures)


def run_args(opts: PlanOptions, env: Mapping[str, str]) -> int:
    """``nvlow args``: print the docker arguments."""
    from ..render import compose_fragment, docker_args, plan_document, shell_line

    fmt = opts.format or ("json" if opts.json else "shell")
    if fmt not in ARGS_FORMATS:
        raise UsageError(f"invalid --format {fmt!r}", hint="use shell, json or compose")
    ctx = EngineContext(image=opts.image)
    plan, host = make_plan(opts, env, ctx)
    if fmt == "json":
        sys.stdout.write(json.dumps(plan_document(plan, host), indent=2) + "\n")
    elif fmt == "compose":
        sys.stdout.write(compose_fragment(plan))
    else:
        sys.stdout.write(shell_line(docker_args(plan)) + "\n")
    return 0


def _engine_argv(opts: PlanOptions) -> List[str]:
    argv = list(opts.engine_argv)
    if not argv:
        raise UsageError("nvlow exec needs an engine command line",
                         hint="nvlow exec -- docker run --rm IMAGE CMD")
    if opts.docker:
        from ..argv import split_engine_command

        # NV_DOCKER / --docker replace the engine program (1.0: "sudo docker -D")
        argv = split_engine_command(opts.docker) + argv[1:]
    return argv


def run_exec(opts: PlanOptions, env: Mapping[str, str]) -> int:
    """``nvlow exec -- ENGINE run ...``: inject and replace the process with the engine."""
    from ..argv import inject, parse_engine_argv
    from ..render import docker_args, shell_line

    if opts.simulate and not opts.dry_run:
        raise UsageError("exec --simulate only works with --dry-run (there is no real GPU to give a container)")
    argv = _engine_argv(opts)
    cmd = parse_engine_argv(argv, image_hint=opts.image)
    final: List[str]
    if not cmd.injectable:
        final = list(argv)
    else:
        gpus_values = cmd.get("gpus")
        ctx = EngineContext(
            image=None if cmd.rootfs else cmd.image,
            engine=cmd.engine,
            engine_prefix=tuple(argv[:cmd.command_index]),
            container_env=env_assignments(list(cmd.get("env")), env),
            docker_gpus=gpus_values[-1] if gpus_values else None,
        )
        plan, _host = make_plan(opts, env, ctx)
        final = inject(cmd, docker_args(plan), remove=("gpus",))
    if opts.dry_run:
        if opts.json:
            sys.stdout.write(json.dumps({"schema_version": 1, "argv": final}) + "\n")
        else:
            sys.stdout.write(shell_line(final) + "\n")
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(final[0], final)
    except OSError as exc:
        from ..errors import EngineError

        raise EngineError(f"cannot run {final[0]}: {exc.strerror}",
                          hint="install Docker or Podman, or name the engine with --docker / NV_DOCKER") from None
    return 127  # pragma: no cover

