"""What every runner takes and returns: one algorithm on one case, one fresh sandbox per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.models import GpuMode, RunStatus
from harness.spec import AlgorithmSpec

__all__ = ["RunOutcome", "RunRequest", "RunStatus", "Runner", "gpu_refusal", "tail_text"]

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
