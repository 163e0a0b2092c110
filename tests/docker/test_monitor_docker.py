"""Resource figures of real containers (cgroup CPU accounting) and of local processes (psutil)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.pipeline import RunSettings, run_all
from harness.store import Store
from tests.docker.conftest import behave_algorithms

# Each burner keeps its cores busy for BUSY_S, then idles for IDLE_S: long enough for about 15 samples
# at 10 Hz well inside the burn and for a steady sample rate (a stalled tick costs less than 10 %),
# and an idle second whose absence or doubling the elapsed time shows.
BUSY_S, IDLE_S = 2.0, 1.0


def _run(tmp_path: Path, data: Path, runner: str, base: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    algorithms = behave_algorithms(tmp_path, {"burn-one": (f"burn1@{BUSY_S},{IDLE_S}", {}),
                                                 "burn-two": (f"burn2@{BUSY_S},{IDLE_S}", {})})
    settings = RunSettings(algorithms_dir=algorithms, data_dir=data, results_dir=tmp_path / "results", runner=runner,
                           base=base, cache_dir=tmp_path / "cache", repo_root=tmp_path)
    run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs()
        wide = store.measurements().pivot(index=["algorithm", "case_id"], columns="name", values="value")
    return runs.set_index(["algorithm", "case_id"]), wide


@pytest.fixture
def one_case(tmp_path: Path) -> Path:
    from harness.data.synth import write_dataset

    write_dataset(tmp_path / "data", cases=1, seed=3, size="small")
    return tmp_path / "data"


def _self_reported_cpu_s(runs: pd.DataFrame, algorithm: str) -> float:
    """The CPU time the algorithm's processes report themselves (getrusage): the truth."""
    log = runs.xs(algorithm).log_tail.iloc[0]
    return float(json.loads([line for line in log.splitlines() if line.startswith("{")][0])["cpu_s"])


def _check(tmp_path: Path, runs: pd.DataFrame, wide: pd.DataFrame, host_cpus: int) -> None:
    one, two = wide.xs("burn-one"), wide.xs("burn-two")
    assert set(runs.status) == {"ok"}
    # One core busy for 2 s, then idle for 1 s: 2 core-seconds (less only if this machine's other
    # work took some of that core: the process's own getrusage says how much it really got),
    # AUC_CPU = core-seconds / ncpu * 100 %*s.
    truth = _self_reported_cpu_s(runs, "burn-one")
    assert truth > 0.2  # it did burn (about 2 on an idle machine; less when other work shares the cores)
    assert one.cpu_core_s.iloc[0] == pytest.approx(truth, rel=0.10)
    assert one.auc_cpu_pct_s.iloc[0] == pytest.approx(truth * 100.0 / host_cpus, rel=0.10)
    elapsed = runs.xs("burn-one").elapsed_s.iloc[0]
    # Docker's own start-to-finish includes the container's Python start-up: up to 0.48 s measured on this
    # 2-core machine's fuse-overlayfs; a missing idle second or a doubled one is still caught.
    assert BUSY_S + IDLE_S - 0.05 < elapsed < BUSY_S + IDLE_S + 0.75
    assert one.sample_rate_hz.iloc[0] == pytest.approx(10.0, rel=0.1)
    assert one.gpu_measured.iloc[0] == 0.0 and pd.isna(one.auc_gpu_mb_s.iloc[0])  # no GPU here: not measured
    # Two busy processes read about two cores while they burn.
    case = runs.xs("burn-two").index[0]
    series = pd.read_parquet(tmp_path / "results" / "runs" / "burn-two" / case / "monitor.parquet")
    # The burn ends IDLE_S before the last sample (the container's exit), whatever its start-up took.
    burn_end_s = series.t_s.max() - IDLE_S
    busy = series[(series.t_s > burn_end_s - BUSY_S + 0.25) & (series.t_s < burn_end_s - 0.25)]
    truth_two = _self_reported_cpu_s(runs, "burn-two")
    # Both processes burn over the same BUSY_S: the sampled cores are what they got together (about
    # 2 on an idle machine; less when other work shares the two cores).
    assert len(busy) >= 7 and busy.cpu_cores.median() == pytest.approx(truth_two / BUSY_S, abs=0.25)
    assert two.cpu_core_s.iloc[0] == pytest.approx(truth_two, rel=0.10)


def test_container_cpu_from_its_cgroup(tmp_path: Path, base_image: str, one_case: Path) -> None:
    import os

    runs, wide = _run(tmp_path, one_case, "docker", base_image)
    _check(tmp_path, runs, wide, os.cpu_count() or 1)
    assert runs.xs("burn-one").details.iloc[0].count("not measured") == 1
    assert 0 < wide.xs("burn-one").startup_s.iloc[0] < 5


def test_local_process_tree_cpu_from_psutil(tmp_path: Path, one_case: Path) -> None:
    import os

    runs, wide = _run(tmp_path, one_case, "local", None)
    _check(tmp_path, runs, wide, os.cpu_count() or 1)
