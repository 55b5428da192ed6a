"""Driver capabilities (``NVIDIA_DRIVER_CAPABILITIES``) and the driver files each one needs.

The lists follow libnvidia-container ``src/nvc_info.c`` (see the reference
``driver-files.md`` §1). Library names are *prefixes* of ld.so.cache keys:
``libcuda.so`` matches ``libcuda.so.1``.

Example:
    >>> sorted(parse_capabilities("compute, utility"))
    ['compute', 'utility']
    >>> "ngx" in parse_capabilities("all")
    True
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Set, Tuple

from .errors import UsageError

#: canonical order, used for stable output
CAPABILITY_ORDER: Tuple[str, ...] = ("compute", "utility", "video", "graphics", "display", "ngx", "compat32")
ALL_CAPABILITIES: FrozenSet[str] = frozenset(CAPABILITY_ORDER)
#: the toolkit's default when NVIDIA_DRIVER_CAPABILITIES is unset (nvidia-docker2 and enroot use "utility")
DEFAULT_CAPABILITIES: FrozenSet[str] = frozenset({"compute", "utility"})

UTILITY_LIBS = ("libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so")
COMPUTE_LIBS = (
    "libcuda.so", "libcudadebugger.so", "libnvidia-opencl.so", "libnvidia-gpucomp.so",
    "libnvidia-ptxjitcompiler.so", "libnvidia-fatbinaryloader.so", "libnvidia-allocator.so",
    "libnvidia-compiler.so", "libnvidia-pkcs11.so", "libnvidia-pkcs11-openssl3.so",
    "libnvidia-nvvm.so", "libnvidia-tileiras.so",
)
VIDEO_LIBS = ("libvdpau_nvidia.so", "libnvidia-encode.so", "libnvidia-opticalflow.so", "libnvcuvid.so")
GRAPHICS_LIBS = (
    "libnvidia-eglcore.so", "libnvidia-glcore.so", "libnvidia-tls.so", "libnvidia-glsi.so",
    "libnvidia-fbc.so", "libnvidia-ifr.so", "libnvidia-rtcore.so", "libnvoptix.so",
    # GLVND vendor libraries (the default driver install)
    "libGLX_nvidia.so", "libEGL_nvidia.so", "libGLESv2_nvidia.so", "libGLESv1_CM_nvidia.so",
    "libnvidia-glvkspirv.so", "libnvidia-cbl.so",
    # non-GLVND installs: taken only when DT_NEEDED names libnvidia-glcore/eglcore
    "libGL.so", "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so",
)
NGX_LIBS = ("libnvidia-ngx.so",)

#: loaders that may belong to Mesa/GLVND; kept only when they need NVIDIA's core library
GL_COMPAT_LOADERS = ("libGL.so", "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so")
GL_CORE_NEEDED = ("libnvidia-glcore.so", "libnvidia-eglcore.so")
#: "display libraries are not needed" (nvc_info.c): never taken, not even by the version sweep
NEVER_LIBS = ("libnvidia-gtk2.so", "libnvidia-gtk3.so", "libnvidia-wfb.so", "nvidia_drv.so", "libglx.so")

LIBRARIES: Dict[str, Tuple[str, ...]] = {
    "compute": COMPUTE_LIBS,
    "utility": UTILITY_LIBS,
    "video": VIDEO_LIBS,
    "graphics": GRAPHICS_LIBS,
    "ngx": NGX_LIBS,
}

#: files found by the ``*.so.<version>`` sweep that are in no list above
SWEEP_EXTRAS: Dict[str, str] = {
    "libnvidia-egl-": "graphics",
    "libnvidia-vulkan-producer.so": "graphics",
    "libnvidia-present.so": "graphics",
    "libnvidia-wayland-client.so": "graphics",
    "libnvidia-vksc-core.so": "graphics",
    "libnvidia-api.so": "graphics",
    "libnvidia-sandboxutils.so": "utility",
}

BINARIES: Dict[str, Tuple[str, ...]] = {
    "utility": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nv-fabricmanager"),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server"),
}

#: (host path, capability) of ICD/vendor files; every existing one is taken (deduplicated by real path)
CONFIG_FILES: Tuple[Tuple[str, str], ...] = (
    ("/etc/OpenCL/vendors/nvidia.icd", "compute"),
    ("/usr/share/glvnd/egl_vendor.d/10_nvidia.json", "graphics"),
    ("/etc/glvnd/egl_vendor.d/10_nvidia.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/09_nvidia_wayland2.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/20_nvidia_xcb.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/20_nvidia_xlib.json", "graphics"),
    ("/usr/share/vulkan/icd.d/nvidia_icd.json", "graphics"),
    ("/etc/vulkan/icd.d/nvidia_icd.json", "graphics"),
    ("/usr/share/vulkan/icd.d/nvidia_icd.x86_64.json", "graphics"),
    ("/usr/share/vulkan/icd.d/nvidia_layers.json", "graphics"),
    ("/usr/share/vulkan/implicit_layer.d/nvidia_layers.json", "graphics"),
    ("/etc/vulkan/implicit_layer.d/nvidia_layers.json", "graphics"),
    ("/usr/share/nvidia/nvoptix.bin", "graphics"),
)

#: (host path, capability) of IPC endpoints
IPC_PATHS: Tuple[Tuple[str, str], ...] = (
    ("/run/nvidia-persistenced/socket", "utility"),
    ("/var/run/nvidia-persistenced/socket", "utility"),
    ("/run/nvidia-fabricmanager/socket", "utility"),
    ("/var/run/nvidia-fabricmanager/socket", "utility"),
)
DEFAULT_MPS_PIPE_DIR = "/tmp/nvidia-mps"

#: extra link names a program may open (driver-files.md §4)
EXTRA_LINKS: Dict[str, Tuple[str, ...]] = {
    "libcuda.so": ("libcuda.so",),  # nvidia-docker #103: apps dlopen the dev name
    "libGLX_nvidia.so": ("libGLX_indirect.so.0",),  # GLVND indirect GLX
    "libnvidia-opticalflow.so": ("libnvidia-opticalflow.so",),  # the driver ships no such link
}


def parse_capabilities(text: str) -> FrozenSet[str]:
    """Capabilities named in a comma-separated list (``NVIDIA_DRIVER_CAPABILITIES`` syntax).

    ``all`` expands to every capability; empty items are ignored; an unknown
    name is a :class:`UsageError` naming it.
    """
    caps: Set[str] = set()
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "all":
            caps.update(ALL_CAPABILITIES)
        elif item in ALL_CAPABILITIES:
            caps.add(item)
        else:
            raise UsageError(f"unknown driver capability: {raw.strip()!r}",
                             hint="use a comma-separated list of: " + ", ".join(CAPABILITY_ORDER) + ", all")
    return frozenset(caps)


def library_capabilities(caps: FrozenSet[str]) -> Tuple[str, ...]:
    """The library lists the requested capabilities pull in, in canonical order:
    video implies compute (libnvidia-container ``options.h``), display implies graphics."""
    wanted = set(caps)
    if "video" in wanted:
        wanted.add("compute")
    if "display" in wanted:
        wanted.add("graphics")
    return tuple(c for c in CAPABILITY_ORDER if c in wanted and c in LIBRARIES)
