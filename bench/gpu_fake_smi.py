"""A fake ``nvidia-smi`` answering from an nvlow simulation preset (gpu-check.sh's fake mode, tests).

It prints what the real tool would on that machine for the three invocations the check
makes: ``-q -x``, ``-L`` and ``--query-gpu=index,compute_cap --format=csv,noheader``.
"""
from __future__ import annotations

import os
from typing import Any, Dict

from gpu_views import MiB, QUERY_CC_ARGS

_BRAND_NAMES = {1: "Quadro", 2: "Tesla", 3: "NVS", 4: "GRID", 5: "GeForce", 6: "Titan", 12: "Quadro RTX",
                13: "NVIDIA RTX", 14: "NVIDIA", 15: "GeForce RTX", 16: "Titan RTX"}
_ARCH_NAMES = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere",
               8: "Ada Lovelace", 9: "Hopper", 10: "Blackwell"}


def _esc(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;")


def smi_outputs_from_preset(preset: Any) -> Dict[str, str]:
    """What ``nvidia-smi`` would print on an nvlow simulation preset: ``{"xml", "list", "cc"}``.

    Used by the fake mode of gpu-check.sh and by the tests (a preset's XML against
    ``nvlow info --simulate``)."""
    cuda = preset.cuda_version
    x = ['<?xml version="1.0" ?>', '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">',
         "<nvidia_smi_log>", "\t<timestamp>Mon Jan  1 00:00:00 2024</timestamp>",
         f"\t<driver_version>{preset.driver_version}</driver_version>",
         f"\t<cuda_version>{cuda // 1000}.{cuda % 1000 // 10}</cuda_version>" if cuda else "",
         f"\t<attached_gpus>{len(preset.gpus)}</attached_gpus>"]
    listing, cc = [], []
    for g in preset.gpus:
        mig_capable = g.architecture >= 7 and g.brand != 5
        mig = ("Enabled" if g.mig_mode else "Disabled") if mig_capable else "N/A"
        domain, bus, rest = g.bus_id.split(":")
        x += [f'\t<gpu id="{g.bus_id}">', f"\t\t<product_name>{_esc(g.name)}</product_name>",
              f"\t\t<product_brand>{_BRAND_NAMES.get(g.brand, 'Unknown')}</product_brand>",
              f"\t\t<product_architecture>{_ARCH_NAMES.get(g.architecture, 'Unknown')}</product_architecture>",
              f"\t\t<persistence_mode>{'Enabled' if g.persistence_mode else 'Disabled'}</persistence_mode>",
              f"\t\t<mig_mode>\n\t\t\t<current_mig>{mig}</current_mig>\n\t\t\t<pending_mig>{mig}</pending_mig>"
              "\n\t\t</mig_mode>", "\t\t<mig_devices>"]
        x += [f"\t\t\t<mig_device>\n\t\t\t\t<index>{m.slot}</index>\n\t\t\t\t<gpu_instance_id>{m.gi}"
              f"</gpu_instance_id>\n\t\t\t\t<compute_instance_id>{m.ci}</compute_instance_id>\n"
              f"\t\t\t</mig_device>" for m in g.migs] or ["\t\t\tNone"]
        x += ["\t\t</mig_devices>", f"\t\t<uuid>{g.uuid}</uuid>", f"\t\t<minor_number>{g.minor}</minor_number>",
              f"\t\t<pci>\n\t\t\t<pci_bus>{bus}</pci_bus>\n\t\t\t<pci_domain>{domain[-4:]}</pci_domain>\n"
              f"\t\t\t<pci_device_id>{g.pci_device_id:08X}</pci_device_id>\n"
              f"\t\t\t<pci_bus_id>{g.bus_id}</pci_bus_id>\n\t\t</pci>",
              f"\t\t<fb_memory_usage>\n\t\t\t<total>{g.memory_total // MiB} MiB</total>\n"
              f"\t\t\t<reserved>0 MiB</reserved>\n\t\t\t<used>{g.memory_used // MiB} MiB</used>\n"
              f"\t\t</fb_memory_usage>", "\t</gpu>"]
        listing.append(f"GPU {g.index}: {g.name} (UUID: {g.uuid})")
        listing += [f"  MIG {m.profile:<13} Device {m.slot:>2}: (UUID: {m.uuid})" for m in g.migs]
        cc.append(f"{g.index}, {g.cc_major}.{g.cc_minor}")
    x.append("</nvidia_smi_log>")
    return {"xml": "\n".join(line for line in x if line) + "\n", "list": "\n".join(listing) + "\n",
            "cc": "\n".join(cc) + ("\n" if cc else "")}


FAKE_SMI = """#!/bin/sh
# A fake nvidia-smi written by bench/gpu_check.py from nvlow's simulation preset {preset}.
here=$(dirname "$0")
case "$*" in
  "-q -x") exec cat "$here/smi-q-x.xml" ;;
  "-L") exec cat "$here/smi-L.txt" ;;
  "{query}") exec cat "$here/smi-cc.csv" ;;
  *) echo "fake nvidia-smi: unsupported arguments: $*" >&2; exit 2 ;;
esac
"""


def write_fake_smi(directory: str, preset: Any) -> str:
    """Write a fake ``nvidia-smi`` (and its data files) for ``preset`` into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    out = smi_outputs_from_preset(preset)
    for name, key in (("smi-q-x.xml", "xml"), ("smi-L.txt", "list"), ("smi-cc.csv", "cc")):
        with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
            fh.write(out[key])
    path = os.path.join(directory, "nvidia-smi")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(FAKE_SMI.format(preset=preset.name, query=" ".join(QUERY_CC_ARGS)))
    os.chmod(path, 0o755)
    return path
