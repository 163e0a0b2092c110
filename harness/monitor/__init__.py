"""Resource monitor: 10 Hz sampling of a run's GPU memory, CPU and RAM, and FLARE's AUC figures.

FLARE22's organisers polled the whole card and the whole host every 0.1 s, kept no timestamps and
integrated as `sum * 0.1`. harness samples the run's own container (cgroup) or process tree, keeps
a timestamp with every sample, integrates with the trapezoid rule over real time, and records the
organisers' rectangle sums beside its own figures for comparison.

`RunMonitor` is handed to a runner, which calls `attach(pid)` once the run's process exists and
`stop()` when it has exited; `figures()` and `series()` then give the numbers and the time series.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.monitor.probes import CgroupProbe, NvmlGpuProbe, ProcessTreeProbe, gpu_probe_or_none
from harness.monitor.sampler import Sampler, SamplerStats

SERIES_COLUMNS = ["t_s", "gpu_mb", "gpu_card_mb", "cpu_cores", "cpu_pct", "rss_mb"]


@dataclass(frozen=True)
class MonitorSettings:
    """FLARE22's defaults: 10 Hz, 2048 MB GPU tolerance, the organisers' 0.1 s rectangle width."""

    rate_hz: float = 10.0
    gpu_tolerance_mb: float = 2048.0
    rectangle_s: float = 0.1


def integrate(t_s: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid integral over real timestamps (0 with fewer than two samples)."""
    if t_s.size < 2:
        return 0.0
    return float(np.sum((values[1:] + values[:-1]) * np.diff(t_s)) / 2.0)


def summarize(series: pd.DataFrame, *, host_cpus: int, settings: MonitorSettings = MonitorSettings(),
              gpu_measured: bool, cpu_total_s: float | None = None) -> dict[str, float]:
    """Per-run figures from a time series (columns as SERIES_COLUMNS). Pure.

    - auc_gpu_mb_s: trapezoid integral of max(0, gpu_mb - tolerance); auc_gpu_mb_s_rect: the
      organisers' `sum(max(0, gpu_mb - tolerance)) * 0.1`. NaN when the GPU was not measured.
    - cpu_core_s: CPU time used (core-seconds; the counter's own total when given);
      auc_cpu_pct_s: the same on FLARE's host scale (100 % = every core busy for 1 s);
      auc_cpu_pct_s_rect: `sum(cpu_pct) * 0.1`.
    - peak_gpu_mb, peak_rss_mb, sample_rate_hz.
    """
    t = series["t_s"].to_numpy(dtype=float)
    figures: dict[str, float] = {}
    if gpu_measured and len(series):
        gpu = series["gpu_mb"].to_numpy(dtype=float)
        over = np.maximum(0.0, gpu - settings.gpu_tolerance_mb)
        figures.update(auc_gpu_mb_s=integrate(t, over), auc_gpu_mb_s_rect=float(over.sum() * settings.rectangle_s),
                       peak_gpu_mb=float(gpu.max()), gpu_measured=1.0)
    else:
        figures.update(auc_gpu_mb_s=math.nan, auc_gpu_mb_s_rect=math.nan, peak_gpu_mb=math.nan, gpu_measured=0.0)
    cores = series["cpu_cores"].to_numpy(dtype=float)
    core_s = cpu_total_s if cpu_total_s is not None else integrate(t, cores)
    figures["cpu_core_s"] = float(core_s)
    figures["auc_cpu_pct_s"] = float(core_s / host_cpus * 100.0)
    figures["auc_cpu_pct_s_rect"] = float(series["cpu_pct"].sum() * settings.rectangle_s)
    figures["peak_rss_mb"] = float(series["rss_mb"].max()) if len(series) else math.nan
    return figures


class RunMonitor:
    """Samples one run. `probe_factory(pid)` builds the CPU/RAM probe (cgroup or process tree);
    `gpu_factory(pids)` the GPU probe or None (both injectable for tests); `clock` and `wait` as
    the `Sampler`'s (the real monotonic clock unless a test injects its own)."""

    def __init__(self, *, settings: MonitorSettings = MonitorSettings(), host_cpus: int | None = None,
                 probe_factory: Callable[[int], Any], gpu_factory: Callable[[Callable[[], set[int]]], NvmlGpuProbe | None],
                 output_dir: Path | None = None, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Event, float], bool] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.wait = wait
        self.host_cpus = host_cpus or os.cpu_count() or 1
        self.probe_factory = probe_factory
        self.gpu_factory = gpu_factory
        self.output_dir = output_dir
        self.sampler: Sampler | None = None
        self.gpu: NvmlGpuProbe | None = None
        self.t_start = math.nan
        self.t_first_output = math.nan
        self.attach_delay_s = math.nan
        self.note = ""

    @classmethod
    def for_container(cls, *, gpu_ids: tuple[str, ...] = (), nvml: Any = None, **kw: Any) -> RunMonitor:
        return cls(probe_factory=CgroupProbe, gpu_factory=_gpu_factory(gpu_ids, nvml), **kw)

    @classmethod
    def for_process(cls, *, gpu_ids: tuple[str, ...] = (), nvml: Any = None, **kw: Any) -> RunMonitor:
        return cls(probe_factory=ProcessTreeProbe, gpu_factory=_gpu_factory(gpu_ids, nvml), **kw)

    def attach(self, pid: int, *, started_at: float | None = None) -> None:
        """Start sampling the run whose main process is `pid` (started at monotonic `started_at`)."""
        self.t_start = started_at if started_at is not None else self.clock()
        try:
            probe = self.probe_factory(pid)
        except (ProcessLookupError, FileNotFoundError):  # it exited before its cgroup was read: nothing to sample
            return
        self.gpu = self.gpu_factory(probe.pids)
        gpu = self.gpu

        def read() -> dict[str, float]:
            reading = probe.read()
            if gpu is not None:
                reading.update(gpu.read())
            if self.output_dir is not None and math.isnan(self.t_first_output) and _has_output(self.output_dir):
                self.t_first_output = self.clock()
            return reading

        self.sampler = Sampler(read, rate_hz=self.settings.rate_hz, clock=self.clock, wait=self.wait)
        self.attach_delay_s = self.clock() - self.t_start
        self.sampler.start()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop(final_sample=True)
        if self.gpu is not None:
            self.gpu.close()

    def series(self) -> pd.DataFrame:
        """t_s (since the run started), gpu_mb, gpu_card_mb, cpu_cores, cpu_pct, rss_mb."""
        if self.sampler is None or not self.sampler.times:
            return pd.DataFrame(columns=SERIES_COLUMNS, dtype=float)
        t = np.asarray(self.sampler.times) - self.t_start
        frame = pd.DataFrame(self.sampler.readings)
        cpu_s = frame["cpu_s"].to_numpy(dtype=float) if "cpu_s" in frame else np.zeros(len(t))
        # Cores in use over each interval, from the cumulative counter; the first sample covers the
        # time since the run started (the counter starts at 0 with the fresh cgroup/process).
        previous_t = np.concatenate(([0.0], t[:-1]))
        previous_cpu = np.concatenate(([0.0], cpu_s[:-1]))
        dt = np.maximum(t - previous_t, 1e-9)
        cores = np.clip((cpu_s - previous_cpu) / dt, 0.0, None)
        out = pd.DataFrame({
            "t_s": t,
            "gpu_mb": frame["gpu_mb"] if "gpu_mb" in frame else np.nan,
            "gpu_card_mb": frame["gpu_card_mb"] if "gpu_card_mb" in frame else np.nan,
            "cpu_cores": cores,
            "cpu_pct": cores / self.host_cpus * 100.0,
            "rss_mb": frame["rss_mb"] if "rss_mb" in frame else np.nan,
        })
        return out[SERIES_COLUMNS]

    def gpu_source(self) -> str:
        if self.gpu is None:
            return "not measured (no GPU or no NVML)"
        if self.gpu.per_process_available:
            return "per-process (NVML compute processes matched to the run's PIDs)"
        return "card minus idle baseline (NVML hides per-process memory here)"

    def figures(self) -> dict[str, float]:
        series = self.series()
        gpu_measured = self.gpu is not None
        if gpu_measured and self.gpu is not None and not self.gpu.per_process_available:
            series = series.assign(gpu_mb=series["gpu_card_mb"])
        cpu_total = None
        if self.sampler is not None and self.sampler.readings and "cpu_s" in self.sampler.readings[-1]:
            cpu_total = float(self.sampler.readings[-1]["cpu_s"])
        figures = summarize(series, host_cpus=self.host_cpus, settings=self.settings, gpu_measured=gpu_measured,
                            cpu_total_s=cpu_total)
        stats: SamplerStats | None = self.sampler.stats() if self.sampler is not None else None
        if stats is not None:
            figures.update(sample_rate_hz=stats.rate_hz, jitter_p99_ms=stats.jitter_p99_ms)
        figures["startup_s"] = self.attach_delay_s
        if not math.isnan(self.t_first_output):
            figures["first_output_s"] = self.t_first_output - self.t_start
        return figures


def _gpu_factory(gpu_ids: tuple[str, ...], nvml: Any) -> Callable[[Callable[[], set[int]]], NvmlGpuProbe | None]:
    devices = tuple(gpu_ids)  # indices or UUIDs, resolved by NVML (harness.monitor.probes.device_handle)
    return lambda pids: gpu_probe_or_none(pids, device_indices=devices, nvml=nvml)


def _has_output(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except OSError:
        return False
