"""What every runner takes and returns: one algorithm on one case, one fresh sandbox per run."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from harness.models import GpuMode, RunStatus
from harness.spec import AlgorithmSpec, Resources

__all__ = ["RunOutcome", "RunRequest", "RunStatus", "Runner", "Verdict", "classify", "gpu_refusal", "output_over",
           "passed_limit", "tail_text"]

if TYPE_CHECKING:
    from harness.monitor import RunMonitor


@dataclass(frozen=True)
class RunRequest:
    spec: AlgorithmSpec
    case_id: str
    input_dir: Path  # holds only the case's input file(s); mounted read-only
    output_dir: Path  # empty and writable
    image: str | None = None  # image tag or id, for the Docker runner
    owner: str = ""  # the results folder's label (`harness.layout.ResultsLayout.owner_label`): orphans are found by it
    contract: tuple[str, ...] = ()  # the /output paths the contract keeps; the Docker runner copies out only these


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    exit_code: int | None
    elapsed_s: float  # the algorithm's own run time (container start to exit)
    wall_s: float  # harness's time for the whole run, start-up and clean-up included
    started_at: float  # epoch seconds
    ended_at: float
    log_tail: str = ""
    message: str = ""
    details: dict[str, object] = field(default_factory=dict)


class Runner(Protocol):
    """Runs one algorithm on one case. Never raises for the algorithm's behaviour: it reports it."""

    name: str

    def run(self, request: RunRequest, monitor: RunMonitor | None = None) -> RunOutcome: ...


def tail_text(data: bytes, limit: int) -> str:
    """The last `limit` bytes of a log, decoded leniently, marked when cut."""
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    return "[... log cut ...]\n" + data[-limit:].decode("utf-8", errors="replace")


def gets_gpu(spec: AlgorithmSpec, gpu_ids: tuple[str, ...]) -> bool:
    """Whether a run of `spec` is given the GPUs `gpu_ids`: some are visible and its `gpu` is not "none"."""
    return bool(gpu_ids) and spec.gpu is not GpuMode.NONE


def gpu_refusal(spec: AlgorithmSpec, gpu_ids: tuple[str, ...], *, started_at: float) -> RunOutcome | None:
    """The outcome of a run that needs a GPU where none is visible (`gpu = "required"`, no GPU ids):
    `no_gpu`, before anything starts (not the algorithm's failure nor the harness's: the next `harness
    run` on a GPU host runs it); else None.
    Every runner asks this one function."""
    if spec.gpu is not GpuMode.REQUIRED or gpu_ids:
        return None
    return RunOutcome(RunStatus.NO_GPU, None, 0.0, 0.0, started_at, started_at,
                      message=f'{spec.manifest}: gpu = "required" but this host has no GPU; run it on a GPU host')


# --- what a run's end means: one pure judgement, for every runner -----------------------------


class Verdict(NamedTuple):
    """A run's status and its one-line message."""

    status: RunStatus
    message: str = ""


def output_over(res: Resources, *, output_bytes: int, output_entries: int) -> str:
    """Why an output of `output_bytes` in `output_entries` files and folders is over the manifest's
    limits ("" when within them)."""
    if output_bytes > res.output_bytes:
        return f"/output grew to {output_bytes / 1e6:.0f} MB, over the limit of {res.output_bytes / 1e6:.0f} MB"
    if output_entries > res.output_files:
        return f"/output holds more than {res.output_files} files and folders, the limit"
    return ""


def passed_limit(res: Resources, *, elapsed_s: float, output_bytes: int = 0, output_entries: int = 0) -> Verdict | None:
    """While a run goes on: the limit it has passed (the runner kills it and records this), or None.
    The time limit first, then the output's size, then its count of files and folders."""
    if elapsed_s > res.time_limit_s:
        return Verdict(RunStatus.TIMEOUT, f"killed at the time limit of {res.time_limit_s:g} s")
    over = output_over(res, output_bytes=output_bytes, output_entries=output_entries)
    return Verdict(RunStatus.OUTPUT_TOO_LARGE, f"{over}; killed") if over else None


def classify(res: Resources, *, exit_code: int | None, killed: Verdict | None = None, oom_killed: bool = False,
             output_bytes: int = 0, output_entries: int = 0) -> Verdict:
    """A finished run's status: the limit it was `killed` for; else its output over a limit once it
    ended (a crash on a full output is the limit's too); else killed by the out-of-memory killer
    (`oom_killed`: the engine says so; an exit by SIGKILL that nobody here sent, `exit_code` -9 as a
    local process reports it: most likely); else crashed (non-zero exit); else ok."""
    if killed is not None:
        return killed
    over = output_over(res, output_bytes=output_bytes, output_entries=output_entries)
    if over:
        return Verdict(RunStatus.OUTPUT_TOO_LARGE, over)
    if oom_killed:
        return Verdict(RunStatus.OOM, f"killed by the out-of-memory killer at {res.memory_bytes / 2**20:.0f} MiB")
    if exit_code == -signal.SIGKILL:
        return Verdict(RunStatus.OOM, "killed by SIGKILL (out of memory, most likely)")
    if exit_code != 0:
        return Verdict(RunStatus.CRASHED, f"exited with code {exit_code}")
    return Verdict(RunStatus.OK)
