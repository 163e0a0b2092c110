"""`harness run`: build, run every segmenter on every case (one at a time), check, score, store.

The stages stay separate: images come from `harness.build`, runs from a runner, outputs are checked
by `harness.runner.outputs`, scored by `harness.metrics`, and recorded in the store as each case
finishes. A failing algorithm or case is a record with its status; the run goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.build import BuildError, BuiltImage, build_algorithm, ensure_base_image
from harness.data.dataset import discover
from harness.data.nifti import read_label
from harness.errors import CaseError, DataError, SpecError
from harness.executor import DaskExecutor, LocalExecutor, RunPayload, RunTask
from harness.host import host_info
from harness.metrics.case import score_case
from harness.models import Case, OrganScore
from harness.monitor import MonitorSettings, RunMonitor
from harness.profiles import load_profile
from harness.runner.base import Runner, RunOutcome, RunRequest, RunStatus
from harness.runner.outputs import PROBABILITY_DIR, InvalidOutput, validate_outputs
from harness.spec import AlgorithmSpec, discover_algorithms
from harness.store import Provenance, RunRecord, Store

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunSettings:
    algorithms_dir: Path
    data_dir: Path
    results_dir: Path
    runner: str = "docker"  # docker | local
    rerun: bool = False
    base: str | None = None  # image to build from; None: the local debootstrap base
    cache_dir: Path = Path(".cache/harness")
    repo_root: Path | None = None
    monitor: MonitorSettings = MonitorSettings()


@dataclass
class RunSummary:
    executed: int = 0
    reused: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.failed > 0 or bool(self.problems)


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))


def case_digest(case: Case) -> str:
    """sha256 over the case's image and label bytes: a changed case invalidates its results."""
    hasher = hashlib.sha256(case.case_id.encode())
    for path in (case.image, case.label):
        hasher.update(b"\0")
        if path is not None:
            with path.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    hasher.update(block)
    return hasher.hexdigest()


def local_digest(spec: AlgorithmSpec) -> str:
    """The local runner's stand-in for an image digest: the algorithm folder's content."""
    hasher = hashlib.sha256()
    for path in sorted(p for p in spec.directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        hasher.update(path.relative_to(spec.directory).as_posix().encode() + b"\0" + path.read_bytes())
    return "local:" + hasher.hexdigest()


def _provenance(spec: AlgorithmSpec, digest: str, case_sha: str, runner: str) -> Provenance:
    info = host_info()
    return Provenance(image_digest=digest, manifest_sha256=spec.manifest_sha256, case_sha256=case_sha,
                      profile=spec.profile, runner=runner, host=info.host, cpu=info.cpu, gpu=info.gpu, driver=info.driver)


def score_label_map(profile: str, case: Case, label_map: Path, *, threads: int = 1) -> list[OrganScore]:
    """Scores of an accepted label map against the case's ground truth (none without one)."""
    if case.label is None:
        return []
    gt, grid = read_label(case.label)
    pred, _ = read_label(label_map)
    return score_case(gt, pred, grid.spacing_mm, load_profile(profile), case_id=case.case_id, threads=threads)


@dataclass(frozen=True)
class CaseResult:
    outcome: RunOutcome
    scores: list[OrganScore]
    measurements: dict[str, float]
    details: dict[str, object]


def execute_case(runner: Runner, spec: AlgorithmSpec, case: Case, *, image: str | None, work_dir: Path,
                 keep_dir: Path, monitor_settings: MonitorSettings | None = None, score: bool = True,
                 extra_inputs: dict[str, Path] | None = None) -> CaseResult:
    """One monitored run in a fresh input/output pair; accepted outputs, the log and the resource
    time series are kept in `keep_dir`. With `score=False` the accepted label map is left for a
    separate scoring task."""
    assert case.image is not None
    run_dir = Path(tempfile.mkdtemp(prefix=f"{spec.name}-{case.case_id}-", dir=work_dir))
    try:
        input_dir, output_dir = run_dir / "input", run_dir / "output"
        input_dir.mkdir()
        output_dir.mkdir()
        staged = input_dir / case.image.name
        try:
            os.link(case.image, staged)
        except OSError:
            shutil.copy2(case.image, staged)
        staged.chmod(0o644)
        for rel, source in (extra_inputs or {}).items():  # an annotator's segmenter outputs
            (input_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, input_dir / rel, copy_function=_link_or_copy)
        for path in input_dir.rglob("*"):  # readable by the sandbox's unprivileged user
            path.chmod(0o755 if path.is_dir() else 0o644)
        make = RunMonitor.for_container if runner.name == "docker" else RunMonitor.for_process
        monitor = make(gpu_ids=visible_gpu_ids() if spec.gpu != "none" else (),
                       settings=monitor_settings or MonitorSettings(), output_dir=output_dir)
        request = RunRequest(spec=spec, case_id=case.case_id, input_dir=input_dir, output_dir=output_dir, image=image)
        outcome = runner.run(request, monitor)
        scores: list[OrganScore] = []
        if outcome.status == RunStatus.OK:
            try:
                accepted = validate_outputs(output_dir, case_id=case.case_id, image=case.image,
                                            profile=load_profile(spec.profile), probabilities=spec.writes_probabilities)
                if score:
                    scores = score_label_map(spec.profile, case, accepted.label, threads=os.cpu_count() or 1)
            except InvalidOutput as exc:
                outcome = _with_status(outcome, RunStatus.INVALID_OUTPUT, str(exc))
            except CaseError as exc:
                outcome = _with_status(outcome, RunStatus.INVALID_OUTPUT, str(exc))
        _keep(output_dir, keep_dir, outcome, everything=spec.kind == "annotator")
        series = monitor.series()
        series.to_parquet(keep_dir / "monitor.parquet", index=False)
        measurements = {**monitor.figures(), **{k: float(v) for k, v in outcome.details.items() if isinstance(v, (int, float))}}
        details = {**outcome.details, "gpu_memory_source": monitor.gpu_source(), "samples": len(series)}
        return CaseResult(outcome, scores, measurements, details)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _with_status(outcome: RunOutcome, status: RunStatus, message: str) -> RunOutcome:
    from dataclasses import replace

    return replace(outcome, status=status, message=message)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _keep(output_dir: Path, keep_dir: Path, outcome: RunOutcome, *, everything: bool = False) -> None:
    """Keep the accepted label map and probabilities (regular files only; with `everything`, every
    regular file of an accepted output, as an annotator's maps) and the log."""
    if keep_dir.exists():
        shutil.rmtree(keep_dir)
    keep_dir.mkdir(parents=True)
    (keep_dir / "log.txt").write_text(outcome.log_tail, encoding="utf-8")
    if outcome.status != RunStatus.OK:
        return
    if everything:
        for path in sorted(output_dir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                target = keep_dir / path.relative_to(output_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), target)
        return
    for path in output_dir.glob("*.nii.gz"):
        if path.is_file() and not path.is_symlink():
            shutil.move(str(path), keep_dir / path.name)
    probs = output_dir / PROBABILITY_DIR
    if probs.is_dir() and not probs.is_symlink():
        (keep_dir / PROBABILITY_DIR).mkdir()
        for path in probs.glob("*.nii.gz"):
            if path.is_file() and not path.is_symlink():
                shutil.move(str(path), keep_dir / PROBABILITY_DIR / path.name)


def visible_gpu_ids() -> tuple[str, ...]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES when set (one Dask worker per GPU),
    else every GPU NVML sees."""
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        return tuple(g.strip() for g in chosen.split(",") if g.strip() and g.strip() != "-1")
    return host_info().gpu_ids


def make_runner(kind: str) -> Runner:
    if kind == "docker":
        from harness.runner.docker_runner import DockerRunner

        return DockerRunner(gpu_ids=visible_gpu_ids())
    if kind == "local":
        from harness.runner.local_runner import LocalRunner

        return LocalRunner()
    raise SpecError(f"--runner {kind!r}; use docker or local")


def build_images(specs: list[AlgorithmSpec], settings: RunSettings, say: Say) -> tuple[dict[str, BuiltImage], dict[str, str]]:
    """Images by algorithm name, and the build failures (name -> one-line message)."""
    from harness.build import docker_client

    client = docker_client()
    # Containers left behind by a harness process that was killed (or a Dask worker that died).
    client.containers.prune(filters={"label": "harness.algorithm"})
    base = settings.base or ensure_base_image(client, progress=say)
    built: dict[str, BuiltImage] = {}
    failed: dict[str, str] = {}
    for spec in specs:
        try:
            image = build_algorithm(spec, base=base, wheel_cache=settings.cache_dir / "wheelhouse", client=client, progress=say)
            built[spec.name] = image
            say(f"image {image.tag} {'(cached)' if image.cached else 'built'} {image.image_id[:19]}")
        except BuildError as exc:
            failed[spec.name] = str(exc)
    return built, failed


def run_all(settings: RunSettings, *, say: Say, on_result: Callable[[str, str, RunOutcome, list[OrganScore]], None],
            executor: LocalExecutor | DaskExecutor | None = None) -> RunSummary:
    """The whole `harness run`: returns what happened; every outcome is in the store.

    Runs go through `executor` (default: containers one at a time here, scoring inline); results
    come back here, and only here is the store written, one whole case at a time.
    """
    summary = RunSummary()
    specs, spec_errors = discover_algorithms(settings.algorithms_dir, repo_root=settings.repo_root)
    summary.problems.extend(str(e) for e in spec_errors)
    segmenters = [s for s in specs if s.kind == "segmenter"]
    if not segmenters:
        raise SpecError(f"{settings.algorithms_dir}: no valid segmenter manifest; fix the errors above")
    dataset, data_problems = discover(settings.data_dir)
    summary.problems.extend(p.message for p in data_problems)
    cases = [c for c in dataset.cases if c.image is not None]
    if not cases:
        raise DataError(f"{settings.data_dir}: no images (imagesTr/<case>_0000.nii.gz); nothing to run")

    images: dict[str, BuiltImage] = {}
    build_failures: dict[str, str] = {}
    if settings.runner == "docker":
        images, build_failures = build_images(segmenters, settings, say)
    summary.problems.extend(build_failures.values())
    executor = executor or LocalExecutor(scoring_workers=0)
    with Store.open(settings.results_dir) as store, executor:
        stored = store.valid_keys()
        tasks: list[RunTask] = []
        provenance: dict[tuple[str, str], Provenance] = {}
        for spec in segmenters:
            digest = images[spec.name].image_id if spec.name in images else (
                local_digest(spec) if settings.runner == "local" else "")
            for case in cases:
                prov = _provenance(spec, digest, case_digest(case), settings.runner)
                provenance[(spec.name, case.case_id)] = prov
                if spec.name in build_failures:
                    outcome = RunOutcome(RunStatus.BUILD_FAILED, None, math.nan, 0.0, 0.0, 0.0, message=build_failures[spec.name])
                    _record(store, spec, case, prov, outcome, [], {}, {}, summary, on_result)
                elif not settings.rerun and stored.get((spec.name, case.case_id)) == prov.key():
                    summary.reused += 1
                else:
                    image = images[spec.name].tag if spec.name in images else None
                    tasks.append(RunTask(spec=spec, case=case, image=image, runner=settings.runner, monitor=settings.monitor))

        scoring: list[tuple[RunPayload, Any]] = []

        def record_finished(block: bool) -> None:
            for item in list(scoring):
                payload, future = item
                if block or future.done():
                    scoring.remove(item)
                    _record_payload(store, payload, future.result(), provenance, summary, on_result)

        for payload in executor.runs(tasks):
            task = payload.task
            keep = store.run_dir(task.spec.name, task.case.case_id)
            _write_files(keep, payload.files)
            label_name = f"{task.case.case_id}.nii.gz"
            if payload.outcome.status == RunStatus.OK and task.case.label is not None and label_name in payload.files:
                scoring.append((payload, executor.score(payload, payload.files[label_name])))
            else:
                _record_payload(store, payload, [], provenance, summary, on_result)
            record_finished(block=False)
        record_finished(block=True)
    return summary


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for rel, content in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _record_payload(store: Store, payload: RunPayload, scores: list[OrganScore],
                    provenance: dict[tuple[str, str], Provenance], summary: RunSummary,
                    on_result: Callable[[str, str, RunOutcome, list[OrganScore]], None]) -> None:
    task = payload.task
    base = provenance[(task.spec.name, task.case.case_id)]
    prov = dataclasses.replace(base, host=payload.host or base.host, worker=payload.worker or "local",
                               **{k: v for k, v in payload.host_facts.items() if k in ("cpu", "gpu", "driver")})
    _record(store, task.spec, task.case, prov, payload.outcome, scores, payload.measurements, payload.details, summary,
            on_result)


def _record(store: Store, spec: AlgorithmSpec, case: Case, prov: Provenance, outcome: RunOutcome, scores: list[OrganScore],
            measurements: dict[str, float], details: dict[str, object], summary: RunSummary,
            on_result: Callable[[str, str, RunOutcome, list[OrganScore]], None]) -> None:
    record = RunRecord(
        algorithm=spec.name, case_id=case.case_id, kind=spec.kind, status=str(outcome.status), exit_code=outcome.exit_code,
        message=outcome.message, elapsed_s=outcome.elapsed_s, wall_s=outcome.wall_s, started_at=outcome.started_at,
        ended_at=outcome.ended_at, log_tail=outcome.log_tail, provenance=prov, details=details,
    )
    store.record(record, scores, measurements)
    summary.executed += 1
    if outcome.status != RunStatus.OK:
        summary.failed += 1
    on_result(spec.name, case.case_id, outcome, scores)


def ensure_default_data(cache_dir: Path, *, cases: int = 10, seed: int = 0, size: str = "small", say: Say) -> Path:
    """The default phantom data set, synthesised once into the cache."""
    from harness.data.synth import write_dataset

    target = cache_dir / "data" / f"phantom-seed{seed}-n{cases}-{size}"
    stamp = target / ".complete"
    if stamp.exists():
        return target
    say(f"synthesising the default data set ({cases} {size} phantom cases, seed {seed}) into {target}")
    write_dataset(target, cases=cases, seed=seed, size=size)
    stamp.touch()
    return target

