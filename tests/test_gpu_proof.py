"""benchmarks/gpu_proof.py without a GPU: its no-GPU mode from the repository, and its checks
proven able to fail, on the real monitor and the real local runner with a fake NVML (and, for the
allocation algorithm's own process, a fake torch that books its allocations where the fake NVML
reads them)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.monitor import RunMonitor
from harness.monitor.probes import NvmlGpuProbe

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_proof.py"
MB = 1024 * 1024


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_proof", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_proof"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gp = _load()
V = gp.Verdict


# ---------------------------------------------------------------- the no-GPU mode, from the repository


def test_without_a_gpu_it_says_so_in_one_line_and_exits_75(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["CUDA_VISIBLE_DEVICES"] = "-1"  # no GPU, whatever this machine has
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "proof")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 75, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped: no GPU (CUDA_VISIBLE_DEVICES='-1' hides every GPU)")
    assert "AUC_GPU 4096 MB*s" in lines[0]
    document = json.loads((tmp_path / "proof" / "gpu_proof.json").read_text())
    assert document["exit_status"] == 75 and document["result"] == "skipped: no GPU"
    verdicts = {(c["section"], c["name"]): c["verdict"] for c in document["checks"]}
    assert set(verdicts.values()) <= {"PASS", "info"}
    assert verdicts[("plan", "checks pass on the plan, fail 10 % off")] == "PASS"
    assert verdicts[("gpu = required", "no GPU visible (CUDA_VISIBLE_DEVICES=-1)")] == "PASS"
    assert document["plan"]["expected_auc_mb_s_without_context"] == 4096.0


def test_the_readme_says_what_a_required_gpu_run_gets_where_there_is_none() -> None:
    assert f"`{gp.REFUSAL}`" in (REPO / "README.md").read_text()


# ---------------------------------------------------------------- the plan


def test_the_plan_expects_its_auc_and_peak_from_its_steps() -> None:
    assert gp.plan_problems(gp.PLAN) == []
    assert gp.expected_auc_mb_s(gp.nominal_steps(gp.PLAN)) == 1024 * 4.0
    with_context = gp.nominal_steps(gp.PLAN, context_mb=500)
    assert gp.expected_auc_mb_s(with_context) == (3072 + 500 - 2048) * 4.0
    assert gp.expected_peak_mb(with_context) == 3572
    # Brute force: the plan's curve sampled at 1 ms, integrated as a sum.
    t = np.arange(0.0, with_context[-1].end_s, 1e-3) + 5e-4
    assert np.sum(np.maximum(0, gp.level_at(with_context, t) - 2048)) * 1e-3 == pytest.approx(6096.0, rel=1e-6)


@pytest.mark.parametrize("phases, problem", [
    ((gp.Phase("a", 1024, 5.0),), "no phase holds more than the tolerance"),
    ((gp.Phase("a", 3072, 1.0),), "under 20 sampling periods"),
    ((gp.Phase("a", 3072, 5.0), gp.Phase("b", 0, 0.5)), "phase 'b': hold_s 0.5"),
    ((gp.Phase("a", 4096, 3.0), gp.Phase("b", 3072, 3.0)), "shrinks from 4096 to 3072 MiB"),
    ((), "no phase"),
])
def test_a_plan_that_cannot_prove_anything_is_named(phases: tuple, problem: str) -> None:
    assert any(problem in p for p in gp.plan_problems(phases))


# ---------------------------------------------------------------- memory checks on the real monitor, fake NVML

# A phase's level is read from its samples 0.25 s away from its edges: 1 s leaves five of them at
# 10 Hz (0.8 s, the least `plan_problems` allows, leaves three, and one late sample on a loaded
# machine failed the level of a monitor that was right).
SHORT = (gp.Phase("context only", 0, 1.0), gp.Phase("1 GiB", 1024, 1.0), gp.Phase("3 GiB", 3072, 2.0), gp.Phase("released", 0, 1.0))
CONTEXT_MB = 420.0


class VirtualClock:
    """Virtual seconds for the monitor's sampler (as in tests/monitor/test_monitor_units.py): `wait`
    moves time on instead of sleeping and ends the sampler's loop at `end_s` after the start."""

    def __init__(self, end_s: float, start_s: float = 1000.0) -> None:
        self.t, self.end, self.ended = start_s, start_s + end_s, threading.Event()

    def __call__(self) -> float:
        return self.t

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        if stop.is_set():
            return True
        if self.t + timeout_s >= self.end - 1e-9:
            self.t = max(self.t, self.end)
            self.ended.set()
            return True
        self.t += timeout_s
        return False


class PlanNvml:
    """NVML stand-in: process 1234 follows the plan's curve times `scale` (a monitor off by that
    much), another process holds 3000 MiB the whole time; the plan's time is `clock`'s."""

    def __init__(self, steps, scale: float, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.clock, self.steps, self.scale = clock, steps, scale
        self.t0 = clock()

    def _own(self) -> float:
        return float(gp.level_at(self.steps, np.array([self.clock() - self.t0]))[0]) * self.scale

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=int((300 + 3000 + self._own()) * MB))

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=1234, usedGpuMemory=int(self._own() * MB)), SimpleNamespace(pid=99, usedGpuMemory=3000 * MB)]


class OneProcess:
    def __init__(self, pid: int) -> None: ...

    def pids(self) -> set[int]:
        return {1234}

    def read(self) -> dict[str, float]:
        return {"cpu_s": 0.0, "rss_mb": 10.0}


def memory_rows(rows: list) -> list:
    """The judged rows on memory: peak, AUC_GPU (trapezoid), each phase's level."""
    return [r for r in rows if r.verdict is not V.INFO and ("(MiB)" in r.name or r.name.startswith("AUC_GPU, trapezoid"))]


@pytest.fixture(scope="module")
def monitored() -> dict[float, tuple[dict[str, float], pd.DataFrame]]:
    """Three monitors sampling the same plan: exact, 10 % high, 10 % low (each on its own virtual
    clock: the real monitor's schedule and integrals in milliseconds, not the plan's seconds)."""
    steps = gp.nominal_steps(SHORT, context_mb=CONTEXT_MB)
    monitors = {}
    for scale in (1.0, 1.1, 0.9):
        clock = VirtualClock(steps[-1].end_s + 0.3)
        nvml = PlanNvml(steps, scale, clock)
        monitor = RunMonitor(probe_factory=OneProcess, host_cpus=1, clock=clock, wait=clock.wait,
                             gpu_factory=lambda pids, nvml=nvml: NvmlGpuProbe(pids, device_indices=(0,), nvml=nvml))
        monitor.attach(1234, started_at=nvml.t0)
        assert clock.ended.wait(30), "the sampler never reached the virtual end"
        monitor.stop()
        monitors[scale] = monitor
    return {scale: (m.figures(), m.series()) for scale, m in monitors.items()}


def test_the_memory_checks_pass_on_a_monitor_that_is_right(monitored) -> None:
    figures, series = monitored[1.0]
    rows = memory_rows(gp.check_memory(figures, series, gp.nominal_steps(SHORT, context_mb=CONTEXT_MB), section="t"))
    assert len(rows) == 2 + len(SHORT)  # peak, AUC, one level per phase
    assert all(r.verdict is V.PASS for r in rows), [(r.name, r.measured, r.expected) for r in rows]


@pytest.mark.parametrize("scale", [1.1, 0.9])
def test_the_memory_checks_fail_on_a_monitor_10_percent_off(monitored, scale: float) -> None:
    figures, series = monitored[scale]
    rows = {r.name: r for r in gp.check_memory(figures, series, gp.nominal_steps(SHORT, context_mb=CONTEXT_MB), section="t")}
    for name in ("peak GPU memory (MiB)", "AUC_GPU, trapezoid (MB*s)", "level in phase '3 GiB' (MiB)",
                 "level in phase '1 GiB' (MiB)", "level in phase 'context only' (MiB)"):
        assert rows[name].verdict is V.FAIL, (name, rows[name])


def test_an_integral_10_percent_off_fails_though_the_samples_are_right(monitored) -> None:
    figures, series = monitored[1.0]
    steps = gp.nominal_steps(SHORT, context_mb=CONTEXT_MB)
    for key, name in (("auc_gpu_mb_s", "AUC_GPU, trapezoid (MB*s)"), ("peak_gpu_mb", "peak GPU memory (MiB)")):
        rows = {r.name: r for r in gp.check_memory({**figures, key: figures[key] * 1.1}, series, steps, section="t")}
        assert rows[name].verdict is V.FAIL
    unmeasured = {r.name: r for r in gp.check_memory({**figures, "auc_gpu_mb_s": math.nan}, series, steps, section="t")}
    assert unmeasured["AUC_GPU, trapezoid (MB*s)"].verdict is V.FAIL  # not measured is never a pass


def test_a_reading_is_expected_at_some_moment_between_its_stamp_and_the_next() -> None:
    """The sampler stamps, then reads: a reading taken late across an edge is right, the same reading
    inside a level is not, and a monitor 10 % high fails wherever its samples fall."""
    steps = (gp.Step("high", 0.0, 1.0, 3000.0), gp.Step("low", 1.002, 2.0, 100.0))  # 2 ms of freeing between them
    t = np.round(np.arange(0.0, 2.0, 0.1) + 0.05, 6)  # 0.05 ... 1.95: the edge lies between 0.95 and 1.05

    def judged(gpu: np.ndarray) -> gp.Check:
        over = np.maximum(0.0, gpu - 2048)
        figures = {"auc_gpu_mb_s": float(np.sum((over[1:] + over[:-1]) * np.diff(t)) / 2), "peak_gpu_mb": float(gpu.max())}
        rows = gp.check_memory(figures, pd.DataFrame({"t_s": t, "gpu_mb": gpu}), steps, section="t")
        return next(r for r in rows if r.name == "AUC_GPU, trapezoid (MB*s)")

    right = gp.level_at(steps, t)
    assert judged(right).verdict is V.PASS and judged(right).measured == pytest.approx(judged(right).expected)
    late = right.copy()
    late[9] = 100.0  # stamped at 0.95, read after the edge (before the next stamp at 1.05)
    assert gp.level_at(steps, t[9:10])[0] == 3000.0 and judged(late).measured == pytest.approx(judged(late).expected)
    inside = right.copy()
    inside[4] = 100.0  # stamped at 0.45: no moment before the next stamp held 100 MiB
    assert judged(inside).verdict is V.FAIL
    assert judged(right * 1.1).verdict is V.FAIL and judged(late * 1.1).verdict is V.FAIL
    in_gap = np.append(t, 1.001)  # a stamp while the allocator frees: either level is right
    order = np.argsort(in_gap)
    for level in (3000.0, 100.0):
        gpu = np.append(right, level)[order]
        over = np.maximum(0.0, gpu - 2048)
        assert gp.sampled_auc_mb_s(steps, in_gap[order], gpu) == pytest.approx(np.trapezoid(over, in_gap[order]))


def test_a_phase_without_samples_fails() -> None:
    steps = gp.nominal_steps(SHORT, context_mb=CONTEXT_MB)
    series = pd.DataFrame({"t_s": [0.0, 4.0], "gpu_mb": [0.0, 0.0]})
    rows = {r.name: r for r in gp.check_memory({"peak_gpu_mb": 3492.0, "auc_gpu_mb_s": 2848.0}, series, steps, section="t")}
    assert rows["level in phase '3 GiB' (MiB)"].verdict is V.FAIL
    assert "0 samples inside the phase" in rows["level in phase '3 GiB' (MiB)"].detail


# ---------------------------------------------------------------- sampling statistics (pure)


def test_a_fixed_schedule_has_no_drift_and_its_skipped_ticks_are_counted() -> None:
    rng = np.random.default_rng(0)
    ticks = np.array([k for k in range(101) if k not in (40, 41)], dtype=float)  # a slow read skipped two ticks
    t = ticks * 0.1 + rng.uniform(0, 0.002, ticks.size)
    stats = gp.sampling_stats(np.append(t, t[-1] + 0.037))  # the final, off-schedule sample
    assert stats["missed_ticks"] == 2 and stats["drift_ms"] < 2.0
    first_late = t.copy()
    first_late[0] += 0.006  # the first sample's own delay: the others are not taken for a tick early
    delayed = gp.sampling_stats(np.append(first_late, t[-1] + 0.04))
    assert delayed["missed_ticks"] == 2 and delayed["drift_ms"] < 8.0
    assert stats["rate_hz"] == pytest.approx(98 / (t[-1] - t[0]))
    late = np.abs(np.diff(t) - 0.1) * 1e3
    assert stats["jitter_p99_ms"] == pytest.approx(np.percentile(late, 99))


def test_a_loop_that_sleeps_after_each_read_drifts_and_fails() -> None:
    t = np.cumsum(np.full(80, 0.1 + 0.004))  # read 4 ms, then sleep 100 ms: 4 ms later each time
    stats = gp.sampling_stats(np.append(t, t[-1] + 0.01))
    assert stats["drift_ms"] == pytest.approx(88.0)  # 22 samples late by 4 ms each, then a tick is skipped
    assert stats["missed_ticks"] == 3  # 79 intervals of 1.04 periods: 82 ticks
    steps = (gp.Step("a", 0.0, 10.0, 0.0),)
    series = pd.DataFrame({"t_s": np.append(t, t[-1] + 0.01), "gpu_mb": 0.0})
    rows = {r.name: r for r in gp.check_memory({}, series, steps, section="t")}
    assert rows["drift (ms)"].verdict is V.FAIL
    assert rows["p99 jitter (ms)"].verdict is V.PASS and rows["sampling rate (Hz)"].verdict is V.PASS  # 9.6 Hz


# ---------------------------------------------------------------- cnn scores, device names, refusal (pure)


def _scores(**changes: float) -> dict[tuple[str, str, str], float]:
    base = {("c0", "liver", "dsc"): 0.912345, ("c0", "liver", "nsd"): 0.8, ("c0", "spleen", "dsc"): math.nan,
            ("c1", "liver", "dsc"): 0.5}
    base.update({tuple(k.split("__")): v for k, v in changes.items()})  # type: ignore[misc]
    return base


def test_scores_equal_to_the_profile_rounding_pass_and_a_fourth_decimal_fails() -> None:
    assert gp.compare_scores(_scores(), _scores(c0__liver__dsc=0.9123449), decimals=4).verdict is V.PASS
    differ = gp.compare_scores(_scores(), _scores(c0__liver__dsc=0.9124), decimals=4)
    assert differ.verdict is V.FAIL and "c0/liver/dsc 0.9123 vs 0.9124" in differ.detail
    assert gp.compare_scores(_scores(), _scores(c0__liver__dsc=0.9123449), decimals=None).verdict is V.FAIL
    assert gp.compare_scores(_scores(), _scores(c0__spleen__dsc=0.0), decimals=4).verdict is V.FAIL  # NaN vs a value
    fewer = _scores()
    del fewer[("c1", "liver", "dsc")]
    assert gp.compare_scores(_scores(), fewer, decimals=4).verdict is V.FAIL


def test_the_device_the_cnn_logged_is_read_and_a_missing_cuda_provider_blocks() -> None:
    cuda = "cnn 0.1.0: ...\ndevice: cuda (providers: CUDAExecutionProvider, CPUExecutionProvider; threads: 8)\n"
    cpu = "note: using the CPU: the CUDA execution provider did not start (no GPU visible?)\ndevice: cpu (providers: x)\n"
    assert gp.device_check(cuda, cuda_provider=True, case="c").verdict is V.PASS
    failed = gp.device_check(cpu, cuda_provider=True, case="c")
    assert failed.verdict is V.FAIL and failed.measured == "cpu" and "did not start" in failed.detail
    assert gp.device_check(cpu, cuda_provider=False, case="c").verdict is V.BLOCKED


def test_the_refusal_must_be_the_readmes_and_nothing_may_start() -> None:
    message = f"/a/algorithm.toml: {gp.REFUSAL}"
    assert gp.refusal_check("no_gpu", message, manifest="/a/algorithm.toml", started=False).verdict is V.PASS
    assert gp.refusal_check("crashed", "exited with code 1", manifest="/a/algorithm.toml", started=True).verdict is V.FAIL
    assert gp.refusal_check("no_gpu", message, manifest="/a/algorithm.toml", started=True).verdict is V.FAIL
    # the status before no_gpu had its own: the harness's failure, retried (the README's message all the same)
    assert gp.refusal_check("runner_error", message, manifest="/a/algorithm.toml", started=False).verdict is V.FAIL


def test_exit_status() -> None:
    ok, info = gp.Check("s", "a", V.PASS), gp.Check("s", "b", V.INFO)
    assert gp.exit_status([ok, info], gpu=True) == 0
    assert gp.exit_status([ok, info], gpu=False) == 75
    assert gp.exit_status([ok, gp.Check("s", "c", V.BLOCKED)], gpu=True) == 3
    assert gp.exit_status([ok, gp.Check("s", "c", V.FAIL)], gpu=False) == 3


# ---------------------------------------------------------------- the GPU path end to end, with a fake GPU

UUID = "GPU-8f6a2c1e-dddd-eeee-ffff-111111111111"

FAKE_PYNVML = '''\
"""NVML stand-in shared by the proof and the allocation algorithm: a card whose processes hold
what the fake torch booked in STATE; per-process figures times SCALE (a monitor off by that much)."""
import json
from types import SimpleNamespace
STATE, SCALE, UUID, MB = {state!r}, {scale!r}, {uuid!r}, 1024 * 1024

def _held():
    try:
        with open(STATE) as f:
            return {{int(k): v for k, v in json.load(f).items()}}
    except (OSError, ValueError):
        return {{}}

def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 1
def nvmlDeviceGetHandleByIndex(i):
    if i != 0: raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
    return "card0"
def nvmlDeviceGetHandleByUUID(u):
    if u != UUID: raise RuntimeError("NVML_ERROR_NOT_FOUND")
    return "card0"
def nvmlDeviceGetUUID(h): return UUID.encode()
def nvmlDeviceGetMemoryInfo(h): return SimpleNamespace(used=int(300 * MB + sum(_held().values())))
def nvmlDeviceGetComputeRunningProcesses(h):
    return [SimpleNamespace(pid=pid, usedGpuMemory=int(used * SCALE)) for pid, used in _held().items()]
'''

FAKE_TORCH = '''\
"""torch stand-in: a 420 MiB context on init, buffers booked in STATE while they live; nothing after it exits."""
import atexit, json, os
from types import SimpleNamespace
STATE, MB = {state!r}, 1024 * 1024
__version__ = "0.0-fake"
uint8 = "uint8"
_live = {{"context": 0, "buffers": 0}}

def _book():
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump({{str(os.getpid()): _live["context"] + _live["buffers"]}}, f)
    os.replace(tmp, STATE)

class _Buffer:
    def __init__(self, n):
        self.n = n
        _live["buffers"] += n
    def __del__(self):
        _live["buffers"] -= self.n

def ones(n, dtype=None, device=None):
    buffer = _Buffer(n)
    _book()
    return buffer

def _init():
    _live["context"] = 420 * MB
    _book()
    atexit.register(os.remove, STATE)

cuda = SimpleNamespace(is_available=lambda: True, init=_init, synchronize=lambda: None, empty_cache=_book,
                       get_device_properties=lambda i: SimpleNamespace(uuid={uuid!r}[4:]))
'''


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two phantom cases of the proof's workspace (`gp.Workspace.make`), written once for every
    workspace of this module."""
    from harness.data.synth import write_dataset

    data = tmp_path_factory.mktemp("gpu-proof-phantoms") / "data"
    write_dataset(data, cases=2, seed=0, size="small")
    return data


def _fake_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scale: float, phantoms: Path):
    """A workspace whose allocation algorithm finds the fake torch and NVML beside it, and the fake
    NVML as this process's pynvml. Every workspace made meanwhile gets a copy of `phantoms`."""
    import harness.data.synth as synth

    def copy_phantoms(out_dir: Path, *, cases: int, seed: int, size: str = "small") -> None:
        assert (cases, seed, size) == (2, 0, "small"), "gp.Workspace.make asks for other phantoms than `phantoms`"
        shutil.copytree(phantoms, out_dir)

    monkeypatch.setattr(synth, "write_dataset", copy_phantoms)
    state = str(tmp_path / "held.json")
    workspace = gp.Workspace.make(tmp_path / "ws")
    folder = workspace.alloc_spec(SHORT).directory
    (folder / "pynvml.py").write_text(FAKE_PYNVML.format(state=state, scale=scale, uuid=UUID))
    (folder / "torch.py").write_text(FAKE_TORCH.format(state=state, uuid=UUID))
    spec = importlib.util.spec_from_file_location("pynvml", folder / "pynvml.py")
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    # A module that imports pynvml while the fake stands in keeps it for good: Dask's NVML
    # diagnostics, imported by the local run, would then fail every later cluster in this process
    # (an xdist worker runs the Dask tests after these). Let it bind the real one first.
    with contextlib.suppress(ImportError):
        importlib.import_module("distributed.diagnostics.nvml")
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(gp, "PLAN", SHORT)
    return workspace, fake


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory, phantoms: Path) -> tuple[int, dict, str, Path]:
    """prove() once on the GPU branch with a fake GPU that is right: (exit status, its JSON, what it
    printed, its --out). The cnn section is replaced (its glue needs onnxruntime's CUDA provider to
    mean anything; its checks are the pure functions above)."""
    tmp_path = tmp_path_factory.mktemp("proof")
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(io.StringIO()) as printed:
        workspace, _ = _fake_gpu(tmp_path, monkeypatch, 1.0, phantoms)
        fakes = workspace.alloc_spec(SHORT).directory
        make = gp.Workspace.alloc_spec

        def with_fakes(self, phases):  # every allocation folder the proof makes finds the fakes beside it
            spec = make(self, phases)
            for name in ("pynvml.py", "torch.py"):
                (spec.directory / name).write_bytes((fakes / name).read_bytes())
            return spec

        monkeypatch.setattr(gp.Workspace, "alloc_spec", with_fakes)
        monkeypatch.setattr(gp, "cnn_rows", lambda workspace, record: [gp.Check("cnn", "replaced", V.PASS)])
        monkeypatch.syspath_prepend(str(fakes))  # the proof's own import check finds the fake torch
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        status = gp.prove(tmp_path / "out")
    document = json.loads((tmp_path / "out" / "gpu_proof.json").read_text())
    return status, document, printed.getvalue(), tmp_path / "out"


def _judge_allocation_run(rows: list, record: dict, *, scale: float) -> None:
    by_name = {r.name: r for r in rows}
    assert by_name["run"].verdict is V.PASS, by_name["run"]
    assert by_name["CUDA context (MiB)"].measured == 420.0  # the card's reading in the algorithm, not the monitor's
    assert record["timeline"]["allocator"] == "torch 0.0-fake" and [p["alloc_mib"] for p in record["timeline"]["phases"]] == [
        0, 1024, 3072, 0]
    verdicts = {r.verdict for r in memory_rows(rows)}
    assert verdicts == ({V.PASS} if scale == 1.0 else {V.FAIL}), [(r.name, r.measured, r.expected) for r in memory_rows(rows)]
    assert by_name["peak GPU memory (MiB)"].expected == 420 + 3072
    # Judged against the realised plan at the monitor's own sample times, each read between its stamp
    # and the next (a loaded host that delays a sample at an edge moves the right monitor's trapezoid
    # from the plan's integral, not from this): between the trapezoids of the plan's lower and higher
    # level at the two ends of each interval.
    t = np.array(record["series"]["t_s"], dtype=float)
    steps = [gp.Step(**s) for s in record["steps"]]
    assert [s.level_mb for s in steps] == [420, 420 + 1024, 420 + 3072, 420]
    # In a gap between two steps (the allocator changing its memory) either level is right.
    kept = [gp.Step(s.name, s.start_s, n.start_s, s.level_mb) for s, n in zip(steps, steps[1:], strict=False)] + steps[-1:]
    early = steps[:1] + [gp.Step(s.name, p.end_s, s.end_s, s.level_mb) for p, s in zip(steps, steps[1:], strict=False)]
    ends = [gp.level_at(plan, x) for plan in (kept, early) for x in (t, np.append(t[1:], t[-1]))]  # stamp, next stamp
    low, high = (np.trapezoid(np.maximum(0.0, f(ends, axis=0) - 2048), t) for f in (np.min, np.max))
    sampled = by_name["AUC_GPU, trapezoid (MB*s)"].expected
    assert low - 1e-6 <= sampled <= high + 1e-6 and high - low < 0.5 * sampled
    exact = by_name["AUC_GPU vs the plan's exact integral (MB*s)"]
    assert exact.verdict is V.INFO and exact.expected == pytest.approx((420 + 3072 - 2048) * 2.0, rel=0.05)


def test_the_allocation_run_goes_through_the_local_runner_and_its_checks_judge_the_monitor(proof) -> None:
    """A monitor that is right: the proof's own run by UUID prefix, `gp.alloc_rows(workspace,
    "alloc by UUID", record, CUDA_VISIBLE_DEVICES=UUID[:12])`, its rows and record as it wrote them."""
    _, document, _, _ = proof
    rows = [gp.Check(**{**r, "verdict": V(r["verdict"])}) for r in document["checks"] if r["section"] == "alloc by UUID"]
    _judge_allocation_run(rows, document["runs"]["alloc uuid"], scale=1.0)


def test_the_allocation_run_goes_through_the_local_runner_and_its_checks_fail_a_monitor_10_percent_high(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phantoms: Path) -> None:
    workspace, _ = _fake_gpu(tmp_path, monkeypatch, 1.1, phantoms)
    record: dict = {}
    rows = gp.alloc_rows(workspace, "alloc", record, CUDA_VISIBLE_DEVICES=UUID[:12])
    _judge_allocation_run(rows, record, scale=1.1)


def test_device_names_resolve_in_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phantoms: Path) -> None:
    _, fake = _fake_gpu(tmp_path, monkeypatch, 1.0, phantoms)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    rows, uuid = gp.resolution_rows(fake)
    assert uuid == UUID
    assert [(r.name, r.verdict) for r in rows] == [("CUDA_VISIBLE_DEVICES=0", V.PASS), (f"CUDA_VISIBLE_DEVICES={UUID}", V.PASS),
                                                   (f"CUDA_VISIBLE_DEVICES={UUID[:12]}", V.PASS)]
    def wrong(uuid: str) -> str:  # an NVML that takes a full UUID for another card
        if uuid != UUID:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "card1"

    monkeypatch.setattr(fake, "nvmlDeviceGetHandleByUUID", wrong)
    monkeypatch.setattr(fake, "nvmlDeviceGetUUID", lambda h: UUID if h == "card0" else "GPU-other")
    rows, _ = gp.resolution_rows(fake)
    assert [r.verdict for r in rows] == [V.PASS, V.FAIL, V.PASS]


def test_the_whole_proof_on_a_fake_gpu_writes_its_table(proof) -> None:
    """prove() on the GPU branch: names, both allocation runs (the second by UUID prefix), the JSON."""
    status, document, out, target = proof
    rows = document["checks"]
    assert status == document["exit_status"] == gp.exit_status([gp.Check(**{**r, "verdict": V(r["verdict"])}) for r in rows],
                                                              gpu=True)
    judged = {(r["section"], r["name"]): r["verdict"] for r in rows}
    for section in ("alloc", "alloc by UUID"):
        assert judged[(section, "run")] == "PASS"
        for name in ("peak GPU memory (MiB)", "AUC_GPU, trapezoid (MB*s)", "level in phase '3 GiB' (MiB)"):
            assert judged[(section, name)] == "PASS", (section, name)
    assert judged[("device names", f"CUDA_VISIBLE_DEVICES={UUID[:12]}")] == "PASS"
    assert judged[("imports", "torch or cupy")] == "PASS"
    assert document["runs"]["alloc uuid"]["env"] == {"CUDA_VISIBLE_DEVICES": UUID[:12]}
    assert len(document["runs"]["alloc"]["series"]["t_s"]) > 30
    assert out.splitlines()[0].startswith("section") and "wrote " + str(target / "gpu_proof.json") in out
