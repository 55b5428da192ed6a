"""Start-up of nvlow's commands as users get it: wall and CPU medians of fresh processes, interleaved,
each as a ratio to ``python -c pass`` of the same interpreter in the same run, beside the goal.

    python bench/bench_startup.py [--venv VENV] [--runs N] [--host-root /] [--json FILE]
                                  [--docker-host unix:///PATH --image IMAGE]

The venv is a plain, non-editable install (an editable install's import hook inflates the baseline):
``--venv`` names one made with ``pip install .``; without it one is made in a temp dir from this checkout
(a wheel built from a copy of the sources with the running interpreter's pip and setuptools, offline,
installed with ``pip --python VENV``; the dependencies come from the running interpreter through a ``.pth`` line, as
tests/test_install.py does). ``nvlow`` is the command that install wrote.

The host: ``--host-root /`` on a GPU machine (its own driver); otherwise the 8-GPU fake host of
bench/bench_cdi.py (the dgx-a100 tree with the compiled fake libnvidia-ml/libcuda of tests/fakes,
real character devices when run as root), passed to every command with ``--root``. Without a C
compiler only the rows that need no host run. ``exec --dry-run`` asks a small Docker Engine API on a
unix socket for the image (``DOCKER_HOST``), so its row includes the API round trip nvlow makes.
With ``--docker-host`` and ``--image`` (a running dockerd, e.g. the private one of
tests/engine/setup_engines.sh, and an image it has) it also times ``docker run --rm IMAGE true`` beside
``nvlow exec -- docker run --rm IMAGE true`` on the same host and reports nvlow's share of the wrapped
run (goal <= 20%; nvidia-docker 1.0 spent ~128 ms in six docker CLI calls, more than the run itself).
Nothing is asserted: this script only reports.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

#: (row, arguments after ``nvlow``, the issue's goal as a ratio to ``python -c pass``); ``{root}`` is
#: replaced by the host's root options
ROWS: Tuple[Tuple[str, Sequence[str], Optional[float]], ...] = (
    ("python -c 'import nvlow'", (), 1.2),
    ("nvlow args", ("args", "{root}"), 2.5),
    ("nvlow args --simulate dgx-a100", ("args", "--simulate", "dgx-a100"), 2.5),
    ("nvlow exec --dry-run -- docker run img", ("exec", "{root}", "--dry-run", "--", "docker", "run", "img"), 4.0),
    ("nvlow info", ("info", "{root}"), 4.0),
    ("nvlow list", ("list", "{root}"), 4.0),
    ("nvlow status --json", ("status", "--json", "{root}"), 4.0),
    ("nvlow doctor --no-engine", ("doctor", "--no-engine", "{root}"), 4.0),
    ("nvlow cdi generate", ("cdi", "generate", "{root}"), 4.0),
)


def plain_venv(base: str) -> str:
    """A venv under ``base`` with this checkout installed as a plain (non-editable) package."""
    venv = os.path.join(base, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    vpy = os.path.join(venv, "bin", "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    dist = os.path.join(base, "dist")
    # the wheel from a copy of what the build needs (nothing written into the checkout)
    src = os.path.join(base, "src")
    os.makedirs(src)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(os.path.join(REPO, name), src)
    shutil.copytree(os.path.join(REPO, "nvlow"), os.path.join(src, "nvlow"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", dist, src], check=True, env=env, cwd=base)
    wheel = os.path.join(dist, next(n for n in os.listdir(dist) if n.startswith("nvlow-")))
    # not from the checkout: pip must not see the editable copy "already satisfied"
    subprocess.run([sys.executable, "-m", "pip", "--python", vpy, "install", "-q", "--no-deps", "--no-index", wheel],
                   check=True, env=env, cwd=base)
    site = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    import cffi
    import click
    import typer

    deps = sorted({os.path.dirname(os.path.dirname(os.path.abspath(m.__file__ or ""))) for m in (cffi, click, typer)})
    with open(os.path.join(site, "nvlow-bench-deps.pth"), "w", encoding="utf-8") as fh:
        fh.write("".join(d + "\n" for d in deps))
    return venv


def fake_engine_api(path: str) -> None:
    """A minimal Docker Engine API on a unix socket: every request gets one image's inspect document,
    so ``exec`` makes its real API round trip without a daemon."""
    body = json.dumps({"Config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                  "Labels": {}}}).encode()
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()


def host_options(base: str, host_root: Optional[str]) -> Tuple[List[str], Dict[str, str], str]:
    """(root options, extra environment, description) of the host the commands read."""
    if host_root:
        return ["--root", host_root] if host_root != "/" else [], {}, f"the host at {host_root}"
    sys.path.insert(0, HERE)
    sys.path.insert(1, os.path.join(REPO, "tests"))
    sys.path.insert(0, REPO)
    from bench_cdi import FakeHost

    try:
        host = FakeHost(os.path.join(base, "host"))
    except Exception as exc:  # noqa: BLE001 - fakes.build.CompilerMissing and friends: report, go on
        return [], {}, f"no fake host ({exc}); host rows skipped"
    return (["--root", host.root], {"NVLOW_FAKE_SCENARIO": host.scenario},
            "the 8-GPU fake host (dgx-a100 tree, compiled fake NVML)")


def commands(venv: str, root: List[str], have_host: bool) -> Dict[str, List[str]]:
    """The timed command lines; those that read a host only when there is one (``root`` is empty on
    ``--host-root /``)."""
    py, nv = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin", "nvlow")
    out = {"python -c pass": [py, "-c", "pass"]}
    for name, args, _goal in ROWS:
        if not args:
            out[name] = [py, "-c", "import nvlow"]
        elif "{root}" not in args or have_host or "--simulate" in args:
            out[name] = [nv] + [x for a in args for x in (root if a == "{root}" else [a])]
    return out


def measure(cmds: Dict[str, List[str]], runs: int, env: Dict[str, str]) -> Dict[str, Dict[str, float]]:
    """Median wall and CPU seconds (user + system of the child) of each command, runs interleaved."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    wall: Dict[str, List[float]] = {k: [] for k in cmds}
    cpu: Dict[str, List[float]] = {k: [] for k in cmds}
    try:
        for argv in cmds.values():  # warm: the simulation cache, byte-compiled modules, page cache
            subprocess.run(argv, stdout=devnull, stderr=devnull, env=env, check=False)
        for _ in range(runs):
            for name, argv in cmds.items():
                t0 = time.perf_counter()
                proc = subprocess.Popen(argv, stdout=devnull, stderr=devnull, env=env)
                _, _, usage = os.wait4(proc.pid, 0)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(usage.ru_utime + usage.ru_stime)
    finally:
        os.close(devnull)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k])} for k in cmds}


def exec_share(venv: str, root: List[str], env: Dict[str, str], runs: int, docker_host: str,
               image: str) -> Tuple[List[str], List[Dict[str, object]]]:
    """Table lines and rows: a plain ``docker run`` beside the same run through ``nvlow exec``."""
    nv = os.path.join(venv, "bin", "nvlow")
    run_env = dict(env, DOCKER_HOST=docker_host)
    docker = ["docker", "run", "--rm", "--network", "none", image, "true"]
    cmds = {"docker run --rm IMAGE true": docker, "nvlow exec -- docker run --rm IMAGE true": [nv, "exec", *root, "--", *docker]}
    med = measure(cmds, runs, run_env)
    plain, wrapped = med["docker run --rm IMAGE true"]["wall"], med["nvlow exec -- docker run --rm IMAGE true"]["wall"]
    share = (wrapped - plain) / wrapped
    lines = ["", f"nvlow's share of a wrapped run ({docker_host}, {image}, {runs} runs): docker run {plain * 1000:.1f} ms, "
             f"through nvlow exec {wrapped * 1000:.1f} ms: nvlow adds {(wrapped - plain) * 1000:.1f} ms, "
             f"{share * 100:.1f}% of the wrapped run (goal <= 20%: {'met' if share <= 0.2 else 'NOT met'})"]
    rows: List[Dict[str, object]] = [
        {"figure": "nvlow exec -- docker run --rm IMAGE true", "median_ms": round(wrapped * 1000, 1),
         "ratio": round(wrapped / plain, 2), "baseline": "docker run --rm IMAGE true",
         "detail": f"nvlow's share {share * 100:.1f}% (goal <= 20%)"}]
    return lines, rows


def run(runs: int = 15, venv: Optional[str] = None, host_root: Optional[str] = None,
        docker_host: Optional[str] = None, image: Optional[str] = None) -> Dict[str, object]:
    """The rows (bench/run.py's shape) and a Markdown table."""
    base = tempfile.mkdtemp(prefix="nvlow-bench-startup-")
    try:
        venv = venv or plain_venv(base)
        root, extra_env, described = host_options(base, host_root)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NVIDIA_", "NV_", "PYTHON"))}
        env.update(extra_env, NVLOW_CACHE_DIR=os.path.join(base, "cache"))
        sock = os.path.join(base, "docker.sock")
        fake_engine_api(sock)
        env["DOCKER_HOST"] = "unix://" + sock
        result = measure(commands(venv, root, bool(root or host_root)), runs, env)
        share_lines, share_rows = exec_share(venv, root, env, runs, docker_host, image) \
            if docker_host and image else ([], [])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    base_t = result["python -c pass"]
    goals = {name: goal for name, _args, goal in ROWS}
    rows: List[Dict[str, object]] = []
    lines = [f"Host: {described}; {runs} runs; {sys.implementation.name} {sys.version.split()[0]}, "
             f"{os.cpu_count()} CPUs.", "",
             "| command | wall ms | ratio | cpu ms | cpu ratio | goal |", "|---|---|---|---|---|---|"]
    for name, r in result.items():
        ratio, cpu_ratio = r["wall"] / base_t["wall"], r["cpu"] / base_t["cpu"]
        goal = goals.get(name)
        met = "" if goal is None else (f"<= {goal}x " + ("met" if ratio <= goal else "NOT met"))
        lines.append(f"| `{name}` | {r['wall'] * 1000:.1f} | {ratio:.2f} | {r['cpu'] * 1000:.1f} | "
                     f"{cpu_ratio:.2f} | {met} |")
        rows.append({"figure": name + " (plain install)", "median_ms": round(r["wall"] * 1000, 1),
                     "ratio": round(ratio, 2), "baseline": "python -c pass",
                     "detail": f"cpu {r['cpu'] * 1000:.1f} ms ({cpu_ratio:.2f}x)" + (f"; goal {met}" if met else "")})
    return {"rows": rows + share_rows, "table": "\n".join(lines + share_lines)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", help="a plain `pip install .` venv (default: one made from this checkout)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs of each command (default 15)")
    ap.add_argument("--host-root", help="an existing host (/ on a GPU machine) instead of the fake one")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--docker-host", help="a running dockerd (unix:///PATH) for the exec share figure")
    ap.add_argument("--image", help="an image that dockerd has (with --docker-host)")
    a = ap.parse_args(argv)
    out = run(a.runs, a.venv, a.host_root, a.docker_host, a.image)
    print(out["table"])
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(out["rows"], fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
