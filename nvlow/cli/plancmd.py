"""``nvlow args`` and ``nvlow exec``: selection, requirements, plan, argv injection.

Both commands are thin layers over :mod:`nvlow.api` (local hosts) and
:mod:`nvlow.remote` (``--host`` / ``NV_HOST`` / ``DOCKER_HOST=tcp://``).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import UsageError
from ..plan import DRIVER_FILE_MODES, Plan
from .options import PlanOptions
from .session import first, load_host, note, warn

ARGS_FORMATS = ("shell", "json", "compose")
# a CDI device of NVIDIA's vendor (nvidia.com/gpu=0, nvidia.com/mig=1:2, nvidia.com/gpu=all)
_CDI_NVIDIA = re.compile(r"^nvidia\.com/[A-Za-z0-9_.-]+=(\S+)$")


@dataclass
class EngineContext:
    """What the engine argv tells about the container (exec) or nothing (args)."""

    image: Optional[str] = None
    engine: str = "docker"
    engine_prefix: Tuple[str, ...] = ("docker",)
    container_env: Optional[Dict[str, str]] = None
    docker_gpus: Optional[str] = None
    #: GPUs named as CDI devices in the argv (--device nvidia.com/gpu=0): a selection like --gpus
    cdi_devices: Optional[str] = None


@dataclass
class Prepared:
    """The arguments to inject and what they came from."""

    args: List[str]
    document: Dict[str, Any]
    plan: Optional[Plan] = None  # None for remote plans


def _image_config(ctx: EngineContext, env: Mapping[str, str]) -> Any:
    if not ctx.image:
        return None
    from ..image import inspect_image

    config, reason = inspect_image(ctx.image, engine=ctx.engine, engine_argv=list(ctx.engine_prefix),
                                   docker_host=env.get("DOCKER_HOST"), env=env)
    if config is None:
        note(f"{reason}; image requirement checks skipped")
    return config


def _docker_gpus_caps(ctx: EngineContext) -> Optional[str]:
    """The capabilities named in a docker ``--gpus`` value (docker's own ``gpu`` dropped)."""
    if ctx.docker_gpus is None:
        return None
    from ..argv import parse_gpus_flag

    return ",".join(c for c in parse_gpus_flag(ctx.docker_gpus).capabilities if c != "gpu") or None


def _remote_wanted(opts: PlanOptions, env: Mapping[str, str]) -> bool:
    # checked without importing nvlow.remote: the local path stays lean
    return not opts.simulate and bool(opts.host or env.get("NV_HOST")
                                      or (env.get("DOCKER_HOST") or "").startswith("tcp://"))


def _require(failures: Tuple[str, ...]) -> None:
    """Raise the exit-3 error for unmet image requirements."""
    if failures:
        from ..require import requirement_error

        raise requirement_error(failures)


def prepare_local(opts: PlanOptions, env: Mapping[str, str], ctx: EngineContext) -> Prepared:
    """Discover this host and build the plan for the options and the engine argv."""
    from .. import api
    from ..render import docker_args, plan_document

    _root, host = load_host(opts, env)
    config = _image_config(ctx, env)
    image_env: Optional[Dict[str, str]] = dict(config.env) if config is not None else None
    cenv = ctx.container_env or {}
    docker_caps = _docker_gpus_caps(ctx)
    request = api.selection_request(env, gpus=opts.gpus, container_env=cenv, image_env=image_env,
                                    docker_gpus=ctx.docker_gpus)
    if ctx.cdi_devices is not None and request.docker_gpus_devices is None and request.docker_gpus_count is None:
        from dataclasses import replace

        request = replace(request, docker_gpus_devices=ctx.cdi_devices)
    selection = api.choose_gpus(host, request)
    caps_text = first(opts.capabilities, docker_caps, cenv.get("NVIDIA_DRIVER_CAPABILITIES"),
                      env.get("NVIDIA_DRIVER_CAPABILITIES"),
                      image_env.get("NVIDIA_DRIVER_CAPABILITIES") if image_env else None)
    if config is not None and not opts.no_require and not selection.is_void:
        _require(api.check_requirements(host, selection, dict(config.env), dict(config.labels)))
    plan = api.make_plan(host, selection, caps_text, driver_files_mode=opts.driver_files,
                         volumes_dir=opts.volumes_dir, image_env=image_env, explicit_env=cenv)
    for w in plan.warnings:
        warn(w)
    return Prepared(docker_args(plan), plan_document(plan, host), plan)


def prepare_remote(opts: PlanOptions, env: Mapping[str, str], ctx: EngineContext) -> Optional[Prepared]:
    """Ask a remote ``nvlow serve`` / nvidia-docker-plugin; None when no remote host is configured."""
    from ..remote import remote_plan, resolve_remote

    target = resolve_remote(env, opts.host)
    if target is None:
        return None
    for w in target.warnings:
        warn(w)
    cenv = ctx.container_env or {}
    gpus: Optional[str] = None
    if ctx.docker_gpus is not None:
        from ..argv import parse_gpus_flag

        req = parse_gpus_flag(ctx.docker_gpus)
        if req.devices:
            gpus = ",".join(req.devices)
        elif req.count is not None and req.count >= 0:
            gpus = ",".join(str(i) for i in range(req.count)) or "none"
        else:
            gpus = "all"
    gpus = first(gpus, ctx.cdi_devices, opts.gpus, cenv.get("NVIDIA_VISIBLE_DEVICES"),
                 env.get("NVIDIA_VISIBLE_DEVICES"))
    caps = first(opts.capabilities, _docker_gpus_caps(ctx), cenv.get("NVIDIA_DRIVER_CAPABILITIES"))
    rp = remote_plan(target, gpus=gpus, capabilities=caps, env=env, driver_files=opts.driver_files,
                     nv_gpu=env.get("NV_GPU") if gpus is None else None)
    for w in rp.warnings:
        warn(w)
    config = _image_config(ctx, env)
    if config is not None and not opts.no_require:
        from ..require import HostFacts, check_image

        facts = HostFacts(cuda_version=rp.cuda_version, driver_version=rp.driver_version, gpus=())
        _require(tuple(check_image(dict(config.env), dict(config.labels), facts)))
    doc = rp.document if rp.document is not None else {"schema_version": 1, "args": list(rp.args)}
    return Prepared(list(rp.args), doc)


def prepare(opts: PlanOptions, env: Mapping[str, str], ctx: EngineContext) -> Prepared:
    """Local or remote plan, by the options and environment."""
    if opts.driver_files not in DRIVER_FILE_MODES:
        raise UsageError(f"invalid --driver-files {opts.driver_files!r}", hint="use bind, volume or plugin")
    if _remote_wanted(opts, env):
        remote = prepare_remote(opts, env, ctx)
        if remote is not None:
            return remote
    return prepare_local(opts, env, ctx)


def run_args(opts: PlanOptions, env: Mapping[str, str]) -> int:
    """``nvlow args``: print the docker arguments."""
    from ..render import compose_fragment, shell_line

    fmt = opts.format or ("json" if opts.json else "shell")
    if fmt not in ARGS_FORMATS:
        raise UsageError(f"invalid --format {fmt!r}", hint="use shell, json or compose")
    prepared = prepare(opts, env, EngineContext(image=opts.image))
    if fmt == "json":
        sys.stdout.write(_json_dumps(prepared.document, indent=2) + "\n")
    elif fmt == "compose":
        if prepared.plan is None:
            raise UsageError("--format compose needs a local host (not --host/NV_HOST)")
        sys.stdout.write(compose_fragment(prepared.plan))
    else:
        sys.stdout.write(shell_line(prepared.args) + "\n")
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
    from ..render import shell_line

    if opts.simulate and not opts.dry_run:
        raise UsageError("exec --simulate only works with --dry-run (there is no real GPU to give a container)")
    argv = _engine_argv(opts)
    cmd = parse_engine_argv(argv, image_hint=opts.image)
    final: List[str]
    if not cmd.injectable:
        final = list(argv)
    else:
        from ..engineenv import container_environment

        gpus_values = cmd.get("gpus")
        cdi = [o for o in cmd.options if o.name == "device" and o.value and _CDI_NVIDIA.match(o.value)]
        runtime = [o for o in cmd.options if o.name == "runtime" and o.value == "nvidia"]
        if runtime:
            # the NVIDIA runtime is what nvlow replaces; on a host with only the driver docker
            # would fail with "Unknown runtime specified nvidia" (NVIDIA/nvidia-docker #578)
            note("removed --runtime=nvidia: nvlow passes the GPUs itself")
        if cdi:
            note("replaced CDI device(s) " + ", ".join(o.value or "" for o in cdi) + " by nvlow's explicit devices")
        ctx = EngineContext(
            image=None if cmd.rootfs else cmd.image,
            engine=cmd.engine,
            engine_prefix=tuple(argv[:cmd.command_index]),
            container_env=container_environment(cmd.get("env-file"), cmd.get("env"), env),
            docker_gpus=gpus_values[-1] if gpus_values else None,
            cdi_devices=",".join(_CDI_NVIDIA.match(o.value or "").group(1) for o in cdi) if cdi else None,  # type: ignore[union-attr]
        )
        final = inject(cmd, prepare(opts, env, ctx).args, remove=("gpus",), remove_options=cdi + runtime)
    if opts.dry_run:
        if opts.json:
            sys.stdout.write(_json_dumps({"schema_version": 1, "argv": final}) + "\n")
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


def _json_dumps(value: object, **kwargs: Any) -> str:
    import json

    return json.dumps(value, **kwargs)
