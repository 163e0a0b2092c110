"""The GPU proof: the harness's GPU paths, checked on a real GPU in one command (under 5 minutes).

    python benchmarks/gpu_proof.py --out DIR

On a host with a GPU (no Docker needed: everything runs through the local runner, exactly as
`harness run --runner local` runs a case):

1. allocation: an algorithm (`benchmarks/gpu_proof_alloc.py`, PyTorch or CuPy) holds a known plan
   of GPU memory (CUDA context only 1 s, 1 GiB 2 s, 3 GiB 4 s, released 1 s); the monitor's
   per-process NVML samples, its peak and AUC_GPU (trapezoid of max(0, memory - 2048 MB)) are
   compared with the plan as the algorithm logged it running (goal: within 5 %; AUC_GPU with the
   plan's trapezoid at the monitor's sample times, the plan's exact integral beside it), and its
   10 Hz schedule with its rate, drift and p99 jitter. Run twice: with the GPU as the harness
   finds it, and named in CUDA_VISIBLE_DEVICES by a UUID prefix (as Slurm, Kubernetes and MIG name
   it).
2. device names: the index, the UUID and a UUID prefix of the GPU resolve to that GPU in the real
   NVML (`harness.monitor.probes.device_handle`).
3. `gpu = "required"` where no GPU is visible (CUDA_VISIBLE_DEVICES=-1): `no_gpu` with the
   README's message, before anything starts.
4. cnn on CUDA: the cnn example on two phantom cases, once on the CPU (CUDA_VISIBLE_DEVICES=-1) and
   once with the GPU visible: the device each used (from its log), time and peak GPU memory, and its
   scores equal to the CPU run's to the profile's rounding.

It prints one table and writes it, with the plan, the host and every run's samples, as
`DIR/gpu_proof.json`. Without a GPU it makes the checks that need none (imports, the plan, the
AUC_GPU expected from it, the checks themselves failing on a monitor 10 % off, item 3) and prints
one line saying so.

Exit status: 0 every check passed; 3 a check failed, or could not be made on this GPU host
(BLOCKED: e.g. onnxruntime without its CUDA provider); 75 skipped: no GPU visible here (the checks
that need none passed; 75 is sysexits' EX_TEMPFAIL: run it again on a GPU host); 1 an internal
error; 2 a bad command line.

The checks are pure functions of the measured figures and samples and of the plan
(`check_memory`, `sampling_stats`, `compare_scores`, `resolution_checks`, `refusal_check`,
`device_check`); tests/test_gpu_proof.py drives them with a fake NVML.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 3, 75
RATE_HZ = 10.0  # the monitor's rate (harness.monitor.MonitorSettings)
TOLERANCE_MB = 2048.0  # FLARE22's GPU memory tolerance: AUC_GPU counts only what is above it
GOAL_REL = 0.05  # peak, AUC_GPU and each phase's level within 5 % of the plan
GOAL_RATE_REL = 0.05  # achieved sampling rate within 5 % of 10 Hz
GOAL_JITTER_P99_MS = 5.0  # |interval - 100 ms|, 99th percentile (issue 5's goal, as bench_monitor.py)
GOAL_DRIFT_MS = 10.0  # largest distance of a sample from its tick on the fixed schedule
EDGE_MARGIN_S = 0.25  # a phase's level is read from its samples at least this far from its edges
REFUSAL = 'gpu = "required" but this host has no GPU; run it on a GPU host'  # README, "The GPU proof"
ALLOC_SOURCE = Path(__file__).resolve().parent / "gpu_proof_alloc.py"
TIMELINE_TAG = "gpu-proof-timeline "


class Verdict(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    BLOCKED = "BLOCKED"  # could not be checked on this host (what is missing is in the detail)
    INFO = "info"  # a figure recorded beside the checks, judged by nothing


@dataclass(frozen=True)
class Check:
    """One row of the table."""

    section: str
    name: str
    verdict: Verdict
    measured: float | str | None = None
    expected: float | str | None = None
    detail: str = ""


# ---------------------------------------------------------------- the plan (pure)


@dataclass(frozen=True)
class Phase:
    name: str
    alloc_mib: int  # what the algorithm holds above its CUDA context
    hold_s: float


@dataclass(frozen=True)
class Step:
    """The expected GPU memory of the run, `level_mb` (MiB, as NVML's bytes / 2**20), from start_s
    to end_s (seconds since the run started, the monitor's time base)."""

    name: str
    start_s: float
    end_s: float
    level_mb: float


PLAN = (Phase("context only", 0, 1.0), Phase("1 GiB", 1024, 2.0), Phase("3 GiB", 3072, 4.0), Phase("released", 0, 1.0))


def plan_problems(phases: Sequence[Phase], *, tolerance_mb: float = TOLERANCE_MB, rate_hz: float = RATE_HZ) -> list[str]:
    """What makes a plan unfit to prove anything (empty: fit). Each phase must last long enough for
    three samples away from its edges (its level is read from them); it must hold some phase above the
    tolerance (else AUC_GPU is 0 whatever the monitor does) for at least 20 sampling periods (the
    trapezoid's error at each edge is at most half a period times the step: 2.5 % of that phase),
    and only grow or drop to nothing (the algorithm frees everything at once)."""
    problems: list[str] = []
    if not phases:
        return ["the plan has no phase"]
    held = 0
    shortest_s = 2 * EDGE_MARGIN_S + 3 / rate_hz  # three samples away from its edges
    for phase in phases:
        if phase.hold_s < shortest_s or phase.alloc_mib < 0:
            problems.append(f"phase {phase.name!r}: hold_s {phase.hold_s} and alloc_mib {phase.alloc_mib}; hold it at least "
                            f"{shortest_s:g} s (three samples away from its edges) and allocate >= 0 MiB")
        if 0 < phase.alloc_mib < held:
            problems.append(f"phase {phase.name!r}: shrinks from {held} to {phase.alloc_mib} MiB; grow, or drop to 0")
        held = phase.alloc_mib
    above = [p for p in phases if p.alloc_mib > tolerance_mb]
    if not above:
        problems.append(f"no phase holds more than the tolerance of {tolerance_mb:g} MB: AUC_GPU would be 0")
    elif max(p.hold_s for p in above) * rate_hz < 20:
        problems.append(f"the phases above the tolerance last under 20 sampling periods at {rate_hz:g} Hz")
    return problems


def nominal_steps(phases: Sequence[Phase], *, context_mb: float = 0.0) -> tuple[Step, ...]:
    """The plan back to back from t = 0, over a CUDA context of `context_mb`."""
    steps, t = [], 0.0
    for phase in phases:
        steps.append(Step(phase.name, t, t + phase.hold_s, context_mb + phase.alloc_mib))
        t += phase.hold_s
    return tuple(steps)


def realised_steps(timeline: Mapping[str, Any], *, t0: float) -> tuple[Step, ...]:
    """The plan as the algorithm ran it: its logged phases (monotonic start and end) less `t0`
    (the monitor's start, same clock), over the context it measured."""
    context = float(timeline["context_mib"])
    return tuple(Step(str(p["name"]), float(p["start_s"]) - t0, float(p["end_s"]) - t0, context + float(p["alloc_mib"]))
                 for p in timeline["phases"])


def level_at(steps: Sequence[Step], t_s: np.ndarray) -> np.ndarray:
    """The plan's memory at each time (the earlier step at a shared edge; 0 outside the plan)."""
    t = np.asarray(t_s, dtype=float)
    level = np.zeros(t.shape)
    for step in reversed(steps):
        level[(t >= step.start_s) & (t <= step.end_s)] = step.level_mb
    return level


def expected_auc_mb_s(steps: Sequence[Step], *, tolerance_mb: float = TOLERANCE_MB) -> float:
    """AUC_GPU of the plan: the exact integral of max(0, level - tolerance) over its steps (MB*s)."""
    return float(sum(max(0.0, s.level_mb - tolerance_mb) * (s.end_s - s.start_s) for s in steps))


def sampled_auc_mb_s(steps: Sequence[Step], t_s: np.ndarray, measured_mb: np.ndarray, *,
                     tolerance_mb: float = TOLERANCE_MB) -> float:
    """AUC_GPU that a right monitor reports from samples stamped at `t_s`: the trapezoid, over those
    times, of max(0, plan - tolerance), each sample expecting the plan's level when it was read. The
    sampler stamps a sample, then reads it, then stamps the next: the reading is the memory at some
    moment between its stamp and the next one. Where the plan holds one level over that window the
    sample expects that level; where the window holds an edge (a step's end, a gap between steps while
    the allocator changes its memory, the plan's start or end) it expects its own reading held to the
    levels the window holds (any of them is right). The plan's exact integral differs from this by
    where the edges fall between samples: up to half a sampling interval times each edge's height,
    more where a loaded host delays a sample, which the rate, jitter and drift checks judge."""
    t = np.asarray(t_s, dtype=float)
    measured = np.asarray(measured_mb, dtype=float)
    expected = np.empty(t.shape)
    for i, start in enumerate(t):
        end = t[i + 1] if i + 1 < t.size else start
        levels = []
        for k, step in enumerate(steps):
            held_from = steps[k - 1].end_s if k > 0 else step.start_s  # a gap may already hold the next level
            held_to = steps[k + 1].start_s if k + 1 < len(steps) else step.end_s  # ... or still this one
            if start <= held_to and end >= held_from:
                levels.append(step.level_mb)
        if not steps or start < steps[0].start_s or end > steps[-1].end_s:
            levels.append(0.0)  # outside the plan
        expected[i] = levels[0] if len(levels) == 1 else np.clip(measured[i], min(levels), max(levels))
    over = np.maximum(0.0, expected - tolerance_mb)
    return float(np.sum((over[1:] + over[:-1]) * np.diff(t)) / 2.0) if t.size > 1 else 0.0


def context_seconds(phases: Sequence[Phase], *, tolerance_mb: float = TOLERANCE_MB) -> float:
    """How long the plan holds more than the tolerance: each MiB of CUDA context adds that many MB*s."""
    return float(sum(p.hold_s for p in phases if p.alloc_mib > tolerance_mb))


def expected_peak_mb(steps: Sequence[Step]) -> float:
    return float(max(s.level_mb for s in steps))


# ---------------------------------------------------------------- the checks (pure)


def relative_error(measured: float, expected: float) -> float:
    """|measured - expected| / expected (NaN: infinitely wrong)."""
    if not math.isfinite(measured) or not math.isfinite(expected) or expected == 0:
        return math.inf if measured != expected else 0.0
    return abs(measured - expected) / abs(expected)


def _within(section: str, name: str, measured: float, expected: float, goal: float, unit: str) -> Check:
    error = relative_error(measured, expected)
    verdict = Verdict.PASS if error <= goal else Verdict.FAIL
    shown = "not measured" if not math.isfinite(measured) else f"{100 * error:.1f} % off"
    return Check(section, name, verdict, _num(measured), _num(expected), f"{shown} (goal {100 * goal:g} %); {unit}")


def sampling_stats(t_s: np.ndarray, *, rate_hz: float = RATE_HZ) -> dict[str, float]:
    """Rate, p99 jitter, drift and missed ticks of a sample series on the schedule t_0 + k / rate_hz.

    The last sample is the monitor's off-schedule final reading (at the run's end) and is left out.
    A sample is never early on that schedule (the sampler waits for its tick), so each is given the
    latest tick at or before it (10 % of a period of slack for the first sample's own delay; a tick
    after the previous sample's): a late read skips ticks, it never bursts. jitter = |interval -
    period|; drift = the largest distance of a sample from its tick (a loop that sleeps a period
    after each read falls a read time further behind every sample, up to a whole period; the fixed
    schedule stays within its wake-up delay); missed ticks = ticks without a sample."""
    t = np.asarray(t_s, dtype=float)
    scheduled = t[:-1] if t.size > 2 else t
    if scheduled.size < 2:
        return {"samples": float(t.size), "rate_hz": math.nan, "jitter_p99_ms": math.nan, "drift_ms": math.nan,
                "missed_ticks": math.nan}
    period = 1.0 / rate_hz
    ticks = np.floor((scheduled - scheduled[0]) / period + 0.1)
    for i in range(1, ticks.size):
        ticks[i] = max(ticks[i], ticks[i - 1] + 1)
    offsets = (scheduled - scheduled[0]) - ticks * period
    intervals = np.diff(scheduled)
    span = scheduled[-1] - scheduled[0]
    return {"samples": float(t.size), "rate_hz": float((scheduled.size - 1) / span) if span > 0 else math.nan,
            "jitter_p99_ms": float(np.percentile(np.abs(intervals - period) * 1e3, 99)),
            "drift_ms": float(np.abs(offsets).max() * 1e3), "missed_ticks": float(ticks[-1] - (scheduled.size - 1))}


def check_memory(figures: Mapping[str, float], series: pd.DataFrame, steps: Sequence[Step], *, section: str,
                 tolerance_mb: float = TOLERANCE_MB, rate_hz: float = RATE_HZ, goal: float = GOAL_REL) -> list[Check]:
    """The monitor's figures (`figures`: as `harness.monitor.RunMonitor.figures()` gives them) and
    samples (`series`: t_s, gpu_mb) against the plan's steps: peak, AUC_GPU (trapezoid), each
    phase's level (median of its samples away from its edges), all within `goal`; the organisers'
    rectangle sum beside them (info); the sampling rate, p99 jitter and drift against their goals."""
    t = series["t_s"].to_numpy(dtype=float)
    gpu = series["gpu_mb"].to_numpy(dtype=float)
    auc = float(figures.get("auc_gpu_mb_s", math.nan))
    expected = expected_auc_mb_s(steps, tolerance_mb=tolerance_mb)
    sampled = sampled_auc_mb_s(steps, t, gpu, tolerance_mb=tolerance_mb)
    rows = [
        _within(section, "peak GPU memory (MiB)", float(figures.get("peak_gpu_mb", math.nan)), expected_peak_mb(steps),
                goal, "plan: CUDA context + the largest allocation"),
        _within(section, "AUC_GPU, trapezoid (MB*s)", auc, sampled, goal,
                f"above {tolerance_mb:g} MB; expected: the plan's trapezoid at the monitor's {t.size} sample times"),
        Check(section, "AUC_GPU vs the plan's exact integral (MB*s)", Verdict.INFO, _num(auc), _num(expected),
              f"{100 * relative_error(auc, expected):.1f} % off; the plan's exact integral (the sampled plan: "
              f"{100 * relative_error(sampled, expected):.1f} % off): where its edges fall between samples"),
    ]
    rect = float(figures.get("auc_gpu_mb_s_rect", math.nan))
    rows.append(Check(section, "AUC_GPU, organisers' sum * 0.1 (MB*s)", Verdict.INFO, _num(rect), _num(expected),
                      f"{100 * relative_error(rect, expected):.1f} % off; depends on the achieved rate"))
    for step in steps:
        inside = (t >= step.start_s + EDGE_MARGIN_S) & (t <= step.end_s - EDGE_MARGIN_S)
        name = f"level in phase '{step.name}' (MiB)"
        if inside.sum() < 3:
            rows.append(Check(section, name, Verdict.FAIL, None, _num(step.level_mb),
                              f"{int(inside.sum())} samples inside the phase; expected at least 3"))
            continue
        rows.append(_within(section, name, float(np.median(gpu[inside])), step.level_mb, goal,
                            f"median of {int(inside.sum())} samples"))
    stats = sampling_stats(t, rate_hz=rate_hz)
    rate = stats["rate_hz"]
    rows.append(Check(section, "sampling rate (Hz)", Verdict.PASS if relative_error(rate, rate_hz) <= GOAL_RATE_REL else Verdict.FAIL,
                      _num(rate), rate_hz, f"goal within {100 * GOAL_RATE_REL:g} %; {int(stats['samples'])} samples, "
                      f"{_fmt(stats['missed_ticks'])} missed ticks; the monitor says {_fmt(figures.get('sample_rate_hz'))}"))
    jitter = stats["jitter_p99_ms"]
    rows.append(Check(section, "p99 jitter (ms)", Verdict.PASS if jitter <= GOAL_JITTER_P99_MS else Verdict.FAIL, _num(jitter),
                      f"<= {GOAL_JITTER_P99_MS:g}", f"|interval - {1e3 / rate_hz:g} ms|; the monitor says "
                      f"{_fmt(figures.get('jitter_p99_ms'))}"))
    drift = stats["drift_ms"]
    rows.append(Check(section, "drift (ms)", Verdict.PASS if drift <= GOAL_DRIFT_MS else Verdict.FAIL, _num(drift),
                      f"<= {GOAL_DRIFT_MS:g}", f"largest distance of a sample from its tick on t0 + k / {rate_hz:g} Hz"))
    return rows


def compare_scores(reference: Mapping[tuple[str, str, str], float], other: Mapping[tuple[str, str, str], float], *,
                   decimals: int | None, section: str = "cnn", name: str = "scores CUDA vs CPU") -> Check:
    """Every (case, organ, metric) of `other` equal to `reference` once both are rounded to the
    profile's `decimals` (None: exactly); NaN equals NaN (an organ neither scored)."""
    def rounded(value: float) -> float:
        return value if decimals is None or not math.isfinite(value) else round(value, decimals)

    if set(reference) != set(other):
        missing = sorted(set(reference) ^ set(other))[:3]
        return Check(section, name, Verdict.FAIL, len(other), len(reference), f"different scores: {missing}")
    differing = []
    for key in sorted(reference):
        a, b = rounded(float(reference[key])), rounded(float(other[key]))
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            differing.append(f"{'/'.join(key)} {a} vs {b}")
    rule = f"rounded to {decimals} decimals" if decimals is not None else "exactly"
    if differing:
        return Check(section, name, Verdict.FAIL, len(reference) - len(differing), len(reference),
                     f"{len(differing)} differ ({rule}): {'; '.join(differing[:3])}")
    return Check(section, name, Verdict.PASS, len(reference), len(reference), f"every score equal, {rule}")


def resolution_checks(uuid: str, resolved: Mapping[str, str]) -> list[Check]:
    """Each name tried for the GPU (its index, UUID, a UUID prefix) -> the UUID of the device
    `device_handle` gave for it (or "error: ..."): each must be `uuid`."""
    return [Check("device names", f"CUDA_VISIBLE_DEVICES={name}", Verdict.PASS if got == uuid else Verdict.FAIL, got, uuid,
                  "harness.monitor.probes.device_handle on the real NVML") for name, got in resolved.items()]


def refusal_check(status: str, message: str, *, manifest: Path | str, started: bool) -> Check:
    """A `gpu = "required"` run where no GPU is visible: no_gpu, the README's message, nothing started."""
    expected = f"{manifest}: {REFUSAL}"
    ok = status == "no_gpu" and message == expected and not started
    detail = "nothing started" if not started else "the algorithm was started"
    return Check("gpu = required", "no GPU visible (CUDA_VISIBLE_DEVICES=-1)", Verdict.PASS if ok else Verdict.FAIL,
                 f"{status}: {message}", f"no_gpu: {expected}", detail)


def device_check(log_tail: str, *, cuda_provider: bool, case: str) -> Check:
    """The device the cnn logged (`device: cuda|cpu`): cuda where onnxruntime has its CUDA provider;
    BLOCKED where it has none (the run could not use the GPU here, whatever the harness does)."""
    used = next((line.split()[1] for line in log_tail.splitlines() if line.startswith("device: ")), "not logged")
    if used == "cuda":
        return Check("cnn", f"device used, {case}", Verdict.PASS, used, "cuda")
    if not cuda_provider:
        return Check("cnn", f"device used, {case}", Verdict.BLOCKED, used, "cuda",
                     "this onnxruntime has no CUDA execution provider: install onnxruntime-gpu to prove the CUDA path")
    note = next((line for line in log_tail.splitlines() if line.startswith("note: ")), "")
    return Check("cnn", f"device used, {case}", Verdict.FAIL, used, "cuda", note)


def exit_status(checks: Sequence[Check], *, gpu: bool) -> int:
    if any(c.verdict in (Verdict.FAIL, Verdict.BLOCKED) for c in checks):
        return EXIT_FAILED
    return EXIT_OK if gpu else EXIT_NO_GPU


# ---------------------------------------------------------------- running (impure)


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "-" if value is None or isinstance(value, float | int) else str(value)
    return f"{number:.4g}" if abs(number) < 1e4 else f"{number:.0f}"


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """os.environ with `values` set (None: removed), restored afterwards (the local runner passes
    CUDA_VISIBLE_DEVICES on to the algorithm; the harness reads it for the monitor)."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


IMPORTS = (  # (module, what needs it)
    ("harness.casework", "the local-runner path (stage, run, check, keep)"),
    ("harness.monitor", "the 10 Hz monitor"),
    ("harness.scoring", "scoring the cnn's outputs"),
    ("harness.data.synth", "the phantom cases"),
    ("pynvml", "NVML (nvidia-ml-py)"),
    ("nibabel", "NIfTI files"),
    ("pandas", "the monitor's series"),
    ("pyarrow", "the monitor's parquet series"),
    ("psutil", "the local run's process tree"),
    ("onnxruntime", "the cnn example"),
)


def import_checks(*, gpu: bool) -> list[Check]:
    rows = []
    for module, why in IMPORTS:
        try:
            importlib.import_module(module)
            rows.append(Check("imports", module, Verdict.PASS, "imported", detail=why))
        except Exception as exc:  # noqa: BLE001 - anything an import raises is the finding
            rows.append(Check("imports", module, Verdict.FAIL, f"{type(exc).__name__}: {exc}", detail=why))
    found = [name for name in ("torch", "cupy") if importlib.util.find_spec(name) is not None]
    if found:
        rows.append(Check("imports", "torch or cupy", Verdict.PASS, ", ".join(found), detail="the allocation algorithm's allocator"))
    else:
        rows.append(Check("imports", "torch or cupy", Verdict.FAIL if gpu else Verdict.INFO, "neither found",
                          detail="the allocation algorithm needs one (on the GPU host)"))
    return rows


def plan_checks() -> list[Check]:
    """The plan is fit, its AUC_GPU and peak, and the memory checks pass on samples of the plan and
    fail on the same samples 10 % high (the monitor's own `summarize` gives the figures)."""
    from harness.monitor import MonitorSettings, summarize

    rows = []
    settings = MonitorSettings()
    problems = plan_problems(PLAN, tolerance_mb=settings.gpu_tolerance_mb, rate_hz=settings.rate_hz)
    rows.append(Check("plan", "fit to prove AUC_GPU", Verdict.FAIL if problems else Verdict.PASS, len(problems), 0,
                      "; ".join(problems) or ", ".join(f"{p.name} {p.alloc_mib} MiB {p.hold_s:g} s" for p in PLAN)))
    same = settings.gpu_tolerance_mb == TOLERANCE_MB and settings.rate_hz == RATE_HZ
    rows.append(Check("plan", "monitor settings", Verdict.PASS if same else Verdict.FAIL,
                      f"{settings.rate_hz:g} Hz, {settings.gpu_tolerance_mb:g} MB", f"{RATE_HZ:g} Hz, {TOLERANCE_MB:g} MB"))
    steps = nominal_steps(PLAN)
    rows.append(Check("plan", "expected AUC_GPU (MB*s)", Verdict.INFO, None, expected_auc_mb_s(steps),
                      f"+ {context_seconds(PLAN):g} s x the CUDA context's MiB, as measured on the GPU"))
    rows.append(Check("plan", "expected peak (MiB)", Verdict.INFO, None, expected_peak_mb(steps), "+ the CUDA context"))
    context = 500.0  # a CUDA context's order of size; any value serves the self-test
    with_context = nominal_steps(PLAN, context_mb=context)
    t = np.arange(0.0, with_context[-1].end_s + 1e-9, 1.0 / RATE_HZ)
    verdicts = []
    for scale in (1.0, 1.1, 0.9):
        level = level_at(with_context, t) * scale
        series = pd.DataFrame({"t_s": t, "gpu_mb": level, "gpu_card_mb": level, "cpu_cores": 0.0, "cpu_pct": 0.0, "rss_mb": 0.0})
        figures = summarize(series, host_cpus=1, settings=settings, gpu_measured=True)
        memory = [c for c in check_memory(figures, series, with_context, section="self-test")
                  if "(MiB)" in c.name or c.name.startswith("AUC_GPU, trapezoid")]
        verdicts.append({c.verdict for c in memory})
    ok = verdicts[0] == {Verdict.PASS} and Verdict.FAIL in verdicts[1] and Verdict.FAIL in verdicts[2]
    rows.append(Check("plan", "checks pass on the plan, fail 10 % off", Verdict.PASS if ok else Verdict.FAIL,
                      " / ".join(",".join(sorted(v)) for v in verdicts), "PASS / FAIL / FAIL",
                      "10 Hz samples of the plan through harness.monitor.summarize, exact, x1.1, x0.9"))
    return rows


@dataclass
class Workspace:
    """A temporary repository root: two phantom cases and the allocation algorithm's folder."""

    root: Path
    cases: tuple[Any, ...]
    profile: Any

    @classmethod
    def make(cls, root: Path) -> Workspace:
        from harness.challenge import load_challenge
        from harness.data.dataset import discover
        from harness.data.synth import write_dataset

        write_dataset(root / "data", cases=2, seed=0, size="small")
        dataset, problems = discover(root / "data")
        if problems or len(dataset.cases) != 2:
            raise RuntimeError(f"{root / 'data'}: phantoms not found as written ({problems[:1]})")
        (root / "dockerfiles").mkdir()
        (root / "dockerfiles" / "gpu-alloc.Dockerfile").write_text("# the GPU proof's algorithm runs under the local runner only\n")
        return cls(root, dataset.cases, load_challenge().profile)

    def alloc_spec(self, phases: Sequence[Phase]) -> Any:
        from harness.challenge import load_challenge
        from harness.spec import load_manifest

        folder = self.root / "algorithms" / "gpu-alloc"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ALLOC_SOURCE, folder / "allocate.py")
        (folder / "plan.json").write_text(json.dumps({"phases": [asdict(p) for p in phases]}))
        (folder / "algorithm.toml").write_text(
            'name = "gpu-alloc"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/gpu-alloc.Dockerfile"\n'
            'profile = "flare22"\ngpu = "required"\n\n[resources]\ntime_limit_s = 120\n\n'
            '[local]\ncommand = ["{python}", "allocate.py", "{input}", "{output}"]\n')
        return load_challenge().admit(load_manifest(folder / "algorithm.toml", repo_root=self.root))


class Watched:
    """The local runner, keeping the monitor's start (monotonic): the algorithm's timeline is on the same clock."""

    name = "local"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.t_start = math.nan
        self.started = False

    def run(self, request: Any, monitor: Any = None) -> Any:
        outcome = self.inner.run(request, monitor)
        if monitor is not None and monitor.sampler is not None:
            self.t_start, self.started = monitor.t_start, True
        return outcome


def run_local(workspace: Workspace, spec: Any, case: Any, **env: str | None) -> tuple[Any, Watched]:
    """One case through `harness.casework.run_case` and the local runner, as `harness run --runner local`."""
    from harness.casework import RunTask, make_runner, run_case
    from harness.models import RunnerKind

    with environ(**env):
        runner = Watched(make_runner(RunnerKind.LOCAL))
        result = run_case(RunTask(spec, case, None, RunnerKind.LOCAL, workspace.profile), runner=runner, work_dir=workspace.root)
    return result, runner


def _series(result: Any) -> pd.DataFrame:
    from harness.layout import MONITOR_FILE

    return pd.read_parquet(io.BytesIO(result.files[MONITOR_FILE]))


def _log(result: Any) -> str:
    from harness.layout import LOG_FILE

    return result.files.get(LOG_FILE, b"").decode("utf-8", errors="replace") or result.outcome.log_tail


def refusal_rows(workspace: Workspace) -> list[Check]:
    spec = workspace.alloc_spec(PLAN)
    result, runner = run_local(workspace, spec, workspace.cases[0], CUDA_VISIBLE_DEVICES="-1")
    return [refusal_check(str(result.outcome.status), result.outcome.message, manifest=spec.manifest, started=runner.started)]


def alloc_rows(workspace: Workspace, section: str, record: dict[str, Any], **env: str | None) -> list[Check]:
    """The allocation algorithm under the monitor; its figures and samples against its realised plan."""
    spec = workspace.alloc_spec(PLAN)
    result, runner = run_local(workspace, spec, workspace.cases[0], **env)
    log = _log(result)
    record.update(status=str(result.outcome.status), message=result.outcome.message, env=env, log_tail=log[-4000:],
                  figures={k: _num(v) for k, v in result.measurements.items()}, details=_jsonable(result.details))
    status = str(result.outcome.status)
    if status != "ok":
        return [Check(section, "run", Verdict.FAIL, status, "ok", f"{result.outcome.message} | {log[-300:]}")]
    line = next((x for x in log.splitlines() if x.startswith(TIMELINE_TAG)), None)
    if line is None:
        return [Check(section, "run", Verdict.FAIL, "no timeline in the log", "ok", log[-300:])]
    timeline = json.loads(line[len(TIMELINE_TAG):])
    series = _series(result)
    record.update(timeline=timeline, series={c: [_num(v) for v in series[c]] for c in ("t_s", "gpu_mb", "gpu_card_mb")})
    source = str(result.details.get("gpu_memory_source", ""))
    rows = [Check(section, "run", Verdict.PASS, status, "ok", f"{timeline['allocator']}, GPU-{timeline['uuid'][:8]}"),
            Check(section, "GPU memory source", Verdict.INFO, source, "per-process", "harness.monitor.RunMonitor.gpu_source"),
            Check(section, "CUDA context (MiB)", Verdict.INFO, _num(timeline["context_mib"]), None,
                  "the card's used memory after the warm-up minus before CUDA started (the algorithm's NVML reading)")]
    if _num(timeline["context_mib"]) is None:
        return [*rows, Check(section, "plan", Verdict.BLOCKED, None, None, "the algorithm could not read the card from NVML")]
    steps = realised_steps(timeline, t0=runner.t_start)
    record["steps"] = [asdict(s) for s in steps]
    rows += check_memory(result.measurements, series, steps, section=section)
    card = series.assign(gpu_mb=series["gpu_card_mb"])
    card_rows = check_memory({"peak_gpu_mb": float(card["gpu_mb"].max())}, card, steps, section=section)
    rows.append(Check(section, "card minus idle baseline, peak (MiB)", Verdict.INFO, card_rows[0].measured, card_rows[0].expected,
                      f"the monitor's other reading, beside the per-process one: {card_rows[0].detail}"))
    return rows


def resolution_rows(nvml: Any) -> tuple[list[Check], str]:
    """Index, UUID and a UUID prefix of the first visible GPU, each resolved by the harness in the real NVML."""
    from harness.casework import visible_gpu_ids
    from harness.monitor.probes import device_handle

    nvml.nvmlInit()
    try:
        def uuid_of(handle: Any) -> str:
            raw = nvml.nvmlDeviceGetUUID(handle)
            return raw.decode() if isinstance(raw, bytes) else str(raw)

        uuid = uuid_of(device_handle(nvml, visible_gpu_ids()[0]))
        index = next(i for i in range(nvml.nvmlDeviceGetCount()) if uuid_of(nvml.nvmlDeviceGetHandleByIndex(i)) == uuid)
        resolved = {}
        for name in (str(index), uuid, uuid[:12]):
            try:
                resolved[name] = uuid_of(device_handle(nvml, name))
            except Exception as exc:  # noqa: BLE001 - recorded as the finding
                resolved[name] = f"error: {type(exc).__name__}: {exc}"
        return resolution_checks(uuid, resolved), uuid
    finally:
        nvml.nvmlShutdown()


def cnn_rows(workspace: Workspace, record: dict[str, Any]) -> list[Check]:
    """The cnn example on both phantoms, on the CPU and with the GPU visible; device, time, scores."""
    import onnxruntime as ort

    from harness.casework import score_label_map
    from harness.challenge import load_challenge
    from harness.spec import load_manifest

    spec = load_challenge().admit(load_manifest(REPO / "algorithms" / "cnn" / "algorithm.toml", repo_root=REPO))
    cuda_provider = "CUDAExecutionProvider" in ort.get_available_providers()
    rows: list[Check] = []
    scores: dict[str, dict[tuple[str, str, str], float]] = {"cpu": {}, "gpu": {}}
    devices = []
    for case in workspace.cases:
        for mode, env in (("cpu", {"CUDA_VISIBLE_DEVICES": "-1"}), ("gpu", {})):
            result, _ = run_local(workspace, spec, case, **env)
            log = _log(result)
            key = f"{case.case_id} {mode}"
            record[key] = {"status": str(result.outcome.status), "elapsed_s": _num(result.outcome.elapsed_s), "log_tail": log[-2000:],
                           "figures": {k: _num(v) for k, v in result.measurements.items()}}
            if str(result.outcome.status) != "ok":
                rows.append(Check("cnn", f"run {key}", Verdict.FAIL, str(result.outcome.status), "ok", result.outcome.message))
                continue
            label_map = workspace.root / "outputs" / mode / f"{case.case_id}.nii.gz"
            label_map.parent.mkdir(parents=True, exist_ok=True)
            label_map.write_bytes(result.files[f"{case.case_id}.nii.gz"])
            scored = score_label_map(case, label_map, workspace.profile)
            for s in scored.scores:
                scores[mode][(case.case_id, s.organ, "dsc")] = s.dsc
                scores[mode][(case.case_id, s.organ, "nsd")] = s.nsd
            if mode == "gpu":
                check = device_check(log, cuda_provider=cuda_provider, case=case.case_id)
                devices.append(check.measured)
                rows.append(check)
            rows.append(Check("cnn", f"time {key} (s)", Verdict.INFO, _num(result.outcome.elapsed_s), None,
                              f"peak GPU memory {_fmt(result.measurements.get('peak_gpu_mb'))} MiB, AUC_GPU "
                              f"{_fmt(result.measurements.get('auc_gpu_mb_s'))} MB*s"))
    comparison = compare_scores(scores["cpu"], scores["gpu"], decimals=workspace.profile.round_decimals)
    if devices and any(d != "cuda" for d in devices) and comparison.verdict is Verdict.PASS:
        comparison = replace(comparison, verdict=Verdict.BLOCKED, detail=f"{comparison.detail}, but the GPU run used the CPU")
    rows.append(comparison)
    return rows


def host_facts() -> dict[str, Any]:
    from harness.host import host_info

    info = host_info()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"host": info.host, "cpu": info.cpu, "gpu": info.gpu, "driver": info.driver, "gpu_ids": list(info.gpu_ids),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "python": sys.version.split()[0], "commit": commit}


def no_gpu_reason() -> str | None:
    """Why no GPU is visible here (None: one is)."""
    from harness.casework import visible_gpu_ids

    if visible_gpu_ids():
        return None
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        return f"CUDA_VISIBLE_DEVICES={chosen!r} hides every GPU"
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
        nvml.nvmlShutdown()
        return f"NVML sees {count} GPUs"
    except Exception as exc:  # noqa: BLE001 - the reason is the message
        return f"NVML: {type(exc).__name__}: {exc}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


def table(checks: Sequence[Check]) -> str:
    widths = (16, 44, 7, 14, 14)
    head = ("section", "check", "verdict", "measured", "expected")
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  detail"]
    for c in checks:
        cells = (c.section, c.name, str(c.verdict), _fmt(c.measured), _fmt(c.expected))
        lines.append("  ".join(str(x)[:w].ljust(w) for x, w in zip(cells, widths, strict=True)) + "  " + c.detail[:160])
    return "\n".join(lines)


def safely(section: str, make: Callable[[], list[Check]]) -> list[Check]:
    """A section's rows; an exception is a FAIL row of its own (the proof goes on to the next)."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - the proof reports, never stops half way
        return [Check(section, "error", Verdict.FAIL, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")]


def prove(out: Path) -> int:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    checks = import_checks(gpu=False)
    if any(c.verdict is Verdict.FAIL for c in checks if c.name.startswith("harness")):
        print(table(checks))
        return EXIT_FAILED
    reason = no_gpu_reason()
    gpu = reason is None
    if gpu:
        checks = import_checks(gpu=True)
    checks += safely("plan", plan_checks)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-proof-") as tmp:
        workspace = Workspace.make(Path(tmp))
        checks += safely("gpu = required", lambda: refusal_rows(workspace))
        if gpu:
            nvml = importlib.import_module("pynvml")
            names, uuid = safely_pair(lambda: resolution_rows(nvml))
            checks += names
            runs["alloc"] = {}
            checks += safely("alloc", lambda: alloc_rows(workspace, "alloc", runs["alloc"]))
            if uuid:
                runs["alloc uuid"] = {}
                checks += safely("alloc by UUID", lambda: alloc_rows(workspace, "alloc by UUID", runs["alloc uuid"],
                                                                      CUDA_VISIBLE_DEVICES=uuid[:12]))
            runs["cnn"] = {}
            checks += safely("cnn", lambda: cnn_rows(workspace, runs["cnn"]))
    status = exit_status(checks, gpu=gpu)
    document: dict[str, Any] = {
        "proof": "benchmarks/gpu_proof.py", "exit_status": status,
        "result": {EXIT_OK: "passed", EXIT_FAILED: "failed", EXIT_NO_GPU: "skipped: no GPU"}[status],
        "no_gpu_reason": reason, "elapsed_s": time.monotonic() - started, "host": host_facts(),
        "plan": {"phases": [asdict(p) for p in PLAN], "tolerance_mb": TOLERANCE_MB, "rate_hz": RATE_HZ,
                 "expected_auc_mb_s_without_context": expected_auc_mb_s(nominal_steps(PLAN)),
                 "expected_peak_mb_without_context": expected_peak_mb(nominal_steps(PLAN))},
        "goals": {"relative": GOAL_REL, "rate_relative": GOAL_RATE_REL, "jitter_p99_ms": GOAL_JITTER_P99_MS,
                  "drift_ms": GOAL_DRIFT_MS},
        "checks": [asdict(c) for c in checks], "runs": runs,
    }
    target = out / "gpu_proof.json"
    target.write_text(json.dumps(_jsonable(document), indent=1, allow_nan=False) + "\n")
    if not gpu and status == EXIT_NO_GPU:
        passed = sum(c.verdict is Verdict.PASS for c in checks)
        print(f"skipped: no GPU ({reason}); {passed} checks that need none passed; the plan expects AUC_GPU "
              f"{expected_auc_mb_s(nominal_steps(PLAN)):g} MB*s + {context_seconds(PLAN):g} s x the CUDA context and a peak of "
              f"{expected_peak_mb(nominal_steps(PLAN)):g} MiB + the context; wrote {target}")
        return status
    print(table(checks))
    print(f"{document['result']} in {document['elapsed_s']:.0f} s on {document['host']['gpu'] or 'no GPU'} "
          f"(driver {document['host']['driver'] or '-'}); wrote {target}")
    return status


def safely_pair(make: Callable[[], tuple[list[Check], str]]) -> tuple[list[Check], str]:
    try:
        return make()
    except Exception as exc:  # noqa: BLE001
        return [Check("device names", "error", Verdict.FAIL, f"{type(exc).__name__}: {exc}")], ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_proof.json (created)")
    args = parser.parse_args(argv)
    return prove(args.out)


if __name__ == "__main__":
    sys.exit(main())
