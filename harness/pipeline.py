"""`harness run` and `harness rescore`: plan every (algorithm, case), then run, rescore or reuse it,
and record it in the store.

Planning compares each stored row's provenance with what it would be now (`decide`): a changed
image, manifest, input or runner runs the case again; a changed ground-truth label, profile content
or scoring-code version only rescores the kept outputs, without starting anything. Runs and
scoring go through an executor (`harness.executor`) to the one-case layer (`harness.casework`);
results come back here, and only `Recorder` writes the store, one whole case at a time.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.build import BuildError, BuiltImage, build_all, ensure_base_image, fetch_wheels, platform_name
from harness.casework import RunResult, RunTask
from harness.challenge import Challenge, challenge_of, load_challenge
from harness.data.check import require_label_names
from harness.data.dataset import CaseDigest, dataset_id, digest_cases, discover
from harness.errors import DataError, SpecError
from harness.executor import Executor, LocalExecutor
from harness.host import host_info
from harness.intake import SubmissionError, folder_digest
from harness.layout import ResultsLayout, default_cache_dir  # noqa: F401 - re-exported for the CLI
from harness.models import Case, CaseStatus, Kind, OrganScore, Profile, RunnerKind, RunStatus
from harness.monitor import MonitorSettings
from harness.scoring import SCORING_VERSION, CaseResult, Side
from harness.spec import AlgorithmSpec, ManifestError, discover_algorithms, load_manifest
from harness.store import FolderIdentity, Provenance, RunRecord, Store, StoredRun, StoreError

Say = Callable[[str], None]


class Action(enum.StrEnum):
    """What planning decided for one (algorithm, case)."""

    RUN = "run"  # no valid run: run it (again)
    RESCORE = "rescore"  # the run is valid, its scores are stale: score the kept outputs again
    RESTAMP = "restamp"  # a failed run whose scoring provenance is stale: nothing to score, update it
    REUSE = "reuse"  # valid and up to date


@dataclass(frozen=True)
class CaseEvent:
    """What happened to one (algorithm, case), as the command line shows it."""

    algorithm: str
    case_id: str
    action: Action
    status: str
    score_status: str
    elapsed_s: float | None
    message: str
    scores: tuple[OrganScore, ...] = ()
    log_line: str = ""  # the run's last log line (shown for a failed run, and for every run with -v)
    log_file: str = ""  # where its whole log tail is kept
    done: int = 0  # runs recorded so far in this command (progress), and of how many
    total: int = 0
    eta_s: float | None = None  # the rest at the pace so far


OnResult = Callable[[CaseEvent], None]


@dataclass(frozen=True)
class RunSettings:
    algorithms_dir: Path
    data_dir: Path
    results_dir: Path
    runner: RunnerKind = RunnerKind.DOCKER
    rerun: bool = False
    base: str | None = None  # image to build from; None: the local debootstrap base
    cache_dir: Path = Path(".cache/harness")
    repo_root: Path | None = None
    monitor: MonitorSettings = MonitorSettings()
    challenge: Challenge = field(default_factory=load_challenge)
    manifests: tuple[Path, ...] = ()  # run exactly these manifests instead of every one in algorithms_dir (`check`)
    case_limit: int | None = None  # only the first N cases (`harness check`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "runner", RunnerKind(self.runner))  # "docker" from a caller is RunnerKind.DOCKER


@dataclass
class RunSummary:
    executed: int = 0
    reused: int = 0
    rescored: int = 0
    failed: int = 0  # every failed result of the evaluation: run now, or stored earlier and kept
    failed_earlier: int = 0  # of `failed`: stored by an earlier invocation, kept as they are
    refused: int = 0  # manifests refused before anything ran (invalid, or over the challenge's rules)
    problems: list[str] = field(default_factory=list)  # each one line; the command exits partial
    notes: list[str] = field(default_factory=list)  # worth saying, not a failure
    unscorable: dict[str, str] = field(default_factory=dict)  # case -> why its ground truth was not scored
    phases: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds, in the order they ran

    def timed(self, phase: str) -> _Phase:
        """`with summary.timed("images"): ...` adds the block's wall time to `phases[phase]`."""
        return _Phase(self.phases, phase)

    @property
    def partial(self) -> bool:
        return self.failed > 0 or bool(self.problems) or bool(self.unscorable)


class _Phase:
    def __init__(self, phases: dict[str, float], name: str) -> None:
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *_exc: object) -> None:
        self.phases[self.name] = self.phases.get(self.name, 0.0) + time.monotonic() - self.start


def format_phases(phases: dict[str, float]) -> str:
    """`time: data 1.2 s, images 3m10s, runs 2m05s; total 5m16s`."""
    def shown(seconds: float) -> str:
        return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    return "time: " + ", ".join(f"{name} {shown(s)}" for name, s in phases.items()) + \
        f"; total {shown(sum(phases.values()))}"


@dataclass(frozen=True)
class Planned:
    """One (algorithm, case) and what to do with it."""

    algorithm: str
    kind: Kind
    case: Case
    provenance: Provenance  # what the row's provenance is once done
    profile: Profile  # scores it
    action: Action
    task: RunTask | None = None  # for RUN
    details: dict[str, object] = field(default_factory=dict)  # added to the run's details


@dataclass(frozen=True)
class DataSet:
    """A data set as an evaluation uses it: its runnable cases, their digests, its identity."""

    root: Path
    cases: tuple[Case, ...]
    digests: dict[str, CaseDigest]
    problems: tuple[str, ...]

    @property
    def id(self) -> str:
        return dataset_id(self.digests)

    def identity(self, challenge: Challenge) -> FolderIdentity:
        return FolderIdentity(dataset_id=self.id, dataset_root=str(self.root.resolve()), dataset_cases=len(self.cases),
                              challenge=challenge.name, profile=challenge.profile.source,
                              annotation_profile=challenge.annotation_profile.source, challenge_source=challenge.source)


def load_data(data_dir: Path, *, limit: int | None = None) -> DataSet:
    """The cases of `data_dir` that have an image (the first `limit`), hashed; raises DataError when
    there are none."""
    dataset, problems = discover(data_dir)
    cases = tuple(c for c in dataset.cases if c.image is not None)[:limit]
    if not cases:
        raise DataError(f"{data_dir}: no images (imagesTr/<case>_0000.nii.gz); nothing to run")
    try:
        digests = digest_cases(cases)
    except OSError as exc:
        raise DataError(f"{exc.filename}: cannot read it ({exc.strerror}); check its permissions") from None
    return DataSet(Path(data_dir), cases, digests, tuple(p.message for p in problems))


def local_digest(spec: AlgorithmSpec) -> str:
    """The local runner's stand-in for an image digest: the algorithm folder's checked files
    (raises SubmissionError for a link or special file, as a build would)."""
    return "local:" + folder_digest(spec.directory)


def local_digests(specs: list[AlgorithmSpec]) -> tuple[dict[str, str], dict[str, str]]:
    """`local_digest` of each spec, and the failures (name -> one-line message) as build failures."""
    digests: dict[str, str] = {}
    failed: dict[str, str] = {}
    for spec in specs:
        try:
            digests[spec.name] = local_digest(spec)
        except (SubmissionError, OSError) as exc:
            failed[spec.name] = str(exc)
    return digests, failed


def provenance(*, image_digest: str, manifest_sha256: str, input_sha256: str, runner: RunnerKind, label_sha256: str,
               profile: Profile) -> Provenance:
    info = host_info()
    return Provenance(image_digest=image_digest, manifest_sha256=manifest_sha256, input_sha256=input_sha256,
                      runner=str(runner), label_sha256=label_sha256, profile=profile.name,
                      profile_sha256=profile.content_sha256, scoring_version=SCORING_VERSION, host=info.host, cpu=info.cpu,
                      gpu=info.gpu, driver=info.driver)


def decide(stored: StoredRun | None, prov: Provenance, *, rerun: bool = False, kept: bool = True) -> Action:
    """What to do with one (algorithm, case), given its stored row (None: never run).

    `kept`: the row's accepted outputs are still in the results folder."""
    if rerun or stored is None or RunStatus(stored.status).retried or stored.run_key != prov.run_key():
        return Action.RUN
    if stored.status == RunStatus.OK and not kept:
        return Action.RUN  # the kept outputs are gone: nothing to rescore, nothing for an annotator
    if stored.score_key == prov.score_key():
        return Action.REUSE
    if stored.status == RunStatus.OK:
        return Action.RESCORE
    if stored.status == RunStatus.INVALID_OUTPUT:
        return Action.RUN  # judged under the old rules, and its outputs were not kept
    return Action.RESTAMP


def count_kept(plan: list[Planned], stored: dict[tuple[str, str], StoredRun], summary: RunSummary) -> None:
    """Count the stored results this invocation keeps as they are (reused, restamped) as the
    evaluation's own: a failed one is failed, one whose ground truth was not scored is unscorable,
    so that a second `harness run` over the same folder tells the same truth as the first."""
    for item in plan:
        row = stored.get((item.algorithm, item.case.case_id))
        if row is None or item.action not in (Action.REUSE, Action.RESTAMP):
            continue
        if row.status != RunStatus.OK:
            summary.failed += 1
            summary.failed_earlier += 1
        elif row.score_status not in ("", CaseStatus.OK):
            summary.unscorable.setdefault(item.case.case_id, f"{row.score_status}, stored by an earlier run")


def accepted_specs(specs: list[AlgorithmSpec], challenge: Challenge, summary: RunSummary) -> list[AlgorithmSpec]:
    """The manifests the challenge admits (its label system, its caps), their resources resolved
    under the caps; the others are problems, never run."""
    accepted = []
    for spec in specs:
        try:
            accepted.append(challenge.admit(spec))
        except SpecError as exc:
            summary.problems.append(str(exc))
    return accepted


def resolved_manifest_sha256(spec: AlgorithmSpec) -> str:
    """The manifest as it runs: its bytes and its resources resolved under the challenge's caps (a
    lower cap changes how it runs, so it runs again)."""
    import hashlib

    res = spec.resources
    resolved = (res.memory_bytes, res.shm_bytes, res.tmp_bytes, res.output_bytes, res.output_files, res.time_limit_s,
                res.pids, res.cpus)
    return hashlib.sha256(f"{spec.manifest_sha256}:{resolved}".encode()).hexdigest()


def prune_orphans(store: Store, say: Say) -> None:
    """Remove the containers a killed harness process left running or stopped for this results
    folder (and only for it); the store's lock is held, so none of them belongs to a live run."""
    from harness.build import docker_client
    from harness.runner.docker_runner import remove_orphans

    removed = remove_orphans(docker_client(), store.layout.owner_label)
    if removed:
        say(f"removed {removed} container(s) left by a harness process that was stopped")


def make_images(specs: list[AlgorithmSpec], settings: RunSettings, say: Say) -> tuple[dict[str, BuiltImage], dict[str, str]]:
    """Images by algorithm name, and the build failures (name -> one-line message)."""
    from harness.build import docker_client

    client = docker_client()
    fetch_wheels(specs, settings.cache_dir / "wheelhouse", progress=say)  # while the base image is made
    base = settings.base or ensure_base_image(client, progress=say)
    built: dict[str, BuiltImage] = {}
    failed: dict[str, str] = {}
    for spec, image in build_all(specs, base=base, wheel_cache=settings.cache_dir / "wheelhouse", progress=say,
                                 time_limit_s=settings.challenge.limits.build_time_s,
                                 memory_bytes=settings.challenge.limits.build_memory_bytes,
                                 image_bytes=settings.challenge.limits.image_bytes):
        if isinstance(image, BuildError):
            failed[spec.name] = str(image)
        else:
            built[spec.name] = image
            how = "(cached)" if image.cached else "loaded" if spec.dockerfile is None else "built"
            named = platform_name(spec)
            say(f"image {image.tag} {how} {image.image_id[:19]}" + (f" (FLARE's name {named}, not tagged here)"
                                                                     if named else ""))
    return built, failed


class Recorder:
    """Carries out a plan through an executor and records every result; the only store writer."""

    def __init__(self, store: Store, executor: Executor, summary: RunSummary, on_result: OnResult) -> None:
        self.store = store
        self.layout = store.layout
        self.executor = executor
        self.summary = summary
        self.on_result = on_result
        self._pending: list[tuple[Planned, RunResult | None, Any]] = []
        self._done = 0
        self._total = 0
        self._started = 0.0

    def _progress(self) -> dict[str, Any]:
        import time

        self._done += 1
        elapsed = time.monotonic() - self._started
        eta = elapsed / self._done * (self._total - self._done) if self._done <= self._total else None
        return {"done": self._done, "total": self._total, "eta_s": eta}

    def execute(self, plan: list[Planned]) -> None:
        import time

        self._started = time.monotonic()
        self._total = sum(1 for item in plan if item.action is Action.RUN)
        for item in plan:
            if item.action is Action.REUSE:
                self.summary.reused += 1
            elif item.action is Action.RESTAMP:
                self._restamp(item)
            elif item.action is Action.RESCORE:
                label_map = self.layout.label_map(item.algorithm, item.case.case_id).read_bytes()
                self._pending.append((item, None, self.executor.score(item.case, label_map, item.profile)))
        self._drain(block=False)
        # By (algorithm, case): a result from a Dask worker carries a copy of its task, not the task itself.
        by_run = {(item.algorithm, item.case.case_id): item for item in plan if item.task is not None and item.action is Action.RUN}
        for result in self.executor.runs([item.task for item in by_run.values() if item.task is not None]):
            self._ran(by_run[(result.task.spec.name, result.task.case.case_id)], result)  # stored (or scoring) as it ends
            self._drain(block=False)
        self._drain(block=True)

    def _ran(self, item: Planned, result: RunResult) -> None:
        self.layout.replace_run_files(item.algorithm, item.case.case_id, result.files)
        label_map = result.label_map
        if result.outcome.status is RunStatus.OK and label_map is not None:
            self._pending.append((item, result, self.executor.score(item.case, label_map, item.profile)))
        else:
            self._record_run(item, result, None)

    def _drain(self, *, block: bool) -> None:
        for entry in list(self._pending):
            item, result, future = entry
            if block or future.done():
                self._pending.remove(entry)
                scored: CaseResult = future.result()
                if result is None:
                    self._rescored(item, scored)
                else:
                    self._record_run(item, result, scored)

    def _record_run(self, item: Planned, result: RunResult, scored: CaseResult | None) -> None:
        outcome = result.outcome
        prov = dataclasses.replace(item.provenance, host=result.host or item.provenance.host, worker=result.worker or "local",
                                   **{k: v for k, v in result.host_facts.items() if k in ("cpu", "gpu", "driver")})
        status, message = outcome.status, outcome.message
        scores: tuple[OrganScore, ...] = ()
        score_status = score_message = ""
        if scored is not None:
            status, message, score_status, score_message, scores = self._judge(item, scored, status, message)
        self.store.record(RunRecord(
            algorithm=item.algorithm, case_id=item.case.case_id, kind=item.kind, status=status, exit_code=outcome.exit_code,
            message=message, elapsed_s=outcome.elapsed_s, wall_s=outcome.wall_s, started_at=outcome.started_at,
            ended_at=outcome.ended_at, log_tail=outcome.log_tail, provenance=prov, details={**result.details, **item.details},
            score_status=score_status, score_message=score_message,
        ), scores, result.measurements)
        self.summary.executed += 1
        self.summary.failed += status is not RunStatus.OK
        failed = status is not RunStatus.OK
        last = [line for line in outcome.log_tail.splitlines() if line.strip()][-1:]
        self.on_result(CaseEvent(item.algorithm, item.case.case_id, Action.RUN, status, score_status, outcome.elapsed_s,
                                 message or score_message, scores, log_line=last[0][:200] if last else "",
                                 log_file=str(self.store.layout.log_file(item.algorithm, item.case.case_id))
                                 if failed and outcome.log_tail else "", **self._progress()))

    def _judge(self, item: Planned, scored: CaseResult, status: RunStatus, message: str
               ) -> tuple[RunStatus, str, str, str, tuple[OrganScore, ...]]:
        """A score result as (run status, message, score status, score message, scores): a prediction that
        fails the scoring checks is the algorithm's invalid output; a ground truth that fails them is the
        data's problem, and the case is left out of the ranking."""
        if scored.status == CaseStatus.OK:  # its message: a warning (label values counted as background)
            return status, message, CaseStatus.OK, scored.message, scored.scores
        if scored.side is Side.PREDICTION:
            return RunStatus.INVALID_OUTPUT, scored.message, str(scored.status), scored.message, ()
        self.summary.unscorable[item.case.case_id] = scored.message
        return status, message, str(scored.status), scored.message, ()

    def _rescored(self, item: Planned, scored: CaseResult) -> None:
        status, message, score_status, score_message, scores = self._judge(item, scored, RunStatus.OK, "")
        changed = status is not RunStatus.OK
        self.store.rescore(item.algorithm, item.case.case_id, item.provenance, scores, score_status=score_status,
                           score_message=score_message, status=status if changed else None, message=message if changed else None)
        self.summary.rescored += 1
        self.summary.failed += changed
        self.on_result(CaseEvent(item.algorithm, item.case.case_id, Action.RESCORE, status, score_status, None,
                                 message or score_message, scores))

    def record_nothing_ran(self, spec: AlgorithmSpec, case: Case, status: RunStatus, message: str) -> None:
        """Record a run that never started (its image could not be built)."""
        prov = Provenance(image_digest="", manifest_sha256=resolved_manifest_sha256(spec), input_sha256="", runner="")
        self.store.record(RunRecord(algorithm=spec.name, case_id=case.case_id, kind=spec.kind, status=status, exit_code=None,
                                    message=message, elapsed_s=math.nan, wall_s=0.0, started_at=None, ended_at=None,
                                    log_tail="", provenance=prov))
        self.summary.executed += 1
        self.summary.failed += 1
        self.on_result(CaseEvent(spec.name, case.case_id, Action.RUN, status, "", None, message))

    def _restamp(self, item: Planned) -> None:
        self.store.rescore(item.algorithm, item.case.case_id, item.provenance, (), score_status="")
        self.summary.rescored += 1


class Stage:
    """What one kind of algorithm adds to the one driver (`evaluate`); this base is the segmenters'.

    A subclass (`harness.annotate.AnnotatorStage`) says how a case's inputs are planned and what
    follows the runs; discovery, admission, images, orphaned containers, executor and store are the
    driver's, the same for every kind."""

    kind: Kind = Kind.SEGMENTER

    def new_summary(self) -> RunSummary:
        return RunSummary()

    def start(self, store: Store) -> None:
        """Before planning, with the store open."""

    def plan(self, spec: AlgorithmSpec, case: Case, at: Planning) -> Planned | None:
        """One (algorithm, case) planned, or None when there is nothing to run for it."""
        digest = at.data.digests[case.case_id]
        return plan_case(spec, case, at.settings, at.store.layout, at.stored, digest=at.digests[spec.name],
                         input_sha256=digest.image_sha256, label_sha256=digest.label_sha256,
                         image=at.images.get(spec.name))

    def finish(self, store: Store, data: DataSet, settings: RunSettings, summary: RunSummary) -> None:
        """After every run is recorded, with the store open."""


@dataclass(frozen=True)
class Planning:
    """What planning one (algorithm, case) may look at."""

    settings: RunSettings
    store: Store
    data: DataSet
    stored: dict[tuple[str, str], StoredRun]
    digests: dict[str, str]  # algorithm -> image digest (the local runner's folder digest)
    images: dict[str, str]  # algorithm -> image id to run (Docker only)
    summary: RunSummary


def evaluate(settings: RunSettings, stage: Stage, *, say: Say, on_result: OnResult, executor: Executor | None = None,
             after: RunSummary | None = None) -> RunSummary:
    """Run every algorithm of `stage.kind` on every case and record it: the one driver of
    `harness run` (segmenters), `harness annotate` (annotators) and `harness check`.

    Returns what happened; every outcome is in the store. Runs go through `executor` (default: one
    at a time here, scoring inline); results come back here, and only here is the store written, one
    whole case at a time. Manifests refused are reported before anything is built: those of this
    kind, and those whose kind cannot be read. `after`: the summary of an earlier step of the same
    command (the annotators after the segmenters of `harness run`), which has reported what concerns
    the whole folder (manifests of unknown kind, the data set's notes, algorithms no longer in the
    folder); no valid manifest of this kind is then a problem of this step, not an error."""
    kind = stage.kind
    summary = stage.new_summary()
    specs, spec_errors = (discover_algorithms(settings.algorithms_dir, repo_root=settings.repo_root)
                          if not settings.manifests else load_manifests(settings.manifests, settings.repo_root))
    summary.problems.extend(str(e) for e in spec_errors if e.kind is kind or (e.kind is None and after is None))
    mine = accepted_specs([s for s in specs if s.kind is kind], settings.challenge, summary)
    summary.refused = len(summary.problems)
    for problem in summary.problems:  # before anything is built or run, not only in the summary at the end
        say(f"refused: {problem}")
    if not mine:
        if after is not None and summary.problems:
            return summary
        reasons = "; ".join(summary.problems[:3]) or f"no <name>/algorithm.toml of kind {kind} in it; add one (see algorithms/README.md)"
        raise SpecError(f"{settings.algorithms_dir}: no valid {kind} manifest ({reasons})")
    with summary.timed("data"):
        data = load_data(settings.data_dir, limit=settings.case_limit)
        require_label_names(settings.data_dir, settings.challenge.profile)
    if after is None:
        summary.notes.extend(data.problems)
    executor = executor or LocalExecutor(scoring_workers=0)
    with Store.open(settings.results_dir) as store:
        store.bind(data.identity(settings.challenge))
        known = {s.name for s in specs} | {e.manifest.parent.name for e in spec_errors}
        for name in store.algorithms() if after is None else ():
            if name not in known:
                summary.notes.append(f"the store holds runs of {name}, which is not in {settings.algorithms_dir}; "
                                     f"`harness forget {name} --results {settings.results_dir}` removes them")
        images: dict[str, str] = {}
        with summary.timed("images"):
            if settings.runner is RunnerKind.DOCKER:
                prune_orphans(store, say)
                built, build_failures = make_images(mine, settings, say)
                images = {name: image.image_id for name, image in built.items()}  # by id, never by tag
                digests = dict(images)
            else:
                digests, build_failures = local_digests(mine)
        summary.problems.extend(build_failures.values())
        stage.start(store)
        at = Planning(settings, store, data, store.stored(), digests, images, summary)
        plan: list[Planned] = []
        with executor:
            recorder = Recorder(store, executor, summary, on_result)
            for spec in mine:
                for case in data.cases:
                    if spec.name in build_failures:
                        recorder.record_nothing_ran(spec, case, RunStatus.BUILD_FAILED, build_failures[spec.name])
                    elif (planned := stage.plan(spec, case, at)) is not None:
                        plan.append(planned)
            count_kept(plan, at.stored, summary)
            with summary.timed("runs"):
                recorder.execute(plan)
        if settings.runner is RunnerKind.DOCKER:  # every run has ended: what is left here (a killed worker's) is an orphan
            prune_orphans(store, say)
        stage.finish(store, data, settings, summary)
    return summary


def run_all(settings: RunSettings, *, say: Say, on_result: OnResult, executor: Executor | None = None) -> RunSummary:
    """The segmenters' part of `harness run` (`evaluate` of the segmenters)."""
    return evaluate(settings, Stage(), say=say, on_result=on_result, executor=executor)


def load_manifests(manifests: tuple[Path, ...], repo_root: Path | None) -> tuple[list[AlgorithmSpec], list[ManifestError]]:
    """Exactly these manifests (each relative to its own repository: the folder above its
    algorithms folder, as discovery has it), valid ones and errors."""
    specs: list[AlgorithmSpec] = []
    errors: list[ManifestError] = []
    for manifest in manifests:
        try:
            specs.append(load_manifest(manifest, repo_root=repo_root or manifest.resolve().parents[2]))
        except ManifestError as exc:
            errors.append(exc)
    return specs, errors


def plan_case(spec: AlgorithmSpec, case: Case, settings: RunSettings, layout: ResultsLayout,
              stored: dict[tuple[str, str], StoredRun], *, digest: str, input_sha256: str, label_sha256: str,
              image: str | None, extra_inputs: tuple[tuple[str, Path], ...] = (),
              details: dict[str, object] | None = None) -> Planned:
    """Decide what to do with one (algorithm, case) and make its task."""
    profile = settings.challenge.profile_for(spec.kind)
    prov = provenance(image_digest=digest, manifest_sha256=resolved_manifest_sha256(spec), input_sha256=input_sha256,
                      runner=settings.runner, label_sha256=label_sha256, profile=profile)
    action = decide(stored.get((spec.name, case.case_id)), prov, rerun=settings.rerun,
                    kept=layout.label_map(spec.name, case.case_id).is_file())
    task = None
    if action is Action.RUN:
        task = RunTask(spec=spec, case=case, image=image, runner=settings.runner, profile=profile, monitor=settings.monitor,
                       extra_inputs=extra_inputs, owner=layout.owner_label)
    # The manifest's own words travel with each run, for the report (what it is, which version).
    about: dict[str, object] = {"manifest_version": spec.version}
    if spec.description:
        about["manifest_description"] = spec.description
    return Planned(spec.name, spec.kind, case, prov, profile, action, task, {**about, **(details or {})})


def rescore_all(results_dir: Path, *, data_dir: Path | None = None, profile: str | None = None, say: Say,
                on_result: OnResult, executor: Executor | None = None) -> RunSummary:
    """`harness rescore`: score every kept output again under the folder's profile as it reads now
    (or `profile`, which then becomes the folder's), without running any container."""
    summary = RunSummary()
    with Store.open(results_dir, create=False) as store:
        identity = store.identity()
        if identity is None:
            raise StoreError(f"{results_dir}: records no data set; run `harness run --results {results_dir}` first")
        challenge = challenge_of(identity, profile=profile)
        data = load_data(data_dir if data_dir is not None else _recorded_root(identity))
        if data.id != identity.dataset_id:
            raise StoreError(f"{results_dir}: holds results of data set {identity.describe_data()}, not of --data "
                             f"{data.identity(challenge).describe_data()}; pass the data set it was run on")
        cases = {c.case_id: c for c in data.cases}
        plan: list[Planned] = []
        for (algorithm, case_id), row in sorted(store.stored().items()):
            case = cases.get(case_id)
            if case is None:
                continue
            kind = Kind(row.kind)
            used = challenge.profile_for(kind)
            prov = provenance(image_digest="", manifest_sha256="", input_sha256="", runner=RunnerKind.LOCAL,
                              label_sha256=data.digests[case_id].label_sha256, profile=used)
            if row.status == RunStatus.OK and not store.layout.label_map(algorithm, case_id).is_file():
                summary.problems.append(f"{store.layout.label_map(algorithm, case_id)}: kept label map is missing; "
                                        "`harness run` runs it again")
                continue
            if row.status == RunStatus.INVALID_OUTPUT:
                summary.notes.append(f"{algorithm} on {case_id}: invalid_output, its outputs were not kept; "
                                     "`harness run` runs it again under the new rules")
                continue
            action = Action.RESCORE if row.status == RunStatus.OK else Action.RESTAMP
            plan.append(Planned(algorithm, kind, case, prov, used, action))
        with executor or LocalExecutor(scoring_workers=0) as running:
            Recorder(store, running, summary, on_result).execute(plan)
        store.set_identity(data.identity(challenge))
    say(f"rescored under profile {challenge.profile.name} ({challenge.profile.source}), scoring version {SCORING_VERSION}")
    return summary


def _recorded_root(identity: FolderIdentity) -> Path:
    root = Path(identity.dataset_root)
    if not root.is_dir():
        raise DataError(f"{root}: the data set this results folder was run on is gone; pass --data where it is now")
    return root


def forget(results_dir: Path, algorithms: list[str]) -> dict[str, int]:
    """Remove every row and kept file of `algorithms` from a results folder: name -> runs removed."""
    with Store.open(results_dir, create=False) as store:
        known = set(store.algorithms())
        missing = [a for a in algorithms if a not in known]
        if missing:
            raise StoreError(f"{results_dir}: holds no runs of {', '.join(missing)}; it holds {', '.join(sorted(known)) or 'none'}")
        removed = {a: store.forget(a) for a in algorithms}
        if not any(row.kind == Kind.ANNOTATOR for row in store.stored().values()):
            store.layout.remove_annotation()  # its tables came from the annotator just forgotten
    return removed


DEFAULT_PATHOLOGY = 0.5  # the default data's share of cases with a finding the segmenters never saw


def ensure_default_data(cache_dir: Path, *, cases: int = 10, seed: int = 0, size: str = "small",
                        pathology: float = DEFAULT_PATHOLOGY, say: Say) -> Path:
    """The default phantom data set, synthesised once into the cache."""
    from harness.data.synth import GENERATOR_VERSION, write_dataset

    target = cache_dir / "data" / f"phantom-v{GENERATOR_VERSION}-seed{seed}-n{cases}-{size}-pathology{pathology:g}"
    stamp = target / ".complete"
    if stamp.exists():
        return target
    say(f"synthesising the default data set ({cases} {size} phantom cases, seed {seed}, "
        f"a finding in {pathology:.0%} of them) into {target}")
    write_dataset(target, cases=cases, seed=seed, size=size, pathology=pathology)
    stamp.touch()
    return target
