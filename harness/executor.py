"""Where runs and scoring happen: in this process, or on Dask workers across hosts.

FLARE's fairness rule holds everywhere: one container at a time per GPU.
- `LocalExecutor`: runs one container at a time in this process; scoring goes to a Dask
  `LocalCluster` on the local cores (or inline with `scoring_workers=0`), so scoring case k
  overlaps running case k + 1.
- `DaskExecutor`: each (algorithm, case) run is a Dask task needing the resource `GPU=1`; GPU hosts
  start one worker per GPU with `--resources GPU=1 --nthreads 1` (and `CUDA_VISIBLE_DEVICES`), so
  no worker ever runs two containers at once. Runs come back as they end (`as_completed`) and are
  scored here, on the client, never queued behind runs on a worker: each is stored as soon as it
  ends. A run's future is released as soon as its result is here, so a worker that dies costs only
  what was running on it (Dask would recompute a finished result it still held).
In both, results flow back to the client, which alone writes the store: durability and resume
work as on one host. A run whose worker dies is retried on another worker by Dask and recorded
once (the local runner's watcher stops the dead worker's copy); a run that cannot finish is
recorded as `lost`. A lost scheduler is this machine's problem (`HostError`, exit 7): what finished
is stored, and the same `harness run` resumes with what is not.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from harness.casework import RunResult, RunTask, lost_result, run_case, score_bytes
from harness.errors import HostError
from harness.models import Case, Profile
from harness.runner.base import Runner
from harness.runner.output_volumes import keep_holders
from harness.scoring import CaseResult

__all__ = ["DaskExecutor", "Executor", "LocalExecutor"]


def _score(case: Case, label_map: bytes, profile: Profile) -> CaseResult:
    return score_bytes(case, label_map, profile, threads=os.cpu_count() or 1)


def heartbeat_s() -> float:
    """How often a long run is said to be going on: HARNESS_HEARTBEAT_S (30 s), read when a run starts."""
    return float(os.environ.get("HARNESS_HEARTBEAT_S", "30"))


@contextlib.contextmanager
def _heartbeat(task: RunTask, still_running: Callable[[RunTask, float], None] | None) -> Iterator[None]:
    """Call `still_running(task, seconds so far)` every `heartbeat_s()` until the block ends."""
    if still_running is None:
        yield
        return
    stop = threading.Event()
    started = time.monotonic()
    interval_s = heartbeat_s()

    def beat() -> None:
        while not stop.wait(interval_s):
            still_running(task, time.monotonic() - started)

    thread = threading.Thread(target=beat, name="harness-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class LocalExecutor:
    """Containers one at a time in this process; scoring on a LocalCluster (or inline)."""

    def __init__(self, *, scoring_workers: int | None = None, runner: Runner | None = None,
                 still_running: Callable[[RunTask, float], None] | None = None) -> None:
        self.scoring_workers = (os.cpu_count() or 1) if scoring_workers is None else scoring_workers
        self.runner = runner  # None: the task's own kind of runner
        self.still_running = still_running  # called every heartbeat_s() while one run goes on (the CLI says so)
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

    def runs(self, tasks: list[RunTask]) -> Iterator[RunResult]:
        with keep_holders():  # one /output holder container serves several runs (harness.runner.output_volumes)
            for task in tasks:
                with _heartbeat(task, self.still_running):
                    result = run_case(task, runner=self.runner)
                yield result

    def score(self, case: Case, label_map: bytes, profile: Profile) -> Future[CaseResult] | Any:
        if self.client is None:
            done: Future[CaseResult] = Future()
            done.set_result(_score(case, label_map, profile))
            return done
        return self.client.submit(_score, case, label_map, profile, pure=False)


class DaskExecutor:
    """Runs as Dask tasks needing `GPU=1` on the scheduler's workers; scoring here, on the client."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None

    def __enter__(self) -> DaskExecutor:
        from distributed import Client

        try:  # waits Dask's `distributed.comm.timeouts.connect` (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT; 30 s)
            self.client = Client(self.address)
        except (OSError, TimeoutError) as exc:
            raise HostError(f"--scheduler {self.address}: cannot connect ({exc}); start `dask scheduler` there, "
                            "or check the address") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # a lost scheduler: nothing left to close cleanly
                self.client.close(timeout=5)

    def runs(self, tasks: list[RunTask]) -> Iterator[RunResult]:
        """Each run's result as it ends, whichever worker ran it; raises HostError once the scheduler
        is lost (the results yielded before are the caller's to store)."""
        from distributed import as_completed

        waiting: dict[str, RunTask] = {}
        finished = as_completed(loop=self.client.loop)
        for task in tasks:
            key = f"run-{task.spec.name}-{task.case.case_id}-{os.urandom(4).hex()}"
            finished.add(self.client.submit(run_case, task, resources={"GPU": 1}, pure=False, retries=1, key=key))
            waiting[key] = task
        done = 0
        for future in finished:
            task = waiting.pop(future.key)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a task that cannot finish is recorded as lost
                if self._connection_lost(exc):
                    finished.clear()
                    raise HostError(self._lost_message(exc, done=done, total=len(tasks))) from None
                result = lost_result(task, exc)
            finally:
                future.release()  # the scheduler forgets it: a worker that dies later is not asked to redo it
                del future
            done += 1
            yield result

    def _connection_lost(self, exc: BaseException) -> bool:
        from distributed.client import FutureCancelledError

        if isinstance(exc, FutureCancelledError) and exc.reason == "scheduler-connection-lost":
            return True
        return self.client.status not in ("running", "newly-created")

    def _lost_message(self, exc: BaseException, *, done: int, total: int) -> str:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return (f"--scheduler {self.address}: lost the connection to the scheduler ({reason}) after {done} of {total} runs; "
                f"the {done} finished are stored; restart `dask scheduler` there (and its workers, if they stopped) and run "
                f"the same `harness run` again: it runs only the {total - done} not stored")

    def score(self, case: Case, label_map: bytes, profile: Profile) -> Future[CaseResult]:
        """Scored here, now: a worker's thread is the GPU's, never one to queue scoring behind runs."""
        done: Future[CaseResult] = Future()
        done.set_result(_score(case, label_map, profile))
        return done


Executor = LocalExecutor | DaskExecutor
