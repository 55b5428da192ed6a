"""Start-up of nvlow's commands as users get it: wall and CPU medians of fresh processes, interleaved,
each as a ratio to ``python -c pass`` of the same interpreter in the same run.

    python bench/bench_startup.py VENV [RUNS]

VENV is a plain ``pip install .`` venv (not editable: an editable install's import hook inflates the
baseline). Commands that need a GPU host (``nvlow args`` without ``--simulate``, ``info``, ...) fail fast
on a machine without a driver; their rows then time the failure, so run it on a GPU host (the README's
Performance table comes from the lent H200).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List


def commands(venv: str) -> Dict[str, List[str]]:
    py, nv = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin", "nvlow")
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import nvlow'": [py, "-c", "import nvlow"],
        "nvlow args": [nv, "args"],
        "nvlow args --simulate dgx-a100": [nv, "args", "--simulate", "dgx-a100"],
        "nvlow info": [nv, "info"],
        "nvlow list": [nv, "list"],
        "nvlow status --json": [nv, "status", "--json"],
        "nvlow doctor --no-engine": [nv, "doctor", "--no-engine"],
        "nvlow cdi generate": [nv, "cdi", "generate"],
        "nvlow exec --dry-run -- docker run img": [nv, "exec", "--dry-run", "--", "docker", "run", "img"],
    }


def measure(cmds: Dict[str, List[str]], runs: int) -> Dict[str, Dict[str, float]]:
    """Median wall and CPU seconds (user + system of the child) of each command."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    wall: Dict[str, List[float]] = {k: [] for k in cmds}
    cpu: Dict[str, List[float]] = {k: [] for k in cmds}
    try:
        for _ in range(runs):
            for name, argv in cmds.items():
                t0 = time.perf_counter()
                proc = subprocess.Popen(argv, stdout=devnull, stderr=devnull)
                _, _, usage = os.wait4(proc.pid, 0)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(usage.ru_utime + usage.ru_stime)
    finally:
        os.close(devnull)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k])} for k in cmds}


def main() -> int:
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    result = measure(commands(sys.argv[1]), runs)
    base = result["python -c pass"]
    print("| command | wall ms | ratio | cpu ms | ratio |\n|---|---|---|---|---|")
    for name, r in result.items():
        print(f"| `{name}` | {r['wall'] * 1000:.1f} | {r['wall'] / base['wall']:.2f} | "
              f"{r['cpu'] * 1000:.1f} | {r['cpu'] / base['cpu']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
