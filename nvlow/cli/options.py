"""Option sets of the commands, shared by the fast path and the typer app.

``args`` and ``exec`` run on every ``docker run`` a user wraps, so they are
parsed by :mod:`nvlow.cli.fast` without importing typer/click (≈45 ms).
The typer app declares the same options for ``--help``; tests check both
agree with :data:`FAST_FLAGS` / :data:`FAST_VALUES` and parse every command
line (environment variables included) to the same values.
"""
from __future__ import annotations

from ..frozen import Record, field


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple


#: boolean options of args/exec -> attribute
FAST_FLAGS: Dict[str, str] = {
    "--no-nvml": "no_nvml",
    "--debug": "debug",
    "--json": "json",
    "--no-require": "no_require",
    "--no-uvm-load": "no_uvm_load",
    "--quiet": "quiet",
    # multi-node devices, as the container's NVIDIA_GDS=enabled, ... (nvlow.host.extradevices)
    "--gds": "gds",
    "--mofed": "mofed",
    "--gdrcopy": "gdrcopy",
    "--nvswitch": "nvswitch",
}
#: short spellings of FAST_FLAGS
SHORT_FLAGS: Dict[str, str] = {"-q": "quiet"}
EXEC_FLAGS: Dict[str, str] = {"--dry-run": "dry_run"}
#: value options of args/exec -> attribute
FAST_VALUES: Dict[str, str] = {
    "--root": "root",
    "--simulate": "simulate",
    "--gpus": "gpus",
    "--capabilities": "capabilities",
    "--driver-files": "driver_files",
    "--volumes-dir": "volumes_dir",
    "--image": "image",
    "--host": "host",
    "--engine-root": "engine_root",
    "--plugin-name": "plugin_name",
}
ARGS_VALUES: Dict[str, str] = {"--format": "format"}
EXEC_VALUES: Dict[str, str] = {"--docker": "docker"}
#: environment variables that stand in for an option not given on the command line (click's
#: ``envvar``: an explicit option always wins, an unset or empty variable counts as absent) -> attribute
ENV_OPTIONS: Dict[str, str] = {"root": "NVLOW_ROOT", "simulate": "NVLOW_SIMULATE", "engine_root": "NVLOW_ENGINE_ROOT",
                               "plugin_name": "NVLOW_PLUGIN_NAME"}
EXEC_ENV_OPTIONS: Dict[str, str] = {"docker": "NV_DOCKER"}


#: options every command takes, also before the command name (``nvlow --simulate dgx-a100 info``,
#: as docker, podman and nvidia-ctk take global flags first): flags, then options with a value
GLOBAL_FLAGS = ("--no-nvml", "--json", "--debug")
GLOBAL_VALUES = ("--root", "--simulate")
#: commands whose name is followed by a subcommand (the global options go after both words)
GROUPS = ("cdi", "slurm")
#: choices shown in --help (metavars) and checked with one line naming the value and the choices (exit 2)
ARGS_FORMATS = ("shell", "json", "compose")
DRIVER_FILE_CHOICES = ("bind", "volume", "plugin")
SIMULATE_PRESETS = ("dgx-a100", "dgx-h100-mig", "workstation", "no-gpu", "no-driver", "wsl2")


def hoist_globals(argv: List[str]) -> List[str]:
    """Move the global options written before the command name to just after it (``nvlow --root /x
    --json list`` -> ``nvlow list --root /x --json``); anything else before the command (``--help``,
    ``--version``, an unknown option) leaves ``argv`` as it is, for the typer app to answer."""
    moved: List[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name, eq, _v = tok.partition("=")
        if tok in GLOBAL_FLAGS:
            moved.append(tok)
            i += 1
        elif name in GLOBAL_VALUES and eq:
            moved.append(tok)
            i += 1
        elif tok in GLOBAL_VALUES and i + 1 < len(argv):
            moved += argv[i:i + 2]
            i += 2
        else:
            break
    if not moved or i >= len(argv) or argv[i].startswith("-"):
        return list(argv)
    head = i + 1
    if argv[i] in GROUPS and head < len(argv) and not argv[head].startswith("-"):
        head += 1
    return argv[i:head] + moved + argv[head:]


def choice_error(option: str, value: str, choices: Sequence[str]) -> Exception:
    """The usage error (exit 2) for a value that is not one of ``choices``: one line naming both."""
    from ..errors import UsageError

    return UsageError(f"invalid {option} {value!r}: choose one of {', '.join(choices)}")


def check_plan_options(opts: "PlanOptions", command: str) -> None:
    """Checks of args/exec options shared by the fast parser's and the typer app's paths (exit 2)."""
    from ..errors import UsageError

    if opts.host and opts.simulate:
        raise UsageError("--host and --simulate cannot be combined: a remote host is not simulated",
                         hint="drop one of them")
    if command == "args" and opts.format is not None and opts.format not in ARGS_FORMATS:
        raise choice_error("--format", opts.format, ARGS_FORMATS)
    if opts.driver_files not in DRIVER_FILE_CHOICES:
        raise choice_error("--driver-files", opts.driver_files, DRIVER_FILE_CHOICES)
    check_simulate(opts.simulate)
    check_gpus(opts.gpus)


def check_simulate(value: Optional[str]) -> None:
    if value and value not in SIMULATE_PRESETS:
        from ..errors import UsageError

        raise UsageError(f"unknown simulation preset: {value!r} (--simulate / NVLOW_SIMULATE): choose one of "
                         + ", ".join(SIMULATE_PRESETS))


def check_gpus(value: Optional[str], option: str = "--gpus") -> None:
    """An empty entry in a list (``0,,1``) is a typo, not 'void': refuse it."""
    from ..errors import UsageError

    if value and "," in value and any(not part.strip() for part in value.split(",")):
        raise UsageError(f"invalid {option} {value!r}: empty entry in the list",
                         hint="separate GPUs with single commas, e.g. 0,1")


#: the multi-node feature flags (also taken by ``list``)
FEATURE_FLAGS = ("--gds", "--mofed", "--gdrcopy", "--nvswitch")


def features_of(opts: object) -> Tuple[str, ...]:
    """The features whose flag is set on ``opts`` (an options record), in the toolkit's order."""
    return tuple(f[2:] for f in FEATURE_FLAGS if getattr(opts, f[2:], False))


class CommonOptions(Record, frozen=False):
    """Options every command takes."""

    root: str = "/"
    simulate: Optional[str] = None
    no_nvml: bool = False
    debug: bool = False
    json: bool = False
    no_uvm_load: bool = False
    quiet: bool = False  # args/exec: no notes or warnings on stderr (errors still print)


class PlanOptions(CommonOptions, frozen=False):
    """Options of ``args`` and ``exec``."""

    gpus: Optional[str] = None
    capabilities: Optional[str] = None
    driver_files: str = "bind"
    volumes_dir: Optional[str] = None
    image: Optional[str] = None
    no_require: bool = False
    #: multi-node features asked for with --gds, --mofed, --gdrcopy, --nvswitch
    gds: bool = False
    mofed: bool = False
    gdrcopy: bool = False
    nvswitch: bool = False
    host: Optional[str] = None
    #: the host root as the container engine sees it (None: the same as ``root``)
    engine_root: Optional[str] = None
    #: the volume plugin's name for ``--driver-files plugin`` (None: nvlow.plan.plan.PLUGIN_DRIVER)
    plugin_name: Optional[str] = None
    format: Optional[str] = None  # args: shell | json | compose
    dry_run: bool = False  # exec
    docker: Optional[str] = None  # exec
    engine_argv: List[str] = field(default_factory=list)  # exec
