"""nvlow against a real Slurm 22.05 (tests/slurm/setup_slurm.sh: slurmctld, slurmd and munged private to the
test run; the node's four GPUs are mknod'd nodes of a fake root whose minors are not in bus order).

Checked: what ``srun``/``sbatch`` really put in ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS`` (against the
scheduler's own ``scontrol show job -d`` IDX, for 1 and 2 GPUs and for two 1-GPU jobs running at once),
that :mod:`nvlow.plan.slurm` maps that environment to exactly the fake root's allocated GPUs, and that the
gres.conf ``nvlow slurm gres`` writes is what slurmd loads (``slurmd -G``) and serves jobs with. A second
cluster of this module's own (``setup_slurm.sh start DIR --task-cgroup``: task/cgroup, ConstrainDevices=yes,
cgroup v1) shows the renumbered case: CUDA_VISIBLE_DEVICES from 0, SLURM_STEP_GPUS global, nvlow unmoved.

``tests/run.sh`` starts the cluster as root and exports NVLOW_SLURM=1 (``. WORKDIR/env.sh``). Without it
these tests skip with a reason; under ``CI=true`` they fail instead, unless the real-daemon tests are
switched off on purpose (NVLOW_SLURM=0, or NVLOW_ENGINES=0 as tests/ci_matrix.sh's unit-test runs set).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest

import nvlow
from nvlow.plan.slurm import allocated_devices, gres_devices, slurm_allocation

pytestmark = [pytest.mark.slurm]

HERE = Path(__file__).resolve().parent
SETUP = HERE / "slurm" / "setup_slurm.sh"
#: seconds for one Slurm client call or job
T = 60

SKIP_REASON = ("real-Slurm test: needs NVLOW_SLURM=1 with the private cluster of tests/slurm/setup_slurm.sh "
               "(run tests/run.sh as root, or `tests/slurm/setup_slurm.sh start DIR` then `. DIR/env.sh`)")


def _require_cluster() -> None:
    state = os.environ.get("NVLOW_SLURM")
    if state == "1":
        return
    switched_off = state == "0" or (state is None and os.environ.get("NVLOW_ENGINES") == "0")
    if os.environ.get("CI") == "true" and not switched_off:
        pytest.fail("CI runs the real-Slurm tests, but NVLOW_SLURM is not 1: " + SKIP_REASON)
    pytest.skip(SKIP_REASON)


class Cluster:
    """The running cluster and its fake root (from WORKDIR/env.sh and WORKDIR/fakeroot.json)."""

    def __init__(self, workdir: Optional[str] = None) -> None:
        """``workdir``: a cluster this module started itself (not the one of the environment)."""
        self.workdir = workdir or os.environ["NVLOW_TEST_SLURM_WORKDIR"]
        self.conf = os.path.join(workdir, "etc", "slurm.conf") if workdir else os.environ["SLURM_CONF"]
        self.node = "nvlow-node" if workdir else os.environ["NVLOW_TEST_SLURM_NODE"]
        with open(os.path.join(self.workdir, "fakeroot.json"), encoding="utf-8") as fh:
            self.fake = json.load(fh)
        self.root: str = self.fake["root"]
        #: GRES index -> device minor (gres.conf lists the minors in order)
        self.minor_order: List[int] = self.fake["minor_order"]
        #: device minor -> nvlow's index (procfs-only discovery numbers GPUs in PCI bus order)
        self.index_of_minor: Dict[int, int] = {g["minor"]: g["procfs_index"] for g in self.fake["gpus"]}

    def env(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        full = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLURM_", "NVLOW_SIMULATE", "NVLOW_ROOT", "NVIDIA_", "NV_", "CUDA_"))}
        full["SLURM_CONF"] = self.conf
        full.update(extra or {})
        return full

    def run(self, *argv: str, timeout: float = T, env: Optional[Mapping[str, str]] = None,
            check: bool = True) -> "subprocess.CompletedProcess[str]":
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=self.env(env),
                             cwd=self.workdir)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def expected_nvlow_indices(self, gres: Sequence[int]) -> List[int]:
        return sorted(self.index_of_minor[self.minor_order[i]] for i in gres)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    _require_cluster()
    return Cluster()


#: a step's view: its SLURM_* variables, and the IDX the scheduler reports for the job
STEP_PROBE = r'''
import json, os, subprocess, sys
job = subprocess.run(["scontrol", "show", "job", "-d", os.environ["SLURM_JOB_ID"]], capture_output=True, text=True,
                     timeout=30).stdout
print(json.dumps({"env": {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "CUDA_"))}, "job": job}))
'''


def probe(cluster: Cluster, *srun_args: str) -> Tuple[Dict[str, str], str]:
    res = cluster.run("srun", *srun_args, sys.executable, "-c", STEP_PROBE)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    return doc["env"], doc["job"]


def scheduler_idx(job_text: str) -> List[int]:
    """The GRES indices ``scontrol show job -d`` reports for the job's node (``GRES=gpu:a100:2(IDX:0-1)``)."""
    match = re.search(r"GRES=\S*\(IDX:([0-9,\-]+)\)", job_text)
    assert match, job_text
    out: List[int] = []
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def host_of(cluster: Cluster) -> nvlow.Host:
    return nvlow.load_host(cluster.root, use_nvml=False)


# ----------------------------------------------------------------------------- what Slurm sets

@pytest.mark.parametrize("count", [1, 2])
def test_srun_step_gpus_are_the_schedulers(cluster: Cluster, count: int) -> None:
    env, job = probe(cluster, f"--gres=gpu:{count}")
    idx = scheduler_idx(job)
    assert len(idx) == count
    assert env["SLURM_STEP_GPUS"] == ",".join(map(str, idx))
    assert "SLURM_JOB_GPUS" not in env  # srun outside a batch job: the step variable only
    alloc = slurm_allocation(env)
    assert alloc is not None and alloc.variable == "SLURM_STEP_GPUS" and list(alloc.indices) == idx


def test_nvlow_maps_a_real_step_to_the_fake_roots_gpus(cluster: Cluster) -> None:
    env, job = probe(cluster, "--gres=gpu:3")
    idx = scheduler_idx(job)
    alloc = slurm_allocation(env)
    assert alloc is not None
    devices = allocated_devices(host_of(cluster), alloc)
    # GRES index i is the i-th gres.conf line, /dev/nvidia<minor_order[i]> of the fake root
    assert [d.gpu.minor for d in devices] == [cluster.minor_order[i] for i in idx]
    assert [d.files for d in devices] == [(f"{cluster.root}/dev/nvidia{cluster.minor_order[i]}",) for i in idx]
    assert sorted(d.gpu.index for d in devices) == cluster.expected_nvlow_indices(idx)


def test_nvlow_slurm_allocation_inside_a_step(cluster: Cluster) -> None:
    res = cluster.run("srun", "--gres=gpu:2", sys.executable, "-m", "nvlow", "slurm", "allocation", "--root",
                      cluster.root, "--no-nvml", "--json")
    doc = json.loads(res.stdout)
    indices = doc["allocation"]["indices"]
    assert doc["allocation"]["variable"] == "SLURM_STEP_GPUS" and len(indices) == 2
    assert [g["minor"] for g in doc["gpus"]] == [cluster.minor_order[i] for i in indices]
    assert doc["selection"] == ",".join(map(str, cluster.expected_nvlow_indices(indices)))


def _wait_for_jobs(cluster: Cluster, ids: Sequence[str], timeout: float = T) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.run("squeue", "-h", "-j", ",".join(ids), "-o", "%i", check=False).stdout
        if not out.strip():
            return
        time.sleep(0.3)
    raise AssertionError(f"jobs {ids} still queued after {timeout} s")


BARRIER = r'''
import json, os, sys, time
mine, other, out = sys.argv[1:4]
open(mine, "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(other):  # both jobs hold their GPU at the same time, or this times out
    if time.monotonic() > deadline:
        sys.exit("the other job never ran concurrently")
    time.sleep(0.05)
with open(out, "w") as fh:
    json.dump({k: v for k, v in os.environ.items() if k.startswith("SLURM_")}, fh)
time.sleep(0.5)
'''


def test_two_concurrent_one_gpu_jobs_get_different_gpus(cluster: Cluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    ids = []
    for me, other in (("a", "b"), ("b", "a")):
        res = cluster.run("sbatch", "--parsable", "--gres=gpu:1", "-n1", "-o", str(tmp_path / f"{me}.log"),
                          "--wrap", f"srun {sys.executable} -c '{BARRIER}' {tmp_path / me}.ready "
                                    f"{tmp_path / other}.ready {tmp_path / me}.json")
        ids.append(res.stdout.strip().split(";")[0])
    _wait_for_jobs(cluster, ids)
    envs = []
    for me in ("a", "b"):
        path = tmp_path / f"{me}.json"
        assert path.exists(), (tmp_path / f"{me}.log").read_text() if (tmp_path / f"{me}.log").exists() else me
        envs.append(json.loads(path.read_text()))
    allocs = [slurm_allocation(e) for e in envs]
    assert all(a is not None and len(a.indices) == 1 for a in allocs)
    # the srun step inherits the batch step's SLURM_JOB_GPUS and gets its own SLURM_STEP_GPUS: the same GPU
    assert [e["SLURM_STEP_GPUS"] for e in envs] == [e["SLURM_JOB_GPUS"] for e in envs]
    first, second = (a.indices[0] for a in allocs)  # type: ignore[union-attr]
    assert first != second
    host = host_of(cluster)
    minors = {allocated_devices(host, a)[0].gpu.minor for a in allocs}  # type: ignore[arg-type]
    assert minors == {cluster.minor_order[first], cluster.minor_order[second]}


def test_batch_step_and_gpu_less_step(cluster: Cluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    dump = f"{sys.executable} -c 'import json,os,sys; json.dump(dict(os.environ), open(sys.argv[1], \"w\"))'"
    res = cluster.run("sbatch", "--parsable", "--gres=gpu:2", "-o", str(tmp_path / "log"), "--wrap",
                      f"{dump} {tmp_path}/batch.json; srun --gres=none {dump} {tmp_path}/none.json")
    _wait_for_jobs(cluster, [res.stdout.strip().split(";")[0]])
    batch = json.loads((tmp_path / "batch.json").read_text())
    none = json.loads((tmp_path / "none.json").read_text())
    alloc = slurm_allocation(batch)
    assert alloc is not None and alloc.variable == "SLURM_JOB_GPUS" and len(alloc.indices) == 2
    assert "SLURM_STEP_ID" not in batch
    assert none["SLURM_JOB_GPUS"] == batch["SLURM_JOB_GPUS"] and "SLURM_STEP_GPUS" not in none
    empty = slurm_allocation(none)
    assert empty is not None and empty.indices == () and empty.step_id is not None


def test_nvlow_args_in_a_step_lists_exactly_the_allocated_gpus(cluster: Cluster) -> None:
    script = ('import os, subprocess, sys, json\n'
              'out = subprocess.run([sys.executable, "-m", "nvlow", "args", "--root", sys.argv[1], "--no-nvml", '
              '"--json"], capture_output=True, text=True, timeout=60)\n'
              'print(json.dumps({"step": os.environ.get("SLURM_STEP_GPUS"), "out": out.stdout, "err": out.stderr}))')
    res = cluster.run("srun", "--gres=gpu:2", sys.executable, "-c", script, cluster.root)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    plan = json.loads(doc["out"])
    gres = [int(i) for i in doc["step"].split(",")]
    assert plan["selection"]["gpus"] == cluster.expected_nvlow_indices(gres), doc["err"]


# ----------------------------------------------------------------------------- nvlow slurm gres -> slurmd

def nvlow_gres(cluster: Cluster, root: str) -> str:
    return cluster.run(sys.executable, "-m", "nvlow", "slurm", "gres", "--root", root, "--no-nvml").stdout


SLURMD_G = re.compile(r"Gres Name=gpu Type=(\S+) Count=1 Index=(\d+) ID=\d+ File=(\S+)(?: Cores=(\S+))?")


def slurmd_gres(cluster: Cluster, conf: str) -> List[Tuple[str, str, Optional[str]]]:
    """(type, files, cores) of each gpu record as slurmd loads them (``slurmd -G``), in slurmd's order."""
    res = cluster.run("slurmd", "-G", "-N", cluster.node, env={"SLURM_CONF": conf})
    records = [SLURMD_G.search(line) for line in (res.stdout + res.stderr).splitlines()]
    return [(m.group(1), m.group(3), m.group(4)) for m in records if m]


@pytest.fixture
def nvlow_conf(cluster: Cluster, tmp_path: Path) -> Iterator[Path]:
    """A conf dir holding the cluster's slurm.conf and nvlow's gres.conf; slurmd is restarted on it and put
    back on the harness's own afterwards."""
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(cluster.conf, conf / "slurm.conf")
    (conf / "gres.conf").write_text(nvlow_gres(cluster, cluster.root))
    try:
        yield conf
    finally:
        subprocess.run(["bash", str(SETUP), "restart-slurmd", cluster.workdir, os.path.dirname(cluster.conf)],
                       capture_output=True, text=True, timeout=120, check=True, env=cluster.env())


def test_slurmd_loads_nvlow_gres_conf(cluster: Cluster, nvlow_conf: Path) -> None:
    text = (nvlow_conf / "gres.conf").read_text()
    assert "AutoDetect=off" in text and "# slurm.conf: Gres=gpu:a100:4" in text
    loaded = slurmd_gres(cluster, str(nvlow_conf / "slurm.conf"))
    cores = {g["minor"]: g["local_cpulist"] for g in cluster.fake["gpus"]}  # 1 socket, CPU n = core n
    assert loaded == [("a100", f"{cluster.root}/dev/nvidia{m}", cores[m]) for m in cluster.minor_order]
    restart = subprocess.run(["bash", str(SETUP), "restart-slurmd", cluster.workdir, str(nvlow_conf)],
                             capture_output=True, text=True, timeout=120, env=cluster.env())
    assert restart.returncode == 0, restart.stderr
    node = cluster.run("scontrol", "show", "node", "-d", cluster.node).stdout
    assert "Gres=gpu:a100:4" in node and "State=IDLE" in node, node
    # and it serves jobs with nvlow's mapping
    env, job = probe(cluster, "--gres=gpu:a100:2")
    alloc = slurm_allocation(env)
    assert alloc is not None and list(alloc.indices) == scheduler_idx(job)
    devices = allocated_devices(host_of(cluster), alloc)
    assert [d.gpu.minor for d in devices] == [cluster.minor_order[i] for i in alloc.indices]


def test_slurmd_loads_nvlow_mig_records(cluster: Cluster, tmp_path: Path) -> None:
    """MIG devices as MultipleFiles= (parent node, GI and CI access nodes): slurmd reads each as one record."""
    root = tmp_path / "migroot"
    cluster.run(sys.executable, str(HERE / "slurm" / "fakeroot.py"), str(root), "--mig")
    conf = tmp_path / "conf"
    conf.mkdir()
    text = nvlow_gres(cluster, str(root))
    (conf / "gres.conf").write_text(text)
    node_gres = re.search(r"^# slurm\.conf: Gres=(\S+)$", text, re.M)
    assert node_gres and node_gres.group(1) == "gpu:a100_mig:2,gpu:a100:3"
    slurm_conf = Path(cluster.conf).read_text().replace("Gres=gpu:a100:4", f"Gres={node_gres.group(1)}")
    (conf / "slurm.conf").write_text(slurm_conf)
    loaded = slurmd_gres(cluster, str(conf / "slurm.conf"))
    host = nvlow.load_host(str(root), use_nvml=False)
    want = [(d.files, d.mig is not None) for d in gres_devices(host)]
    assert [(tuple(files.split(",")), kind == "a100_mig") for kind, files, _ in loaded] == want
    assert [len(files.split(",")) for _, files, _ in loaded] == [3, 3, 1, 1, 1]


def test_a_selection_outside_the_allocation_is_refused_and_all_means_the_allocation(cluster: Cluster) -> None:
    """In a 1-GPU step: --gpus all gives that GPU; a GPU the step was not given is exit 2, naming the
    allocation; the same command outside any job selects freely."""
    script = ('import os, subprocess, sys, json\n'
              'base = [sys.executable, "-m", "nvlow", "args", "--root", sys.argv[1], "--no-nvml", "--json"]\n'
              'a = subprocess.run(base + ["--gpus", "all"], capture_output=True, text=True, timeout=60)\n'
              'step = [int(i) for i in os.environ["SLURM_STEP_GPUS"].split(",")]\n'
              'given = json.loads(a.stdout)["selection"]["gpus"]\n'
              'other = [i for i in range(int(sys.argv[2])) if i not in given][0]\n'
              'b = subprocess.run(base + ["--gpus", str(other)], capture_output=True, text=True, timeout=60)\n'
              'print(json.dumps({"step": step, "all": a.stdout, "rc": b.returncode, "err": b.stderr}))')
    res = cluster.run("srun", "--gres=gpu:1", sys.executable, "-c", script, cluster.root,
                      str(len(cluster.fake["gpus"])))
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert json.loads(doc["all"])["selection"]["gpus"] == cluster.expected_nvlow_indices(doc["step"])
    assert doc["rc"] == 2, doc["err"]
    assert "Slurm" in doc["err"] and "SLURM_STEP_GPUS" in doc["err"], doc["err"]



# ----------------------------------------------------------------------------- task/cgroup (begin)
# the renumbered case: CUDA_VISIBLE_DEVICES from 0 in the step, SLURM_STEP_GPUS global

CGROUP_DEVICES = "/sys/fs/cgroup/devices"


def _cgroup_v1_devices() -> bool:
    """Whether the cgroup v1 devices controller is mounted where Slurm's cgroup/v1 plugin looks."""
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(f[1] == CGROUP_DEVICES and f[2] == "cgroup" and "devices" in f[3].split(",")
                   for f in (line.split() for line in fh) if len(f) > 3)


def _setup(*args: str, timeout: float) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "NVLOW_TEST_SLURM_"))}
    env["PYTHON"] = sys.executable
    return subprocess.run(["timeout", "-k", "10", str(int(timeout)), "bash", str(SETUP), *args],
                          capture_output=True, text=True, timeout=timeout + 20, env=env)


@pytest.fixture(scope="module")
def cgroup_cluster() -> Iterator[Cluster]:
    """A second private cluster with TaskPlugin=task/cgroup and ConstrainDevices=yes (cgroup/v1), started and
    stopped here (its daemons by PID, SIGKILL after 10 s, all under ``timeout``)."""
    _require_cluster()
    if not _cgroup_v1_devices():
        pytest.skip(f"task/cgroup variant: no cgroup v1 devices hierarchy at {CGROUP_DEVICES} (Slurm 22.05's "
                    "cgroup/v2 plugin needs systemd/dbus, which this test does not set up)")
    workdir = f"/tmp/nvlow-slurm-cgroup-{os.getpid()}"
    started = _setup("start", workdir, "--task-cgroup", timeout=180)
    try:
        if started.returncode != 0:
            pytest.fail(f"setup_slurm.sh start --task-cgroup exited {started.returncode}:\n{started.stderr}")
        yield Cluster(workdir)
    finally:
        stopped = _setup("stop", workdir, timeout=120)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def gres_zero_held(cgroup_cluster: Cluster, tmp_path: Path) -> Iterator[List[int]]:
    """A batch job holding one GPU (GRES index 0 on the idle node), so later steps get indices not from 0."""
    tmp_path.chmod(0o755)
    res = cgroup_cluster.run("sbatch", "--parsable", "--gres=gpu:1", "-n1", "-o", str(tmp_path / "hold.log"),
                             "--wrap", "sleep 300")
    job = res.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + T
        while cgroup_cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() != "RUNNING":
            assert time.monotonic() < deadline, f"holder job {job} not running after {T} s"
            time.sleep(0.2)
        yield scheduler_idx(cgroup_cluster.run("scontrol", "show", "job", "-d", job).stdout)
    finally:
        cgroup_cluster.run("scancel", job, check=False)
        _wait_for_jobs(cgroup_cluster, [job])


#: inside the step: its variables, its devices cgroup, which fake GPU nodes it may open, and nvlow's plan
CGROUP_PROBE = r'''
import errno, json, os, subprocess, sys
root, minors = sys.argv[1], [int(m) for m in sys.argv[2].split(",")]
opened = {}
for m in minors:  # the fake nodes have no driver: ENXIO when the cgroup allows the device, EPERM when it denies
    try:
        os.close(os.open(f"{root}/dev/nvidia{m}", os.O_RDWR))
        opened[m] = "ok"
    except OSError as e:
        opened[m] = errno.errorcode.get(e.errno, str(e.errno))
args = subprocess.run([sys.executable, "-m", "nvlow", "args", "--root", root, "--no-nvml", "--json"],
                      capture_output=True, text=True, timeout=60)
job = subprocess.run(["scontrol", "show", "job", "-d", os.environ["SLURM_JOB_ID"]], capture_output=True,
                     text=True, timeout=30).stdout
print(json.dumps({"env": {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "CUDA_"))},
                  "cgroup": open("/proc/self/cgroup").read(), "opened": opened, "job": job,
                  "args": args.stdout, "err": args.stderr, "rc": args.returncode}))
'''


@pytest.mark.parametrize("count", [1, 2])
def test_task_cgroup_renumbers_cuda_visible_devices_but_not_the_step_gpus(
        cgroup_cluster: Cluster, gres_zero_held: List[int], count: int) -> None:
    cluster = cgroup_cluster
    minors = ",".join(str(m) for m in cluster.minor_order)
    res = cluster.run("srun", f"--gres=gpu:{count}", sys.executable, "-c", CGROUP_PROBE, cluster.root, minors)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    env = doc["env"]
    gres = [int(i) for i in env["SLURM_STEP_GPUS"].split(",")]
    # SLURM_STEP_GPUS: the scheduler's global GRES indices, here not 0.. (index 0 is the holder's)
    assert gres == scheduler_idx(doc["job"]) and len(gres) == count
    assert gres != list(range(count)) and not set(gres) & set(gres_zero_held), (gres, gres_zero_held)
    # CUDA_VISIBLE_DEVICES: renumbered from 0 inside the device cgroup
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(count)), env
    assert re.search(rf"^\d+:devices:/slurm_{cluster.node}/uid_\d+/job_{env['SLURM_JOB_ID']}/step_\d+",
                     doc["cgroup"], re.M), doc["cgroup"]
    allowed = {cluster.minor_order[i] for i in gres}
    assert doc["opened"] == {str(m): ("ENXIO" if m in allowed else "EPERM") for m in cluster.minor_order}
    # nvlow follows SLURM_STEP_GPUS, not the renumbered CUDA_VISIBLE_DEVICES
    assert doc["rc"] == 0, doc["err"]
    assert json.loads(doc["args"])["selection"]["gpus"] == cluster.expected_nvlow_indices(gres), doc["err"]

# ----------------------------------------------------------------------------- task/cgroup (end)
