"""Helpers for the real-engine tests: engine handles, the probe script, argv inspection, CDI kinds."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest

IMAGE = os.environ.get("NVLOW_TEST_IMAGE", "nvlow-test:latest")
IMAGE_NEWCUDA = os.environ.get("NVLOW_TEST_IMAGE_NEWCUDA", "nvlow-test-newcuda:latest")
IMAGE_PATH = os.environ.get(
    "NVLOW_TEST_IMAGE_PATH", "/opt/nvlow-image/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)
#: flags every test container gets: never pull, never touch the network
SAFE_RUN_FLAGS = ("--pull", "never", "--network", "none")
#: variables of the developer's shell that would change nvlow's GPU selection
_SELECTION_VARS = ("NVIDIA_VISIBLE_DEVICES", "NV_GPU", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
                   "NVIDIA_DISABLE_REQUIRE", "CUDA_VISIBLE_DEVICES")
TIMEOUT_S = 120

#: the ``nvlow`` fixture: ``nvlow(*args, env=None, timeout=...)`` -> CompletedProcess
NvlowRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def engine_env() -> Dict[str, str]:
    """Environment that points docker and podman at the private engines."""
    env = {k: v for k, v in os.environ.items() if k not in _SELECTION_VARS}
    mapping = {
        "DOCKER_HOST": "NVLOW_TEST_DOCKER_HOST",
        "CONTAINERS_CONF": "NVLOW_TEST_CONTAINERS_CONF",
        "CONTAINERS_STORAGE_CONF": "NVLOW_TEST_STORAGE_CONF",
    }
    missing = [src for src in mapping.values() if not os.environ.get(src)]
    if missing:
        pytest.fail(f"NVLOW_ENGINES=1 but {', '.join(missing)} unset; source <workdir>/env.sh from setup_engines.sh")
    for dst, src in mapping.items():
        env[dst] = os.environ[src]
    return env


@dataclass(frozen=True)
class Engine:
    """One prepared container engine (``docker`` or ``podman``) and the environment that reaches it."""

    name: str
    env: Mapping[str, str]

    def run_argv(self, *args: str) -> List[str]:
        """``<engine> run --rm --pull never --network none <args>``."""
        return [self.name, "run", "--rm", *SAFE_RUN_FLAGS, *args]

    def run(self, *args: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
        """``<engine> run --rm --pull never --network none <args>`` directly (not through nvlow)."""
        return self.cli(*self.run_argv(*args)[1:], check=check)

    def cli(self, *args: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
        """Run the engine's own CLI (not through nvlow)."""
        proc = subprocess.run([self.name, *args], env=dict(self.env), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        if check and proc.returncode != 0:
            pytest.fail(f"{self.name} {' '.join(args)} -> rc {proc.returncode}: {proc.stderr.strip()}")
        return proc


def nvlow_command() -> List[str]:
    """``$NVLOW_TEST_NVLOW`` (split like a shell), else the ``nvlow`` script next to the test interpreter."""
    override = os.environ.get("NVLOW_TEST_NVLOW")
    if override:  # e.g. an installed wheel's script, or `python -m ...`
        import shlex

        return shlex.split(override)
    candidate = os.path.join(os.path.dirname(sys.executable), "nvlow")
    if os.access(candidate, os.X_OK):
        return [candidate]
    found = shutil.which("nvlow")
    if found:
        return [found]
    pytest.fail("no `nvlow` console script next to the test interpreter; run `pip install -e .`")
    raise AssertionError  # unreachable; pytest.fail raises


def sections(output: str) -> Dict[str, "Section"]:
    """Parse the output of ``probe_script`` into ``name -> Section``."""
    result: Dict[str, Section] = {}
    name: Optional[str] = None
    lines: List[str] = []
    for line in output.splitlines():
        if line.startswith("==[") and line.endswith("]"):
            name, lines = line[3:-1], []
        elif line.startswith("==rc ") and name is not None:
            result[name] = Section(int(line[5:]), "\n".join(lines))
            name = None
        elif name is not None:
            lines.append(line)
    return result


@dataclass(frozen=True)
class Section:
    """Exit status and combined output of one probe command inside the container."""

    rc: int
    out: str


def probe_script(commands: Mapping[str, str]) -> str:
    """A busybox ``sh`` script that runs each command and prints ``==[name]``, its output and ``==rc N``."""
    parts = []
    for name, command in commands.items():
        parts.append(f"echo '==[{name}]'; ( {command} ) 2>&1; echo \"==rc $?\"")
    return "\n".join(parts)


def device_args(argv: Sequence[str]) -> List[str]:
    """Values of ``--device X`` / ``--device=X`` in a docker argv."""
    out: List[str] = []
    for i, arg in enumerate(argv):
        if arg == "--device" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith("--device="):
            out.append(arg[len("--device="):])
    return out


def kinds_in_spec_dirs() -> List[str]:
    """The kinds of the CDI specs this host's engines read (``/etc/cdi``, ``/var/run/cdi``); a file that
    cannot be read is someone else's and is skipped."""
    from nvlow.cdi.store import read_spec, spec_files
    from nvlow.host.root import HostRoot

    kinds = []
    for _priority, path in spec_files(HostRoot("/")):
        try:
            doc = read_spec(path)
        except Exception:  # noqa: BLE001 - someone else's broken file
            continue
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            kinds.append(doc["kind"])
    return kinds


@contextlib.contextmanager
def generated_cdi_spec(root: str, name: str, env: Mapping[str, str], *options: str) -> Iterator[Tuple[str, str]]:
    """(kind, spec path): ``nvlow cdi generate --root ROOT --no-nvml OPTIONS`` written to
    /var/run/cdi/NAME, removed afterwards. The vendor is nvidia.com unless this machine already has
    specs of nvidia.com/gpu (nvidia-ctk's), which nvlow's must neither shadow nor conflict with."""
    path = os.path.join("/var/run/cdi", name)
    vendor = "nvidia.com" if "nvidia.com/gpu" not in kinds_in_spec_dirs() else "nvlow-test.example"
    proc = subprocess.run([*nvlow_command(), "cdi", "generate", "--root", root, "--no-nvml", "--vendor", vendor,
                           *options, "--output", path],
                          env=dict(env), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    try:
        yield f"{vendor}/gpu", path
    finally:
        if os.path.exists(path):
            os.unlink(path)
