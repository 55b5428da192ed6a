"""``nvlow info`` and ``nvlow list``."""
from __future__ import annotations

import sys

from ..model import Gpu, Host
from .options import CommonOptions
from .session import load_host, warn


TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan.request import PlanRequest
    from typing import Any, Dict, List, Mapping, Optional, Tuple


def _mib(value: Optional[int]) -> str:
    return "N/A" if value is None else f"{value // (1024 * 1024)} MiB"


def _na(value: object) -> str:
    return "N/A" if value is None else str(value)


def _mig_state(gpu: Gpu) -> str:
    if gpu.mig_enabled is None:
        return "N/A"
    return "enabled" if gpu.mig_enabled else "disabled"


def format_info(host: Host) -> str:
    """The text of ``nvlow info``."""
    lines = [
        f"Driver version:  {_na(host.driver_version)}",
        f"CUDA version:    {_na(host.cuda_version)}"
        + (" (from the driver version table)" if host.cuda_version_source == "driver table" else ""),
        f"NVML version:    {_na(host.nvml_version)}",
        f"Kernel module:   {'open' if host.open_kernel_module else 'proprietary' if host.open_kernel_module is not None else 'N/A'}",
        f"Source:          {host.source}" + (f" (simulated: {host.simulated})" if host.simulated else ""),
        f"GPUs:            {len(host.gpus)}",
    ]
    if host.wsl is not None:
        from ..host.wsl import describe

        lines[-1:-1] = [f"{key + ':':<17}{value}" for key, value in describe(host).items()]
    for g in host.gpus:
        lines.append(f"GPU {g.index}: {_na(g.name)}")
        lines.append(f"  UUID:          {_na(g.uuid)}")
        lines.append(f"  Bus ID:        {_na(g.bus_id)}")
        lines.append(f"  Minor:         {_na(g.minor)}" + (f" ({g.device_path})" if g.device_path else ""))
        lines.append(f"  Brand:         {_na(g.brand)}")
        lines.append(f"  Architecture:  {_na(g.architecture)}")
        lines.append(f"  Compute cap.:  {_na(g.compute_capability)}")
        lines.append(f"  Memory:        {_mib(g.memory_total)}")
        lines.append(f"  MIG mode:      {_mig_state(g)}")
        for m in g.mig_devices:
            ident = m.uuid or "(uuid N/A)"
            lines.append(f"    MIG {m.name_for_index}: {_na(m.name)} {ident} "
                         f"(GI {_na(m.gpu_instance_id)}, CI {_na(m.compute_instance_id)})")
    return "\n".join(lines) + "\n"


def run_info(opts: CommonOptions, env: Mapping[str, str]) -> int:
    """``nvlow info``."""
    _root, host = load_host(opts, env)
    if opts.json:
        import json

        sys.stdout.write(json.dumps(host.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(format_info(host))
    return 0


def list_document(host: Host, request: "PlanRequest") -> Dict[str, Any]:
    """What ``nvlow list`` shows: the host paths a container gets, by category, decided by the same
    :func:`nvlow.plan.decide.plan_for` as ``nvlow args`` (so ``NVIDIA_DRIVER_CAPABILITIES`` counts too)."""
    from ..plan.decide import plan_for

    plan = plan_for(host, request)
    doc: Dict[str, Any] = {"schema_version": 1, "driver_version": host.driver_version,
                           "capabilities": list(plan.capabilities), "devices": [d.host_path for d in plan.devices],
                           # multi-node nodes the host has; "devices" holds them only with --gds, ...
                           "feature_devices": {f: [n.host_path for n in host.features(f)]
                                               for f in ("gds", "mofed", "gdrcopy", "nvswitch")}}
    files = plan.files
    if files is not None:
        doc.update({
            "binaries": [f.host_path for f in files.binaries],
            "libraries64": [f.host_path for f in files.libraries64],
            "libraries32": [f.host_path for f in files.libraries32],
            "ipcs": [f.host_path for f in files.ipcs],
            "configs": [f.host_path for f in files.configs],
            "firmware": [f.host_path for f in files.firmware],
            "skipped": [{"path": p, "reason": r} for p, r in files.skipped],
            "missing": list(files.missing),
        })
    return doc


LIST_ORDER = ("devices", "binaries", "libraries64", "libraries32", "ipcs", "configs", "firmware")


def run_list(opts: CommonOptions, env: Mapping[str, str], gpus: Optional[str], capabilities: Optional[str],
             features: Tuple[str, ...] = ()) -> int:
    """``nvlow list``: one absolute host path per line (nvidia-container-cli list order)."""
    from ..plan.request import PlanRequest, process_pairs

    request = PlanRequest(gpus=gpus, capabilities=capabilities, process_env=process_pairs(env), require=False,
                          features=features)
    # NVML only when the plan needs it, as for args (docs/nvml-lazy.md)
    _root, host = load_host(opts, env, request=request)
    doc = list_document(host, request)
    for item in doc.get("skipped", []):
        if item["reason"].startswith("corrupt"):
            warn(item["reason"])
    if opts.json:
        import json

        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    lines: List[str] = []
    for key in LIST_ORDER:
        lines.extend(doc.get(key, []))
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0
