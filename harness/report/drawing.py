"""The report's figures drawn in worker processes while the tables are built.

Drawing is most of a large report's time (matplotlib lays out and writes every figure, a few
seconds each at 50 algorithms) and each figure is a pure function from tables to SVG text, so the
figures go to a pool of forked workers, largest first, and the main process builds the tables
meanwhile. The text is the same as drawn in one process (tested): only the wall time changes.

Forking is used only where it is safe and cheap: on Linux, with more than one CPU available, and
while the process runs no other thread (a fork copies one thread; a lock another
thread held would stay held in the child). Anywhere else the figures are drawn in the caller, as
they are when `HARNESS_REPORT_WORKERS=1`.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

WORKERS_ENV = "HARNESS_REPORT_WORKERS"


def available_workers() -> int:
    """`$HARNESS_REPORT_WORKERS`, else the CPUs this process may use (at most 4: a report has
    about ten figures, the two box plots and the significance map the largest)."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            pass  # a malformed value: the default, as for an unset one
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


class Drawer:
    """`draw(fn, ...)` returns a Future of `fn(...)`: run in a worker when forking is safe, else at
    once in this process. Use as a context manager; leaving it waits for every worker."""

    def __init__(self, workers: int | None = None) -> None:
        n = available_workers() if workers is None else max(1, workers)
        self.workers = n
        # Linux only: macOS has fork too, but system libraries there may crash a forked child.
        can_fork = sys.platform.startswith("linux") and threading.active_count() == 1
        self._pool = (ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"))
                      if n > 1 and can_fork else None)

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def draw(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to whoever asks for the result, as a worker's would be
            done.set_exception(exc)
        return done

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["WORKERS_ENV", "Drawer", "available_workers"]
