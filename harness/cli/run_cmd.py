"""`harness images base`, `harness build` and `harness run`: images and runs of algorithms."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pandas as pd

from harness.annotate import AnnotateSummary, annotate_all, assemble_all, declares_annotators
from harness.challenge import challenge_of, load_challenge
from harness.cli.jsonout import JSON_OPTION, json_mode
from harness.errors import ExitStatus, HarnessError
from harness.executor import DaskExecutor, LocalExecutor
from harness.models import CaseStatus, Kind, RunnerKind, RunStatus
from harness.pipeline import (
    CaseEvent,
    RunSettings,
    RunSummary,
    default_cache_dir,
    ensure_default_data,
    format_phases,
    rescore_all,
    run_all,
)
from harness.pipeline import forget as forget_algorithms
from harness.safetext import safe_text
from harness.spec import discover_algorithms
from harness.store import FolderIdentity, Store, StoreError


def _say(message: str) -> None:
    from harness.cli import verbosity

    if verbosity.LEVEL >= 0 or message.startswith("refused: "):  # -q keeps what went wrong
        click.echo(f"harness: {safe_text(message)}", err=True)


@click.group()
def images() -> None:
    """Base images for algorithm builds, made locally (no registry needed)."""


@images.command("base")
def images_base() -> int:
    """Make the local base image: a minimal Debian with Python 3, made by debootstrap.

    No root: the first stage runs under fakeroot, the second in a container. Needs
    Debian's package mirror, never a container registry. debootstrap and fakeroot come
    from the host or are fetched with apt-get download. Tagged
    harness/base:<suite>-<hash>; an existing one is reused.
    """
    from harness.build import ensure_base_image

    click.echo(ensure_base_image(progress=_say))
    return ExitStatus.OK


@click.command()
@click.argument("algorithms_dir", type=click.Path(path_type=Path), default="algorithms")
@click.option("--base", default=None, help="Base image to build from (default: the local debootstrap image, made if missing).")
@click.option("--force", is_flag=True, help="Rebuild even when an image with the same content hash exists.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Images built at once.  [default: one per core, at most 4, as memory allows]")
def build(algorithms_dir: Path, base: str | None, force: bool, jobs: int | None) -> int:
    """Build every algorithm's image, reusing unchanged ones (tagged by content hash).

    Python packages come from a wheelhouse that pip downloads on the host
    (~/.cache/harness/wheelhouse, or $HARNESS_CACHE); builds use no network.
    Several images build at once (--jobs); `harness run` builds the same way.
    """
    from harness.build import BuildError, build_all, docker_client, ensure_base_image, fetch_wheels, platform_name

    specs, errors = discover_algorithms(algorithms_dir, repo_root=algorithms_dir.resolve().parent)
    for error in errors:
        click.echo(f"harness: error: {error}", err=True)
    fetch_wheels(specs, default_cache_dir() / "wheelhouse", progress=_say)  # while the base image is made
    base_image = base or ensure_base_image(docker_client(), progress=_say)
    failed = len(errors)
    for spec, image in build_all(specs, base=base_image, wheel_cache=default_cache_dir() / "wheelhouse", progress=_say,
                                 force=force, jobs=jobs):
        if isinstance(image, BuildError):
            failed += 1
            click.echo(f"harness: error: {image}", err=True)
        else:
            how = "cached" if image.cached else "loaded" if spec.dockerfile is None else "built"
            named = platform_name(spec)
            click.echo(f"{spec.name:<24} {image.tag:<48} {image.image_id[:19]} {how}"
                       + (f" (FLARE's name {named}, not tagged here)" if named else ""))
    return ExitStatus.PARTIAL if failed else ExitStatus.OK


_CHALLENGE_HELP = ("Challenge file (TOML: name, profile, annotation_profile) with the rules every algorithm is scored "
                   "under.  [default: FLARE22 scoring, AbdomenAtlas-8K organs for the annotator]")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _event_line(event: CaseEvent) -> str:
    dsc = [s.dsc for s in event.scores if not math.isnan(s.dsc)]
    detail = f"DSC {sum(dsc) / len(dsc):.3f}" if dsc else event.message
    ok = event.status == RunStatus.OK and event.score_status in ("", CaseStatus.OK)
    status = event.status if event.score_status in ("", CaseStatus.OK) else f"{event.status}/{event.score_status}"
    elapsed = f"{event.elapsed_s:7.1f} s" if event.elapsed_s is not None and not math.isnan(event.elapsed_s) else "      - "
    line = f"{'ok ' if ok else 'ERR'} {event.action:<8} {event.algorithm:<20} {event.case_id:<16} {status:<16} {elapsed}  {detail}"
    if event.total:  # runs of this command: n/N and the rest at the pace so far
        eta = f", about {_duration(event.eta_s)} left" if event.eta_s is not None and event.done < event.total else ""
        line = f"[{event.done}/{event.total}{eta}] {line}"
    from harness.cli import verbosity

    if ok and event.message:  # scored, with a warning (label values outside the profile counted as background)
        line += f" | warning: {event.message}"
    if event.log_line and (not ok or verbosity.LEVEL > 0):  # a failed run's always; every run's with -v
        line += f" | log: {event.log_line}"
    if event.log_file:
        line += f" (whole log: {event.log_file})"
    return line


def _still_running(task, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """A long run, said every HARNESS_HEARTBEAT_S (30 s) so that a quiet terminal is not a hung one."""
    from harness.cli import verbosity

    if verbosity.LEVEL >= 0:
        limit = task.spec.resources.time_limit_s
        click.echo(f"harness: still running {task.spec.name} on {task.case.case_id}: {seconds:.0f} s of its "
                   f"{limit:g} s limit", err=True)


def _echo_event(event: CaseEvent) -> None:
    from harness.cli import verbosity

    ok = event.status == RunStatus.OK and event.score_status in ("", CaseStatus.OK)
    if verbosity.LEVEL < 0 and ok:
        return
    click.echo(safe_text(_event_line(event)), err=True)


def _print_outcome(summary: RunSummary) -> None:
    for note in summary.notes:
        click.echo(f"harness: note: {safe_text(note)}", err=True)
    for problem in summary.problems:
        click.echo(f"harness: error: {safe_text(problem)}", err=True)
    for case_id, why in sorted(summary.unscorable.items()):
        click.echo(f"harness: error: {case_id}: ground truth not scored ({safe_text(why)}); the case is left out of the "
                   "ranking until it is fixed and `harness rescore` is run", err=True)


_RUN_CONFIG_KEYS = {"algorithms": "algorithms_dir", "data": "data_dir", "results": "results_dir",
                    "challenge": "challenge_file", "profile": "profile", "runner": "runner", "rerun": "rerun",
                    "base": "base", "scheduler": "scheduler", "scoring_workers": "scoring_workers"}
_RUN_CONFIG_PATHS = {"algorithms", "data", "results", "challenge"}


def _load_run_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """`--config run.toml`: the command's options as a file (paths relative to it); the command line
    still wins over the file."""
    if value is None:
        return None
    import tomllib

    try:
        raw = tomllib.loads(value.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"{value}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value}: not valid TOML ({' '.join(str(exc).split())})") from None
    unknown = sorted(set(raw) - set(_RUN_CONFIG_KEYS))
    if unknown:
        raise click.BadParameter(f"{value}: unknown key '{unknown[0]}'; allowed: {', '.join(sorted(_RUN_CONFIG_KEYS))}")
    defaults = {}
    for key, dest in _RUN_CONFIG_KEYS.items():
        if key in raw:
            item = raw[key]
            defaults[dest] = str((value.parent / item).resolve()) if key in _RUN_CONFIG_PATHS and isinstance(item, str) else item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


@click.command()
@click.argument("algorithms_dir", type=click.Path(path_type=Path), default="algorithms")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None, is_eager=True,
              expose_value=False, callback=_load_run_config,
              help="A TOML file of this command's options (algorithms, data, results, challenge, profile, runner, "
                   "rerun, base, scheduler, scoring_workers; paths relative to the file); the command line wins.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data set (FLARE / nnU-Net, MSD, AbdomenAtlas or TotalSegmentator layout; see `harness data check`). "
                   "Default: 10 synthetic phantom cases, made once and cached.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Results folder: store.sqlite, runs/<alg>/<case>/ outputs and logs. It belongs to one data set.")
@click.option("--challenge", "challenge_file", type=click.Path(path_type=Path), default=None, help=_CHALLENGE_HELP)
@click.option("--profile", default=None, help="Scoring profile of the segmenters (a built-in name or a TOML file); "
                                              "overrides the challenge file's.")
@click.option("--runner", type=click.Choice([k.value for k in RunnerKind]), default=RunnerKind.DOCKER.value,
              show_default=True,
              help="docker: one sandboxed container per case; local: the manifest's [local] command, no sandbox.")
@click.option("--rerun", is_flag=True, help="Run every case again, even those already in the store.")
@click.option("--base", default=None, help="Base image for builds (default: the local debootstrap image).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
              help="Dask scheduler: each run becomes a task needing GPU=1 on its workers (start one worker per GPU with "
                   "`dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1`); runs are scored and stored here as "
                   "they end. A scheduler not reached within Dask's connect timeout (30 s; "
                   "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s to change) is exit 7, as is one lost midway: the "
                   "same command again runs only what is not stored.")
@click.option("--scoring-workers", type=click.IntRange(min=0), default=None,
              help="Without --scheduler: processes of the local Dask cluster that score while the next case runs "
                   "(0 scores inline).  [default: number of CPUs]")
@click.option("--report/--no-report", default=True, show_default=True,
              help="Rewrite the report afterwards (--no-report: the store only; `harness report` writes it later).")
@JSON_OPTION
def run(algorithms_dir: Path, data_dir: Path | None, results_dir: Path, challenge_file: Path | None, profile: str | None,
        runner: str, rerun: bool, base: str | None, scheduler: str | None, scoring_workers: int | None, report: bool,
        as_json: bool) -> int:
    """Build, run every segmenter on every case, score, store, summarise.

    \b
    One container per case, one at a time per GPU (per Dask worker with --scheduler).
    Each case is stored as soon as it ends, so an interrupted run loses nothing and the
    next `harness run` resumes where it stopped. A stored case is
      run again   when its image, manifest, input image or runner changed (or --rerun);
      rescored    when only its ground truth, the profile's content or the scoring code
                  changed: the kept outputs are scored again, no container starts;
      reused      otherwise.
    A results folder belongs to one data set and one challenge: another --data, or
    another profile, is refused (use a new --results, or `harness rescore --profile`).
    Run statuses: ok, timeout, crashed, oom, invalid_output, output_too_large,
    build_failed, runner_error, lost, no_gpu. A case whose ground truth cannot be scored is
    recorded (score status) and left out of the ranking; the others go on.
    Exit status 0 when every run of the evaluation is ok, 3 (partial) otherwise: the
    failures and unscorable cases stored by an earlier `harness run` and reused are
    counted too ("failed" in the summary and in --json; "failed_earlier" says how many).
    """
    with json_mode(as_json) as emit:
        return _run(emit, algorithms_dir=algorithms_dir, data_dir=data_dir, results_dir=results_dir,
                    challenge_file=challenge_file, profile=profile, runner=RunnerKind(runner), rerun=rerun, base=base,
                    scheduler=scheduler, scoring_workers=scoring_workers, write_report=report)


def _run(emit: Callable[[dict[str, Any]], None], *, algorithms_dir: Path, data_dir: Path | None, results_dir: Path,
         challenge_file: Path | None, profile: str | None, runner: RunnerKind, rerun: bool, base: str | None,
         scheduler: str | None, scoring_workers: int | None, write_report: bool = True) -> int:
    from harness.cli.jsonout import records

    cache = default_cache_dir()
    challenge = load_challenge(challenge_file, profile=profile)
    started = time.monotonic()
    default_data = data_dir is None
    if data_dir is None:
        data_dir = ensure_default_data(cache, say=_say)
    synthesised = time.monotonic() - started
    settings = RunSettings(algorithms_dir=algorithms_dir, data_dir=data_dir, results_dir=results_dir,
                           runner=runner, rerun=rerun, base=base, cache_dir=cache,
                           repo_root=algorithms_dir.resolve().parent, challenge=challenge)
    executor = DaskExecutor(scheduler) if scheduler else LocalExecutor(scoring_workers=scoring_workers,
                                                                         still_running=_still_running)
    summary = run_all(settings, say=_say, on_result=_echo_event, executor=executor)
    if default_data:  # the embedded default data set: synthesised once, then found in the cache
        summary.phases = {"default data": synthesised, **summary.phases}
    annotated = None
    if declares_annotators(algorithms_dir, repo_root=settings.repo_root):
        with summary.timed("annotation"):
            annotated = annotate_all(settings, say=_say, on_result=_echo_event, after=summary)
        _print_annotation(annotated)
    _print_outcome(summary)
    with Store.open(results_dir, lock=False, create=False) as store:
        runs, scores = store.runs(), store.scores()
    click.echo(format_summary(runs, scores))
    refused_total = summary.refused + (annotated.refused if annotated is not None else 0)  # each reported once
    refused = f", {refused_total} manifest(s) refused" if refused_total else ""
    earlier = f" ({summary.failed_earlier} stored by an earlier run)" if summary.failed_earlier else ""
    click.echo(f"{summary.executed} runs executed, {summary.rescored} rescored, {summary.reused} reused from the store, "
               f"{summary.failed} failed{earlier}{refused}; results in {results_dir}")
    report = None
    if write_report:
        with summary.timed("report"):
            report = _write_report(results_dir)
    click.echo(format_phases(summary.phases))  # where the time went
    failed = summary.partial or (annotated is not None and annotated.partial)
    status = ExitStatus.PARTIAL if failed else ExitStatus.OK
    table = runs[["algorithm", "case_id", "kind", "status", "message", "elapsed_s", "score_status"]]
    if len(scores):
        dsc = scores.groupby(["algorithm", "case_id"]).dsc.mean().rename("dsc_mean").reset_index()
        table = table.merge(dsc, on=["algorithm", "case_id"], how="left")
    emit({"command": "run", "results": str(results_dir), "report": report, "exit_status": int(status),
          "executed": summary.executed, "rescored": summary.rescored, "reused": summary.reused, "failed": summary.failed,
          "failed_earlier": summary.failed_earlier, "refused": refused_total,
          "problems": summary.problems + (annotated.problems if annotated is not None else []),
          "notes": summary.notes, "unscorable": summary.unscorable, "phases_s": summary.phases, "runs": records(table)})
    return status


def _write_report(results_dir: Path) -> str | None:
    try:
        from harness.report import build_report

        written = build_report(results_dir)
        click.echo(f"report: {written}")
        return str(written)
    except HarnessError as exc:  # the runs are stored; a report that cannot be built does not undo them
        click.echo(f"harness: warning: no report: {exc}", err=True)
        return None


@click.command()
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Results folder of a `harness run`.")
@click.option("--profile", default=None,
              help="Score under this profile (built-in name or TOML file) from now on. Default: the folder's own "
                   "profile as it reads now.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Where the folder's data set is now. Default: where it was when it was run.")
@click.option("--report/--no-report", default=True, show_default=True, help="Rewrite the report afterwards.")
def rescore(results_dir: Path, profile: str | None, data_dir: Path | None, report: bool) -> int:
    """Score every kept output of a results folder again; no container is started.

    \b
    For a changed profile (tolerances, rules), a fixed ground-truth label or a
    new scoring version. The data set must be the one the folder was run on (its case
    images are hashed). Failed runs keep their status; an invalid_output run (its
    outputs were not kept) is noted: `harness run` runs it again. Exit status 0, or
    3 when some case could not be scored.
    """
    summary = rescore_all(results_dir, data_dir=data_dir, profile=profile, say=_say, on_result=_echo_event)
    _print_outcome(summary)
    click.echo(f"{summary.rescored} runs rescored ({summary.failed} now failed); results in {results_dir}")
    if report:
        _write_report(results_dir)
    return ExitStatus.PARTIAL if summary.partial else ExitStatus.OK


@click.command()
@click.argument("algorithms", nargs=-1, required=True)
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
def forget(algorithms: tuple[str, ...], results_dir: Path) -> int:
    """Remove ALGORITHMS' runs, scores and kept outputs from a results folder.

    For algorithms withdrawn from the challenge: `harness run` notes those still in the
    store but no longer in the algorithms folder, and never removes them by itself.
    """
    removed = forget_algorithms(results_dir, list(algorithms))
    for name, count in removed.items():
        click.echo(f"{name}: {count} runs removed from {results_dir}")
    return ExitStatus.OK


@click.command()
@click.argument("algorithms_dir", type=click.Path(path_type=Path), default="algorithms")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Results folder of a `harness run` (the segmenters' probabilities are read from it).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="The data set the segmenters ran on. Default: the one the results folder records.")
@click.option("--runner", type=click.Choice([k.value for k in RunnerKind]), default=RunnerKind.DOCKER.value,
              show_default=True)
@click.option("--rerun", is_flag=True, help="Annotate every case again.")
@click.option("--base", default=None, help="Base image for builds (default: the local debootstrap image).")
@click.option("--queue-fraction", type=click.FloatRange(min=0, max=1, min_open=True), default=0.05, show_default=True,
              help="Share of cases in the review queue (at least one case).")
def annotate(algorithms_dir: Path, results_dir: Path, data_dir: Path | None, runner: str, rerun: bool, base: str | None,
             queue_fraction: float) -> int:
    """Run the attention-map annotator on every case, then prioritise cases for review.

    \b
    Needs >= 2 segmenters with probabilities in the results store, and that store's data
    set (a results folder belongs to one data set). Writes into RESULTS/annotation/:
    priority.csv (cases by attention size), review_queue.csv (the top share, organs by
    heat-map sum), and where ground truth exists error_detection.csv (per organ,
    like AbdomenAtlas-8K's Table 1: volume-level sensitivity and precision first, the
    paper's figures beside, then component and voxel level; an error is disagreement
    beyond the organ's NSD tolerance, in components of >= 100 voxels),
    error_detection_cases.csv, error_by_size.csv (sensitivity by error volume) and
    priority_check.csv (share of the errors in the queue beside the best and a random
    order). The tables are replaced all together or not at all.
    """
    cache = default_cache_dir()
    identity = _identity_of(results_dir)
    if data_dir is None:
        data_dir = Path(identity.dataset_root)
    settings = RunSettings(algorithms_dir=algorithms_dir, data_dir=data_dir, results_dir=results_dir,
                           runner=RunnerKind(runner), rerun=rerun, base=base, cache_dir=cache,
                           repo_root=algorithms_dir.resolve().parent, challenge=challenge_of(identity))
    summary = annotate_all(settings, say=_say, on_result=_echo_event, queue_fraction=queue_fraction)
    _print_annotation(summary)
    return ExitStatus.PARTIAL if summary.partial else ExitStatus.OK


def _identity_of(results_dir: Path) -> FolderIdentity:
    with Store.open(results_dir, lock=False, create=False) as store:
        identity = store.identity()
    if identity is None:
        raise StoreError(f"{results_dir}: records no data set; run `harness run --results {results_dir}` first")
    return identity


@click.command()
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="The data set (its labels are the original annotation). Default: the one the results folder records.")
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
    organs = tuple(o.strip() for o in original_organs.split(",") if o.strip())
    written = assemble_all(results_dir, out_dir, data_dir=data_dir, annotator=annotator, revised_dir=revised_dir,
                           original_organs=organs)
    click.echo(f"sources: {written}")
    return ExitStatus.OK


def _print_annotation(summary: AnnotateSummary) -> None:
    for note in summary.skipped:
        click.echo(f"harness: note: {note}", err=True)
    _print_outcome(summary)
    click.echo(f"annotation: {summary.executed} runs executed, {summary.rescored} rescored, {summary.reused} reused, "
               f"{summary.failed} failed")
    detection = summary.tables.get("error_detection")
    if detection is not None:
        click.echo(pd.read_csv(detection, keep_default_na=False).to_string(index=False))  # "" stays "", not NaN
    for name, path in sorted(summary.tables.items()):
        click.echo(f"  {name}: {path}")


def format_summary(runs: pd.DataFrame, scores: pd.DataFrame) -> str:
    """Per segmenter: cases ok / total, mean DSC and NSD over organs and cases, mean time."""
    runs = runs[runs.kind == Kind.SEGMENTER]
    if runs.empty:
        return "no segmenter runs in the store"
    lines = [f"{'algorithm':<22}{'ok':>8}{'DSC':>9}{'NSD':>9}{'time s':>9}  failures"]
    for algorithm, group in runs.groupby("algorithm"):
        ok = group[group.status == "ok"]
        sc = scores[(scores.algorithm == algorithm) & (scores.status == "ok")]
        failures = ", ".join(f"{status} {count}" for status, count in group[group.status != "ok"].status.value_counts().items())
        if "organ_status" in scores.columns:
            skipped = int((scores[scores.algorithm == algorithm].organ_status == "not_scorable").sum())
            if skipped:
                failures = ", ".join(p for p in (failures, f"{skipped} organ(s) not scorable") if p)
        lines.append(f"{algorithm!s:<22}{len(ok):>4}/{len(group):<3}{sc.dsc.mean():>9.4f}{sc.nsd.mean():>9.4f}"
                     f"{ok.elapsed_s.mean():>9.2f}  {failures or '-'}")
    return "\n".join(lines)
