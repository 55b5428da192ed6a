"""Engine argv parsing + injection: a long docker run line vs a bare split (ratio in the same run)."""
from __future__ import annotations

import statistics
import time
from typing import Dict, List

LINE = ("sudo -E docker -H unix:///run/docker.sock --log-level warn container run -itd --rm --name job-1 "
        "-e A=1 -eB=2 -v /data:/data:ro -v/scratch:/scratch -p 8080:80 --gpus all --shm-size 8g "
        "--ulimit memlock=-1 --ipc host --network=host --user 1000:1000 -w /work --entrypoint '' "
        "-- nvcr.io/nvidia/pytorch:24.05-py3 python train.py --epochs 10 -v")


def run(runs: int = 7, loops: int = 2000) -> Dict[str, object]:
    import shlex

    from nvlow.engine.argv import inject, parse_engine_argv

    argv = shlex.split(LINE)
    extra = ["--device=/dev/nvidiactl", "--device=/dev/nvidia-uvm", "--device=/dev/nvidia0",
             "--volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro"]
    parse: List[float] = []
    base: List[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(loops):
            inject(parse_engine_argv(argv), extra)
        parse.append((time.perf_counter() - t0) / loops)
        t0 = time.perf_counter()
        for _ in range(loops):
            list(argv[:5]) + extra + list(argv[5:])
        base.append((time.perf_counter() - t0) / loops)
    p, b = statistics.median(parse), statistics.median(base)
    return {"rows": [
        {"figure": f"argv parse + inject ({len(argv)} tokens)", "median_ms": round(p * 1000, 4),
         "ratio": round(p / b, 1), "baseline": "plain list splice"},
    ]}


if __name__ == "__main__":
    print(run())
