"""The typer application: every command, its help, and the slow-path parsing of ``args``/``exec``."""
from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional

import typer

from .options import ENV_OPTIONS, EXEC_ENV_OPTIONS, SIMULATE_PRESETS, CommonOptions, PlanOptions, hoist_globals

app = typer.Typer(
    name="nvlow",
    help="Give Docker/Podman containers NVIDIA GPUs with only the driver installed.",
    no_args_is_help=True,
    add_completion=False,  # `nvlow completion bash|zsh|fish` prints the script instead
    context_settings={"help_option_names": ["-h", "--help"]},
)

# An option given on the command line beats its environment variable (click's envvar); the fast parser
# (nvlow.cli.fast) applies the same ENV_OPTIONS table the same way.
ROOT = typer.Option("/", "--root", help="Host root for /proc, /dev, ld.so.cache and driver files.",
                    envvar=ENV_OPTIONS["root"])
SIMULATE = typer.Option(None, "--simulate", help="Run on a built-in simulated host: dgx-a100, dgx-h100-mig, "
                        "workstation, no-gpu, no-driver, wsl2.", envvar=ENV_OPTIONS["simulate"],
                        metavar="[" + "|".join(SIMULATE_PRESETS) + "]")
NO_NVML = typer.Option(False, "--no-nvml", help="Do not load NVML; use /proc and /dev only.")
QUIET = typer.Option(False, "--quiet", "-q", help="No notes or warnings on stderr (errors still print).")
DEBUG = typer.Option(False, "--debug", help="Show tracebacks on errors.")
JSON = typer.Option(False, "--json", help="Print JSON (schema_version 1) to stdout.")
NO_UVM = typer.Option(False, "--no-uvm-load", help="Never run nvidia-modprobe to load nvidia-uvm.")
GPUS = typer.Option(None, "--gpus", help="GPUs: all, none, void, indices, GPU-/MIG- UUIDs (prefixes), bus ids, GPU:MIG.")
CAPS = typer.Option(None, "--capabilities", metavar="CAP[,CAP...]", help="Driver capabilities: compute,utility,video,graphics,display,ngx,"
                    "compat32 or all (default: NVIDIA_DRIVER_CAPABILITIES, else compute,utility).")
DRIVER_FILES = typer.Option("bind", "--driver-files", metavar="[bind|volume|plugin]", help="bind (read-only binds), volume (1.0 driver volume) "
                            "or plugin (volume served by 'nvlow serve').")
VOLUMES_DIR = typer.Option(None, "--volumes-dir", help="Where --driver-files volume builds volumes "
                           "(default /var/lib/nvlow/volumes).")
IMAGE = typer.Option(None, "--image", help="Image to read PATH/LD_LIBRARY_PATH and requirements from "
                     "(exec: the image token, when the engine argv is unusual).")
NO_REQUIRE = typer.Option(False, "--no-require", help="Skip the image's CUDA/driver requirement checks.")
GDS = typer.Option(False, "--gds", help="Add the GPUDirect Storage nodes /dev/nvidia-fs* (as NVIDIA_GDS=enabled).")
MOFED = typer.Option(False, "--mofed", help="Add the InfiniBand nodes /dev/infiniband/uverbs* and rdma_cm "
                     "(as NVIDIA_MOFED=enabled).")
GDRCOPY = typer.Option(False, "--gdrcopy", help="Add the GDRCopy node /dev/gdrdrv (as NVIDIA_GDRCOPY=enabled).")
NVSWITCH = typer.Option(False, "--nvswitch", help="Add the NVSwitch nodes /dev/nvidia-nvswitch* "
                        "(as NVIDIA_NVSWITCH=enabled).")
ENGINE_ROOT = typer.Option(None, "--engine-root", envvar=ENV_OPTIONS["engine_root"],
                           help="The host root as the container engine sees it (default: the same as --root): "
                           "device and driver-file paths are handed to the engine under it, e.g. --root /host "
                           "--engine-root / in a container that mounts the host's / at /host.")
PLUGIN_NAME = typer.Option(None, "--plugin-name", envvar=ENV_OPTIONS["plugin_name"],
                           help="Volume plugin name for --driver-files plugin: the name 'nvlow serve "
                           "--plugin-name' serves (default nvidia-docker).")
HOST = typer.Option(None, "--host", help="Ask a remote 'nvlow serve' or nvidia-docker-plugin: http://HOST:PORT or "
                    "ssh://[USER@]HOST[:PORT] (default: NV_HOST, or DOCKER_HOST=tcp://HOST on port 3476).")


def group(name: str, help_text: str) -> typer.Typer:
    """A command group (``cdi``, ``slurm``) that behaves like the app: ``-h``, help when bare."""
    return typer.Typer(name=name, help=help_text, no_args_is_help=True,
                       context_settings={"help_option_names": ["-h", "--help"]})


def _run(debug: bool, fn: Callable[[], int]) -> None:
    from . import report_error

    try:
        code = fn()
    except typer.Exit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the CLI turns every error into an exit code
        code = report_error(exc, debug)
    raise typer.Exit(code)


def _common(root: str, simulate: Optional[str], no_nvml: bool, debug: bool, json_: bool,
            no_uvm: bool = False) -> CommonOptions:
    return CommonOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_,
                         no_uvm_load=no_uvm)


@app.command("args")
def args_cmd(
    root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML, debug: bool = DEBUG,
    json_: bool = JSON, no_uvm_load: bool = NO_UVM, gpus: Optional[str] = GPUS,
    capabilities: Optional[str] = CAPS, driver_files: str = DRIVER_FILES, volumes_dir: Optional[str] = VOLUMES_DIR,
    image: Optional[str] = IMAGE, no_require: bool = NO_REQUIRE, host: Optional[str] = HOST,
    engine_root: Optional[str] = ENGINE_ROOT, plugin_name: Optional[str] = PLUGIN_NAME,
    format_: Optional[str] = typer.Option(None, "--format", metavar="[shell|json|compose]",
                                          help="shell (default), json or compose."),
    quiet: bool = QUIET, gds: bool = GDS, mofed: bool = MOFED, gdrcopy: bool = GDRCOPY, nvswitch: bool = NVSWITCH,
) -> None:
    """Print the docker/podman run arguments: docker run $(nvlow args) IMAGE."""
    from . import run_plan_command

    opts = PlanOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_,
                       no_uvm_load=no_uvm_load, gpus=gpus, capabilities=capabilities, driver_files=driver_files,
                       volumes_dir=volumes_dir, image=image, no_require=no_require, format=format_, host=host,
                       engine_root=engine_root, plugin_name=plugin_name, quiet=quiet, gds=gds, mofed=mofed,
                       gdrcopy=gdrcopy, nvswitch=nvswitch)
    raise typer.Exit(run_plan_command(opts, os.environ, "args", debug))


# Options end at the first engine word, with or without "--" (as in the fast parser): in
# `nvlow exec docker run --gpus 1 IMAGE` the --gpus belongs to docker, not to nvlow.
@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": False,
                                       "allow_interspersed_args": False})
def exec_cmd(
    engine_argv: List[str] = typer.Argument(None, help="The engine command line after --, e.g. docker run IMAGE."),
    root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML, debug: bool = DEBUG,
    json_: bool = JSON, no_uvm_load: bool = NO_UVM, gpus: Optional[str] = GPUS,
    capabilities: Optional[str] = CAPS, driver_files: str = DRIVER_FILES, volumes_dir: Optional[str] = VOLUMES_DIR,
    image: Optional[str] = IMAGE, no_require: bool = NO_REQUIRE, host: Optional[str] = HOST,
    engine_root: Optional[str] = ENGINE_ROOT, plugin_name: Optional[str] = PLUGIN_NAME,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the final command instead of running it."),
    docker: Optional[str] = typer.Option(None, "--docker", help="Engine command to use (split like a shell).",
                                         envvar=EXEC_ENV_OPTIONS["docker"]),
    quiet: bool = QUIET, gds: bool = GDS, mofed: bool = MOFED, gdrcopy: bool = GDRCOPY, nvswitch: bool = NVSWITCH,
) -> None:
    """Run the engine with GPU arguments injected: nvlow exec -- docker run --rm IMAGE CMD.

    nvlow's own failures exit 1/2/3 with an error line; 126: the engine cannot be executed, 127: not
    found (as docker run); otherwise the status is the container's."""
    from . import run_plan_command

    opts = PlanOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_,
                       no_uvm_load=no_uvm_load, gpus=gpus, capabilities=capabilities, driver_files=driver_files,
                       volumes_dir=volumes_dir, image=image, no_require=no_require, dry_run=dry_run,
                       docker=docker, engine_argv=list(engine_argv or []), host=host, engine_root=engine_root,
                       plugin_name=plugin_name, quiet=quiet, gds=gds, mofed=mofed, gdrcopy=gdrcopy,
                       nvswitch=nvswitch)
    raise typer.Exit(run_plan_command(opts, os.environ, "exec", debug))


@app.command("info")
def info_cmd(root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML,
             debug: bool = DEBUG, json_: bool = JSON, no_uvm_load: bool = NO_UVM) -> None:
    """Driver and CUDA versions, and every GPU and MIG device."""
    from .hostcmd import run_info

    opts = _common(root, simulate, no_nvml, debug, json_, no_uvm_load)
    _run(debug, lambda: run_info(opts, os.environ))


@app.command("list")
def list_cmd(root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML,
             debug: bool = DEBUG, json_: bool = JSON, no_uvm_load: bool = NO_UVM,
             gpus: Optional[str] = GPUS, capabilities: Optional[str] = CAPS, gds: bool = GDS,
             mofed: bool = MOFED, gdrcopy: bool = GDRCOPY, nvswitch: bool = NVSWITCH) -> None:
    """Device nodes, binaries, libraries and sockets a GPU container gets (one host path per line)."""
    from .hostcmd import run_list

    opts = _common(root, simulate, no_nvml, debug, json_, no_uvm_load)
    features = tuple(f for f, on in (("gds", gds), ("mofed", mofed), ("gdrcopy", gdrcopy), ("nvswitch", nvswitch))
                     if on)
    _run(debug, lambda: run_list(opts, os.environ, gpus, capabilities, features))


@app.command("status")
def status_cmd(root: str = ROOT, simulate: Optional[str] = SIMULATE, debug: bool = DEBUG, json_: bool = JSON,
               watch: Optional[float] = typer.Option(None, "--watch", help="Refresh every SECONDS until Ctrl-C."),
               count: Optional[int] = typer.Option(None, "--count", help="With --watch: stop after N refreshes."),
               no_nvml: bool = typer.Option(False, "--no-nvml", help="Accepted as on every command, but status "
                                            "reads its live values only from NVML: refused (use 'nvlow info "
                                            "--no-nvml')."),
               ) -> None:
    """Live power, temperature, utilization, memory, clocks and compute processes per GPU."""
    from .statuscmd import run_status

    opts = _common(root, simulate, no_nvml, debug, json_)
    _run(debug, lambda: run_status(opts, os.environ, watch, count))


@app.command("doctor")
def doctor_cmd(root: str = ROOT, simulate: Optional[str] = SIMULATE, debug: bool = DEBUG, json_: bool = JSON,
               no_engine: bool = typer.Option(False, "--no-engine", help="Skip the container engine checks."),
               no_nvml: bool = typer.Option(False, "--no-nvml", help="Do not load NVML/libcuda: the library "
                                            "checks are skipped, the rest read /proc and /dev."),
               ) -> None:
    """Check the driver, libraries, device nodes, engine and CDI specs; print the fix for each failure."""
    from .doctorcmd import run_doctor_cmd

    opts = _common(root, simulate, no_nvml, debug, json_)
    _run(debug, lambda: run_doctor_cmd(opts, os.environ, check_engine=not no_engine))


@app.command("completion")
def completion_cmd(shell: str = typer.Argument(..., metavar="[bash|zsh|fish]", help="The shell.")) -> None:
    """Print the shell completion script: eval "$(nvlow completion bash)"."""
    from . import report_error

    try:
        sys.stdout.write(completion_script(shell))
    except BaseException as exc:  # noqa: BLE001
        raise typer.Exit(report_error(exc, False))


COMPLETION_SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_NVLOW_COMPLETE"


def completion_script(shell: str) -> str:
    """The completion script of ``shell`` for the ``nvlow`` program (``_NVLOW_COMPLETE``)."""
    from .options import choice_error

    if shell not in COMPLETION_SHELLS:
        raise choice_error("shell", shell, COMPLETION_SHELLS)
    from typer._completion_shared import get_completion_script

    text = get_completion_script(prog_name="nvlow", complete_var=COMPLETE_VAR, shell=shell)
    return text if text.endswith("\n") else text + "\n"


def _register_groups() -> None:
    from .cdicmd import register as register_cdi
    from .servecmd import register as register_serve
    from .slurmcmd import register as register_slurm

    register_cdi(app)
    register_serve(app)
    register_slurm(app)


_register_groups()


def _version_callback(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"nvlow {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """nvlow: NVIDIA GPUs for Docker/Podman containers on hosts with only the driver."""


def run_app(argv: List[str], debug: bool) -> int:
    """Run the typer app on ``argv`` (global options may come before the command); returns the exit code."""
    argv = hoist_globals(list(argv))
    if COMPLETE_VAR in os.environ:
        # a completion request from the script of `nvlow completion SHELL`: answer in typer's format
        from typer._completion_classes import completion_init

        completion_init()
    try:
        app(args=argv, prog_name="nvlow", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
