"""Option sets of the commands, shared by the fast path and the typer app.

``args`` and ``exec`` run on every ``docker run`` a user wraps, so they are
parsed by :mod:`nvlow.cli.fast` without importing typer/click (≈45 ms).
The typer app declares the same options for ``--help``; tests check both
agree with :data:`FAST_FLAGS` / :data:`FAST_VALUES` and parse every command
line (environment variables included) to the same values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

#: boolean options of args/exec -> attribute
FAST_FLAGS: Dict[str, str] = {
    "--no-nvml": "no_nvml",
    "--debug": "debug",
    "--json": "json",
    "--no-require": "no_require",
    "--no-uvm-load": "no_uvm_load",
}
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


@dataclass
class CommonOptions:
    """Options every command takes."""

    root: str = "/"
    simulate: Optional[str] = None
    no_nvml: bool = False
    debug: bool = False
    json: bool = False
    no_uvm_load: bool = False


@dataclass
class PlanOptions(CommonOptions):
    """Options of ``args`` and ``exec``."""

    gpus: Optional[str] = None
    capabilities: Optional[str] = None
    driver_files: str = "bind"
    volumes_dir: Optional[str] = None
    image: Optional[str] = None
    no_require: bool = False
    host: Optional[str] = None
    #: the host root as the container engine sees it (None: the same as ``root``)
    engine_root: Optional[str] = None
    #: the volume plugin's name for ``--driver-files plugin`` (None: nvlow.plan.PLUGIN_DRIVER)
    plugin_name: Optional[str] = None
    format: Optional[str] = None  # args: shell | json | compose
    dry_run: bool = False  # exec
    docker: Optional[str] = None  # exec
    engine_argv: List[str] = field(default_factory=list)  # exec
