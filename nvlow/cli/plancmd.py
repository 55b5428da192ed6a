"""``nvlow args`` and ``nvlow exec``: selection, requirements, plan, argv injection.

Both commands build a :class:`~nvlow.plan.request.PlanRequest` (nvlow's options, its environment, the
engine command line, the image) and hand it to :func:`nvlow.plan.decide.plan_for` (local hosts) or to
:func:`nvlow.remote.client.remote_plan` (``--host`` / ``NV_HOST`` / ``DOCKER_HOST=tcp://``), whose server
decides it with the same function.
"""
from __future__ import annotations

import os
import sys

from ..frozen import Record, replace
from ..errors import UsageError
from ..model import Host
from ..plan.plan import EngineView, Plan
from ..plan.request import DRIVER_FILE_MODES, PlanRequest, process_pairs, selection_choice
from .options import PlanOptions
from .session import load_host, note, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence


ARGS_FORMATS = ("shell", "json", "compose")


class Prepared(Record, frozen=False):
    """The arguments to inject and what they came from."""

    args: List[str]
    document: Dict[str, Any]
    plan: Optional[Plan] = None  # None for remote plans


def base_request(opts: PlanOptions, env: Mapping[str, str]) -> PlanRequest:
    """nvlow's own options and the decision variables of its environment, as a request."""
    from .options import features_of

    return PlanRequest(gpus=opts.gpus, capabilities=opts.capabilities, process_env=process_pairs(env),
                       driver_files=opts.driver_files, require=not opts.no_require, features=features_of(opts))


def with_image(request: PlanRequest, image: Optional[str], engine_argv: Sequence[str], engine: str,
               env: Mapping[str, str]) -> PlanRequest:
    """The request with the image's environment and labels (read from the engine, never pulled).

    Not read when the selection is already void without it: nothing of the image matters then."""
    if not image or selection_choice(request).void:
        return request
    from ..engine.image import inspect_image

    config, reason = inspect_image(image, engine=engine, engine_argv=list(engine_argv),
                                   docker_host=env.get("DOCKER_HOST"), env=env)
    if config is None:
        note(f"{reason}; image requirement checks skipped")
        return request
    return replace(request, image_env=tuple(config.env), image_labels=tuple(config.labels))


def _remote_wanted(opts: PlanOptions, env: Mapping[str, str]) -> bool:
    # checked without importing nvlow.remote.client: the local path stays lean. A DOCKER_HOST alone names
    # a remote plugin only with the opt-in (nvlow.remote.client.DOCKER_HOST_OPT_IN).
    if opts.simulate:
        return False
    docker_host = env.get("DOCKER_HOST") or ""
    return bool(opts.host or env.get("NV_HOST") or (
        env.get("NVLOW_PLUGIN_ON_DOCKER_HOST") == "1" and docker_host.startswith(("tcp://", "ssh://", "http"))))


def engine_view(opts: PlanOptions) -> EngineView:
    """How the engine sees this host: ``--engine-root`` (checked; None = as nvlow reads it) and the
    volume plugin's name (``--plugin-name``/``NVLOW_PLUGIN_NAME``, the name ``nvlow serve`` serves)."""
    from ..plan.plan import PLUGIN_DRIVER, check_engine_root, check_plugin_name

    root = check_engine_root(opts.engine_root, "--engine-root (NVLOW_ENGINE_ROOT)") if opts.engine_root else None
    return EngineView(root, check_plugin_name(opts.plugin_name or PLUGIN_DRIVER, "--plugin-name (NVLOW_PLUGIN_NAME)"))


def prepare_local(opts: PlanOptions, env: Mapping[str, str], request: PlanRequest) -> Prepared:
    """The plan of this host (discovered only when the selection is not void)."""
    from ..plan.decide import plan_for
    from ..plan.render import docker_args, plan_document

    loaded: List[Host] = []

    def host() -> Host:
        # NVML only when this request needs it (docs/nvml-lazy.md)
        loaded.append(load_host(opts, env, request=request)[1])
        return loaded[0]

    plan = plan_for(host, request, volumes_dir=opts.volumes_dir, engine=engine_view(opts))
    for w in plan.warnings:
        warn(w)
    return Prepared(docker_args(plan), plan_document(plan, loaded[0] if loaded else None), plan)


def prepare_remote(opts: PlanOptions, env: Mapping[str, str], request: PlanRequest) -> Optional[Prepared]:
    """Send the request to a remote ``nvlow serve`` / nvidia-docker-plugin; None when no remote host is configured."""
    from ..remote.client import remote_plan, resolve_remote

    target = resolve_remote(env, opts.host)
    if target is None:
        return None
    for w in target.warnings:
        warn(w)
    rp = remote_plan(target, request, env=env)
    for w in rp.warnings:
        warn(w)
    doc = rp.document if rp.document is not None else {"schema_version": 1, "args": list(rp.args)}
    return Prepared(list(rp.args), doc)


def prepare(opts: PlanOptions, env: Mapping[str, str], request: PlanRequest) -> Prepared:
    """Local or remote plan, by the options and environment; a void selection is decided here
    (nothing to inject, no host or remote asked)."""
    if request.driver_files not in DRIVER_FILE_MODES:
        raise UsageError(f"invalid --driver-files {request.driver_files!r}", hint="use bind, volume or plugin")
    engine_view(opts)  # a bad --engine-root/--plugin-name is a usage error on every path
    if _remote_wanted(opts, env) and not selection_choice(request).void:
        remote = prepare_remote(opts, env, request)
        if remote is not None:
            if opts.engine_root or opts.plugin_name:
                note("--engine-root and --plugin-name apply to local plans; the remote server's own "
                     "--engine-root and --plugin-name decide its answer")
            return remote
    elif not opts.simulate and (env.get("DOCKER_HOST") or "").startswith(("tcp://", "ssh://")):
        from ..remote.client import docker_host_note

        text = docker_host_note(env)
        if text:
            note(text)
    return prepare_local(opts, env, request)


def run_args(opts: PlanOptions, env: Mapping[str, str]) -> int:
    """``nvlow args``: print the docker arguments."""
    from ..plan.render import compose_fragment, shell_line

    fmt = opts.format or ("json" if opts.json else "shell")
    if fmt not in ARGS_FORMATS:
        raise UsageError(f"invalid --format {fmt!r}", hint="use shell, json or compose")
    request = with_image(base_request(opts, env), opts.image, ("docker",), "docker", env)
    prepared = prepare(opts, env, request)
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
        from ..engine.argv import split_engine_command

        # NV_DOCKER / --docker replace the engine program (1.0: "sudo docker -D")
        argv = split_engine_command(opts.docker) + argv[1:]
    return argv


def run_exec(opts: PlanOptions, env: Mapping[str, str]) -> int:
    """``nvlow exec -- ENGINE run ...``: inject and replace the process with the engine."""
    from ..plan.render import shell_line
    from ..plan.request import request_from_argv

    if opts.simulate and not opts.dry_run:
        raise UsageError("exec --simulate only works with --dry-run (there is no real GPU to give a container)")
    argv = _engine_argv(opts)
    er = request_from_argv(argv, env, base=base_request(opts, env), image_hint=opts.image)
    final: List[str]
    document: Optional[Dict[str, Any]] = None
    if not er.command.injectable:
        final = list(argv)
    else:
        for n in er.notes:
            note(n)
        cmd = er.command
        image = None if cmd.rootfs else cmd.image
        request = with_image(er.request, image, argv[:cmd.command_index], cmd.engine, env)
        prepared = prepare(opts, env, request)
        document = prepared.document
        final = er.rewrite(prepared.args)
        # ---- rootless podman: the user must open the nodes (nvlow/cli/rootless.py) ----
        if prepared.plan is not None and prepared.plan.devices and not opts.simulate and not opts.engine_root \
                and cmd.engine == "podman" and os.geteuid() != 0:
            _check_rootless(opts, env, prepared.plan, cmd)
        # ---- end rootless podman ----
    if opts.dry_run:
        if opts.json:
            # the plan document too (as 'nvlow args --json' prints it); null when nothing was injected
            sys.stdout.write(_json_dumps({"schema_version": 1, "argv": final, "plan": document}) + "\n")
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


def _check_rootless(opts: PlanOptions, env: Mapping[str, str], plan: Plan, cmd: Any) -> None:
    """Rootless podman cannot give the container a node its user cannot open: an error before the
    engine runs (a warning with --dry-run, which runs nothing)."""
    from ..errors import HostError
    from ..host.root import HostRoot
    from .rootless import check

    devices = [(d.host_path, d.container_path) for d in plan.devices]
    error, hint, warnings = check(HostRoot(opts.root or "/"), devices, cmd, env)
    for w in warnings:
        warn(w)
    if error is None:
        return
    if opts.dry_run:
        warn(f"{error} ({hint})")
        return
    raise HostError(error, hint=hint)


def _json_dumps(value: object, **kwargs: Any) -> str:
    import json

    return json.dumps(value, **kwargs)
