"""One pass over a phase (intake, evaluation, pages) and the `--watch` loop of such passes.

The watch loop takes one submission at a time, oldest arrival first, and rewrites the pages after
each. Nothing is kept in memory between passes: what is accepted is on disk (`submission.json`,
renamed into place whole), what is evaluated is in the store (one whole case per transaction), so a
process stopped at any moment, SIGKILL included, is resumed by starting it again: a case that was
running is run again, nothing recorded is run twice, nothing accepted is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.dataset import discover
from harness.executor import Executor
from harness.layout import ResultsLayout
from harness.models import RunnerKind
from harness.phases.arrivals import Clock, IntakeEntry, Submission, intake, submissions, utc_now
from harness.phases.board import Board
from harness.phases.config import ChallengeConfig, Phase
from harness.phases.evaluate import evaluate
from harness.phases.layout import ChallengeLayout
from harness.phases.pages import write_pages
from harness.pipeline import OnResult, RunSummary, load_data
from harness.store import Store

Say = Callable[[str], None]


@dataclass
class PassResult:
    decisions: list[IntakeEntry] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)  # submission ids evaluated in this pass
    summary: RunSummary = field(default_factory=RunSummary)
    board: Board | None = None
    pages: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class PassOptions:
    runner: RunnerKind = RunnerKind.DOCKER
    cache_dir: Path = Path(".cache/harness")
    settle_s: float = 2.0
    clock: Clock = utc_now
    sleep: Callable[[float], None] = time.sleep
    executor: Executor | None = None


def _merge(total: RunSummary, part: RunSummary) -> None:
    for name in ("executed", "reused", "rescored", "failed", "failed_earlier", "refused"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.problems += part.problems
    total.notes += [n for n in part.notes if n not in total.notes]
    total.unscorable.update(part.unscorable)


def one_pass(config: ChallengeConfig, phase: Phase, layout: ChallengeLayout, options: PassOptions, *, say: Say,
             on_result: OnResult, limit: int | None = None, take: bool = True, full: bool = False,
             skip: frozenset[str] = frozenset()) -> PassResult:
    """Take the drop folder's uploads (unless `take` is false), evaluate up to `limit` submissions that
    lack a result (all with `full`: every submission planned again, as after a profile change), and
    rewrite the pages once something changed. `skip`: submissions not to evaluate (already tried by
    this process: one whose manifest no longer loads has no row, and would be tried forever)."""
    result = PassResult()
    if take:
        result.decisions = intake(config, phase, layout, clock=options.clock, settle_s=options.settle_s,
                                  sleep=options.sleep, say=say)
    items = submissions(layout, phase.name)
    results = layout.results(phase.name)
    todo: list[Submission] = items
    if items and not full:  # which cases lack a row: case ids only, no hashing of the data on every look
        dataset, _ = discover(phase.data_dir)
        case_ids = [c.case_id for c in dataset.cases if c.image is not None]
        stored: dict[tuple[str, str], object] = {}
        if ResultsLayout.of(results).store_file.is_file():
            with Store.open(results, lock=False, create=False) as store:
                stored = dict(store.stored())
        todo = [s for s in items if any((s.id, c) not in stored for c in case_ids)]
    todo = [s for s in todo if s.id not in skip]
    todo = todo[:limit] if limit is not None else todo
    data = load_data(phase.data_dir) if todo else None
    for item in todo:
        say(f"evaluating {item.id} (arrived {item.arrival})")
        _merge(result.summary, evaluate(phase, [item], results, runner=options.runner, cache_dir=options.cache_dir,
                                        say=say, on_result=on_result, executor=options.executor, data=data))
        result.evaluated.append(item.id)
    if result.evaluated or result.decisions or full or not layout.public(phase.name).is_dir():
        result.board, result.pages = write_pages(phase, layout, items, config.teams)
    return result


def watch(config: ChallengeConfig, phase: Phase, layout: ChallengeLayout, options: PassOptions, *, say: Say,
          on_result: OnResult, poll_s: float = 10.0, until_idle: bool = False) -> int:
    """Evaluate arrivals one submission at a time until stopped (or, with `until_idle`, until a pass
    finds nothing to do); returns how many submissions were evaluated."""
    evaluated = 0
    tried: set[str] = set()
    while True:
        done = one_pass(config, phase, layout, options, say=say, on_result=on_result, limit=1, skip=frozenset(tried))
        evaluated += len(done.evaluated)
        tried.update(done.evaluated)
        for problem in done.summary.problems:
            say(f"error: {problem}")
        if done.evaluated:
            continue  # the next waiting one, before looking at the drop folder again
        if until_idle and not any(d.decision == "accepted" for d in done.decisions):
            return evaluated
        options.sleep(poll_s)
