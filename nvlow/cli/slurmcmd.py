"""``nvlow slurm gres|allocation``: a typer sub-app added by :func:`register`.

``gres`` prints the node's gres.conf (GPUs in device-minor order, MIG devices as ``MultipleFiles=``,
``Cores=`` from sysfs), the order :mod:`nvlow.plan.slurm` maps Slurm's GRES indices through;
``allocation`` shows which of the host's GPUs the current Slurm job step was given.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

import typer

from .options import CommonOptions
from .session import load_host, note, warn


def run_gres(opts: CommonOptions, env: Mapping[str, str]) -> int:
    """``nvlow slurm gres``: gres.conf text, or with ``--json`` its records (schema_version 1)."""
    from ..plan.slurm import gres_document, read_gpu_cores, render_gres_conf

    root, host = load_host(opts, env)
    cores, warnings = read_gpu_cores(root, host)
    for w in warnings:
        warn(w)
    if opts.json:
        sys.stdout.write(json.dumps(gres_document(host, cores), indent=2) + "\n")
    else:
        sys.stdout.write(render_gres_conf(host, cores))
    return 0


def allocation_document(opts: CommonOptions, env: Mapping[str, str]) -> Dict[str, Any]:
    """What ``nvlow slurm allocation`` shows: the allocation read from ``env`` and the host's GPUs it
    names (the host is read only when the step has GPUs)."""
    from ..plan.slurm import allocated_devices, allocation_spec, slurm_allocation

    alloc = slurm_allocation(env)
    doc: Dict[str, Any] = {"schema_version": 1, "allocation": alloc.to_dict() if alloc else None,
                           "selection": None, "gpus": []}
    if alloc is None:
        return doc
    if not alloc.indices:
        doc["selection"] = "none"
        return doc
    _root, host = load_host(opts, env)
    devices = allocated_devices(host, alloc)
    doc["selection"] = allocation_spec(host, alloc)
    doc["gpus"] = [{"gres_index": d.index, "selection": d.token, "gpu_index": d.gpu.index, "minor": d.gpu.minor,
                    "bus_id": d.gpu.bus_id, "uuid": d.mig.uuid if d.mig else d.gpu.uuid, "files": list(d.files)}
                   for d in devices]
    return doc


def run_allocation(opts: CommonOptions, env: Mapping[str, str]) -> int:
    """``nvlow slurm allocation``: one line per allocated GPU (``--json``: the document)."""
    doc = allocation_document(opts, env)
    if opts.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    alloc = doc["allocation"]
    if alloc is None:
        note("not in a Slurm job (no SLURM_JOB_ID): Slurm restricts no GPU")
        return 0
    from ..plan.slurm import SlurmAllocation

    described = SlurmAllocation(alloc["job_id"], alloc["step_id"], alloc["variable"], alloc["value"],
                                tuple(alloc["indices"])).describe()
    lines: List[str] = [f"{described}: selection {doc['selection']}"]
    for g in doc["gpus"]:
        lines.append(f"GRES {g['gres_index']}: GPU {g['selection']} {g['bus_id'] or '?'} {g['uuid'] or '?'} "
                     + " ".join(g["files"]))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def register(app: typer.Typer) -> None:
    """Add the ``slurm`` command group to ``app`` (call after app.py defines its shared options)."""
    app.add_typer(_build(), name="slurm")


def _build() -> typer.Typer:
    from .app import DEBUG, JSON, NO_NVML, NO_UVM, ROOT, SIMULATE, _run, group

    slurm = group("slurm", "Slurm: the node's gres.conf in the GPU order nvlow maps SLURM_STEP_GPUS through.")

    @slurm.command("gres")
    def gres_cmd(root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML,
                 debug: bool = DEBUG, json_: bool = JSON, no_uvm_load: bool = NO_UVM) -> None:
        """Print gres.conf for this node: one line per GPU in device-minor order (MIG devices with
        MultipleFiles=), Cores= from sysfs; GRES index N is the Nth line."""
        opts = CommonOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_,
                             no_uvm_load=no_uvm_load)
        _run(debug, lambda: run_gres(opts, os.environ))

    @slurm.command("allocation")
    def allocation_cmd(root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML,
                       debug: bool = DEBUG, json_: bool = JSON, no_uvm_load: bool = NO_UVM) -> None:
        """Show the GPUs this Slurm job step was given (SLURM_STEP_GPUS, in a batch step
        SLURM_JOB_GPUS), mapped through the gres.conf order of 'nvlow slurm gres'."""
        opts = CommonOptions(root=root, simulate=simulate, no_nvml=no_nvml, debug=debug, json=json_,
                             no_uvm_load=no_uvm_load)
        _run(debug, lambda: run_allocation(opts, os.environ))

    return slurm
