"""``nvlow cdi generate`` / ``validate`` against real podman (4.1+ reads CDI specs from /var/run/cdi).

The spec is generated for the fake host root, written to ``/var/run/cdi`` under a name of
this test session (podman 4.3 reads only /etc/cdi and /var/run/cdi) and removed afterwards.
Containers request ``--device <kind>=0`` / ``=all``; what they see is read with a probe script.
Deliberately broken specs must be rejected by ``nvlow cdi validate`` and by podman alike.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from . import requires_engines, requires_root
from .fakehost import FakeHost, host_has_nvidia_driver
from .helpers import IMAGE, Engine, NvlowRunner, Section, probe_script, sections

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

SPEC_DIR = "/var/run/cdi"
STATIC_DIR = "/etc/cdi"
NVIDIA_LIB64 = "/usr/local/nvidia/lib64"
NVIDIA_BIN = "/usr/local/nvidia/bin"
BROKEN_KIND = "nvlow-broken.example/gpu"


def _kinds_in_spec_dirs(exclude: Tuple[str, ...] = ()) -> List[str]:
    kinds = []
    for d in (STATIC_DIR, SPEC_DIR):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            if path in exclude or not name.endswith((".json", ".yaml")):
                continue
            try:
                from nvlow.cdi.store import read_spec

                doc = read_spec(path)
            except Exception:  # noqa: BLE001 - someone else's broken file
                continue
            if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
                kinds.append(doc["kind"])
    return kinds


@pytest.fixture(scope="module")
def cdi_spec(fake_host: FakeHost, podman_engine: Engine) -> Iterator[Tuple[str, str]]:
    """(kind, spec path): nvlow's spec for the fake host in /var/run/cdi (removed afterwards)."""
    if host_has_nvidia_driver():
        pytest.skip("this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs")
    path = os.path.join(SPEC_DIR, f"nvlow-test-{os.getpid()}.yaml")
    # Do not shadow or conflict with a real spec of this machine (nvidia-ctk writes nvidia.com/gpu).
    vendor = "nvidia.com" if "nvidia.com/gpu" not in _kinds_in_spec_dirs() else "nvlow-test.example"
    env = dict(podman_engine.env)
    from .helpers import nvlow_command

    proc = subprocess.run([*nvlow_command(), "cdi", "generate", "--root", fake_host.root, "--no-nvml",
                           "--vendor", vendor, "--capabilities", "compute,utility", "--output", path],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    try:
        yield f"{vendor}/gpu", path
    finally:
        if os.path.exists(path):
            os.unlink(path)


PROBE = {
    "gpus": "ls /dev | grep '^nvidia[0-9]' | sort",
    "stat": "stat -c '%n|%F|%t:%T' /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools",
    "open": "cat /dev/nvidia0",
    "md5": f"md5sum {NVIDIA_LIB64}/libcuda.so.1",
    "readonly": f"touch {NVIDIA_LIB64}/libcuda.so.1",
    "smi": "nvidia-smi",
    "env": "env | grep -E '^(PATH|LD_LIBRARY_PATH|NVIDIA_VISIBLE_DEVICES)=' | sort",
}

_cache: Dict[str, Dict[str, Section]] = {}


def probe(engine: Engine, device: str) -> Dict[str, Section]:
    if device not in _cache:
        proc = engine.cli("run", "--rm", "--pull", "never", "--network", "none", "--device", device,
                          IMAGE, "sh", "-c", probe_script(PROBE), check=False)
        assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr}"
        _cache[device] = sections(proc.stdout)
    return _cache[device]


def test_generated_spec_lists_and_validates(cdi_spec: Tuple[str, str], fake_host: FakeHost,
                                            nvlow: NvlowRunner) -> None:
    kind, path = cdi_spec
    proc = nvlow("cdi", "validate", "--root", fake_host.root, path)
    assert (proc.returncode, proc.stdout) == (0, f"{path}: ok (5 devices)\n"), proc.stderr
    proc = nvlow("cdi", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    mine = sorted(d["name"] for d in json.loads(proc.stdout)["devices"] if d["spec"] == path)
    assert mine == sorted(f"{kind}={n}" for n in ("0", "1", "all", *fake_host.uuids))


def test_one_gpu(cdi_spec: Tuple[str, str], podman_engine: Engine, fake_host: FakeHost) -> None:
    kind, _path = cdi_spec
    s = probe(podman_engine, f"{kind}=0")
    assert s["gpus"].out.splitlines() == ["nvidia0"]
    nodes = fake_host.nodes
    assert s["stat"].out.splitlines() == [
        f"/dev/{n}|character special file|{nodes[n].hex}" for n in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")]
    # the node is allowed by the devices cgroup, and there is no driver behind it
    assert s["open"].rc != 0 and "No such device or address" in s["open"].out
    assert s["md5"].out.split()[0] == fake_host.md5(fake_host.libraries["libcuda.so.1"])
    assert s["readonly"].rc != 0 and "Read-only file system" in s["readonly"].out
    assert (s["smi"].rc, s["smi"].out) == (0, fake_host.marker("nvidia-smi"))


def test_env_replaces_image_path(cdi_spec: Tuple[str, str], podman_engine: Engine) -> None:
    kind, _path = cdi_spec
    env = probe(podman_engine, f"{kind}=0")["env"].out.splitlines()
    assert env == [
        "LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib",
        "NVIDIA_VISIBLE_DEVICES=void",
        # CDI sets the variable: the image's own /opt/nvlow-image/bin is gone (documented in nvlow.cdi.spec)
        f"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{NVIDIA_BIN}",
    ]


@pytest.mark.parametrize("name", ["all", "uuid1"])
def test_all_and_uuid(cdi_spec: Tuple[str, str], podman_engine: Engine, fake_host: FakeHost, name: str) -> None:
    kind, _path = cdi_spec
    device = f"{kind}={fake_host.uuids[1]}" if name == "uuid1" else f"{kind}=all"
    s = probe(podman_engine, device)
    expected = ["nvidia1"] if name == "uuid1" else [f"nvidia{m}" for m in fake_host.gpu_minors]
    assert s["gpus"].out.splitlines() == expected
    assert (s["smi"].rc, s["smi"].out) == (0, fake_host.marker("nvidia-smi"))


def test_unknown_device_is_unresolvable(cdi_spec: Tuple[str, str], podman_engine: Engine) -> None:
    kind, _path = cdi_spec
    proc = podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{kind}=7",
                             IMAGE, "true", check=False)
    assert proc.returncode != 0
    assert f"unresolvable CDI devices {kind}=7" in proc.stderr


def _good_broken_base(fake_host: FakeHost) -> Dict[str, Any]:
    return {"cdiVersion": "0.5.0", "kind": BROKEN_KIND,
            "devices": [{"name": "0", "containerEdits": {"deviceNodes": [
                {"path": "/dev/nvidia0", "hostPath": fake_host.host("/dev/nvidia0")}]}}],
            "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]}}


def _break(kind: str, doc: Dict[str, Any], fake_host: FakeHost) -> Any:
    dev = doc["devices"][0]
    if kind == "unknown-field":
        doc["bogus"] = 1
    elif kind == "env-without-value":
        doc["containerEdits"]["env"] = ["FOO"]
    elif kind == "duplicate-name":
        doc["devices"].append(json.loads(json.dumps(dev)))
    elif kind == "empty-device-edits":
        dev["containerEdits"] = {}
    elif kind == "bad-hook-name":
        doc["containerEdits"]["hooks"] = [{"hookName": "bogusHook", "path": "/bin/true"}]
    elif kind == "version-too-new-for-podman-4":
        doc["cdiVersion"] = "0.9.0"
    elif kind == "string-major":
        dev["containerEdits"]["deviceNodes"][0].update(type="c", major="195", minor=0)
    elif kind == "missing-mount-source":
        doc["containerEdits"]["mounts"] = [{"hostPath": fake_host.host("/usr/lib/libgone.so.550.54.15"),
                                            "containerPath": "/usr/local/nvidia/lib64/libgone.so",
                                            "options": ["ro", "nosuid", "nodev", "bind"]}]
    return doc


BROKEN = ["unknown-field", "env-without-value", "duplicate-name", "empty-device-edits", "bad-hook-name",
          "version-too-new-for-podman-4", "string-major", "missing-mount-source"]
# Not here: cdiVersion 0.3.0 with a hostPath, which podman 4.3 accepts but Docker 26 rejects
# (cdi.md §2); nvlow cdi validate reports it (tests/test_cdi_validate.py).


@pytest.mark.parametrize("case", BROKEN)
def test_broken_spec_rejected_by_nvlow_and_podman(case: str, cdi_spec: Tuple[str, str], podman_engine: Engine,
                                                  fake_host: FakeHost, nvlow: NvlowRunner) -> None:
    if BROKEN_KIND in _kinds_in_spec_dirs():
        pytest.skip(f"another spec of this machine defines {BROKEN_KIND}")
    kind, _good_path = cdi_spec
    path = os.path.join(SPEC_DIR, f"nvlow-broken-{os.getpid()}.json")
    run = ("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{BROKEN_KIND}=0", IMAGE, "true")
    # the unbroken base works, so each failure below comes from the one change
    with open(path, "w") as fh:
        json.dump(_good_broken_base(fake_host), fh)
    try:
        assert podman_engine.cli(*run, check=False).returncode == 0
        with open(path, "w") as fh:
            json.dump(_break(case, _good_broken_base(fake_host), fake_host), fh)
        proc = nvlow("cdi", "validate", "--root", fake_host.root, path)
        assert proc.returncode == 1, proc.stdout
        assert proc.stdout.startswith(f"{path}: ")
        engine = podman_engine.cli(*run, check=False)
        assert engine.returncode != 0, f"podman accepted the {case} spec"
        # a broken file does not stop the good spec from resolving
        assert probe(podman_engine, f"{kind}=0")["gpus"].out.splitlines() == ["nvidia0"]
        assert podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{kind}=0",
                                 IMAGE, "true", check=False).returncode == 0
    finally:
        os.unlink(path)


def test_volume_mode(fake_host: FakeHost, podman_engine: Engine, nvlow: NvlowRunner,
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """--driver-files volume: the 1.0 driver volume is bind-mounted read-only at /usr/local/nvidia."""
    if host_has_nvidia_driver():
        pytest.skip("this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs")
    kind = "nvlow-test.example/gpuvol"
    if kind in _kinds_in_spec_dirs():
        pytest.skip(f"another spec of this machine defines {kind}")
    volumes = str(tmp_path_factory.mktemp("volumes"))
    path = os.path.join(SPEC_DIR, f"nvlow-test-vol-{os.getpid()}.json")
    try:
        proc = nvlow("cdi", "generate", "--root", fake_host.root, "--no-nvml", "--vendor", "nvlow-test.example",
                     "--class", "gpuvol", "--capabilities", "compute,utility", "--driver-files", "volume",
                     "--volumes-dir", volumes, "--output", path)
        assert proc.returncode == 0, proc.stderr
        mounts = json.load(open(path))["containerEdits"]["mounts"]
        assert mounts[0]["containerPath"] == "/usr/local/nvidia"
        assert mounts[0]["hostPath"].startswith(volumes)
        out = podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{kind}=0",
                                IMAGE, "sh", "-c", probe_script(PROBE), check=False)
        assert out.returncode == 0, out.stderr
        s = sections(out.stdout)
        assert s["gpus"].out.splitlines() == ["nvidia0"]
        assert s["md5"].out.split()[0] == fake_host.md5(fake_host.libraries["libcuda.so.1"])
        assert s["readonly"].rc != 0 and "Read-only file system" in s["readonly"].out
        assert (s["smi"].rc, s["smi"].out) == (0, fake_host.marker("nvidia-smi"))
    finally:
        if os.path.exists(path):
            os.unlink(path)
