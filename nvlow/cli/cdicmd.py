"""``nvlow cdi generate|list|validate``: the typer sub-app added by :func:`register` (what each command
does is in :mod:`nvlow.cli.cdirun`)."""
from __future__ import annotations

import os
from typing import List, Optional

import typer

from ..cdi.spec import DEFAULT_CLASS, DEFAULT_VENDOR
from .cdirun import run_generate, run_list, run_validate
from .options import CommonOptions


def register(app: typer.Typer) -> None:
    """Add the ``cdi`` command group to ``app`` (call after app.py defines its shared options)."""
    app.add_typer(_build(), name="cdi")


def _build() -> typer.Typer:
    from .app import DEBUG, ENGINE_ROOT, JSON, NO_NVML, NO_UVM, ROOT, SIMULATE, VOLUMES_DIR, _run, group

    # cdi list and validate ask no driver library: --no-nvml is accepted (as on every command) and changes nothing
    no_nvml_noop = typer.Option(False, "--no-nvml", help="Accepted as on every command; no effect (no driver "
                                "library is loaded here).")

    cdi = group("cdi", "CDI specs for podman, Docker 25+, containerd and CRI-O: --device nvidia.com/gpu=0.")

    @cdi.command("generate")
    def generate_cmd(
        root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML, debug: bool = DEBUG,
        no_uvm_load: bool = NO_UVM,
        output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to FILE (or DIR/nvidia.yaml); "
                                             "default: stdout."),
        format_: Optional[str] = typer.Option(None, "--format", metavar="[yaml|json]", help="yaml (default) or "
                                              "json; default from the --output extension."),
        json_: bool = typer.Option(False, "--json", help="The spec as JSON (the same as --format json)."),
        strategies: List[str] = typer.Option([], "--device-name-strategy", metavar="[index|uuid|type-index]", help="index, uuid, type-index "
                                             "(repeatable or comma-separated; default index,uuid)."),
        capabilities: Optional[str] = typer.Option(None, "--capabilities", metavar="CAP[,CAP...]", help="Driver capabilities whose files "
                                                   "and nodes the spec holds (default: all)."),
        driver_files: str = typer.Option("bind", "--driver-files", metavar="[bind|volume]", help="bind (read-only binds of the host's "
                                         "files) or volume (binds of the 1.0 driver volume's copies, which is "
                                         "also mounted at /usr/local/nvidia)."),
        volumes_dir: Optional[str] = VOLUMES_DIR,
        vendor: str = typer.Option(DEFAULT_VENDOR, "--vendor", help="CDI vendor (kind = vendor/class)."),
        class_: str = typer.Option(DEFAULT_CLASS, "--class", help="CDI class (kind = vendor/class)."),
        write: bool = typer.Option(False, "--write", help="Write to /var/run/cdi/nvidia.yaml (under --root; "
                                   "with --simulate only together with --output, so the shared simulated host "
                                   "is never changed)."),
        if_changed: bool = typer.Option(False, "--if-changed", help="Rewrite only when the driver or devices "
                                        "changed (for a systemd path unit or udev rule)."),
        no_all_device: bool = typer.Option(False, "--no-all-device", help="Leave out the 'all' device."),
        engine_root: Optional[str] = ENGINE_ROOT,
    ) -> None:
        """Generate a CDI spec: a device per GPU and MIG device, plus all; no hooks."""
        opts = CommonOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, no_uvm_load=no_uvm_load,
                             json=json_)
        _run(debug, lambda: run_generate(
            opts, os.environ, output=output, fmt=format_, strategies=strategies, capabilities=capabilities,
            driver_files=driver_files, volumes_dir=volumes_dir, vendor=vendor, class_=class_, write=write,
            if_changed=if_changed, no_all_device=no_all_device, engine_root=engine_root))

    @cdi.command("list")
    def list_cmd(
        root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = no_nvml_noop, debug: bool = DEBUG,
        json_: bool = JSON,
        spec_dirs: List[str] = typer.Option([], "--spec-dir", help="Spec directory (repeatable, later wins; "
                                            "default /etc/cdi then /var/run/cdi)."),
    ) -> None:
        """List the CDI devices engines can resolve (vendor/class=name), like nvidia-ctk cdi list."""
        opts = CommonOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_)
        _run(debug, lambda: run_list(opts, spec_dirs, os.environ))

    @cdi.command("validate")
    def validate_cmd(
        files: List[str] = typer.Argument(None, help="Spec files (JSON or YAML)."),
        root: str = ROOT, simulate: Optional[str] = SIMULATE, debug: bool = DEBUG, json_: bool = JSON,
        no_nvml: bool = typer.Option(False, "--no-nvml", help="Accepted as on every command; no effect (the "
                                     "running driver version is always read from /proc)."),
        no_host_checks: bool = typer.Option(False, "--no-host-checks", help="Check only the CDI rules, not "
                                            "missing files or a stale driver version."),
    ) -> None:
        """Check CDI specs: the CDI rules, missing host files, a stale driver version."""
        opts = CommonOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_)
        _run(debug, lambda: run_validate(opts, os.environ, list(files or []), not no_host_checks))

    return cdi
