"""A background sampler on a fixed monotonic schedule: sample k is due at t0 + k / rate_hz.

It never drifts (the schedule is not "sleep a period after the last sample"), never bursts to catch
up (missed ticks are skipped and counted), and records the real timestamp of every sample, so the
integrals downstream use real time, not an assumed spacing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Reading = dict[str, float]


@dataclass(frozen=True)
class SamplerStats:
    samples: int
    rate_hz: float  # achieved: samples per second of sampling
    interval_p50_ms: float
    jitter_p50_ms: float  # |interval - period|
    jitter_p99_ms: float
    missed_ticks: int


class Sampler:
    """Calls `read()` at `rate_hz` in a daemon thread between `start()` and `stop()`.

    `clock` (seconds) and `wait(stop, timeout_s)` (wait for `stop` up to `timeout_s`; True when it
    was set or the wait is to end the loop) are the real monotonic clock and `Event.wait` unless
    injected: a test's virtual clock runs minutes of schedule in milliseconds.
    """

    def __init__(self, read: Callable[[], Reading], *, rate_hz: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Event, float], bool] | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.read = read
        self.period_s = 1.0 / rate_hz
        self.clock = clock
        self.wait = wait if wait is not None else _event_wait
        self.times: list[float] = []
        self.readings: list[Reading] = []
        self.missed = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="harness-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        t = self.clock()
        try:
            reading = self.read()
        except Exception:  # noqa: BLE001 - a probe failing once (a cgroup going away) must not stop sampling
            self.errors += 1
            return
        self.times.append(t)
        self.readings.append(reading)

    def _loop(self) -> None:
        t0 = self.clock()
        k = 0
        while True:
            delay = t0 + k * self.period_s - self.clock()
            if delay > 0 and self.wait(self._stop, delay):
                break
            if self._stop.is_set():
                break
            self._sample()
            k += 1
            behind = int((self.clock() - t0) / self.period_s) - k
            if behind > 0:  # a slow read: skip the ticks already past instead of bursting
                self.missed += behind
                k += behind

    def stop(self, *, final_sample: bool = True) -> None:
        """Stop the thread; with `final_sample`, take one last reading now (the run's end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if final_sample:
            self._sample()

    def stats(self) -> SamplerStats:
        times = np.asarray(self.times)
        if times.size < 2:
            return SamplerStats(int(times.size), 0.0, float("nan"), float("nan"), float("nan"), self.missed)
        # The final sample is off-schedule by design; leave it out of the schedule statistics.
        scheduled = times[:-1] if times.size > 2 else times
        intervals = np.diff(scheduled)
        jitter = np.abs(intervals - self.period_s) * 1e3
        span = scheduled[-1] - scheduled[0]
        return SamplerStats(
            samples=int(times.size),
            rate_hz=float((scheduled.size - 1) / span) if span > 0 else 0.0,
            interval_p50_ms=float(np.median(intervals) * 1e3),
            jitter_p50_ms=float(np.percentile(jitter, 50)),
            jitter_p99_ms=float(np.percentile(jitter, 99)),
            missed_ticks=self.missed,
        )


def _event_wait(stop: threading.Event, timeout_s: float) -> bool:
    return stop.wait(timeout_s)
