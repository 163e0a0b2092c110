"""Where runs and scoring happen: in this process, or on Dask workers across hosts.

FLARE's fairness rule holds everywhere: one container at a time per GPU.
- `LocalExecutor`: runs one container at a time in this process; scoring goes to a Dask
  `LocalCluster` on the local cores (or inline with `scoring_workers=0`), so scoring case k
  overlaps running case k + 1.
- `DaskExecutor`: each (algorithm, case) run is a Dask task needing the resource `GPU=1`; GPU hosts
  start one worker per GPU with `--resources GPU=1 --nthreads 1` (and `CUDA_VISIBLE_DEVICES`), so
  no worker ever runs two containers at once. Scoring is a separate task on any worker.
In both, results flow back to the client, which alone writes the store: durability and resume
work as on one host. A run whose worker dies is retried on another worker by Dask and recorded
once; a run that cannot finish is recorded as `lost`.
"""

from __future__ import annotations

import functools
import gzip
import os
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.models import Case, OrganScore
from harness.monitor import MonitorSettings
from harness.runner.base import Runner, RunOutcome, RunStatus
from harness.spec import AlgorithmSpec


@dataclass(frozen=True)
class RunTask:
    spec: AlgorithmSpec
    case: Case
    image: str | None
    runner: str  # docker | local
    monitor: MonitorSettings = MonitorSettings()


@dataclass(frozen=True)
class RunPayload:
    """A finished run, as it travels back to the client: outcome, kept files and figures."""

    task: RunTask
    outcome: RunOutcome
    files: dict[str, bytes]  # path relative to the run's folder in the store -> content
    measurements: dict[str, float]
    details: dict[str, object]
    host: str
    worker: str
    host_facts: dict[str, str] = field(default_factory=dict)


@functools.cache
def _runner(kind: str) -> Runner:
    from harness.pipeline import make_runner

    return make_runner(kind)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def run_task(task: RunTask) -> RunPayload:
    """Run one case wherever this is called (the client, or a Dask worker) and pack the results."""
    from harness.host import host_info
    from harness.pipeline import execute_case

    with tempfile.TemporaryDirectory(prefix="harness-task-") as tmp_name:
        tmp = Path(tmp_name)
        keep = tmp / "keep"
        result = execute_case(_runner(task.runner), task.spec, task.case, image=task.image, work_dir=tmp, keep_dir=keep,
                              monitor_settings=task.monitor, score=False)
        files = {p.relative_to(keep).as_posix(): p.read_bytes() for p in sorted(keep.rglob("*")) if p.is_file()}
    info = host_info()
    return RunPayload(task=task, outcome=result.outcome, files=files, measurements=result.measurements,
                      details=result.details, host=socket.gethostname(), worker=_worker_name(),
                      host_facts={"cpu": info.cpu, "gpu": info.gpu, "driver": info.driver})


def score_task(profile: str, case: Case, label_map: bytes) -> list[OrganScore]:
    """Score an accepted label map (its file's bytes) against the case's ground truth."""
    from harness.pipeline import score_label_map

    if case.label is None:
        return []
    with tempfile.NamedTemporaryFile(suffix=".nii.gz") as handle:
        handle.write(label_map if label_map[:2] == b"\x1f\x8b" else gzip.compress(label_map))
        handle.flush()
        return score_label_map(profile, case, Path(handle.name))


def lost_payload(task: RunTask, error: BaseException) -> RunPayload:
    message = f"lost: {type(error).__name__}: {' '.join(str(error).split())[:300]}; rerun `harness run` to retry it"
    outcome = RunOutcome(RunStatus.LOST, None, float("nan"), 0.0, 0.0, 0.0, message=message)
    return RunPayload(task=task, outcome=outcome, files={}, measurements={}, details={}, host="", worker="")


class LocalExecutor:
    """Containers one at a time in this process; scoring on a LocalCluster (or inline)."""

    def __init__(self, *, scoring_workers: int | None = None) -> None:
        self.scoring_workers = (os.cpu_count() or 1) if scoring_workers is None else scoring_workers
        self.client: Any = None
        self.cluster: Any = None

    def __enter__(self) -> LocalExecutor:
        if self.scoring_workers > 0:
            from distributed import Client, LocalCluster

            self.cluster = LocalCluster(n_workers=self.scoring_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", silence_logs=40)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
            self.cluster.close()

    def runs(self, tasks: list[RunTask]) -> Iterator[RunPayload]:
        for task in tasks:
            yield run_task(task)

    def score(self, payload: RunPayload, label_map: bytes) -> Future[list[OrganScore]] | Any:
        if self.client is None:
            done: Future[list[OrganScore]] = Future()
            done.set_result(score_task(payload.task.spec.profile, payload.task.case, label_map))
            return done
        return self.client.submit(score_task, payload.task.spec.profile, payload.task.case, label_map, pure=False)


class DaskExecutor:
    """Runs as Dask tasks needing `GPU=1` on the scheduler's workers; scoring on any worker."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None

    def __enter__(self) -> DaskExecutor:
        from distributed import Client

        from harness.errors import HarnessError

        try:
            self.client = Client(self.address, timeout=20)
        except (OSError, TimeoutError) as exc:
            raise HarnessError(f"--scheduler {self.address}: cannot connect ({exc}); start `dask scheduler` there, "
                               "or check the address") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()

    def runs(self, tasks: list[RunTask]) -> Iterator[RunPayload]:
        from distributed import as_completed

        futures = {}
        for task in tasks:
            key = f"run-{task.spec.name}-{task.case.case_id}-{os.urandom(4).hex()}"
            future = self.client.submit(run_task, task, resources={"GPU": 1}, pure=False, retries=1, key=key)
            futures[future] = task
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 - a task that cannot finish is recorded as lost
                yield lost_payload(futures[future], exc)

    def score(self, payload: RunPayload, label_map: bytes) -> Any:
        return self.client.submit(score_task, payload.task.spec.profile, payload.task.case, label_map, pure=False)
