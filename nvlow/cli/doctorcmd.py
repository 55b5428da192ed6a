"""``nvlow doctor [--json]``."""
from __future__ import annotations

import sys

from .options import CommonOptions
from .session import open_root


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional


def _engine_factory(docker_host: Optional[str]) -> Any:
    from ..engine.client import EngineClient

    return EngineClient(docker_host, timeout=2.0)


def _find_podman(env: Mapping[str, str]) -> Optional[str]:
    """The ``podman`` program on PATH when it runs (``podman --version``), else None."""
    import shutil
    import subprocess

    path = shutil.which("podman", path=env.get("PATH") or None)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if done.returncode == 0 else None


def run_doctor_cmd(opts: CommonOptions, env: Mapping[str, str], check_engine: bool = True) -> int:
    """Run the checks; exit 1 when any fails."""
    from ..doctor import DoctorContext, doctor_document, format_doctor, run_doctor

    root, opener = open_root(opts, env)
    if opts.no_nvml:
        from ..errors import LibraryError

        def opener(_root: Any) -> Any:
            raise LibraryError("not loaded (--no-nvml)", hint="run without --no-nvml to check the driver libraries")
    ctx = DoctorContext(root=root, env=env, library_opener=opener,
                        engine_factory=_engine_factory if check_engine else None,
                        podman_finder=(lambda: _find_podman(env)) if check_engine else None)
    results = run_doctor(ctx)
    if opts.json:
        import json

        sys.stdout.write(json.dumps(doctor_document(results), indent=2) + "\n")
    else:
        sys.stdout.write(format_doctor(results))
    return 1 if any(r.status == "fail" for r in results) else 0
