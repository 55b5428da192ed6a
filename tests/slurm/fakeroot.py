"""A fake NVIDIA host root for the real-Slurm tests (standard library only; needs root for mknod).

``python3 tests/slurm/fakeroot.py DEST [--mig]`` (or :func:`build_fake_root`) writes under ``DEST``:

- four GPUs whose device minors are *not* in PCI bus order (``GPUS``), so that nvlow's index (bus
  order without NVML), the minor and the GRES index (minor order, what ``nvlow slurm gres`` writes)
  all differ: a mapping that confuses two of them fails the tests;
- ``/proc/devices``, ``/proc/driver/nvidia/version`` and ``gpus/<bus>/information`` (nv-procfs.c layout);
- ``/dev/nvidia0..3``, ``nvidiactl``, ``nvidia-modeset``, ``nvidia-uvm(-tools)`` made with ``mknod``
  (Slurm's gres.conf ``File=`` must name character devices: with regular files slurmd sets no GPU
  environment). ``nvidia-uvm`` gets a major the running kernel does not use;
- sysfs: ``/sys/bus/pci/devices/<bus>`` links into ``/sys/devices/pci0000:00/<bus>`` holding
  ``local_cpulist`` and ``numa_node``, and ``/sys/devices/system/cpu/cpuN/topology`` for a 1-socket,
  2-core, 1-thread machine (CPU 0 = core 0, CPU 1 = core 1), so ``Cores=`` is 0 or 1 and valid on any
  machine with two cores;
- with ``--mig``: GPU minor 0 is in MIG mode with two MIG devices (``MIG_INSTANCES``): the
  ``nvidia-caps`` major, the capabilities tree, ``mig-minors`` and ``/dev/nvidia-caps/nvidia-capN`` nodes.

The printed JSON (``--json``) describes the tree for shell scripts.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from typing import Dict, Iterable, List, Optional, Tuple

NVIDIA_MAJOR = 195
DRIVER_VERSION = "550.54.15"
MODEL = "NVIDIA A100-SXM4-40GB"
#: the GRES Type of MODEL in the harness's slurm.conf and gres.conf (what ``nvlow slurm gres`` must write too)
GRES_TYPE = "a100"
#: (PCI bus id, device minor, local_cpulist) in bus order: nvlow's procfs index is the position here
GPUS: Tuple[Tuple[str, int, str], ...] = (
    ("0000:01:00.0", 2, "0"),
    ("0000:02:00.0", 0, "0"),
    ("0000:41:00.0", 3, "1"),
    ("0000:81:00.0", 1, "1"),
)
#: (GPU minor, GI, CI) of the MIG devices of the ``--mig`` variant
MIG_INSTANCES: Tuple[Tuple[int, int, int], ...] = ((0, 1, 0), (0, 2, 0))
CAP_CONFIG_MINOR = 1
CAP_MONITOR_MINOR = 2
#: the fake CPU topology: cpu -> (package, die, core)
CPUS: Dict[int, Tuple[int, int, int]] = {0: (0, 0, 0), 1: (0, 0, 1)}


def uuid_of(minor: int) -> str:
    return f"GPU-6f7a1c2e-0000-4000-8000-00000000000{minor}"


def cap_gi_minor(gpu_minor: int, gi: int) -> int:
    """nv-caps minor of GI access (the driver's table, ``/proc/driver/nvidia-caps/mig-minors``)."""
    return 3 + 135 * gpu_minor + 9 * gi


def cap_ci_minor(gpu_minor: int, gi: int, ci: int) -> int:
    return cap_gi_minor(gpu_minor, gi) + 1 + ci


def _char_majors(text: str) -> Dict[int, str]:
    majors: Dict[int, str] = {}
    in_char = False
    for line in text.splitlines():
        s = line.strip()
        if s == "Character devices:":
            in_char = True
        elif not s or s.endswith(":"):
            in_char = False
        elif in_char:
            number, _, name = s.partition(" ")
            if number.isdigit():
                majors[int(number)] = name
    return majors


def free_majors(count: int, avoid: Iterable[int] = (NVIDIA_MAJOR,)) -> List[int]:
    """``count`` character majors of the dynamic range the running kernel does not use."""
    with open("/proc/devices", encoding="ascii", errors="replace") as fh:
        used = set(_char_majors(fh.read())) | set(avoid)
    out = [m for m in range(511, 239, -1) if m not in used][:count]
    if len(out) < count:
        raise RuntimeError("no free character major in 240..511")
    return out


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _mknod(path: str, major: int, minor: int, mode: int = 0o666) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
    os.chmod(path, mode)  # mknod honours the umask


def _information(bus: str, minor: int) -> str:
    return (f"Model: \t\t {MODEL}\nIRQ:   \t\t {120 + minor}\nGPU UUID: \t {uuid_of(minor)}\n"
            "Video BIOS: \t 92.00.45.00.03\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n"
            f"DMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n"
            "GPU Excluded:\t No\n")


def _access(minor: int, mode: int) -> str:
    return f"DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\nDeviceFileModify: 1\n"


def _write_mig(root: str, caps_major: int) -> List[str]:
    caps = os.path.join(root, "proc/driver/nvidia/capabilities")
    _write(os.path.join(caps, "mig/config"), _access(CAP_CONFIG_MINOR, 256), 0o400)
    _write(os.path.join(caps, "mig/monitor"), _access(CAP_MONITOR_MINOR, 292), 0o444)
    minors_lines = [f"config {CAP_CONFIG_MINOR}", f"monitor {CAP_MONITOR_MINOR}"]
    for n in range(len(GPUS)):
        for g in range(15):
            minors_lines.append(f"gpu{n}/gi{g}/access {cap_gi_minor(n, g)}")
            minors_lines += [f"gpu{n}/gi{g}/ci{c}/access {cap_ci_minor(n, g, c)}" for c in range(8)]
    _write(os.path.join(root, "proc/driver/nvidia-caps/mig-minors"), "\n".join(minors_lines) + "\n")
    nodes = [CAP_CONFIG_MINOR, CAP_MONITOR_MINOR]
    for gpu, gi, ci in MIG_INSTANCES:
        _write(os.path.join(caps, f"gpu{gpu}/mig/gi{gi}/access"), _access(cap_gi_minor(gpu, gi), 292), 0o444)
        _write(os.path.join(caps, f"gpu{gpu}/mig/gi{gi}/ci{ci}/access"), _access(cap_ci_minor(gpu, gi, ci), 292),
               0o444)
        nodes += [cap_gi_minor(gpu, gi), cap_ci_minor(gpu, gi, ci)]
    paths = []
    for m in nodes:
        mode = 0o400 if m == CAP_CONFIG_MINOR else 0o444
        _mknod(os.path.join(root, f"dev/nvidia-caps/nvidia-cap{m}"), caps_major, m, mode)
        paths.append(f"/dev/nvidia-caps/nvidia-cap{m}")
    return paths


def _write_sys(root: str) -> None:
    for bus, _minor, cpus in GPUS:
        device = os.path.join(root, "sys/devices/pci0000:00", bus)
        _write(os.path.join(device, "local_cpulist"), cpus + "\n")
        _write(os.path.join(device, "numa_node"), "0\n")
        link = os.path.join(root, "sys/bus/pci/devices", bus)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(f"../../../devices/pci0000:00/{bus}", link)
    for cpu, (package, die, core) in CPUS.items():
        topo = os.path.join(root, f"sys/devices/system/cpu/cpu{cpu}/topology")
        _write(os.path.join(topo, "physical_package_id"), f"{package}\n")
        _write(os.path.join(topo, "die_id"), f"{die}\n")
        _write(os.path.join(topo, "core_id"), f"{core}\n")
    _write(os.path.join(root, "sys/devices/system/cpu/online"), f"0-{len(CPUS) - 1}\n")


def build_fake_root(dest: str, *, mig: bool = False) -> Dict[str, object]:
    """Write the tree under ``dest``; return its description (see the module docstring)."""
    if os.geteuid() != 0:
        raise PermissionError("the fake root needs root (mknod)")
    root = os.path.abspath(dest)
    uvm_major, caps_major = free_majors(2)
    chars = [(1, "mem"), (NVIDIA_MAJOR, "nvidia"), (NVIDIA_MAJOR, "nvidiactl"), (uvm_major, "nvidia-uvm")]
    if mig:
        chars.append((caps_major, "nvidia-caps"))
    lines = ["Character devices:"] + [f"{m:3d} {n}" for m, n in sorted(chars)]
    _write(os.path.join(root, "proc/devices"), "\n".join(lines + ["", "Block devices:", "  7 loop"]) + "\n")
    _write(os.path.join(root, "proc/driver/nvidia/version"),
           f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {DRIVER_VERSION}  Tue Feb 13 01:41:33 UTC 2024\n"
           "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n")
    for bus, minor, _cpus in GPUS:
        _write(os.path.join(root, "proc/driver/nvidia/gpus", bus, "information"), _information(bus, minor))
        _mknod(os.path.join(root, f"dev/nvidia{minor}"), NVIDIA_MAJOR, minor)
    _mknod(os.path.join(root, "dev/nvidiactl"), NVIDIA_MAJOR, 255)
    _mknod(os.path.join(root, "dev/nvidia-modeset"), NVIDIA_MAJOR, 254)
    _mknod(os.path.join(root, "dev/nvidia-uvm"), uvm_major, 0)
    _mknod(os.path.join(root, "dev/nvidia-uvm-tools"), uvm_major, 1)
    cap_nodes = _write_mig(root, caps_major) if mig else []
    _write_sys(root)
    return {
        "root": root,
        "gpus": [{"bus_id": bus, "minor": minor, "uuid": uuid_of(minor), "local_cpulist": cpus,
                  "procfs_index": i} for i, (bus, minor, cpus) in enumerate(GPUS)],
        "minor_order": sorted(minor for _, minor, _ in GPUS),
        "gres_type": GRES_TYPE,
        "mig_instances": [list(m) for m in MIG_INSTANCES] if mig else [],
        "cap_nodes": cap_nodes,
    }


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    mig = "--mig" in args
    show = "--json" in args
    rest = [a for a in args if a not in ("--mig", "--json")]
    if len(rest) != 1:
        sys.stderr.write("usage: fakeroot.py DEST [--mig] [--json]\n")
        return 2
    desc = build_fake_root(rest[0], mig=mig)
    if show:
        sys.stdout.write(json.dumps(desc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
