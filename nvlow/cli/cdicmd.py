"""``nvlow cdi generate|list|validate``: a typer sub-app added by :func:`register`."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import typer

from ..errors import HostError, NvlowError, UsageError
from .options import CommonOptions
from .session import load_host, note, warn

#: capabilities a generated spec covers by default: a spec serves every container, like nvidia-ctk's
DEFAULT_CDI_CAPABILITIES = "all"


def _spec_format(fmt: Optional[str], path: Optional[str]) -> str:
    from ..cdi.spec import SPEC_FORMATS

    if fmt is not None:
        low = fmt.lower()
        if low not in SPEC_FORMATS:
            raise UsageError(f"invalid --format {fmt!r}", hint="use yaml or json")
        return low
    if path is not None and path.endswith(".json"):
        return "json"
    return "yaml"


def _target(output: Optional[str], write: bool, fmt: Optional[str], root: Any) -> Tuple[Optional[str], str]:
    """(real path to write or None for stdout, format)."""
    from ..cdi.store import DEFAULT_SPEC_BASENAME, DEFAULT_SPEC_DIR

    if output is not None and (os.path.isdir(output) or output.endswith("/")):
        f = _spec_format(fmt, None)
        return os.path.join(output, f"{DEFAULT_SPEC_BASENAME}.{f}"), f
    if output is not None and output != "-":
        return output, _spec_format(fmt, output)
    if write:
        f = _spec_format(fmt, None)
        return root.host(f"{DEFAULT_SPEC_DIR}/{DEFAULT_SPEC_BASENAME}.{f}"), f
    return None, _spec_format(fmt, None)


def run_generate(opts: CommonOptions, env: Mapping[str, str], *, output: Optional[str], fmt: Optional[str],
                 strategies: Sequence[str], capabilities: Optional[str], driver_files: str,
                 volumes_dir: Optional[str], vendor: str, class_: str, write: bool, if_changed: bool,
                 no_all_device: bool, engine_root: Optional[str] = None) -> int:
    """``nvlow cdi generate``."""
    from ..cdi.spec import CDI_DRIVER_FILE_MODES, build_spec, parse_naming_strategies, render_spec
    from ..cdi.store import other_specs_with_kind, read_spec, write_atomic
    from ..host.capabilities import parse_capabilities

    from .options import check_simulate

    check_simulate(opts.simulate)
    if opts.json:
        if fmt is not None and fmt.lower() != "json":
            raise UsageError(f"--json and --format {fmt} disagree", hint="drop one of them")
        fmt = "json"
    if write and opts.simulate and output is None:
        # the simulated tree is a cache shared by every later --simulate run: never write into it
        raise UsageError("cdi generate --write under --simulate would write into the shared simulated host",
                         hint="name a file with --output FILE (or print the spec to stdout)")
    try:
        names = parse_naming_strategies(strategies)
    except UsageError as exc:
        raise UsageError(f"{exc}: choose from index, uuid, type-index") from None
    if driver_files not in CDI_DRIVER_FILE_MODES:
        raise UsageError(f"invalid --driver-files {driver_files!r} for a CDI spec: choose one of "
                         + ", ".join(CDI_DRIVER_FILE_MODES))
    caps = parse_capabilities(capabilities or DEFAULT_CDI_CAPABILITIES)
    root, host = load_host(opts, env)
    path, spec_fmt = _target(output, write, fmt, root)
    if if_changed and path is None:
        raise UsageError("--if-changed needs a file to compare with", hint="add --write or --output FILE")
    if host.wsl is not None:  # WSL2: the toolkit's WSL-mode files (nvlow.host.wsl)
        from ..host.wsl import wsl_driver_files

        files = wsl_driver_files(host)
    elif not host.driver_version:
        raise HostError("the NVIDIA driver version is unknown, so its files cannot be selected",
                        hint="check /proc/driver/nvidia/version ('nvlow doctor')")
    else:
        from ..host.driverfiles import select_driver_files

        files = select_driver_files(root, host.driver_version, caps)
    volume_path = None
    if driver_files == "volume" and host.wsl is None:
        # the one driver volume of this driver (every capability's files), shared with nvlow args and serve;
        # the spec binds the files of its own capabilities out of it
        from ..plan.volume import ensure_driver_volume

        volume_path = ensure_driver_volume(root, host.driver_version, volumes_dir).path
    spec = build_spec(host, files, capabilities=caps, vendor=vendor, class_=class_, strategies=names,
                      driver_files=driver_files, volume_path=volume_path, include_all=not no_all_device,
                      engine_root=engine_root)
    for w in spec.warnings:
        warn(w)
    text = render_spec(spec, spec_fmt, driver_version=host.driver_version)
    if path is None:
        sys.stdout.write(text)
        return 0
    old_doc: Any = None
    unreadable: Optional[str] = None
    if os.path.isfile(path):
        try:
            old_doc = read_spec(path)
        except HostError as exc:  # a broken spec (engines skip it) is replaced, not a reason to fail
            unreadable = str(exc)
    if if_changed and unreadable is None and old_doc == spec.document:
        note(f"{path} unchanged (driver {host.driver_version}, {len(spec.document['devices'])} devices)")
        return 0
    if unreadable is not None:
        warn(f"replacing a spec that engines cannot read: {unreadable}")
    if not path.endswith((".json", ".yaml")):
        warn(f"{path}: engines read only *.json and *.yaml files from their spec directories")
    for other, other_names in other_specs_with_kind(root, spec.kind, path):
        same_dir = os.path.dirname(os.path.abspath(other)) == os.path.dirname(os.path.abspath(path))
        overlap = sorted(set(other_names) & set(spec.qualified_names()))
        if overlap:
            warn(f"{other} also defines {spec.kind} devices ({', '.join(overlap[:3])}"
                 + (", ..." if len(overlap) > 3 else "") + "): "
                 + ("in one directory the names conflict and engines cannot use them; remove one of the files"
                    if same_dir else "the spec in /var/run/cdi takes precedence over /etc/cdi"))
    write_atomic(path, text.encode("utf-8"))
    note(f"wrote {path} ({len(spec.document['devices'])} devices of {spec.kind}, cdiVersion "
         f"{spec.document['cdiVersion']})")
    return 0


def run_list(opts: CommonOptions, spec_dirs: Sequence[str], env: Optional[Mapping[str, str]] = None) -> int:
    """``nvlow cdi list``: qualified device names, as engines resolve them (under --root, or in the
    simulated host's spec directories with --simulate; --no-nvml changes nothing: no driver is asked)."""
    from ..cdi.store import SPEC_DIRS, list_devices
    from ..host.root import HostRoot
    from .options import check_simulate

    if opts.simulate:
        check_simulate(opts.simulate)
        from .session import open_root

        root, _opener = open_root(opts, env if env is not None else os.environ)
    else:
        if not os.path.isdir(opts.root or "/"):
            raise UsageError(f"--root {os.path.abspath(opts.root)} is not a directory")
        root = HostRoot(opts.root or "/")
    for spec_dir in spec_dirs:
        if not os.path.isdir(root.host(spec_dir)):
            raise UsageError(f"--spec-dir {spec_dir}: no such directory" + (f" under {root.path}" if root.path != "/"
                                                                        else ""),
                             hint="name an existing directory, or leave --spec-dir out for /etc/cdi and /var/run/cdi")
    devices, warnings = list_devices(root, tuple(spec_dirs) or SPEC_DIRS)
    for w in warnings:
        warn(w)
    if opts.json:
        doc = {"schema_version": 1, "devices": [d.to_dict() for d in devices], "warnings": warnings}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    note(f"Found {len(devices)} CDI device{'s' if len(devices) != 1 else ''}")
    for d in devices:
        sys.stdout.write(d.name + "\n")
    return 0


def _running_driver(opts: CommonOptions, env: Mapping[str, str]) -> Optional[str]:
    """The running driver version under the root, or None (staleness then is not checked)."""
    quiet = CommonOptions(root=opts.root, simulate=opts.simulate, no_nvml=True, no_uvm_load=True)
    try:
        _root, host = load_host(quiet, env, quiet=True)
    except NvlowError:
        return None
    return host.driver_version


def validate_files(paths: Sequence[str], driver_version: Optional[str], *,
                   host_checks: bool = True) -> List[Tuple[str, List[str], int, List[str]]]:
    """``(path, problems, device count, compatibility notes)`` for each spec file."""
    from ..cdi.store import read_spec
    from ..cdi.validate import compatibility_notes, host_problems, validate_document

    results: List[Tuple[str, List[str], int, List[str]]] = []
    for path in paths:
        try:
            doc = read_spec(path)
        except HostError as exc:
            msg = str(exc)
            results.append((path, [msg[len(path) + 2:] if msg.startswith(path + ": ") else msg], 0, []))
            continue
        problems = validate_document(doc)
        if host_checks:
            problems += host_problems(doc, driver_version)
        count = len(doc.get("devices") or []) if isinstance(doc, dict) and isinstance(doc.get("devices"), list) else 0
        results.append((path, problems, count, compatibility_notes(doc)))
    return results


def run_validate(opts: CommonOptions, env: Mapping[str, str], paths: Sequence[str], host_checks: bool) -> int:
    """``nvlow cdi validate FILE...``: one line per problem; exit 1 when any. Notes on what older
    engines reject (a valid spec's) go to stderr and do not change the exit status."""
    if not paths:
        raise UsageError("nvlow cdi validate needs at least one spec file",
                         hint="nvlow cdi validate /var/run/cdi/nvidia.yaml")
    driver = _running_driver(opts, env) if host_checks else None
    results = validate_files(paths, driver, host_checks=host_checks)
    bad = any(problems for _p, problems, _n, _notes in results)
    if opts.json:
        doc: Dict[str, Any] = {"schema_version": 1, "driver_version": driver, "valid": not bad,
                               "files": [{"path": p, "valid": not probs, "devices": n, "problems": probs,
                                          "notes": notes}
                                         for p, probs, n, notes in results]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for path, problems, count, notes in results:
            for problem in problems:
                sys.stdout.write(f"{path}: {problem}\n")
            if not problems:
                sys.stdout.write(f"{path}: ok ({count} device{'s' if count != 1 else ''})\n")
            for line in notes:
                note(f"{path}: {line}")
    if host_checks and driver is None:
        note("no running NVIDIA driver found: staleness was not checked")
    return 1 if bad else 0


def register(app: typer.Typer) -> None:
    """Add the ``cdi`` command group to ``app`` (call after app.py defines its shared options)."""
    app.add_typer(_build(), name="cdi")


def _build() -> typer.Typer:
    from .app import DEBUG, ENGINE_ROOT, JSON, NO_NVML, NO_UVM, ROOT, SIMULATE, VOLUMES_DIR, _run

    # cdi list and validate ask no driver library: --no-nvml is accepted (as on every command) and changes nothing
    no_nvml_noop = typer.Option(False, "--no-nvml", help="Accepted as on every command; no effect (no driver "
                                "library is loaded here).")

    cdi = typer.Typer(
        name="cdi",
        help="CDI specs for podman, Docker 25+, containerd and CRI-O: --device nvidia.com/gpu=0.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

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
        vendor: str = typer.Option("nvidia.com", "--vendor", help="CDI vendor (kind = vendor/class)."),
        class_: str = typer.Option("gpu", "--class", help="CDI class (kind = vendor/class)."),
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
