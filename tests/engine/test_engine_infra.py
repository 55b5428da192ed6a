"""The test infrastructure itself: scripts, the fake host, and the engines without nvlow."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from . import requires_engines, requires_root
from .fakehost import (
    DRIVER_VERSION,
    FakeHost,
    char_majors,
    host_has_nvidia_driver,
    ld_cache_entries,
    pick_free_major,
    proc_devices_text,
)
from .helpers import IMAGE, IMAGE_NEWCUDA, IMAGE_PATH, Engine, probe_script, sections

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("script", ["tests/run.sh", "tests/engine/setup_engines.sh", ".ci/run"])
def test_shell_scripts_parse(script: str) -> None:
    proc = subprocess.run(["bash", "-n", os.path.join(REPO, script)], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_ci_entry_runs_the_readme_command() -> None:
    with open(os.path.join(REPO, ".ci/run"), encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == "exec bash tests/run.sh"


HOST_DEVICES = """Character devices:
  1 mem
195 nvidia
195 nvidiactl
511 nvidia-caps
510 nvidia-uvm

Block devices:
509 blkext
"""


@pytest.mark.parametrize(
    ("text", "avoid", "expected"),
    [
        (HOST_DEVICES, (195,), 509),  # 511/510 used as char majors; block 509 does not count
        ("Character devices:\n  1 mem\n", (195,), 511),
        ("Character devices:\n  1 mem\n", (195, 511), 510),
        ("", (), 511),
    ],
)
def test_pick_free_major(text: str, avoid: tuple, expected: int) -> None:
    assert pick_free_major(text, avoid) == expected


def test_char_majors_reads_only_the_char_section() -> None:
    assert char_majors(HOST_DEVICES) == {1: ("mem",), 195: ("nvidia", "nvidiactl"), 511: ("nvidia-caps",),
                                         510: ("nvidia-uvm",)}
    assert host_has_nvidia_driver(HOST_DEVICES)
    assert not host_has_nvidia_driver("Character devices:\n  1 mem\n\nBlock devices:\n195 foo\n")


def test_fake_proc_devices_lists_the_uvm_major() -> None:
    assert char_majors(proc_devices_text(487))[487] == ("nvidia-uvm",)


@requires_root
class TestFakeHost:
    def test_nodes_are_char_devices_with_the_right_numbers(self, fake_host: FakeHost) -> None:
        assert sorted(fake_host.nodes) == ["nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0",
                                           "nvidia1", "nvidiactl"]
        for node in fake_host.nodes.values():
            st = os.lstat(fake_host.host(node.path))
            assert stat.S_ISCHR(st.st_mode), node.path
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (node.major, node.minor), node.path
            assert stat.S_IMODE(st.st_mode) == 0o666
        assert fake_host.nodes["nvidia-uvm"].hex == f"{fake_host.uvm_major:x}:0"

    def test_uvm_major_is_free_on_this_kernel(self, fake_host: FakeHost) -> None:
        with open("/proc/devices", encoding="ascii") as fh:
            assert fake_host.uvm_major not in char_majors(fh.read())

    def test_proc_files_match_the_nodes(self, fake_host: FakeHost) -> None:
        with open(fake_host.host("/proc/devices"), encoding="ascii") as fh:
            majors = char_majors(fh.read())
        assert majors[195] == ("nvidia", "nvidiactl")
        assert majors[fake_host.uvm_major] == ("nvidia-uvm",)
        with open(fake_host.host("/proc/driver/nvidia/version"), encoding="ascii") as fh:
            assert f"Kernel Module  {DRIVER_VERSION}  " in fh.readline()
        gpus = sorted(os.listdir(fake_host.host("/proc/driver/nvidia/gpus")))
        assert gpus == list(fake_host.bus_ids)
        for bus, minor in zip(fake_host.bus_ids, fake_host.gpu_minors):
            with open(fake_host.host(f"/proc/driver/nvidia/gpus/{bus}/information"), encoding="ascii") as fh:
                info = dict(line.split(":", 1) for line in fh.read().splitlines())
            assert info["Device Minor"].strip() == str(minor)
            assert info["Bus Location"].strip() == bus

    def test_libraries_have_sonames_and_links(self, fake_host: FakeHost) -> None:
        for soname, real in fake_host.libraries.items():
            assert real.endswith("." + DRIVER_VERSION)
            link = f"{os.path.dirname(real)}/{soname}"  # the library directory, or its vdpau/
            assert os.path.realpath(fake_host.host(link)) == fake_host.host(real)
            with open(fake_host.host(real), "rb") as fh:
                data = fh.read()
            assert data[:4] == b"\x7fELF"
            assert soname.encode() + b"\0" in data  # DT_SONAME string
        assert os.readlink(fake_host.host(f"{fake_host.lib_dir}/libcuda.so")) == "libcuda.so.1"
        assert fake_host.md5(f"{fake_host.lib_dir}/libcuda.so.1") != fake_host.md5(fake_host.stale_library)

    @pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) missing")
    def test_soname_per_readelf(self, fake_host: FakeHost) -> None:
        out = subprocess.run(["readelf", "-d", fake_host.host(fake_host.libraries["libcuda.so.1"])],
                             capture_output=True, text=True, check=True).stdout
        assert "Library soname: [libcuda.so.1]" in out

    def test_ld_cache_has_current_and_stale_libcuda(self, fake_host: FakeHost) -> None:
        entries = ld_cache_entries(fake_host)
        assert f"libcuda.so.1 (libc6,x86-64) => {fake_host.lib_dir}/libcuda.so.1" in entries
        assert f"libcuda.so.1 (libc6,x86-64) => {fake_host.stale_lib_dir}/libcuda.so.1" in entries
        assert f"libnvidia-ml.so.1 (libc6,x86-64) => {fake_host.lib_dir}/libnvidia-ml.so.1" in entries

    def test_binaries_print_their_marker(self, fake_host: FakeHost) -> None:
        out = subprocess.run([fake_host.host(fake_host.binaries["nvidia-smi"])], capture_output=True, text=True)
        assert out.stdout == fake_host.marker("nvidia-smi") + "\n"


@pytest.mark.engine
@requires_engines
class TestEnginesWithoutNvlow:
    """The engines and the fake host work together before nvlow is involved."""

    def test_plain_run(self, engine: Engine) -> None:
        proc = engine.run(IMAGE, "sh", "-c", 'echo "$PATH"; id -u')
        assert proc.stdout == f"{IMAGE_PATH}\n0\n"

    @pytest.mark.parametrize(("image", "requirement"), [(IMAGE, "cuda>=12.0"), (IMAGE_NEWCUDA, "cuda>=99.0")])
    def test_images_carry_nvidia_metadata(self, engine: Engine, image: str, requirement: str) -> None:
        fmt = '{{index .Config.Labels "com.nvidia.volumes.needed"}} {{index .Config.Labels "com.nvidia.cuda.version"}}'
        labels = engine.cli("image", "inspect", "-f", fmt, image).stdout.strip()
        assert labels == "nvidia_driver 12.4"
        env = engine.cli("image", "inspect", "-f", "{{json .Config.Env}}", image).stdout
        assert f'"NVIDIA_REQUIRE_CUDA={requirement}"' in env

    @requires_root
    def test_fake_nodes_through_device_flags(self, engine: Engine, fake_host: FakeHost) -> None:
        names = ("nvidia0", "nvidiactl", "nvidia-uvm")
        flags = [f"--device={fake_host.host('/dev/' + n)}:/dev/{n}" for n in names]
        script = probe_script({
            "stat": "stat -c '%n|%F|%t:%T' " + " ".join("/dev/" + n for n in names),
            "open": "cat /dev/nvidia0",
        })
        proc = engine.run(*flags, IMAGE, "sh", "-c", script)
        got = sections(proc.stdout)
        assert got["stat"].out.splitlines() == [
            f"/dev/{n}|character special file|{fake_host.nodes[n].hex}" for n in names
        ]
        if not host_has_nvidia_driver():
            assert got["open"].rc == 1
            assert "No such device or address" in got["open"].out

    def test_missing_image_is_not_pulled(self, engine: Engine) -> None:
        proc = engine.run("nvlow-test-does-not-exist:latest", "true", check=False)
        assert proc.returncode != 0
