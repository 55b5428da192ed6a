"""The VDPAU driver reaches a container where libvdpau looks for it, with real podman and docker.

libvdpau (vdpau_wrapper.c) loads the driver the X server names from ``$VDPAU_DRIVER_PATH/libvdpau_<name>.so.1``,
then from its own module directory ``<libdir>/vdpau/libvdpau_<name>.so.1``, then as a bare
``libvdpau_<name>.so`` on the loader's path (docs/driver-file-selection.md, "VDPAU"). The probe below makes those
three ``dlopen`` calls in that order, as the Debian/Ubuntu build of libvdpau does, and prints the one that
worked: a driver bound only as ``libvdpau_nvidia.so.1`` in a library directory is never found.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Iterator, Tuple

import pytest

from nvlow.cdi.layout import library_dirs
from nvlow.host.ldcache import native_arch

from . import requires_engines, requires_root
from .fakehost import FakeHost, host_has_nvidia_driver
from .helpers import IMAGE, Engine, NvlowRunner, generated_cdi_spec

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

MULTIARCH_LIB = library_dirs(native_arch())[0]
MODULE_DIR = MULTIARCH_LIB + "/vdpau"
PROBE = "/opt/vdpau-probe"
PROBE_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    char path[4096];
    const char *dir = getenv("VDPAU_DRIVER_PATH");
    void *h = NULL;
    if (dir != NULL && snprintf(path, sizeof path, "%s/libvdpau_nvidia.so.1", dir) < (int)sizeof path)
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) {
        snprintf(path, sizeof path, "%s/libvdpau_nvidia.so.1", MODULE_DIR);
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    }
    if (h == NULL) {
        snprintf(path, sizeof path, "libvdpau_nvidia.so");
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    }
    if (h == NULL) {
        puts("no VDPAU driver");
        return 1;
    }
    printf("loaded %s\n", path);
    return 0;
}
"""


@pytest.fixture(scope="module")
def vdpau_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("gcc is missing")
    work = tmp_path_factory.mktemp("vdpau-probe")
    src, out = str(work / "probe.c"), str(work / "vdpau-probe")
    with open(src, "w", encoding="ascii") as fh:
        fh.write(PROBE_C)
    subprocess.run([cc, f'-DMODULE_DIR="{MODULE_DIR}"', "-o", out, src, "-Wl,--as-needed", "-ldl"], check=True,
                   capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def video_spec(fake_host: FakeHost, podman_engine: Engine) -> Iterator[Tuple[str, str]]:
    if host_has_nvidia_driver():
        pytest.skip("this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs")
    with generated_cdi_spec(fake_host.root, "nvlow-test-vdpau.yaml", podman_engine.env,
                            "--capabilities", "video") as spec:
        yield spec


@pytest.mark.parametrize("with_spec", [True, False], ids=["cdi-video", "no-device"])
def test_cdi_puts_the_driver_in_libvdpaus_module_directory(with_spec: bool, video_spec: Tuple[str, str],
                                                           podman_engine: Engine, vdpau_probe: str) -> None:
    kind, _path = video_spec
    device = ("--device", f"{kind}=0") if with_spec else ()
    proc = podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", *device,
                             "-v", f"{vdpau_probe}:{PROBE}:ro", IMAGE, PROBE, check=False)
    if with_spec:
        assert (proc.returncode, proc.stdout) == (0, f"loaded {MODULE_DIR}/libvdpau_nvidia.so.1\n"), proc.stderr
    else:  # the control: the image has no VDPAU driver of its own
        assert (proc.returncode, proc.stdout) == (1, "no VDPAU driver\n")


@pytest.mark.parametrize("caps", ["video", "compute"])
def test_exec_names_the_driver_directory_in_vdpau_driver_path(caps: str, nvlow: NvlowRunner, engine: Engine,
                                                               fake_host: FakeHost, vdpau_probe: str) -> None:
    if host_has_nvidia_driver():
        pytest.skip("this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs")
    argv = engine.run_argv("-v", f"{vdpau_probe}:{PROBE}:ro", IMAGE, PROBE)
    proc = nvlow("exec", "--root", fake_host.root, "--no-nvml", "--gpus", "0", "--capabilities", caps, "--", *argv)
    if caps == "video":
        assert (proc.returncode, proc.stdout) == (0, "loaded /usr/local/nvidia/lib64/libvdpau_nvidia.so.1\n"), \
            proc.stderr
    else:  # without the video capability there is no VDPAU driver, and no variable naming one
        assert (proc.returncode, proc.stdout) == (1, "no VDPAU driver\n"), proc.stderr
