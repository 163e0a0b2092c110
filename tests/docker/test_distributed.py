"""Scale-out through a real Dask scheduler and two real workers on loopback, each declaring GPU=1:
the same scores as one host, never two containers at once on a worker, and a worker killed
mid-run costs nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.build import docker_client
from harness.executor import DaskExecutor, LocalExecutor
from harness.layout import ResultsLayout
from harness.pipeline import RunSettings, run_all
from harness.store import Store
from tests.docker.conftest import behave_algorithms

DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    workers = []
    for name in ("w1", "w2"):
        worker = subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--resources", "GPU=1", "--name", name,
                                   "--no-nanny", "--no-dashboard", "--local-directory", str(tmp_path / name)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(worker)
        workers.append(worker)
    from distributed import Client

    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(2, timeout=30)
            break
        except Exception:  # noqa: BLE001 - the scheduler may still be starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    yield address, workers
    for proc in reversed(procs):
        proc.kill()
        proc.wait()


def _settings(tmp_path: Path, algorithms: Path, data: Path, base: str, results: str) -> RunSettings:
    # Two algorithms on two cases: four runs, enough to keep both workers busy and to go on after a kill.
    return RunSettings(algorithms_dir=algorithms, data_dir=data, results_dir=tmp_path / results, runner="docker", base=base,
                       cache_dir=tmp_path / "cache", repo_root=tmp_path, case_limit=2)


def _no_worker_overlaps(runs: pd.DataFrame) -> None:
    for worker, group in runs.groupby("worker"):
        spans = group.sort_values("started_at")[["started_at", "ended_at"]].to_numpy()
        for (_, end), (start, _) in zip(spans[:-1], spans[1:], strict=True):
            assert start >= end, f"{worker} ran two containers at once"


def test_two_workers_give_the_single_host_scores_one_container_at_a_time(tmp_path: Path, base_image: str,
                                                                          phantom_data: Path, cluster) -> None:
    address, _ = cluster
    algorithms = behave_algorithms(tmp_path, {"box-a": ("box0", {}), "box-b": ("box3", {})})
    run_all(_settings(tmp_path, algorithms, phantom_data, base_image, "single"), say=lambda m: None,
            on_result=lambda e: None, executor=LocalExecutor(scoring_workers=2))
    summary = run_all(_settings(tmp_path, algorithms, phantom_data, base_image, "dask"), say=lambda m: None,
                      on_result=lambda e: None, executor=DaskExecutor(address))
    assert summary.executed == 4 and summary.failed == 0
    with Store.open(tmp_path / "single", lock=False, create=False) as store:
        single = store.scores().sort_values(["algorithm", "case_id", "organ"]).reset_index(drop=True)
    with Store.open(tmp_path / "dask", lock=False, create=False) as store:
        distributed = store.scores().sort_values(["algorithm", "case_id", "organ"]).reset_index(drop=True)
        runs = store.runs()
    pd.testing.assert_frame_equal(single, distributed)
    assert single.dsc.max() > 0  # real, varied scores, not all zero
    assert set(runs.worker) <= {w for w in runs.worker if w.startswith("tcp://127.0.0.1:")} and runs.worker.nunique() == 2
    _no_worker_overlaps(runs)


def test_a_worker_killed_midway_costs_nothing(tmp_path: Path, base_image: str, phantom_data: Path, cluster) -> None:
    address, workers = cluster
    algorithms = behave_algorithms(tmp_path, {"slow-a": ("slow", {}), "slow-b": ("slow", {})})
    killer = subprocess.Popen([sys.executable, "-c", f"import time, os, signal; time.sleep(2.5); os.kill({workers[0].pid}, "
                               f"signal.SIGKILL)"])
    summary = run_all(_settings(tmp_path, algorithms, phantom_data, base_image, "results"), say=lambda m: None,
                      on_result=lambda e: None, executor=DaskExecutor(address))
    killer.wait()
    assert workers[0].poll() == -signal.SIGKILL, "the worker was not killed during the run"
    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs()
    assert len(runs) == 4 and not runs.duplicated(["algorithm", "case_id"]).any()
    assert set(runs.status) == {"ok"} and summary.failed == 0
    _no_worker_overlaps(runs)
    # The killed worker's containers (its run's and its output holder, `sleep infinity`) and
    # its /output volume are gone.
    owner = {"label": f"harness.results={ResultsLayout.of(tmp_path / 'results').owner_label}"}
    client = docker_client()
    assert [c.labels.get("harness.role", "run") for c in client.containers.list(all=True, filters=owner)] == []
    assert client.volumes.list(filters=owner) == []
