"""One (algorithm, case): stage, run, check, keep; and score. Every failure becomes a status.

This is the one layer that does a case; the local and the Dask executors call it, and so do
`harness run`, `harness annotate` and `harness rescore` (through them). It never touches the
results store: a run comes back as a `RunResult` (outcome, kept files as bytes, figures), a score
as `harness.scoring.CaseResult`, and only the client records them.

- stage: a fresh input folder holding a *copy* of the case's image (and an annotator's segmenter
  outputs), so nothing the run does can touch the organiser's files, and an empty output folder;
- run: the runner (a sandboxed container, or a local process) under the resource monitor;
- check: the outputs against the container contract under the challenge's profile
  (`harness.acceptance`, the one module that opens an output; an annotator must also write
  attention.json);
- keep: only what the contract names (the label map, declared probabilities, an annotator's
  summary and per-organ maps), each checked before it is read; the rest is reported as `not_kept`;
  the log and the monitor series;
- score: `harness.scoring.score_one`, exactly as `harness score` does.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.acceptance import (
    HARNESS_NAMES,
    OutputNames,
    accepted_files,
    check_annotator_summary,
    extra_entries,
    map_outputs,
    validate_outputs,
)
from harness.attention.io import SUMMARY_FILE as ATTENTION_SUMMARY  # an annotator's per-organ sizes (contract)
from harness.contracts import Collected, Contract, contract_of
from harness.data.nifti import read_volume
from harness.errors import InvalidOutput
from harness.fstree import remove_tree
from harness.layout import LOG_FILE, MONITOR_FILE, PROBABILITY_DIR
from harness.models import Case, GpuMode, Kind, Profile, RunnerKind, RunStatus
from harness.monitor import MonitorSettings, RunMonitor
from harness.runner.base import Runner, RunOutcome, RunRequest, gets_gpu
from harness.safetext import safe_text
from harness.scoring import CaseJob, CaseResult, score_one
from harness.spec import AlgorithmSpec


@dataclass(frozen=True)
class RunTask:
    """One run to do, as it travels to wherever it runs (picklable)."""

    spec: AlgorithmSpec
    case: Case
    image: str | None  # the image id (never a tag: a tag can be moved), for the Docker runner
    runner: RunnerKind
    profile: Profile  # the challenge's profile for this kind: what the outputs are checked against
    monitor: MonitorSettings = MonitorSettings()
    extra_inputs: tuple[tuple[str, Path], ...] = ()  # (path under /input, source folder): an annotator's inputs
    owner: str = ""  # the results folder's label, put on its containers


@dataclass(frozen=True)
class RunResult:
    """A finished run, as it travels back to the client: outcome, kept files and figures."""

    task: RunTask
    outcome: RunOutcome
    files: dict[str, bytes]  # path relative to the run's kept folder -> content
    measurements: dict[str, float]
    details: dict[str, object]
    host: str
    worker: str
    host_facts: dict[str, str] = field(default_factory=dict)

    @property
    def label_map(self) -> bytes | None:
        return self.files.get(f"{self.task.case.case_id}.nii.gz")


def visible_gpu_ids() -> tuple[str, ...]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES when set (one Dask worker per GPU),
    else every GPU NVML sees."""
    from harness.host import host_info

    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        return tuple(g.strip() for g in chosen.split(",") if g.strip() and g.strip() != "-1")
    return host_info().gpu_ids


def run_spec(spec: AlgorithmSpec, *, gpu_ids: tuple[str, ...]) -> AlgorithmSpec:
    """`spec` as one run starts it: its contract's options resolved for whether the run gets the GPUs
    `gpu_ids` (nnU-Net's -device)."""
    options = contract_of(spec.contract).for_device(spec.options, gpu=gets_gpu(spec, gpu_ids))
    return spec if options == spec.options else replace(spec, options=options)


def make_runner(kind: RunnerKind) -> Runner:
    if kind is RunnerKind.DOCKER:
        from harness.runner.docker_runner import DockerRunner

        return DockerRunner(gpu_ids=visible_gpu_ids())
    from harness.runner.local_runner import LocalRunner

    return LocalRunner(gpu_ids=visible_gpu_ids())


@functools.cache
def _cached_runner(kind: RunnerKind) -> Runner:
    return make_runner(kind)


def _worker_name() -> str:
    if "distributed" not in sys.modules:  # no Dask worker can run in this process (and importing Dask costs a second)
        return "local"
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def stage(case: Case, extra_inputs: tuple[tuple[str, Path], ...], run_dir: Path,
          options: object = None, contract: Contract | None = None) -> tuple[Path, Path]:
    """A fresh `input/` (copies, readable by the sandbox's unprivileged user; in the form of the
    algorithm's contract) and an empty `output/`."""
    assert case.image is not None
    input_dir, output_dir = run_dir / "input", run_dir / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    staged = input_dir / f"{case.case_id}_0000.nii.gz"  # the contract's name and format, whatever the data's
    if case.image.name.endswith(".nii.gz"):
        shutil.copyfile(case.image, staged)  # a copy: the original's inode and mode stay untouched
    else:  # .nii, .mha, .mhd, .nrrd: converted, voxels and grid unchanged
        import nibabel as nib

        data, grid = read_volume(case.image)
        nib.save(nib.Nifti1Image(np.asarray(data), grid.affine), staged)
    (contract or contract_of("harness")).stage_input(options, case.case_id, staged, input_dir)  # e.g. grand-challenge's .mha
    for rel, source in extra_inputs:
        shutil.copytree(source, input_dir / rel, symlinks=False, copy_function=shutil.copyfile)
    for path in input_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    input_dir.chmod(0o755)
    return input_dir, output_dir


def check_outputs(task: RunTask, output_dir: Path, *, names: OutputNames = HARNESS_NAMES) -> None:
    """Raise InvalidOutput unless the outputs keep the container contract under the task's profile
    (files named by `names`: as the container wrote them)."""
    assert task.case.image is not None
    validate_outputs(output_dir, case_id=task.case.case_id, image=task.case.image, profile=task.profile,
                     probabilities=task.spec.writes_probabilities and task.spec.kind is Kind.SEGMENTER, names=names)
    if task.spec.kind is Kind.ANNOTATOR:
        check_annotator_summary(output_dir, ATTENTION_SUMMARY, names=names)


ANNOTATOR_MAP_DIRS = ("attention", "heatmap")  # an annotator's per-organ maps (container contract)


def contract_files(task: RunTask) -> list[str]:
    """What the contract lets a run keep (relative to /output): the label map; a segmenter's
    declared probabilities; an annotator's summary and per-organ maps."""
    case_id = task.case.case_id
    organs = [o.name for o in task.profile.organs]
    if task.spec.kind is Kind.ANNOTATOR:
        return [f"{case_id}.nii.gz", ATTENTION_SUMMARY, *(f"{d}/{o}.nii.gz" for d in ANNOTATOR_MAP_DIRS for o in organs)]
    if task.spec.writes_probabilities:
        return [f"{case_id}.nii.gz", *(f"{PROBABILITY_DIR}/{o}.nii.gz" for o in organs)]
    return [f"{case_id}.nii.gz"]


def kept_files(task: RunTask, output_dir: Path, *, collected: Collected | None = None,
               names: OutputNames = HARNESS_NAMES) -> tuple[dict[str, bytes], list[str]]:
    """The accepted outputs to keep (regular files the contract names, each checked before it is
    read, by `harness.acceptance`) and what else /output held (safe names, at most 20), reported,
    never kept. With a foreign contract, `output_dir` is the collected folder and the extras are
    those the container wrote beside what was read (`collected`)."""
    allowed = contract_files(task)
    assert task.case.image is not None
    files = accepted_files(output_dir, allowed, image=task.case.image, names=names)
    if collected is not None and collected.folder != collected.root:
        skip = collected.consumed | contract_of(task.spec.contract).ignored_extras(task.spec.options, task.case.case_id)
        return files, extra_entries(collected.root, skip, set())
    return files, extra_entries(output_dir, set(files), {str(Path(rel).parent) for rel in allowed} - {"."})


def run_case(task: RunTask, *, runner: Runner | None = None, work_dir: Path | None = None) -> RunResult:
    """Stage, run, check and keep one case wherever this is called (the client, or a Dask worker)."""
    runner = runner or _cached_runner(task.runner)
    run_dir = Path(tempfile.mkdtemp(prefix="harness-run-", dir=work_dir))
    try:
        return _run_staged(task, runner, run_dir)
    except Exception as exc:  # noqa: BLE001 - the harness's own failure on this case: recorded, the run goes on
        return failed_result(task, RunStatus.RUNNER_ERROR, f"runner error: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]}; rerun `harness run` to retry it")
    finally:
        try:
            remove_tree(run_dir)  # whatever the algorithm left, at any depth
        except OSError:
            pass


def _run_staged(task: RunTask, runner: Runner, run_dir: Path) -> RunResult:
    from harness.host import host_info

    spec = run_spec(task.spec, gpu_ids=getattr(runner, "gpu_ids", ()))  # the GPUs this runner gives
    options, contract = spec.options, contract_of(spec.contract)
    input_dir, output_dir = stage(task.case, task.extra_inputs, run_dir, options, contract)
    make = RunMonitor.for_container if task.runner is RunnerKind.DOCKER else RunMonitor.for_process
    monitor = make(gpu_ids=visible_gpu_ids() if task.spec.gpu is not GpuMode.NONE else (), settings=task.monitor,
                   output_dir=output_dir)
    request = RunRequest(spec=spec, case_id=task.case.case_id, input_dir=input_dir, output_dir=output_dir,
                         image=task.image, owner=task.owner,
                         contract=tuple(contract.keep(options, task.case.case_id, contract_files(task),
                                                      probabilities=task.spec.writes_probabilities)))
    outcome = runner.run(request, monitor)
    files: dict[str, bytes] = {}
    not_kept: list[str] = []
    mapped_as = ""
    if outcome.status is RunStatus.OK:
        names = output_names(task, outcome, options)
        try:
            collected = contract.collect(options, case=task.case, profile=task.profile, output_dir=output_dir,
                                         native_dir=run_dir / "collected", probabilities=task.spec.writes_probabilities,
                                         names=names)
            names = replace(names, aliases=collected.aliases)
            if task.spec.map_labels and task.spec.profile.label_system != task.profile.label_system:
                collected, mapped_as = map_outputs(collected, case=task.case, source=task.spec.profile,
                                                   target=task.profile, probabilities=task.spec.writes_probabilities,
                                                   native_dir=run_dir / "mapped", names=names)
            check_outputs(task, collected.folder, names=names)
            files, not_kept = kept_files(task, collected.folder, collected=collected, names=names)
        except InvalidOutput as exc:
            outcome = replace(outcome, status=RunStatus.INVALID_OUTPUT, message=safe_text(str(exc)))
        except Exception as exc:  # noqa: BLE001 - outputs that break the checks themselves are the algorithm's
            files = {}
            outcome = replace(outcome, status=RunStatus.INVALID_OUTPUT,
                              message=f"/output could not be checked ({type(exc).__name__}); write only the files "
                                      "of the contract")
    files[LOG_FILE] = outcome.log_tail.encode("utf-8")
    series = monitor.series()
    buffer = io.BytesIO()
    series.to_parquet(buffer, index=False)
    files[MONITOR_FILE] = buffer.getvalue()
    measurements = {**monitor.figures(),
                    **{k: float(v) for k, v in outcome.details.items() if isinstance(v, (int, float))}}
    details = {**outcome.details, "gpu_memory_source": monitor.gpu_source(), "samples": len(series)}
    if mapped_as:
        details["label_map"] = mapped_as  # map_labels: how its numbering became the challenge's
    # What the runner left in the container's /output (never copied out) and what the checks found here.
    left = details.pop("not_kept", None)
    if isinstance(left, list):
        by_design = contract.ignored_extras(options, task.case.case_id)  # e.g. nnU-Net's plans.json: its tool's, not the team's
        not_kept = [*(str(n) for n in left if str(n) not in by_design), *not_kept]
    if not_kept:
        details["not_kept"] = not_kept[:20]  # /output held files outside the contract: reported, not kept
    info = host_info()
    return RunResult(task=task, outcome=outcome, files=files, measurements=measurements, details=details,
                     host=socket.gethostname(), worker=_worker_name(),
                     host_facts={"cpu": info.cpu, "gpu": info.gpu, "driver": info.driver})


def output_names(task: RunTask, outcome: RunOutcome, options: object) -> OutputNames:
    """How the checks name this run's outputs: under Docker, the folder its contract mounts (FLARE's
    /workspace/outputs), else /output; and what the runner did not copy out (`not_kept`), which is
    what a check found when the copied folder holds nothing."""
    root = "/output"
    if task.runner is RunnerKind.DOCKER:
        root = contract_of(task.spec.contract).launch(options, probabilities=task.spec.writes_probabilities).output_path
    written = outcome.details.get("not_kept")
    return OutputNames(root=root, written=tuple(map(str, written)) if isinstance(written, list) else ())


def failed_result(task: RunTask, status: RunStatus, message: str) -> RunResult:
    """A run that produced nothing to keep (it could not start, or could not finish anywhere)."""
    outcome = RunOutcome(status, None, float("nan"), 0.0, 0.0, 0.0, message=message)
    return RunResult(task=task, outcome=outcome, files={}, measurements={}, details={}, host="", worker="")


def lost_result(task: RunTask, error: BaseException) -> RunResult:
    """A run whose worker died and that no other could finish: recorded as lost, retried next time."""
    return failed_result(task, RunStatus.LOST, f"lost: {type(error).__name__}: {' '.join(str(error).split())[:300]}; "
                         "rerun `harness run` to retry it")


def score_label_map(case: Case, label_map: Path, profile: Profile, *, threads: int = 1, shown: str = "") -> CaseResult:
    """Score a kept label map against the case's ground truth, exactly as `harness score` does;
    `shown`: its name in messages (default: its path)."""
    return score_one(CaseJob(case.case_id, case.label, case.image, label_map, shown=shown), profile, threads=threads)


def score_bytes(case: Case, label_map: bytes, profile: Profile, *, threads: int = 1) -> CaseResult:
    """`score_label_map` of a label map's bytes (as it travels to a scoring worker), named in
    messages as the algorithm wrote it (`/output/<case>.nii.gz`)."""
    with tempfile.TemporaryDirectory(prefix="harness-score-") as tmp:
        path = Path(tmp) / f"{case.case_id}.nii.gz"
        path.write_bytes(label_map if label_map[:2] == b"\x1f\x8b" else gzip.compress(label_map))
        return score_label_map(case, path, profile, threads=threads, shown=f"/output/{case.case_id}.nii.gz")
