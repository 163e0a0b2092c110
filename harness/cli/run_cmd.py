"""`harness images base`, `harness build` and `harness run`: images and runs of algorithms."""

from __future__ import annotations

import math
from pathlib import Path

import click
import pandas as pd

from harness.annotate import AnnotateSummary, annotate_all, annotators_in, assemble_all
from harness.errors import ExitStatus, HarnessError
from harness.executor import DaskExecutor, LocalExecutor
from harness.models import OrganScore
from harness.pipeline import RunSettings, default_cache_dir, ensure_default_data, run_all
from harness.runner.base import RunOutcome, RunStatus
from harness.spec import discover_algorithms
from harness.store import Store


def _say(message: str) -> None:
    click.echo(f"harness: {message}", err=True)


@click.group()
def images() -> None:
    """Base images for algorithm builds, made locally (no registry needed)."""


@images.command("base")
def images_base() -> int:
    """Make the local base image: debootstrap a minimal Debian with Python 3, docker import.

    Needs root and Debian's package mirror, never a container registry. The image is
    tagged harness/base:<suite>-<hash>; an existing one is reused.
    """
    from harness.build import ensure_base_image

    click.echo(ensure_base_image(progress=_say))
    return ExitStatus.OK


@click.command()
@click.argument("algorithms_dir", type=click.Path(path_type=Path), default="algorithms")
@click.option("--base", default=None, help="Base image to build from (default: the local debootstrap image, made if missing).")
@click.option("--force", is_flag=True, help="Rebuild even when an image with the same content hash exists.")
def build(algorithms_dir: Path, base: str | None, force: bool) -> int:
    """Build every algorithm's image, reusing unchanged ones (tagged by content hash).

    Python packages come from a wheelhouse that pip downloads on the host
    (~/.cache/harness/wheelhouse, or $HARNESS_CACHE); builds use no network.
    """
    from harness.build import BuildError, build_algorithm, docker_client, ensure_base_image

    specs, errors = discover_algorithms(algorithms_dir, repo_root=algorithms_dir.resolve().parent)
    for error in errors:
        click.echo(f"harness: error: {error}", err=True)
    client = docker_client()
    base_image = base or ensure_base_image(client, progress=_say)
    failed = len(errors)
    for spec in specs:
        try:
            image = build_algorithm(spec, base=base_image, wheel_cache=default_cache_dir() / "wheelhouse", client=client,
                                    progress=_say, force=force)
            click.echo(f"{spec.name:<24} {image.tag:<48} {image.image_id[:19]} {'cached' if image.cached else 'built'}")
        except BuildError as exc:
            failed += 1
            click.echo(f"harness: error: {exc}", err=True)
    return ExitStatus.PARTIAL if failed else ExitStatus.OK


@click.command()
@click.argument("algorithms_dir", type=click.Path(path_type=Path), default="algorithms")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data set (FLARE layout). Default: 10 synthetic phantom cases, made once and cached.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Results folder: store.sqlite, runs/<alg>/<case>/ outputs and logs.")
@click.option("--runner", type=click.Choice(["docker", "local"]), default="docker", show_default=True,
              help="docker: one sandboxed container per case; local: the manifest's [local] command, no sandbox.")
@click.option("--rerun", is_flag=True, help="Run every case again, even those already in the store.")
@click.option("--base", default=None, help="Base image for builds (default: the local debootstrap image).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
              help="Dask scheduler: each run becomes a task needing GPU=1 on its workers (start one worker per GPU with "
                   "`dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1`).")
@click.option("--scoring-workers", type=click.IntRange(min=0), default=None,
              help="Without --scheduler: processes of the local Dask cluster that score while the next case runs "
                   "(0 scores inline).  [default: number of CPUs]")
def run(algorithms_dir: Path, data_dir: Path | None, results_dir: Path, runner: str, rerun: bool, base: str | None,
        scheduler: str | None, scoring_workers: int | None) -> int:
    """Build, run every segmenter on every case, score, store, summarise.

    \b
    One container per case, one at a time per GPU (per Dask worker with --scheduler).
    Each case is stored as soon as it ends, so an interrupted run loses nothing and the
    next `harness run` resumes where it stopped (unchanged results are reused; --rerun
    forces). Statuses: ok, timeout, crashed, oom, invalid_output, output_too_large,
    build_failed, runner_error, lost.
    Exit status 0 when every run was ok, 3 (partial) otherwise.
    """
    cache = default_cache_dir()
    if data_dir is None:
        data_dir = ensure_default_data(cache, say=_say)
    settings = RunSettings(algorithms_dir=algorithms_dir, data_dir=data_dir, results_dir=results_dir, runner=runner, rerun=rerun,
                           base=base, cache_dir=cache, repo_root=algorithms_dir.resolve().parent)

    def on_result(algorithm: str, case_id: str, outcome: RunOutcome, scores: list[OrganScore]) -> None:
        dsc = [s.dsc for s in scores if not math.isnan(s.dsc)]
        detail = f"DSC {sum(dsc) / len(dsc):.3f}" if dsc else outcome.message
        mark = "ok " if outcome.status == RunStatus.OK else "ERR"
        click.echo(f"{mark} {algorithm:<20} {case_id:<16} {outcome.status:<16} {outcome.elapsed_s:7.1f} s  {detail}", err=True)

    executor = DaskExecutor(scheduler) if scheduler else LocalExecutor(scoring_workers=scoring_workers)
    summary = run_all(settings, say=_say, on_result=on_result, executor=executor)
    annotated = None
    if annotators_in(algorithms_dir, repo_root=settings.repo_root):
        annotated = annotate_all(algorithms_dir, data_dir, results_dir, runner=runner, base=base, cache_dir=cache,
                                 repo_root=settings.repo_root, rerun=rerun, say=_say, on_result=on_result)
        _print_annotation(annotated)
    for problem in summary.problems:
        click.echo(f"harness: error: {problem}", err=True)
    with Store.open(results_dir, lock=False, create=False) as store:
        click.echo(format_summary(store.runs(), store.scores()))
    click.echo(f"{summary.executed} runs executed, {summary.reused} reused from the store, {summary.failed} failed; "
               f"results in {results_dir}")
    try:
        from harness.report import build_report

        click.echo(f"report: {build_report(results_dir)}")
    except HarnessError as exc:  # the runs are stored; a report that cannot be built does not undo them
        click.echo(f"harness: warning: no report: {exc}", err=True)
    failed = summary.partial or (annotated is not None and annotated.failed > 0)
    return ExitStatus.PARTIAL if failed else ExitStatus.OK


@click.command()
@click.argument("algorithms_dir", type=click.Path(path_type=Path), default="algorithms")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Results folder of a `harness run` (the segmenters' probabilities are read from it).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="The data set the segmenters ran on. Default: the cached default phantom set.")
@click.option("--runner", type=click.Choice(["docker", "local"]), default="docker", show_default=True)
@click.option("--rerun", is_flag=True, help="Annotate every case again.")
@click.option("--base", default=None, help="Base image for builds (default: the local debootstrap image).")
@click.option("--queue-fraction", type=click.FloatRange(min=0, max=1, min_open=True), default=0.05, show_default=True,
              help="Share of cases in the review queue (at least one case).")
def annotate(algorithms_dir: Path, results_dir: Path, data_dir: Path | None, runner: str, rerun: bool, base: str | None,
             queue_fraction: float) -> int:
    """Run the attention-map annotator on every case, then prioritise cases for review.

    \b
    Needs >= 2 segmenters with probabilities in the results store. Writes into
    RESULTS/annotation/: priority.csv (cases by attention size), review_queue.csv (the
    top share, organs by heat-map sum), and where ground truth exists
    error_detection.csv (per-organ sensitivity and precision, mean ± sd, like
    AbdomenAtlas-8K's Table 1), error_detection_cases.csv and priority_check.csv
    (Spearman of attention size vs error volume; share of error voxels in the queue).
    """
    cache = default_cache_dir()
    data = data_dir if data_dir is not None else ensure_default_data(cache, say=_say)

    def on_result(algorithm: str, case_id: str, outcome: RunOutcome, scores: list[OrganScore]) -> None:
        mark = "ok " if outcome.status == RunStatus.OK else "ERR"
        click.echo(f"{mark} {algorithm:<20} {case_id:<16} {outcome.status:<16} {outcome.elapsed_s:7.1f} s  {outcome.message}",
                   err=True)

    summary = annotate_all(algorithms_dir, data, results_dir, runner=runner, base=base, cache_dir=cache,
                           repo_root=algorithms_dir.resolve().parent, rerun=rerun, queue_fraction=queue_fraction, say=_say,
                           on_result=on_result)
    _print_annotation(summary)
    return ExitStatus.PARTIAL if summary.failed else ExitStatus.OK


@click.command()
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="The data set (its labels are the original annotation). Default: the cached phantom set.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the final label maps.")
@click.option("--revised", "revised_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="A reviewer's revised masks: DIR/<case>/<organ>.nii.gz (nonzero = organ).")
@click.option("--original-organs", default="", help="Comma-separated organs the source data set annotates (kept as they are).")
@click.option("--annotator", default="attention-annotator", show_default=True)
def assemble(results_dir: Path, data_dir: Path | None, out_dir: Path, revised_dir: Path | None, original_organs: str,
             annotator: str) -> int:
    """Assemble each case's final labels: original annotation, then revision, then pseudo label.

    Writes OUT/<case>.nii.gz and OUT/sources.csv (case, organ, source: original,
    revised, pseudo or none).
    """
    data = data_dir if data_dir is not None else ensure_default_data(default_cache_dir(), say=_say)
    organs = tuple(o.strip() for o in original_organs.split(",") if o.strip())
    click.echo(f"sources: {assemble_all(results_dir, data, out_dir, annotator=annotator, revised_dir=revised_dir, original_organs=organs)}")
    return ExitStatus.OK


def _print_annotation(summary: AnnotateSummary) -> None:
    for note in summary.skipped:
        click.echo(f"harness: note: {note}", err=True)
    click.echo(f"annotation: {summary.executed} runs executed, {summary.reused} reused, {summary.failed} failed")
    detection = summary.tables.get("error_detection")
    if detection is not None:
        click.echo(pd.read_csv(detection).to_string(index=False))
    for name, path in sorted(summary.tables.items()):
        click.echo(f"  {name}: {path}")


def format_summary(runs: pd.DataFrame, scores: pd.DataFrame) -> str:
    """Per segmenter: cases ok / total, mean DSC and NSD over organs and cases, mean time."""
    runs = runs[runs.kind == "segmenter"]
    if runs.empty:
        return "no segmenter runs in the store"
    lines = [f"{'algorithm':<22}{'ok':>8}{'DSC':>9}{'NSD':>9}{'time s':>9}  failures"]
    for algorithm, group in runs.groupby("algorithm"):
        ok = group[group.status == "ok"]
        sc = scores[(scores.algorithm == algorithm) & (scores.status == "ok")]
        failures = ", ".join(f"{status} {count}" for status, count in group[group.status != "ok"].status.value_counts().items())
        lines.append(f"{algorithm!s:<22}{len(ok):>4}/{len(group):<3}{sc.dsc.mean():>9.4f}{sc.nsd.mean():>9.4f}"
                     f"{ok.elapsed_s.mean():>9.2f}  {failures or '-'}")
    return "\n".join(lines)
