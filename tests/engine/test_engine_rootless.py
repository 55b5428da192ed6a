"""``nvlow exec -- podman run ...`` by an unprivileged user with rootless Podman (issue 15).

A throwaway user with subordinate ids and its own containers.conf/storage.conf (tests/engine/rootless.py)
runs nvlow and podman through ``runuser``. On a fake host whose nodes are 0666 the container must get the
selected nodes as character devices (owned by ``nobody``: rootless ``--device`` bind-mounts the node),
not the others, and read-only driver files; on one whose nodes are 0600 root's, nvlow must stop before
podman runs with one error line naming the node and a hint with the fix (nvlow/cli/rootless.py).
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, Iterator

import pytest

from . import requires_engines, requires_root
from .fakehost import FakeHost, build_fake_host, host_has_nvidia_driver
from .helpers import IMAGE, IMAGE_PATH, SAFE_RUN_FLAGS, Section, probe_script, sections
from .rootless import RootlessUser, Unavailable, create_rootless_user, missing_prerequisites, user_readable_dir

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

NVIDIA_BIN = "/usr/local/nvidia/bin"
NVIDIA_LIB64 = "/usr/local/nvidia/lib64"
#: the rootful image's configuration (setup_engines.sh image_changes with cuda>=12.0)
IMAGE_CHANGES = ('CMD ["/bin/sh"]', f"ENV PATH={IMAGE_PATH}", "ENV NVIDIA_REQUIRE_CUDA=cuda>=12.0",
                 "LABEL com.nvidia.volumes.needed=nvidia_driver", "LABEL com.nvidia.cuda.version=12.4")
REAL_DRIVER_REASON = "this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs"


def _unavailable(reason: str) -> None:
    """A missing prerequisite fails in CI and skips elsewhere (CONTRIBUTING.md)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"rootless podman test cannot run: {reason}")
    pytest.skip(f"rootless podman test cannot run: {reason}")


@pytest.fixture(scope="module")
def rootless() -> Iterator[RootlessUser]:
    missing = missing_prerequisites()
    if missing:
        _unavailable("missing " + ", ".join(missing) + " (setup_engines.sh installs uidmap)")
    workdir = os.environ.get("NVLOW_TEST_WORKDIR", "")
    try:
        user = create_rootless_user(os.path.join(workdir, "rootfs.tar"), IMAGE, IMAGE_CHANGES)
    except Unavailable as exc:
        _unavailable(str(exc))
        raise  # unreachable
    try:
        yield user
    finally:
        notes = user.destroy()
        assert not notes, notes


@pytest.fixture(scope="module")
def open_host() -> Iterator[FakeHost]:
    """The fake host (nodes 0666) in a directory the user can enter."""
    if host_has_nvidia_driver():
        pytest.skip(REAL_DRIVER_REASON)
    base = user_readable_dir("nvlow-rootless-host-")
    try:
        yield build_fake_host(os.path.join(base, "root"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def locked_host() -> Iterator[FakeHost]:
    """The fake host with every /dev node 0600 root:root (what the user cannot open)."""
    if host_has_nvidia_driver():
        pytest.skip(REAL_DRIVER_REASON)
    base = user_readable_dir("nvlow-rootless-locked-")
    try:
        host = build_fake_host(os.path.join(base, "root"))
        for node in host.nodes.values():
            os.chown(host.host(node.path), 0, 0)
            os.chmod(host.host(node.path), 0o600)
        yield host
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_argv(*args: str) -> list:  # type: ignore[type-arg]
    return ["podman", "run", "--rm", *SAFE_RUN_FLAGS, *args]


PROBE = {
    "id": "id -u",
    "stat": "stat -c '%n|%F|%t:%T|%U' /dev/nvidia1 /dev/nvidiactl /dev/nvidia-uvm",
    "absent": "ls /dev | grep '^nvidia[0-9]' | sort",
    "open": "cat /dev/nvidia1",
    "md5": f"md5sum {NVIDIA_LIB64}/libcuda.so.1",
    "readonly": f"touch {NVIDIA_LIB64}/libcuda.so.1",
    "readonly_bin": f"touch {NVIDIA_BIN}/nvidia-smi",
    "smi": "nvidia-smi",
    "image_tool": "nvlow-image-tool",
    "path": 'echo "$PATH"',
    "ld_library_path": 'echo "$LD_LIBRARY_PATH"',
}


@pytest.fixture(scope="module")
def probe(rootless: RootlessUser, open_host: FakeHost) -> Dict[str, Section]:
    """One rootless ``nvlow exec`` run: GPU 1 only, compute+utility, bind mode."""
    proc = rootless.nvlow("exec", "--root", open_host.root, "--no-nvml", "--gpus", "1",
                          "--capabilities", "compute,utility", "--",
                          *run_argv(IMAGE, "sh", "-c", probe_script(PROBE)))
    assert proc.returncode == 0, f"rc {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "nvlow: warning" not in proc.stderr, proc.stderr
    return sections(proc.stdout)


def test_the_container_runs_in_a_user_namespace(probe: Dict[str, Section], rootless: RootlessUser) -> None:
    # root in the container is the unprivileged user on the host: the engine really is rootless
    assert probe["id"].out == "0"
    proc = rootless.podman("info", "--format", "{{.Host.Security.Rootless}}")
    assert (proc.returncode, proc.stdout.strip()) == (0, "true"), proc.stderr


def test_selected_nodes_are_character_devices_owned_by_nobody(probe: Dict[str, Section],
                                                              open_host: FakeHost) -> None:
    nodes = open_host.nodes
    assert probe["stat"].rc == 0, probe["stat"].out
    assert probe["stat"].out.splitlines() == [
        f"/dev/{name}|character special file|{nodes[name].hex}|nobody"
        for name in ("nvidia1", "nvidiactl", "nvidia-uvm")
    ]


def test_unselected_gpu_node_is_absent(probe: Dict[str, Section]) -> None:
    assert probe["absent"].out.splitlines() == ["nvidia1"]


def test_node_opens_for_the_user(probe: Dict[str, Section]) -> None:
    # ENXIO: the open got past the permission check and reached a major no driver answers
    assert probe["open"].rc != 0
    assert "No such device or address" in probe["open"].out


def test_driver_files_are_the_current_driver_and_read_only(probe: Dict[str, Section], open_host: FakeHost) -> None:
    current = open_host.md5(open_host.libraries["libcuda.so.1"])
    assert probe["md5"].out == f"{current}  {NVIDIA_LIB64}/libcuda.so.1"
    for section in ("readonly", "readonly_bin"):
        assert probe[section].rc != 0
        assert "Read-only file system" in probe[section].out
    assert (probe["smi"].rc, probe["smi"].out) == (0, open_host.marker("nvidia-smi"))


def test_environment_as_in_rootful_runs(probe: Dict[str, Section]) -> None:
    entries = probe["ld_library_path"].out.split(":")
    assert "/usr/local/nvidia/lib64" in entries and "/usr/local/nvidia/lib" in entries
    path = probe["path"].out.split(":")
    assert NVIDIA_BIN in path
    assert [p for p in path if p in IMAGE_PATH.split(":")] == IMAGE_PATH.split(":")
    assert (probe["image_tool"].rc, probe["image_tool"].out) == (0, "nvlow-image-tool")


def test_rootless_device_of_a_0600_node_does_not_open(rootless: RootlessUser, locked_host: FakeHost) -> None:
    """Why nvlow checks: podman itself starts the container, whose node is there but unusable."""
    node = locked_host.host("/dev/nvidia1")
    proc = rootless.run(*run_argv("--device", f"{node}:/dev/nvidia1", IMAGE, "sh", "-c",
                                  "stat -c '%F|%U' /dev/nvidia1; cat /dev/nvidia1"))
    assert proc.stdout.splitlines()[:1] == ["character special file|nobody"], proc.stdout + proc.stderr
    assert "Permission denied" in proc.stderr + proc.stdout


def test_nvlow_stops_when_the_user_cannot_open_the_nodes(rootless: RootlessUser, locked_host: FakeHost) -> None:
    proc = rootless.nvlow("exec", "--root", locked_host.root, "--no-nvml", "--gpus", "1", "--",
                          *run_argv(IMAGE, "sh", "-c", "echo started"))
    assert proc.returncode == 1, f"rc {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "started" not in proc.stdout
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("nvlow: error:")]
    hints = [line for line in proc.stderr.splitlines() if line.startswith("nvlow: hint:")]
    assert len(errors) == 1 and len(hints) == 1, proc.stderr
    node = locked_host.host("/dev/nvidia1")
    assert f"{rootless.name} (uid {rootless.uid}), who cannot open" in errors[0]
    assert f"{node} (crw------- root:root)" in errors[0]
    assert locked_host.host("/dev/nvidia0") not in errors[0]  # not selected, not checked
    assert "chmod 0666" in hints[0] and f"{node}" in hints[0]
    assert "udev" in hints[0] and "NVreg_DeviceFileMode=0666" in hints[0] and "sudo podman" in hints[0]


def test_dry_run_only_warns(rootless: RootlessUser, locked_host: FakeHost) -> None:
    proc = rootless.nvlow("exec", "--root", locked_host.root, "--no-nvml", "--gpus", "1", "--dry-run", "--",
                          *run_argv(IMAGE, "true"))
    assert proc.returncode == 0, proc.stderr
    assert f"--device={locked_host.host('/dev/nvidia1')}:/dev/nvidia1" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("nvlow: warning:")]
    assert any("cannot open" in w and locked_host.host("/dev/nvidia1") in w for w in warnings), proc.stderr


def test_docker_through_the_daemon_is_not_checked(rootless: RootlessUser, locked_host: FakeHost) -> None:
    """The rootful daemon opens the nodes, not the user: no access message (a dry run: the user has no
    socket of the private dockerd)."""
    proc = rootless.nvlow("exec", "--root", locked_host.root, "--no-nvml", "--gpus", "1", "--dry-run", "--",
                          "docker", "run", "--rm", IMAGE, "true")
    assert proc.returncode == 0, proc.stderr
    assert "cannot open" not in proc.stderr
