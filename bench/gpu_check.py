"""The real-GPU check: nvlow's view of the host beside nvidia-smi's (and pynvml's), one report.

    python bench/gpu_check.py --report FILE [--nvlow CMD] [--smi PATH] [--runs N]
                              [--simulate PRESET] [--no-pynvml] [--setup KEY=VALUE ...]
    python bench/gpu_check.py --write-fake-smi DIR --preset PRESET

Normally started by ``bench/gpu-check.sh``, which installs nvlow offline and finds the
driver first. Standard library only: nvidia-smi and pynvml are oracles here, never
dependencies of nvlow. The comparison lives in ``gpu_views.py`` (pure: text -> view ->
rows), the fake nvidia-smi of the fake mode in ``gpu_fake_smi.py``; this module runs the
commands, times them and writes the report (markdown ending in a JSON block).

Exit status: 0 every identity field matches and every path nvlow names exists,
1 something mismatched, is missing or failed, 2 the check could not run (no nvidia-smi).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import stat
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # run as a script or loaded by path (tests): the sibling modules
    sys.path.insert(0, HERE)

from gpu_fake_smi import smi_outputs_from_preset, write_fake_smi  # noqa: E402
from gpu_views import (  # noqa: E402
    IDENTITY_FIELDS, QUERY_CC_ARGS, Row, View, compare_views, identity_failures, mig_instances, norm_architecture,
    norm_brand, norm_bus_id, norm_mig_mode, parse_smi_list, parse_smi_query_cc, parse_smi_xml,
    view_from_nvlow_info, view_from_pynvml,
)

__all__ = ["IDENTITY_FIELDS", "QUERY_CC_ARGS", "args_paths", "compare_views", "identity_failures", "main",
           "measure", "mig_instances", "missing_paths", "norm_architecture", "norm_brand", "norm_bus_id",
           "norm_mig_mode", "parse_smi_list", "parse_smi_query_cc", "parse_smi_xml", "render_report",
           "result_from_report", "smi_outputs_from_preset", "timing_table", "view_from_nvlow_info",
           "view_from_pynvml", "write_fake_smi"]


# ----------------------------------------------------------------------------- paths and timings (pure)
def missing_paths(paths: Sequence[str], *, want_char_devices: bool = False) -> List[str]:
    """Paths that do not exist (or, with ``want_char_devices``, are not character devices)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            if not os.path.lexists(p):
                out.append(f"{p}: missing")
                continue
            out.append(f"{p}: dangling or unreadable")
            continue
        if want_char_devices and not stat.S_ISCHR(st.st_mode):
            out.append(f"{p}: not a character device")
    return out


def args_paths(doc: Mapping[str, Any]) -> Tuple[List[str], List[str]]:
    """(device host paths, bind-mount host paths) named by ``nvlow args --json``."""
    devices = [d["host_path"] for d in doc.get("devices", [])]
    mounts = [m["host_path"] for m in doc.get("mounts", []) if m.get("kind", "bind") == "bind"]
    return devices, mounts


def timing_table(medians_s: Mapping[str, Optional[float]], baseline: str) -> List[Dict[str, Any]]:
    """One row per figure: median in ms and the ratio to ``baseline`` (None when unmeasured)."""
    base = medians_s.get(baseline)
    out = []
    for name, value in medians_s.items():
        out.append({"figure": name, "median_ms": None if value is None else round(value * 1000, 2),
                    "ratio": None if value is None or not base else round(value / base, 2),
                    "baseline": baseline})
    return out

# ----------------------------------------------------------------------------- report (pure)
def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
    return text.replace("|", "\\|")


def render_report(result: Mapping[str, Any]) -> str:
    """The markdown report, ending with the whole result as a JSON block."""
    lines = [f"# nvlow GPU check: {result['hostname']}, {result['date']}", ""]
    lines += [f"- Result: **{result['verdict']}** ({result['verdict_reason']})",
              f"- Mode: {result['mode']}",
              f"- GPUs (as nvidia-smi lists them): {result['gpu_summary']}",
              f"- Driver: {result['driver_version']}, CUDA {result['cuda_version']} (nvidia-smi)",
              f"- nvlow data source: {result.get('info_source')}, CUDA version from {result.get('cuda_source')}",
              f"- nvlow {result['nvlow_version']}, Python {result['python']}, kernel {result['kernel']}"]
    for key, value in sorted(result.get("setup", {}).items()):
        lines.append(f"- setup {key}: `{value}`")
    lines += ["", "## Identity: nvlow info against the oracles", "",
              "| oracle | GPU | field | nvlow | oracle | result |", "|---|---|---|---|---|---|"]
    for r in result["comparisons"]:
        status = r["status"] if r["identity"] or r["status"] != "mismatch" else "differs (info)"
        if r["note"] and r["status"] == "match":
            status += f" ({r['note']})"
        gpu = "" if r["gpu"] is None else r["gpu"]
        lines.append(f"| {r['oracle']} | {gpu} | {r['field']} | {_cell(r['nvlow'])} | "
                     f"{_cell(r['oracle_value'])} | {status} |")
    if not result["comparisons"]:
        lines.append("| (none: nvlow info gave no JSON, see Commands) | | | | | |")
    for name, note in result.get("oracles_skipped", {}).items():
        lines.append(f"\n{name}: skipped ({note})")
    lines += ["", "## Commands", ""]
    for c in result["commands"]:
        lines.append(f"- `{c['argv']}`: exit {c['rc']}" + (f"; {c['problem']}" if c.get("problem") else ""))
    lines += ["", "## Paths nvlow names", ""]
    for what, info in result["paths"].items():
        missing = info["missing"]
        lines.append(f"- {what}: {info['count']} paths, " + ("all present" if not missing else
                                                              f"{len(missing)} bad: " + "; ".join(missing)))
    lines += ["", "## nvlow doctor", "", "| check | status | message |", "|---|---|---|"]
    for c in result.get("doctor", []):
        lines.append(f"| {c.get('check')} | {c.get('status')} | {_cell(c.get('message'))} |")
    lines += ["", f"## Timings (median of {result['runs']} interleaved runs)", "",
              "| figure | median ms | x nvidia-smi -L |", "|---|---|---|"]
    for t in result["timings"]:
        lines.append(f"| {t['figure']} | {_cell(t['median_ms'])} | {_cell(t['ratio'])} |")
    for name, note in result.get("timing_notes", {}).items():
        lines.append(f"\n{name}: {note}")
    lines += ["", "## Raw result", "", "```json", json.dumps(result, indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def result_from_report(text: str) -> Dict[str, Any]:
    """The JSON block of a report written by :func:`render_report`."""
    start = text.index("```json\n") + len("```json\n")
    doc: Dict[str, Any] = json.loads(text[start:text.index("\n```", start)])
    return doc

# ----------------------------------------------------------------------------- running (impure)
def _run(argv: Sequence[str], timeout: float = 60.0) -> Tuple[int, str, str]:
    try:
        p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           check=False)
    except FileNotFoundError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f}s"
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _message(stderr: str) -> str:
    """A command's stderr on one line (nvlow's error and its hint)."""
    text = " / ".join(line.strip() for line in stderr.strip().splitlines() if line.strip())
    return (text[:400] + "...") if len(text) > 400 else (text or "(no message)")


def _time_process(argv: Sequence[str]) -> float:
    """Seconds one run of ``argv`` takes; raises when it fails (a failed run is no figure)."""
    t0 = time.perf_counter()
    subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)
    return time.perf_counter() - t0


def _nvml_cycle() -> float:
    """One load + nvmlInit_v2 + nvmlShutdown through nvlow's own binding, in seconds."""
    from nvlow.native.nvml import Nvml
    from nvlow.host.root import HostRoot

    t0 = time.perf_counter()
    nv = Nvml.open(HostRoot("/"), os.environ)
    nv.shutdown()
    return time.perf_counter() - t0


def _pynvml_cycle(nv: Any) -> Callable[[], float]:
    def cycle() -> float:
        t0 = time.perf_counter()
        nv.nvmlInit()
        nv.nvmlShutdown()
        return time.perf_counter() - t0
    return cycle


def measure(cases: Mapping[str, Callable[[], float]], runs: int) -> Dict[str, Optional[float]]:
    """Median seconds per case, runs interleaved; a case that raises is None from then on."""
    samples: Dict[str, List[float]] = {k: [] for k in cases}
    dead: Dict[str, bool] = {}
    for _ in range(runs):
        for name, fn in cases.items():
            if dead.get(name):
                continue
            try:
                samples[name].append(fn())
            except Exception:  # noqa: BLE001 - reported as unmeasured
                dead[name] = True
    return {k: (statistics.median(v) if v and not dead.get(k) else None) for k, v in samples.items()}


class Checker:
    """Runs everything once and collects the result dict :func:`render_report` prints."""

    def __init__(self, nvlow: List[str], smi: str, simulate: Optional[str], runs: int, use_pynvml: bool):
        self.nvlow = nvlow
        self.smi = smi
        self.sim = ["--simulate", simulate] if simulate else []
        self.simulate = simulate
        self.runs = runs
        self.use_pynvml = use_pynvml
        self.commands: List[Dict[str, Any]] = []
        self.problems: List[str] = []

    def cmd(self, argv: List[str], *, want_json: bool = False, ok_codes: Tuple[int, ...] = (0,)) -> Any:
        """Run one command, record it; stdout (parsed when ``want_json``; None when not JSON)."""
        rc, out, err = _run(argv)
        entry: Dict[str, Any] = {"argv": " ".join(shlex.quote(a) for a in argv), "rc": rc}
        value: Any = out
        if want_json:
            try:
                value = json.loads(out)
            except ValueError:
                value = None
                entry["problem"] = "no JSON on stdout: " + _message(err)
        if rc not in ok_codes and "problem" not in entry:
            entry["problem"] = _message(err)
        self.commands.append(entry)
        if "problem" in entry:
            self.problems.append(f"{entry['argv']}: {entry['problem']}")
        return value

    def _oracles(self, mine: View, skipped: Dict[str, str]) -> Tuple[List[Row], Optional[View]]:
        """Every oracle's rows against nvlow's view, and nvidia-smi's own view of the machine."""
        rows: List[Row] = []
        machine: Optional[View] = None
        xml = self.cmd([self.smi, "-q", "-x"])
        try:
            machine = parse_smi_xml(xml)
            rows += compare_views(mine, machine)
        except ET.ParseError as exc:
            self.problems.append(f"nvidia-smi -q -x: not XML ({exc})")
        rows += compare_views(mine, parse_smi_list(self.cmd([self.smi, "-L"])))
        rc, out, err = _run([self.smi, *QUERY_CC_ARGS])
        if rc == 0 and parse_smi_query_cc(out)["gpus"]:
            rows += compare_views(mine, parse_smi_query_cc(out))
        else:  # drivers before R510 do not know the field
            skipped["nvidia-smi --query-gpu=compute_cap"] = (err.strip() or out.strip() or f"exit {rc}")[:200]
        pynvml = self._pynvml(skipped)
        if pynvml is not None:
            try:
                rows += compare_views(mine, view_from_pynvml(pynvml))
            except Exception as exc:  # noqa: BLE001 - the oracle failing is reported, not fatal
                skipped["pynvml"] = f"{type(exc).__name__}: {exc}"
        return rows, machine

    def run(self) -> Dict[str, Any]:
        info = self.cmd(self.nvlow + ["info", "--json"] + self.sim, want_json=True)
        skipped: Dict[str, str] = {}
        comparisons, machine = self._oracles(view_from_nvlow_info(info or {}), skipped)
        if info is None:  # every row would be a mismatch against nothing: the problem says it once
            comparisons = []
        paths = self._paths()
        doctor = self.cmd(self.nvlow + ["doctor", "--json"] + self.sim, want_json=True, ok_codes=(0, 1))
        timings, notes = self._timings(self._pynvml({}))
        failures = identity_failures(comparisons)
        bad_paths = sum(len(p["missing"]) for p in paths.values())
        reasons = []
        if failures:
            reasons.append(f"{len(failures)} identity mismatch(es): " + ", ".join(
                f"{r['oracle']} GPU {r['gpu']} {r['field']}" if r["gpu"] is not None else f"{r['oracle']} {r['field']}"
                for r in failures[:5]))
        if bad_paths:
            reasons.append(f"{bad_paths} path(s) missing")
        reasons += self.problems
        # the machine as nvidia-smi sees it (nvlow's view when nvidia-smi's is unreadable)
        facts = machine or view_from_nvlow_info(info or {})
        names: Dict[str, int] = {}
        for g in facts["gpus"]:
            names[str(g["name"])] = names.get(str(g["name"]), 0) + 1
        compared = sum(1 for r in comparisons if r["status"] != "n/a")
        info = info or {}
        return {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "hostname": socket.gethostname(), "kernel": platform.release(), "python": platform.python_version(),
            "nvlow_version": self._nvlow_version(),
            "mode": f"FAKE: simulated preset {self.simulate} with a generated nvidia-smi (no GPU used)"
                    if self.simulate else "real GPU",
            "verdict": "FAIL" if reasons else "PASS",
            "verdict_reason": "; ".join(reasons) if reasons else f"{compared} comparisons, all identity fields match",
            "driver_version": facts.get("driver_version"), "cuda_version": facts.get("cuda_version"),
            "info_source": info.get("source"), "cuda_source": info.get("cuda_version_source"),
            "info_warnings": info.get("warnings", []),
            "gpu_summary": ", ".join(f"{n} x {name}" for name, n in names.items()) or "none",
            "comparisons": comparisons, "oracles_skipped": skipped, "commands": self.commands,
            "paths": paths, "doctor": (doctor or {}).get("checks", []), "runs": self.runs,
            "timings": timings, "timing_notes": notes,
        }

    def _pynvml(self, skipped: Dict[str, str]) -> Any:
        if not self.use_pynvml:
            skipped["pynvml"] = "turned off (--no-pynvml)"
            return None
        try:
            import pynvml  # type: ignore[import-not-found]
        except ImportError:
            skipped["pynvml"] = "not installed (the nvidia-ml-py package)"
            return None
        return pynvml

    def _paths(self) -> Dict[str, Dict[str, Any]]:
        listed = [line for line in self.cmd(self.nvlow + ["list"] + self.sim).splitlines() if line.strip()]
        doc = self.cmd(self.nvlow + ["args", "--json"] + self.sim, want_json=True) or {}
        devices, mounts = args_paths(doc)
        real = not self.simulate  # simulated nodes are regular files
        return {
            "nvlow list": {"count": len(listed), "missing": missing_paths(listed)},
            "nvlow args --json devices": {"count": len(devices),
                                          "missing": missing_paths(devices, want_char_devices=real)},
            "nvlow args --json mounts": {"count": len(mounts), "missing": missing_paths(mounts)},
        }

    def _timings(self, pynvml: Any) -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
        notes: Dict[str, str] = {}
        cases: Dict[str, Callable[[], float]] = {
            "nvidia-smi -L": lambda: _time_process([self.smi, "-L"]),
            "nvlow args": lambda: _time_process(self.nvlow + ["args"] + self.sim),
            "python -c pass": lambda: _time_process([sys.executable, "-c", "pass"]),
        }
        try:
            first = _nvml_cycle()
            notes["NVML init+shutdown (nvlow binding)"] = (
                f"first call {first * 1000:.2f} ms (cffi import and dlopen included)")
            cases["NVML init+shutdown (nvlow binding, in-process)"] = _nvml_cycle
        except Exception as exc:  # noqa: BLE001 - no loadable NVML: reported
            notes["NVML init+shutdown (nvlow binding)"] = f"unavailable: {type(exc).__name__}: {exc}"
        if pynvml is not None:
            cases["NVML init+shutdown (pynvml, in-process)"] = _pynvml_cycle(pynvml)
        for fn in cases.values():  # warm caches (the simulated host tree, the page cache)
            try:
                fn()
            except Exception:  # noqa: BLE001 - measure() records it
                pass
        medians = measure(cases, self.runs)
        for name, value in medians.items():
            if value is None and name not in notes:
                notes[name] = "not measured: it failed (see Commands)"
        return timing_table(medians, "nvidia-smi -L"), notes

    def _nvlow_version(self) -> str:
        rc, out, _ = _run(self.nvlow + ["--version"])
        if rc == 0 and out.strip():
            return out.strip().split()[-1]
        try:
            import nvlow
            return str(nvlow.__version__)
        except Exception:  # noqa: BLE001
            return "unknown"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Compare nvlow with nvidia-smi/pynvml on a GPU host; write a report.")
    ap.add_argument("--report", help="the report file to write (markdown with a JSON block)")
    ap.add_argument("--nvlow", default=None, help="the nvlow command (default: nvlow beside this python)")
    ap.add_argument("--smi", default="nvidia-smi", help="nvidia-smi to use as the oracle")
    ap.add_argument("--runs", type=int, default=5, help="timing runs per figure (median)")
    ap.add_argument("--simulate", default=None, help="run nvlow on a simulation preset (fake mode)")
    ap.add_argument("--no-pynvml", action="store_true", help="do not use pynvml even when importable")
    ap.add_argument("--setup", action="append", default=[], metavar="KEY=VALUE",
                    help="a fact about the setup to record in the report")
    ap.add_argument("--write-fake-smi", metavar="DIR", help="write a fake nvidia-smi for --preset and exit")
    ap.add_argument("--preset", default="dgx-a100")
    opts = ap.parse_args(argv)
    if opts.write_fake_smi:
        from nvlow.simulate.presets import get_preset

        print(write_fake_smi(opts.write_fake_smi, get_preset(opts.preset)))
        return 0
    if not opts.report:
        ap.error("--report FILE is required")
    if opts.nvlow:
        nvlow = shlex.split(opts.nvlow)
    else:
        exe = os.path.join(os.path.dirname(sys.executable), "nvlow")
        nvlow = [exe] if os.path.exists(exe) else [sys.executable, "-m", "nvlow"]
    if _run([opts.smi, "-L"], timeout=30)[0] == 127:
        print(f"gpu_check: {opts.smi}: not found (put nvidia-smi on PATH or pass --smi)", file=sys.stderr)
        return 2
    result = Checker(nvlow, opts.smi, opts.simulate, max(1, opts.runs), not opts.no_pynvml).run()
    result["setup"] = dict(s.split("=", 1) if "=" in s else (s, "") for s in opts.setup)
    report_dir = os.path.dirname(os.path.abspath(opts.report))
    os.makedirs(report_dir, exist_ok=True)
    with open(opts.report, "w", encoding="utf-8") as fh:
        fh.write(render_report(result))
    print(f"gpu_check: {result['verdict']}: {result['verdict_reason']}")
    print(f"gpu_check: {result['gpu_summary']}; driver {result['driver_version']}, CUDA {result['cuda_version']}")
    for t in result["timings"]:
        print(f"gpu_check: {t['figure']}: {t['median_ms']} ms ({t['ratio']} x nvidia-smi -L)")
    print(f"gpu_check: report written to {opts.report}")
    return 0 if result["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
