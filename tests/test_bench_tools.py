"""The benchmark scripts a GPU machine runs (bench/): what they time and which rows they keep."""
from __future__ import annotations

import os

import pytest

from benchscripts import load
from nvlow.simulate.presets import get_preset

bench_nvml_calls = load("bench_nvml_calls")
bench_startup = load("bench_startup")

HOST_ROWS = {"nvlow args", "nvlow info", "nvlow list", "nvlow status --json", "nvlow doctor --no-engine",
             "nvlow cdi generate", "nvlow exec --dry-run -- docker run img"}


@pytest.mark.parametrize("root, have_host, expected", [
    (["--root", "/tree"], True, HOST_ROWS),
    ([], True, HOST_ROWS),  # --host-root /: no --root option, the host rows all the same
    ([], False, set()),  # no fake host could be built: only what needs none
])
def test_startup_rows_on_a_host_root(root, have_host, expected) -> None:
    cmds = bench_startup.commands("/venv", root, have_host)
    assert {"python -c pass", "python -c 'import nvlow'", "nvlow args --simulate dgx-a100"} <= set(cmds)
    assert set(cmds) & HOST_ROWS == expected
    if expected:
        assert cmds["nvlow info"] == ["/venv/bin/nvlow", "info", *root]


def test_nvml_calls_times_every_query(fake_driver, monkeypatch) -> None:
    fake = fake_driver(get_preset("dgx-a100"), complete=True, extra=["sample_ms 1"])
    for key, value in fake.env.items():
        monkeypatch.setenv(key, value)
    rows = {r["query"]: r for r in bench_nvml_calls.run("/nonexistent-nvlow-root", 1)}
    assert {"load + nvmlInit_v2", "nvmlShutdown", "load libcuda (no cuInit)", "pcie_throughput rx",
            "max_clock sm", "memory", "p2p_status"} <= set(rows)
    assert rows["pcie_throughput rx"]["outcome"] == "ok"
    assert rows["load libcuda (no cuInit)"]["outcome"] == "ok"
    assert os.path.basename(fake.libs.nvml) == "libnvidia-ml.so.1"
