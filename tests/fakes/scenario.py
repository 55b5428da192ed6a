"""Scenario text for the compiled fake NVML/libcuda (tests/fakes/fake_*.c).

One ``key args...`` per line (``#`` comments); the C side parses it with sscanf.
System keys: ``driver``, ``nvml``, ``cuda``, ``sample_ms MS`` (nvmlDeviceGetPcieThroughput sleeps MS
ms, as NVML samples the link for 20 ms, and logs ``nvmlDeviceGetPcieThroughput done`` when it
returns); ``gpu N`` starts a device, followed by
its keys (``name``, ``uuid``, ``bus``, ``minor``, ``pcidevid``, ``brand``, ``arch``,
``cc MAJ MIN``, ``memory TOTAL USED``, ``reserved BYTES`` (memory the driver sets aside: its own
field in nvmlMemory_v2_t, counted in ``used`` of the older nvmlMemory_t), ``sm``, ``persistence``, ``mig CUR PEND``,
``migmax``, ``migdev SLOT GI CI MEM UUID NAME``, ``power USAGE LIMIT``, ``temperature``,
``util GPU MEM``, ``encoder``, ``decoder``, ``clocks SM MEM``, ``maxclocks SM MEM``,
``pcie GEN WIDTH``, ``throughput RX TX``, ``bar1 TOTAL USED``, ``numa``, ``affinity MASK``,
``process PID USED NAME``; for nvidia-docker 1.0's documents: ``ecc 0|1`` (ECC mode and
CUDA's ECC_ENABLED), ``eccerrors L1 L2 DEVICE`` (uncorrected volatile counters, -1:
unsupported), ``sharedmem``, ``constmem``, ``l2cache`` (bytes), ``memclock`` (kHz),
``buswidth`` (bits), ``nvlink N`` (N active NVLinks to NVSwitches), ``nvlinkpeer BUSID``
(one active NVLink straight to that GPU)). After the GPUs, ``link A B LEVEL P2P`` gives a
GPU pair its nvmlGpuTopologyLevel_t and whether peer-to-peer works (cuDeviceCanAccessPeer,
NVML's P2P status; NVLink P2P also needs NVLinks between them); a pair without a line is
NODE (same ``numa``) or SYSTEM apart, without P2P. ``rc FUNCTION CODE [GPU]`` makes a function
return CODE (on every device, or only GPU). A device key left out makes its function answer
NVML_ERROR_NOT_SUPPORTED. No scenario file at all means "driver not loaded".

Example:
    >>> from nvlow.simulate.presets import get_preset
    >>> text = scenario_from_preset(get_preset("workstation"), rc=[("nvmlDeviceGetPowerUsage", 3)])
    >>> text.splitlines()[0], text.splitlines()[-1]
    ('driver 560.35.03', 'rc nvmlDeviceGetPowerUsage 3')
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from nvlow.simulate.presets import Preset, SimGpu, p2p_supported, topology_level

ARCH_AMPERE = 7
BRAND_GEFORCE = 5

RcSpec = Union[Tuple[str, int], Tuple[str, int, int]]


def mig_capable(gpu: SimGpu) -> bool:
    """Whether NVML reports a MIG mode for this simulated GPU (A100/H100-class, not GeForce)."""
    return gpu.architecture >= ARCH_AMPERE and gpu.brand != BRAND_GEFORCE


def mig_name(gpu: SimGpu, profile: str) -> str:
    """The NVML name of a MIG device ("NVIDIA H100 80GB HBM3 MIG 1g.10gb")."""
    return f"{gpu.name} MIG {profile}"


def gpu_lines(g: SimGpu, *, complete: bool = False) -> List[str]:
    lines = [
        f"gpu {g.index}",
        f"name {g.name}",
        f"uuid {g.uuid}",
        f"bus {g.bus_id}",
        f"minor {g.minor}",
        f"pcidevid {g.pci_device_id:#x}",
        f"brand {g.brand}",
        f"arch {g.architecture}",
        f"cc {g.cc_major} {g.cc_minor}",
        f"memory {g.memory_total} {g.memory_used}",
        f"sm {g.multiprocessor_count}",
        f"persistence {int(g.persistence_mode)}",
    ]
    if mig_capable(g):
        mode = int(g.mig_mode)
        lines += [f"mig {mode} {mode}", "migmax 7"]
        lines += [f"migdev {m.slot} {m.gi} {m.ci} {m.memory_total} {m.uuid} {mig_name(g, m.profile)}"
                  for m in g.migs]
    lines += [
        f"power {g.power_usage} {g.power_limit}",
        f"temperature {g.temperature}",
    ]
    if not (complete and g.mig_mode):  # NVML: no whole-GPU utilization in MIG mode
        lines.append(f"util {g.utilization_gpu} {g.utilization_memory}")
    lines += [
        f"clocks {g.clock_sm} {g.clock_memory}",
        f"maxclocks {g.max_clock_sm} {g.max_clock_memory}",
        f"pcie {g.pcie_gen} {g.pcie_width}",
        f"numa {g.numa_node}",
    ]
    if g.ecc is not None:
        lines += [f"ecc {int(g.ecc)}", "eccerrors {} {} {}".format(*g.ecc_errors)]
    lines += [
        f"sharedmem {g.shared_memory_per_sm}",
        f"constmem {g.constant_memory}",
        f"l2cache {g.l2_cache}",
        f"memclock {g.memory_clock}",
        f"buswidth {g.memory_bus_width}",
    ]
    if g.nvlinks:
        lines.append(f"nvlink {g.nvlinks}")
    if complete:
        lines += [
            f"bar1 {g.bar1_total} {g.bar1_used}",
            f"encoder {g.utilization_encoder}",
            f"decoder {g.utilization_decoder}",
            f"throughput {g.pcie_rx} {g.pcie_tx}",
        ]
    lines += [f"process {p.pid} {p.used_memory} {p.name}" for p in g.processes]
    return lines


def link_lines(gpus: Sequence[SimGpu]) -> List[str]:
    """``link A B LEVEL P2P`` for every GPU pair (presets.topology_level / p2p_supported)."""
    ordered = sorted(gpus, key=lambda g: g.index)
    return [f"link {a.index} {b.index} {topology_level(a, b)} {int(p2p_supported(a, b))}"
            for i, a in enumerate(ordered) for b in ordered[i + 1:]]


def scenario_from_preset(preset: Preset, *, rc: Iterable[RcSpec] = (), extra: Sequence[str] = (),
                         complete: bool = False, **overrides: Any) -> str:
    """The scenario text for ``preset``.

    ``overrides`` replace :class:`Preset` fields first (``driver_version=None``
    drops the line, ``gpus=...``); ``rc`` adds injected return codes
    (``("nvmlDeviceGetPowerUsage", 3)`` or ``(..., 3, gpu_index)``); ``extra``
    lines are appended verbatim (``extra=["gpu 9", ...]`` or ``"bar1 ..."`` after a gpu).
    ``complete`` also gives the fakes the readings the plain scenario leaves unsupported
    (BAR1, encoder/decoder utilization, PCIe throughput) and drops the whole-GPU
    utilization of GPUs in MIG mode, as NVML does: the compiled fakes then answer
    everything :class:`nvlow.simulate.fakelib.SimulatedLibrary` does.
    """
    p = replace(preset, **overrides) if overrides else preset
    lines: List[str] = []
    if p.driver_version is not None:
        lines.append(f"driver {p.driver_version}")
    if p.nvml_version is not None:
        lines.append(f"nvml {p.nvml_version}")
    if p.cuda_version is not None:
        lines.append(f"cuda {p.cuda_version}")
    for g in p.gpus:
        lines += gpu_lines(g, complete=complete)
    lines += link_lines(p.gpus)
    lines += list(extra)
    for spec in rc:
        gpu: Optional[int] = spec[2] if len(spec) == 3 else None
        lines.append(f"rc {spec[0]} {spec[1]}" + (f" {gpu}" if gpu is not None else ""))
    return "\n".join(lines) + "\n"


def samples_under_way(call_log: str) -> List[int]:
    """How many PCIe samples were under way after each logged start or end of one, in log order: the
    text of a ``$NVLOW_FAKE_CALL_LOG`` written with ``sample_ms`` (a start logs the function's name, an
    end ``... done``), so tests see samples overlap without timing them.

    Example:
        >>> samples_under_way("nvmlInit_v2\\nnvmlDeviceGetPcieThroughput\\nnvmlDeviceGetPcieThroughput\\n"
        ...                   "nvmlDeviceGetPcieThroughput done\\nnvmlDeviceGetPcieThroughput done\\n")
        [1, 2, 1, 0]
    """
    steps = {"nvmlDeviceGetPcieThroughput": 1, "nvmlDeviceGetPcieThroughput done": -1}
    depth, out = 0, []
    for line in call_log.splitlines():
        if line in steps:
            depth += steps[line]
            out.append(depth)
    return out
