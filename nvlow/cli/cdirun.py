"""``nvlow cdi generate|list|validate``: what the commands do, without typer (the fast parser runs
``cdi generate``; :mod:`nvlow.cli.cdicmd` declares the commands for typer)."""
from __future__ import annotations

import os
import sys

from ..errors import HostError, NvlowError, UsageError
from .options import CommonOptions
from ..cdi.spec import DEFAULT_CLASS, DEFAULT_VENDOR
from .session import load_host, note, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model import ProcfsFacts
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

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
    if output is None or output == "-":
        if not write:
            return None, _spec_format(fmt, None)
        from ..cdi.store import DEFAULT_SPEC_BASENAME, DEFAULT_SPEC_DIR  # the spec store: only for a file

        f = _spec_format(fmt, None)
        return root.host(f"{DEFAULT_SPEC_DIR}/{DEFAULT_SPEC_BASENAME}.{f}"), f
    if os.path.isdir(output) or output.endswith("/"):
        from ..cdi.store import DEFAULT_SPEC_BASENAME

        f = _spec_format(fmt, None)
        return os.path.join(output, f"{DEFAULT_SPEC_BASENAME}.{f}"), f
    return output, _spec_format(fmt, output)


def spec_needs_nvml(facts: "ProcfsFacts") -> Optional[str]:
    """Why ``cdi generate`` opens NVML (None: procfs has all it needs). A spec names GPUs by index,
    UUID and model and gives their nodes, which procfs holds for every GPU it lists completely; MIG
    devices' UUIDs and profiles come from NVML only (docs/nvml-lazy.md)."""
    if facts.mig_gpus:
        return "MIG devices are named by NVML"
    if not facts.complete:
        return "procfs lacks a GPU's minor, UUID, bus id or model"
    return None


def run_generate(opts: CommonOptions, env: Mapping[str, str], *, output: Optional[str] = None,
                 fmt: Optional[str] = None, strategies: Sequence[str] = (), capabilities: Optional[str] = None,
                 driver_files: str = "bind", volumes_dir: Optional[str] = None, vendor: str = DEFAULT_VENDOR,
                 class_: str = DEFAULT_CLASS, write: bool = False, if_changed: bool = False,
                 no_all_device: bool = False, engine_root: Optional[str] = None) -> int:
    """``nvlow cdi generate`` (the defaults are the command line's)."""
    from ..cdi.spec import CDI_DRIVER_FILE_MODES, build_spec, parse_naming_strategies, render_spec
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
    root, host = load_host(opts, env, nvml_wanted=spec_needs_nvml)
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
    from ..cdi.store import other_specs_with_kind, read_spec, write_atomic  # the YAML reader: only for a file

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
        import json

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
        import json

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


