"""Driver volume: first build vs reuse (ratio to reuse in the same run)."""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from typing import Dict, List


def _files(src: str, count: int = 40):  # type: ignore[no-untyped-def]
    from nvlow.model import DriverFile, DriverFiles

    libs = []
    for i in range(count):
        path = os.path.join(src, f"libnvidia-bench{i}.so.550.54.15")
        with open(path, "wb") as fh:
            fh.write(b"\x7fELF" + os.urandom(256 * 1024))
        libs.append(DriverFile(path, "lib64", "compute", (os.path.basename(path), f"libnvidia-bench{i}.so.1")))
    return DriverFiles(libraries64=tuple(libs))


def run(runs: int = 7) -> Dict[str, object]:
    from nvlow.plan.volume import ensure_volume

    work = tempfile.mkdtemp(prefix="nvlow-bench-vol-")
    try:
        src = os.path.join(work, "src")
        os.mkdir(src)
        files = _files(src)
        first: List[float] = []
        reuse: List[float] = []
        for i in range(runs):
            vols = os.path.join(work, f"v{i}")
            t0 = time.perf_counter()
            ensure_volume(files, "550.54.15", vols)
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ensure_volume(files, "550.54.15", vols)
            reuse.append(time.perf_counter() - t0)
        f, r = statistics.median(first), statistics.median(reuse)
        return {"rows": [
            {"figure": "driver volume, first build (40 libs, hard links)", "median_ms": round(f * 1000, 2),
             "ratio": round(f / r, 1), "baseline": "volume reuse"},
            {"figure": "driver volume, reuse", "median_ms": round(r * 1000, 3), "ratio": 1.0,
             "baseline": "volume reuse"},
        ]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
