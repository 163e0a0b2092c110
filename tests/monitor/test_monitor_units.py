"""The sampler's schedule and the AUC figures, against analytic curves (no container, fake NVML)."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.monitor import MonitorSettings, RunMonitor, integrate, summarize
from harness.monitor.sampler import Sampler

MB = 1024 * 1024


class VirtualClock:
    """Virtual seconds for the sampler: `wait` moves time on instead of sleeping, and ends the
    sampler's loop once `end_s` after the start is reached (`ended` is then set); `advance` is a
    read that takes time. Minutes of schedule run in milliseconds, with no wall-clock thresholds."""

    def __init__(self, end_s: float, start_s: float = 1000.0) -> None:
        self.t = start_s
        self.end = start_s + end_s
        self.ended = threading.Event()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        if stop.is_set():
            return True
        if self.t + timeout_s >= self.end - 1e-9:
            self.t = max(self.t, self.end)
            self.ended.set()
            return True
        self.t += timeout_s
        return False

    def run_out(self) -> None:
        assert self.ended.wait(30), "the sampler never reached the virtual end"


def test_sampler_keeps_its_schedule_and_reports_rate_and_jitter() -> None:
    clock = VirtualClock(1.5)
    latency = iter(np.random.default_rng(7).uniform(0.0, 0.03, 1000))

    def read() -> dict[str, float]:
        clock.advance(float(next(latency)))  # each read takes 0-30 ms of the 50 ms period
        return {"x": 1.0}

    sampler = Sampler(read, rate_hz=20.0, clock=clock, wait=clock.wait)
    sampler.start()
    clock.run_out()
    sampler.stop()
    stats = sampler.stats()
    times = np.asarray(sampler.times)
    assert stats.samples == 31 and stats.missed_ticks == 0  # 0 ... 1.45 s on schedule, then the final one
    assert stats.rate_hz == pytest.approx(20.0, rel=1e-9)
    assert stats.jitter_p99_ms < 1e-6
    # No drift: sample k sits on t0 + k / rate, not on an accumulating sum of the reads' latencies.
    scheduled = times[:-1]
    offsets = (scheduled - scheduled[0]) - np.arange(scheduled.size) / 20.0
    assert np.abs(offsets).max() < 1e-9


def test_sampler_skips_missed_ticks_instead_of_bursting() -> None:
    clock = VirtualClock(0.8)
    calls = []

    def slow_read() -> dict[str, float]:
        calls.append(clock())
        clock.advance(0.26 if len(calls) == 2 else 0.0)  # the second read (at 0.05 s) ends at 0.31 s
        return {}

    sampler = Sampler(slow_read, rate_hz=20.0, clock=clock, wait=clock.wait)
    sampler.start()
    clock.run_out()
    sampler.stop(final_sample=False)
    gaps = np.diff(calls)
    assert sampler.missed == 4  # the ticks of 0.10, 0.15, 0.20, 0.25 s
    np.testing.assert_allclose(gaps[:3], [0.05, 0.26, 0.04], atol=1e-9)  # the late tick of 0.30 s, once
    assert gaps[2:].min() > 0.02  # no catch-up burst after the slow read


def test_the_real_clock_samples_on_its_own_thread() -> None:
    """The defaults (monotonic clock, Event.wait) for 0.3 s at 50 Hz: samples, stopped on request."""
    sampler = Sampler(lambda: {"x": 1.0}, rate_hz=50.0)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert 3 <= len(sampler.times) <= 17
    assert np.all(np.diff(sampler.times) > 0)


def test_trapezoid_is_exact_on_piecewise_linear_data() -> None:
    t = np.array([0.0, 0.1, 0.25, 0.7, 1.0])
    assert integrate(t, 3 * t + 1) == pytest.approx(1.5 + 1.0)
    assert integrate(np.array([0.0]), np.array([5.0])) == 0.0


def test_summarize_uses_real_timestamps_and_the_tolerance() -> None:
    # Irregular samples of a constant 3072 MB: 1024 MB over the tolerance for exactly 2 s.
    t = np.array([0.0, 0.05, 0.4, 0.41, 1.3, 2.0])
    series = pd.DataFrame({"t_s": t, "gpu_mb": 3072.0, "gpu_card_mb": 3072.0, "cpu_cores": 1.0, "cpu_pct": 50.0, "rss_mb": 10.0})
    figures = summarize(series, host_cpus=2, gpu_measured=True)
    assert figures["auc_gpu_mb_s"] == pytest.approx(2 * 1024)
    assert figures["auc_gpu_mb_s_rect"] == pytest.approx(6 * 1024 * 0.1)  # the organisers' sum * 0.1
    assert figures["cpu_core_s"] == pytest.approx(2.0) and figures["auc_cpu_pct_s"] == pytest.approx(100.0)
    assert figures["peak_gpu_mb"] == 3072.0
    below = summarize(series.assign(gpu_mb=2000.0), host_cpus=2, gpu_measured=True)
    assert below["auc_gpu_mb_s"] == 0.0
    unmeasured = summarize(series, host_cpus=2, gpu_measured=False)
    assert math.isnan(unmeasured["auc_gpu_mb_s"]) and unmeasured["gpu_measured"] == 0.0


class FakeNvml:
    """NVML stand-in: our process follows `own(t)` MB, another process on the card `other(t)` MB."""

    def __init__(self, own, other, clock: VirtualClock, *, per_process: bool = True) -> None:
        self.clock, self.t0 = clock, clock()
        self.own, self.other, self.per_process = own, other, per_process

    def _t(self) -> float:
        return self.clock() - self.t0

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        t = self._t()
        return SimpleNamespace(used=int((300 + self.own(t) + self.other(t)) * MB))

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        t = self._t()
        own = self.own(t) * MB if self.per_process else None
        return [SimpleNamespace(pid=1234, usedGpuMemory=own), SimpleNamespace(pid=999, usedGpuMemory=self.other(t) * MB)]


class FakeCpu:
    """Half a core busy since the probe was made, on `clock` (the real one unless given)."""

    def __init__(self, pid: int, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.clock, self.t0 = clock, clock()

    def pids(self) -> set[int]:
        return {1234}

    def read(self) -> dict[str, float]:
        return {"cpu_s": 0.5 * (self.clock() - self.t0), "rss_mb": 100.0}


def own_curve(t: float) -> float:
    """0 until 0.5 s, up to 6144 MB at 1.5 s, held until 3 s, down to 0 at 3.5 s."""
    return float(np.interp(t, [0.0, 0.5, 1.5, 3.0, 3.5], [0.0, 0.0, 6144.0, 6144.0, 0.0]))


# Area of max(0, own - 2048): ramp triangle (2/3 s x 4096) / 2 + 1.5 s x 4096 + (1/3 s x 4096) / 2.
ANALYTIC_AUC = 0.5 * (2 / 3) * 4096 + 1.5 * 4096 + 0.5 * (1 / 3) * 4096


def _monitor(nvml: FakeNvml) -> RunMonitor:
    from harness.monitor.probes import NvmlGpuProbe

    return RunMonitor(probe_factory=lambda pid: FakeCpu(pid, nvml.clock),
                      gpu_factory=lambda pids: NvmlGpuProbe(pids, device_indices=(0,), nvml=nvml), host_cpus=4,
                      clock=nvml.clock, wait=nvml.clock.wait)


def test_fake_nvml_auc_matches_the_analytic_integral_and_ignores_other_processes() -> None:
    nvml = FakeNvml(own_curve, lambda t: 4000.0 if t < 2.0 else 5000.0, VirtualClock(3.8))  # a neighbour that grows
    monitor = _monitor(nvml)
    monitor.attach(1234, started_at=nvml.t0)
    nvml.clock.run_out()
    monitor.stop()
    figures, series = monitor.figures(), monitor.series()
    assert figures["auc_gpu_mb_s"] == pytest.approx(ANALYTIC_AUC, rel=0.01)
    assert figures["peak_gpu_mb"] == pytest.approx(6144.0, rel=0.01)
    assert figures["sample_rate_hz"] == pytest.approx(10.0, rel=0.05)
    # The whole-card reading minus the idle baseline is kept beside it, and it does see the neighbour.
    late = series[series.t_s > 3.6]
    assert late.gpu_mb.max() < 1.0 and late.gpu_card_mb.min() == pytest.approx(1000.0, abs=1.0)
    assert monitor.gpu_source().startswith("per-process")
    assert figures["cpu_core_s"] == pytest.approx(0.5 * series.t_s.iloc[-1], rel=0.02)
    assert figures["auc_cpu_pct_s"] == pytest.approx(figures["cpu_core_s"] / 4 * 100)


def test_hidden_per_process_memory_falls_back_to_the_card_reading_and_says_so() -> None:
    nvml = FakeNvml(own_curve, lambda t: 4000.0, VirtualClock(3.8), per_process=False)
    monitor = _monitor(nvml)
    monitor.attach(1234, started_at=nvml.t0)
    nvml.clock.run_out()
    monitor.stop()
    assert monitor.gpu_source().startswith("card minus idle baseline")
    assert monitor.figures()["auc_gpu_mb_s"] == pytest.approx(ANALYTIC_AUC, rel=0.01)


def test_no_gpu_is_recorded_as_not_measured_never_as_zero() -> None:
    monitor = RunMonitor(probe_factory=FakeCpu, gpu_factory=lambda pids: None, settings=MonitorSettings(rate_hz=20), host_cpus=2)
    monitor.attach(1, started_at=time.monotonic())
    time.sleep(0.3)
    monitor.stop()
    figures = monitor.figures()
    assert math.isnan(figures["auc_gpu_mb_s"]) and math.isnan(figures["peak_gpu_mb"]) and figures["gpu_measured"] == 0.0
    assert monitor.gpu_source().startswith("not measured")


class UuidNvml:
    """NVML stand-in with two cards, 0 and 1, known by UUID too (as Slurm, Kubernetes and MIG name them)."""

    UUIDS = ("GPU-11111111-aaaa-bbbb-cccc-000000000000", "GPU-8f6a2c1e-dddd-eeee-ffff-111111111111")

    def nvmlInit(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"card{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid not in self.UUIDS:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return f"card{self.UUIDS.index(uuid)}"

    def nvmlDeviceGetUUID(self, handle: str) -> bytes:
        return self.UUIDS[int(handle[-1])].encode()


@pytest.mark.parametrize("visible, card", [("1", "card1"), ("GPU-8f6a2c1e-dddd-eeee-ffff-111111111111", "card1"),
                                           ("GPU-8f6a", "card1"), (" 0", "card0")])
def test_a_gpu_named_by_index_uuid_or_uuid_prefix_is_found(visible: str, card: str) -> None:
    from harness.monitor.probes import device_handle

    assert device_handle(UuidNvml(), visible) == card


def test_an_ambiguous_or_unknown_gpu_name_is_a_clear_error_and_the_run_is_not_measured() -> None:
    from harness.monitor import _gpu_factory
    from harness.monitor.probes import device_handle

    with pytest.raises(LookupError, match=r"CUDA_VISIBLE_DEVICES names 'GPU-', which matches 2 GPUs"):
        device_handle(UuidNvml(), "GPU-")
    assert _gpu_factory(("GPU-ffff",), UuidNvml())(lambda: set()) is None  # not measured, never a crash


def test_a_run_gone_before_its_cgroup_is_read_is_not_sampled_and_not_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A container that exits before the monitor attaches leaves no /proc/<pid>/cgroup: seen under
    load as a runner_error (FileNotFoundError); it is a run with nothing to sample."""
    from harness.monitor import RunMonitor
    from harness.monitor.probes import CgroupProbe

    monitor = RunMonitor(probe_factory=lambda pid: CgroupProbe(pid, proc_root=tmp_path), gpu_factory=lambda pids: None)
    monitor.attach(424242)
    monitor.stop()
    assert monitor.sampler is None and len(monitor.series()) == 0
