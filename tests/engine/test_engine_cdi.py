"""``nvlow cdi generate`` / ``validate`` against real podman (4.1+ reads CDI specs from /var/run/cdi).

The spec is generated for the fake host root, written to ``/var/run/cdi`` under a name of
this test session (podman 4.3 reads only /etc/cdi and /var/run/cdi) and removed afterwards.
Containers request ``--device <kind>=0`` / ``=all``; what they see is read with a probe script.
The spec sets no PATH or LD_LIBRARY_PATH: the image keeps its own, its glibc loader finds the driver
libraries in its default directories and its PATH finds the binaries in /usr/bin (docs/cdi-spec-rules.md).
Deliberately broken specs must be rejected by ``nvlow cdi validate`` and by podman alike.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, Dict, Iterator, Tuple

import pytest

from . import requires_engines, requires_root
from .fakehost import FakeHost, host_has_nvidia_driver
from nvlow.cdi.layout import library_dirs
from nvlow.host.ldcache import native_arch

from .helpers import IMAGE, IMAGE_PATH, Engine, NvlowRunner, Section, generated_cdi_spec, kinds_in_spec_dirs, probe_script, sections

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

SPEC_DIR = "/var/run/cdi"
#: where the spec binds the 64-bit libraries: the multiarch directory (Debian/Ubuntu) and /usr/lib64 (RHEL)
MULTIARCH_LIB, LIB64 = library_dirs(native_arch())
BROKEN_KIND = "nvlow-broken.example/gpu"
#: where the test binds the NVML test program (linked against the fake libnvidia-ml.so.1) into containers
NVML_PROBE = "/opt/nvml-probe"



@pytest.fixture(scope="module")
def cdi_spec(fake_host: FakeHost, podman_engine: Engine) -> Iterator[Tuple[str, str]]:
    """(kind, spec path): nvlow's spec for the fake host in /var/run/cdi (removed afterwards)."""
    if host_has_nvidia_driver():
        pytest.skip("this host has a real NVIDIA driver (major 195): fake nodes would reach real GPUs")
    with generated_cdi_spec(fake_host.root, f"nvlow-test-{os.getpid()}.yaml", podman_engine.env,
                            "--capabilities", "compute,utility") as spec:
        yield spec


PROBE = {
    "gpus": "ls /dev | grep '^nvidia[0-9]' | sort",
    "stat": "stat -c '%n|%F|%t:%T' /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools",
    "open": "cat /dev/nvidia0",
    "md5": f"md5sum {MULTIARCH_LIB}/libcuda.so.1 {MULTIARCH_LIB}/libcuda.so {LIB64}/libcuda.so.1",
    "readonly": f"touch {MULTIARCH_LIB}/libcuda.so.1",
    "smi": "nvidia-smi",
    "which": "command -v nvidia-smi; command -v nvlow-image-tool",
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
    md5 = fake_host.md5(fake_host.libraries["libcuda.so.1"])
    assert [line.split()[0] for line in s["md5"].out.splitlines()] == [md5, md5, md5]
    assert s["readonly"].rc != 0 and "Read-only file system" in s["readonly"].out
    assert (s["smi"].rc, s["smi"].out) == (0, fake_host.marker("nvidia-smi"))


def test_env_keeps_image_path(cdi_spec: Tuple[str, str], podman_engine: Engine) -> None:
    kind, _path = cdi_spec
    s = probe(podman_engine, f"{kind}=0")
    # no LD_LIBRARY_PATH, and the image's PATH (with /opt/nvlow-image/bin first) is untouched
    assert s["env"].out.splitlines() == ["NVIDIA_VISIBLE_DEVICES=void", f"PATH={IMAGE_PATH}"]
    assert IMAGE_PATH.startswith("/opt/nvlow-image/bin:")
    # the image's own tool and the driver's binary are both found through that PATH
    assert s["which"].out.splitlines() == ["/usr/bin/nvidia-smi", "/opt/nvlow-image/bin/nvlow-image-tool"]


@pytest.fixture(scope="module")
def nvml_probe(fake_host: FakeHost, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A C program linked against the fake host's libnvidia-ml.so.1 (DT_NEEDED by SONAME, no RUNPATH)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("gcc is missing")
    lib = fake_host.host(fake_host.libraries["libnvidia-ml.so.1"])
    # the one function each fake library exports is named after its file (tests/engine/fakehost.py)
    symbol = "nvlow_fake_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(lib))
    work = tmp_path_factory.mktemp("nvml-probe")
    src, out = str(work / "probe.c"), str(work / "nvml-probe")
    with open(src, "w", encoding="ascii") as fh:
        fh.write(f'#include <stdio.h>\nint {symbol}(void);\n'
                 f'int main(void) {{ printf("nvml-probe %d\\n", {symbol}()); return 0; }}\n')
    subprocess.run([cc, "-o", out, src, lib], check=True, capture_output=True, timeout=120)
    dynamic = subprocess.run(["readelf", "-d", out], check=True, capture_output=True, text=True).stdout
    assert "Shared library: [libnvidia-ml.so.1]" in dynamic
    assert "RUNPATH" not in dynamic and "RPATH" not in dynamic
    os.chmod(out, 0o755)
    return out


NVML_SCRIPT = probe_script({
    "ld_library_path": 'echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH-unset}"',
    # ldd's own trick: the loader prints how it resolved each DT_NEEDED instead of running the program
    "resolved": f"LD_TRACE_LOADED_OBJECTS=1 {NVML_PROBE} | grep libnvidia-ml",
    "run": NVML_PROBE,
})


@pytest.mark.parametrize("with_spec", [True, False], ids=["cdi-device", "no-device"])
def test_image_loader_finds_the_library_without_ld_library_path(
        with_spec: bool, cdi_spec: Tuple[str, str], podman_engine: Engine, nvml_probe: str) -> None:
    """The image's own glibc loader (from setup_engines.sh) finds libnvidia-ml.so.1 in its default
    directories, though the image's ld.so.cache does not list it and no LD_LIBRARY_PATH is set."""
    kind, _path = cdi_spec
    device = ("--device", f"{kind}=0") if with_spec else ()
    proc = podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", *device,
                             "-v", f"{nvml_probe}:{NVML_PROBE}:ro", IMAGE, "sh", "-c", NVML_SCRIPT, check=False)
    assert proc.returncode == 0, proc.stderr
    s = sections(proc.stdout)
    assert s["ld_library_path"].out == "LD_LIBRARY_PATH=unset"
    if with_spec:
        assert s["resolved"].out.split()[:3] == ["libnvidia-ml.so.1", "=>", f"{MULTIARCH_LIB}/libnvidia-ml.so.1"]
        assert s["run"] == Section(0, "nvml-probe 42")
    else:  # the control: without the spec the image has no such library
        assert s["run"].rc != 0
        assert "libnvidia-ml.so.1: cannot open shared object file" in s["run"].out


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
# (cdi-spec-rules.md §2); nvlow cdi validate reports it (tests/test_cdi_validate.py).


@pytest.mark.parametrize("case", BROKEN)
def test_broken_spec_rejected_by_nvlow_and_podman(case: str, cdi_spec: Tuple[str, str], podman_engine: Engine,
                                                  fake_host: FakeHost, nvlow: NvlowRunner) -> None:
    if BROKEN_KIND in kinds_in_spec_dirs():
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
    if kind in kinds_in_spec_dirs():
        pytest.skip(f"another spec of this machine defines {kind}")
    volumes = str(tmp_path_factory.mktemp("volumes"))
    path = os.path.join(SPEC_DIR, f"nvlow-test-vol-{os.getpid()}.json")
    try:
        proc = nvlow("cdi", "generate", "--root", fake_host.root, "--no-nvml", "--vendor", "nvlow-test.example",
                     "--class", "gpuvol", "--capabilities", "compute,utility", "--driver-files", "volume",
                     "--volumes-dir", volumes, "--output", path)
        assert proc.returncode == 0, proc.stderr
        spec = json.load(open(path))
        mounts = spec["containerEdits"]["mounts"]
        assert mounts[0]["containerPath"] == "/usr/local/nvidia"
        assert mounts[0]["hostPath"].startswith(volumes)
        assert spec["containerEdits"]["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
        # every driver binary and library is a bind of the volume's copy
        assert all(m["hostPath"].startswith(volumes) for m in mounts
                   if m["containerPath"].startswith(("/usr/bin/", MULTIARCH_LIB + "/", LIB64 + "/")))
        out = podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{kind}=0",
                                IMAGE, "sh", "-c", probe_script(PROBE), check=False)
        assert out.returncode == 0, out.stderr
        s = sections(out.stdout)
        assert s["gpus"].out.splitlines() == ["nvidia0"]
        md5 = fake_host.md5(fake_host.libraries["libcuda.so.1"])
        assert [line.split()[0] for line in s["md5"].out.splitlines()] == [md5, md5, md5]
        assert s["readonly"].rc != 0 and "Read-only file system" in s["readonly"].out
        assert (s["smi"].rc, s["smi"].out) == (0, fake_host.marker("nvidia-smi"))
        assert s["env"].out.splitlines() == ["NVIDIA_VISIBLE_DEVICES=void", f"PATH={IMAGE_PATH}"]
    finally:
        if os.path.exists(path):
            os.unlink(path)



def _podman_version(engine: Engine) -> Tuple[int, ...]:
    out = engine.cli("version", "--format", "{{.Client.Version}}").stdout.strip()
    return tuple(int(p) for p in out.split("-")[0].split(".")[:2] if p.isdigit())


def test_v_prefixed_version(cdi_spec: Tuple[str, str], podman_engine: Engine, fake_host: FakeHost,
                            nvlow: NvlowRunner) -> None:
    """``cdiVersion: v0.5.0`` is valid for the CDI library since v0.5.4: nvlow accepts it with a note,
    because podman 4.3 (Debian 12; an older CDI library) rejects it (measured here)."""
    if BROKEN_KIND in kinds_in_spec_dirs():
        pytest.skip(f"another spec of this machine defines {BROKEN_KIND}")
    path = os.path.join(SPEC_DIR, f"nvlow-broken-{os.getpid()}.json")
    run = ("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{BROKEN_KIND}=0", IMAGE, "true")
    doc = _good_broken_base(fake_host)
    doc["cdiVersion"] = "v0.5.0"
    try:
        with open(path, "w") as fh:
            json.dump(doc, fh)
        proc = nvlow("cdi", "validate", "--root", fake_host.root, path)
        assert (proc.returncode, proc.stdout) == (0, f"{path}: ok (1 device)\n")
        assert f"{path}: cdiVersion 'v0.5.0': the leading 'v' is read by the CDI library since v0.5.4" in proc.stderr
        engine = podman_engine.cli(*run, check=False)
        if _podman_version(podman_engine) == (4, 3):
            assert engine.returncode != 0
            assert f"unresolvable CDI devices {BROKEN_KIND}=0" in engine.stderr
    finally:
        os.unlink(path)
