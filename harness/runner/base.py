"""What every runner takes and returns: one algorithm on one case, one fresh sandbox per run."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.spec import AlgorithmSpec

if TYPE_CHECKING:
    from harness.monitor import RunMonitor


class RunStatus(enum.StrEnum):
    """Outcome of one (algorithm, case) run. Everything but `ok` gets the worst values in ranking."""

    OK = "ok"
    TIMEOUT = "timeout"  # killed at the manifest's time limit
    CRASHED = "crashed"  # exited non-zero
    OOM = "oom"  # killed by the out-of-memory killer at the memory limit
    INVALID_OUTPUT = "invalid_output"  # no, unreadable or wrong label map / probabilities
    OUTPUT_TOO_LARGE = "output_too_large"  # wrote more than the output limit; killed
    BUILD_FAILED = "build_failed"  # the image could not be built; nothing ran
    RUNNER_ERROR = "runner_error"  # the engine failed (not the algorithm's fault); retry
    LOST = "lost"  # its worker died and no other could finish it; retried by the next `harness run`


@dataclass(frozen=True)
class RunRequest:
    spec: AlgorithmSpec
    case_id: str
    input_dir: Path  # holds only the case's input file(s); mounted read-only
    output_dir: Path  # empty and writable
    image: str | None = None  # image tag or id, for the Docker runner


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
