"""Evaluate a phase's submissions with `harness run`'s own machinery: the phase's results folder is
an ordinary one (its store binds the phase's data set and challenge), each submission is an
algorithm named `<team>-<n>`, planned by `pipeline.plan_case` and recorded by `pipeline.Recorder`
one whole case at a time. What is already stored and valid is reused, so evaluating again after a
stop (even a SIGKILL) runs only what has no result yet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.build import BuiltImage
from harness.data.check import require_label_names
from harness.errors import SpecError
from harness.executor import Executor, LocalExecutor
from harness.models import Kind, RunnerKind
from harness.phases.arrivals import Submission
from harness.phases.config import Phase
from harness.pipeline import (
    DataSet,
    OnResult,
    Planned,
    Recorder,
    RunSettings,
    RunSummary,
    count_kept,
    load_data,
    local_digests,
    make_images,
    plan_case,
    prune_orphans,
)
from harness.spec import AlgorithmSpec
from harness.store import Store

Say = Callable[[str], None]


def phase_settings(phase: Phase, results: Path, *, runner: RunnerKind, cache_dir: Path) -> RunSettings:
    return RunSettings(algorithms_dir=results, data_dir=phase.data_dir, results_dir=results, runner=runner,
                       cache_dir=cache_dir, challenge=phase.challenge)


def evaluate(phase: Phase, items: list[Submission], results: Path, *, runner: RunnerKind = RunnerKind.DOCKER,
             cache_dir: Path = Path(".cache/harness"), say: Say, on_result: OnResult,
             executor: Executor | None = None, data: DataSet | None = None) -> RunSummary:
    """Run every case of `items` that has no valid result (by arrival), reusing the others."""
    settings = phase_settings(phase, results, runner=runner, cache_dir=cache_dir)
    summary = RunSummary()
    specs: list[AlgorithmSpec] = []
    for item in items:
        try:
            specs.append(phase.challenge.admit(item.spec()))
        except SpecError as exc:  # accepted at intake; its manifest (or the phase's rules) changed since
            summary.problems.append(f"{item.id}: {exc}")
    segmenters = [s for s in specs if s.kind is Kind.SEGMENTER]
    with summary.timed("data"):
        data = data or load_data(phase.data_dir)
        require_label_names(phase.data_dir, phase.challenge.profile)
    summary.notes.extend(data.problems)
    with Store.open(results) as store:
        store.bind(data.identity(phase.challenge))
        images: dict[str, BuiltImage] = {}
        with summary.timed("images"):
            if runner is RunnerKind.DOCKER and segmenters:
                prune_orphans(store, say)
                images, failures = make_images(segmenters, settings, say)
                digests = {name: image.image_id for name, image in images.items()}
            else:
                digests, failures = local_digests(segmenters)
        summary.problems.extend(failures.values())
        stored = store.stored()
        plan: list[Planned] = []
        with executor or LocalExecutor(scoring_workers=0) as running:
            recorder = Recorder(store, running, summary, on_result)
            for spec in segmenters:
                if spec.name in failures:
                    for case in data.cases:
                        if (spec.name, case.case_id) not in stored:
                            from harness.models import RunStatus

                            recorder.record_nothing_ran(spec, case, RunStatus.BUILD_FAILED, failures[spec.name])
                    continue
                for case in data.cases:
                    plan.append(plan_case(spec, case, settings, store.layout, stored, digest=digests[spec.name],
                                          input_sha256=data.digests[case.case_id].image_sha256,
                                          label_sha256=data.digests[case.case_id].label_sha256,
                                          image=images[spec.name].image_id if spec.name in images else None,
                                          details={"team": spec.name.rpartition("-")[0]}))
            count_kept(plan, stored, summary)
            with summary.timed("runs"):
                recorder.execute(plan)
    return summary
