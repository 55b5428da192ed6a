"""Driver capabilities (``NVIDIA_DRIVER_CAPABILITIES``) and the driver files each one needs.

The lists follow libnvidia-container ``src/nvc_info.c``, completed with what
the NVIDIA Container Toolkit mounts on top (``internal/discover/graphics.go``,
``pkg/nvcdi/driver-nvml.go``; see ``docs/host-devices.md``). Library names are
*prefixes* of ld.so.cache keys: ``libcuda.so`` matches ``libcuda.so.1``.

Example:
    >>> sorted(parse_capabilities("compute, utility"))
    ['compute', 'utility']
    >>> "ngx" in parse_capabilities("all")
    True
"""
from __future__ import annotations

from ..errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, FrozenSet, Optional, Set, Tuple


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
    # the toolkit's graphics mounts: the GBM backend (gbm/nvidia-drm_gbm.so links to it) and the
    # Vulkan producer of older drivers (internal/discover/graphics.go)
    "libnvidia-allocator.so", "libnvidia-vulkan-producer.so",
    # non-GLVND installs: taken only when DT_NEEDED names libnvidia-glcore/eglcore
    "libGL.so", "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so",
)
NGX_LIBS = ("libnvidia-ngx.so",)

#: loaders that may belong to Mesa/GLVND; kept only when they need NVIDIA's core library
GL_COMPAT_LOADERS = ("libGL.so", "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so")
GL_CORE_NEEDED = ("libnvidia-glcore.so", "libnvidia-eglcore.so")
#: "display libraries are not needed" (nvc_info.c): never taken as libraries, not even by the version
#: sweep; the X.Org modules nvidia_drv.so and libglxserver_nvidia.so are mounted at their host
#: paths instead (XORG_MODULES)
NEVER_LIBS = ("libnvidia-gtk2.so", "libnvidia-gtk3.so", "libnvidia-wfb.so", "nvidia_drv.so", "libglx.so",
              "libglxserver_nvidia.so")
#: listed libraries that only some drivers ship: not reported missing
OPTIONAL_LIBS = ("libnvidia-vulkan-producer.so",)

#: libraries with their own version instead of the driver's (``libnvidia-egl-gbm.so.1.1.2``): taken
#: from ld.so.cache (or the library directories) whatever that version, like the toolkit's
#: ``libnvidia-egl-*.so.*.*`` graphics mounts (internal/discover/graphics.go); never reported missing
OWN_VERSION_LIBS: Dict[str, Tuple[str, ...]] = {
    "graphics": ("libnvidia-egl-gbm.so", "libnvidia-egl-wayland.so", "libnvidia-egl-wayland2.so",
                 "libnvidia-egl-xcb.so", "libnvidia-egl-xlib.so"),
}
#: libraries taken from the directory of the driver's libcuda whatever their file version: the legacy
#: NVVM of R575+ (``libnvidia-nvvm70.so.4``) that PTX JIT of pre-CUDA-12 programs loads (toolkit
#: pkg/nvcdi/driver-nvml.go ``libnvidia-nvvm70.so.*``, toolkit #1875); never reported missing
DRIVER_DIR_LIBS: Dict[str, Tuple[str, ...]] = {
    "compute": ("libnvidia-nvvm70.so",),
}
#: the GBM backend link, relative to a driver library directory; with ``graphics`` it is mounted at its
#: host path as the real libnvidia-allocator (the toolkit creates ``gbm/nvidia-drm_gbm.so ->
#: ../libnvidia-allocator.so.1`` next to the allocator, internal/discover/graphics.go)
GBM_BACKEND = "gbm/nvidia-drm_gbm.so"
#: X.Org driver modules mounted at their host paths with ``graphics`` (``{version}``: the driver's),
#: and the link name each also gets (the toolkit's create-symlinks hook)
XORG_MODULES: Tuple[Tuple[str, Optional[str]], ...] = (
    ("nvidia_drv.so", None),
    ("libglxserver_nvidia.so.{version}", "libglxserver_nvidia.so"),
)

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
    # nvidia-imex(-ctl): the IMEX daemon and its client, in the toolkit's driver binaries (pkg/nvcdi/driver-nvml.go)
    "utility": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nv-fabricmanager", "nvidia-imex",
                "nvidia-imex-ctl"),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server"),
    # the toolkit's graphics mounts (internal/discover/graphics.go)
    "graphics": ("nvidia-xconfig",),
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
    ("/usr/share/vulkan/icd.d/nvidia_icd.aarch64.json", "graphics"),
    ("/usr/share/nvidia/nvoptix.bin", "graphics"),
    # X.Org configuration of the driver (toolkit internal/discover/graphics.go)
    ("/usr/share/X11/xorg.conf.d/10-nvidia.conf", "graphics"),
    ("/etc/X11/xorg.conf.d/10-nvidia.conf", "graphics"),
    ("/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf", "graphics"),
    ("/etc/X11/xorg.conf.d/nvidia-drm-outputclass.conf", "graphics"),
)

#: (host path, capability) of IPC endpoints
IPC_PATHS: Tuple[Tuple[str, str], ...] = (
    ("/run/nvidia-persistenced/socket", "utility"),
    ("/var/run/nvidia-persistenced/socket", "utility"),
    ("/run/nvidia-fabricmanager/socket", "utility"),
    ("/var/run/nvidia-fabricmanager/socket", "utility"),
)
DEFAULT_MPS_PIPE_DIR = "/tmp/nvidia-mps"

#: extra link names a program may open (docs/driver-file-selection.md "Link names")
EXTRA_LINKS: Dict[str, Tuple[str, ...]] = {
    "libcuda.so": ("libcuda.so",),  # nvidia-docker #103: apps dlopen the dev name
    "libGLX_nvidia.so": ("libGLX_indirect.so.0",),  # GLVND indirect GLX
    "libnvidia-opticalflow.so": ("libnvidia-opticalflow.so",),  # the driver ships no such link
    "libnvidia-vulkan-producer.so": ("libnvidia-vulkan-producer.so",),  # the toolkit's create-symlinks hook
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
