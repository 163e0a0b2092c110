"""`harness score`: DSC, NSD and HD95 of a folder of predictions against ground-truth labels."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click

from harness.cli.jsonout import JSON_OPTION, json_mode, plain
from harness.errors import DataError, ExitStatus, UsageError
from harness.models import CaseStatus, OrganStatus, Profile
from harness.profiles import BUILTIN_PROFILES, load_profile
from harness.profiles.mapping import LabelMap
from harness.safetext import safe_text
from harness.scoring import COLUMNS, CaseResult, Row, plan, score_many, summary, to_rows, write_table


@click.command()
@click.option("--pred", "pred_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of predicted label maps, <case>.nii.gz (or .nii, .mha, .mhd, .nrrd).")
@click.option("--pred-root", "pred_root", type=click.Path(path_type=Path), default=None,
              help="Folder of prediction folders, one per algorithm (its name): all are scored into one table "
                   "that `harness rank --results` ranks as it is.")
@click.option("--algorithm", default=None,
              help="With --pred: the algorithm's name, written in an 'algorithm' column (the table is then rankable).")
@click.option("--labels", "labels_dir", required=True, type=click.Path(path_type=Path),
              help="Data set root in any layout `harness data check` names (FLARE / nnU-Net, MSD, AbdomenAtlas, "
                   "TotalSegmentator) or a folder of <case> label files.")
@click.option("--profile", "profile_name", default="flare22", show_default=True,
              help=f"Scoring rules: {', '.join(BUILTIN_PROFILES)}, or the path of a profile TOML file.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output table of (case, organ) rows: FILE.csv or FILE.parquet.")
@click.option("--label-map", "label_map_text", default=None, metavar="FROM:TO",
              help="Predictions numbered in profile FROM's label system, data (and scoring) in TO's: labels are "
                   "mapped by organ name, e.g. amos22:flare22; organs only one side has are reported, not scored.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Cases scored in parallel (processes).  [default: number of CPUs]")
@JSON_OPTION
def score(pred_dir: Path | None, pred_root: Path | None, algorithm: str | None, labels_dir: Path, profile_name: str,
          out: Path, label_map_text: str | None, jobs: int | None, as_json: bool) -> int:
    """Score predictions against ground truth: one row per (case, organ).

    Under a profile with regions (brats2023, kits23: unions of labels), one row per
    (case, region): organ is the region's name, label 0 for a union of several. A
    profile with extra metrics adds their columns after hd95_mm: lesion-wise
    (brats2023) lesion_dice, lesion_hd95_mm, lesion_tp, lesion_fn, lesion_fp (BraTS
    2023's); false volumes (autopet) fp_volume_ml, fn_volume_ml (autoPET's); panoptic
    (a profile's `panoptic` table) pq, sq, rq, sq_dsc, pq_dsc (panoptica's).

    \b
    Columns: [algorithm,] case, organ, label, dsc, nsd, hd95_mm, status, message.
    status is ok, missing_prediction, unreadable, grid_mismatch, invalid_labels or
    missing_label for the case, or not_scorable for an organ the profile's rules leave
    nothing to score (a one-slice aorta under flare22's z-range cut; counted apart); a
    case that fails keeps its rows (scores NaN) with the reason, and the other cases
    are scored. NaN in an ok row means "not applicable" (strict profile: organ absent
    from both). HD95 is DeepMind's robust Hausdorff distance at 95 % (surfel-area
    weighted), in mm. flare22 rounds DSC and NSD to 4 decimals as its official script
    does (numpy's rounding of float64).

    Exit status 0 when every case was scored, 3 (partial) when some failed, 4 when
    none could be (or --pred is the ground truth itself).
    """
    with json_mode(as_json) as emit:
        return _score(pred_dir, pred_root, algorithm, labels_dir, profile_name, out, label_map_text, jobs, emit)


def _score(pred_dir: Path | None, pred_root: Path | None, algorithm: str | None, labels_dir: Path, profile_name: str,
           out: Path, label_map_text: str | None, jobs: int | None, emit) -> int:  # type: ignore[no-untyped-def]
    if out.suffix not in (".csv", ".parquet"):
        raise UsageError(f"{out}: unknown table format '{out.suffix}'; use a .csv or .parquet file name")
    if (pred_dir is None) == (pred_root is None):
        raise click.UsageError("give one of --pred FOLDER or --pred-root FOLDER")
    if pred_root is not None and algorithm is not None:
        raise click.UsageError("--algorithm names the one algorithm of --pred; with --pred-root the folder names are used")
    label_map = None
    if label_map_text is not None:
        from harness.profiles.mapping import parse_label_map

        label_map = parse_label_map(label_map_text)
        profile_name = label_map.target.source  # the data's label system scores
        click.echo(f"label map {label_map.describe()}", err=True)
    profile = load_profile(profile_name)
    if labels_dir.is_dir():
        from harness.data.check import require_label_names

        require_label_names(labels_dir, profile)  # an AMOS-numbered set is not scored under FLARE's numbering
    if pred_root is not None:
        if not pred_root.is_dir():
            raise DataError(f"{pred_root}: no such folder; pass the folder holding one prediction folder per algorithm")
        folders = {p.name: p for p in sorted(pred_root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
        if not folders:
            raise DataError(f"{pred_root}: no prediction folders in it; put one folder per algorithm there")
    else:
        assert pred_dir is not None
        folders = {algorithm or "": pred_dir}
    n_jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    frames: list[list[Row]] = []
    totals = [0, 0]
    for name, folder in folders.items():
        frame, scored, failed = _score_folder(folder, labels_dir, profile, n_jobs, label=name, label_map=label_map)
        frames.append([{"algorithm": name, **row} for row in frame] if name else frame)
        totals[0] += scored
        totals[1] += failed
    if totals[0] == 0:
        raise DataError(f"{labels_dir}: no case could be scored ({totals[1]} failed; see the errors above); "
                        "fix the predictions or the labels")
    columns = [*(["algorithm"] if any(folders) else []), *COLUMNS, *profile.extra_metrics]
    write_table([row for frame in frames for row in frame], columns, out)
    for name, frame in zip(folders, frames, strict=True):
        click.echo(_format_summary(summary(frame), profile.name, name))
        if profile.extra_metrics:
            click.echo(_format_extra(summary(frame), profile.extra_metrics))
        skipped = [row for row in frame if row["status"] == OrganStatus.NOT_SCORABLE]
        if skipped:
            click.echo(f"not scorable under {profile.name} (left out of the means): " + ", ".join(
                f"{r['case']}/{r['organ']}" for r in skipped) + f" - {skipped[0]['message']}")
    click.echo(f"{totals[0]} of {totals[0] + totals[1]} cases scored, {totals[1]} failed; table written to {out}")
    status = ExitStatus.PARTIAL if totals[1] else ExitStatus.OK
    means = []
    for name, frame in zip(folders, frames, strict=True):
        means += [{"algorithm": name or None, **plain(row)} for row in summary(frame)]
    emit({"command": "score", "out": str(out), "profile": profile.name, "cases_scored": totals[0],
          "cases_failed": totals[1], "exit_status": int(status), "summary": means})
    return status


def _score_folder(pred_dir: Path, labels_dir: Path, profile: Profile, n_jobs: int, *, label: str,
                  label_map: LabelMap | None = None) -> tuple[list[Row], int, int]:
    case_jobs, problems = plan(pred_dir, labels_dir)
    for problem in problems:
        click.echo(f"harness: warning: {safe_text(problem.message)}", err=True)
    results: list[CaseResult] = []
    above_bar = "\n" if sys.stderr.isatty() else ""
    with click.progressbar(length=len(case_jobs), label=f"scoring {label}".strip(), file=sys.stderr) as bar:
        for result in score_many(case_jobs, profile, n_jobs=n_jobs, label_map=label_map):
            if result.status != CaseStatus.OK:
                # Printed as it happens, above the bar, so the error is seen even if the run stops.
                click.echo(f"{above_bar}harness: error: {safe_text(result.message)}", err=True)
            elif result.message:  # scored, with a warning (label values outside the profile counted as background)
                click.echo(f"{above_bar}harness: warning: {safe_text(result.message)}", err=True)
            results.append(result)
            bar.update(1)
    failed = sum(1 for r in results if r.status != CaseStatus.OK)
    return to_rows(results), len(results) - failed, failed


def _format_summary(table: list[Row], profile: str, algorithm: str = "") -> str:
    if not table:
        return f"{algorithm + ': ' if algorithm else ''}no case could be scored"
    lines = [f"{algorithm + ': ' if algorithm else ''}profile {profile}: mean over cases scored ok",
             f"{'organ':<22}{'DSC':>14}{'NSD':>14}{'HD95 med mm':>13}{'cases':>7}"]
    for row in table:
        lines.append(
            f"{row['organ']!s:<22}{_pm(row['dsc_mean'], row['dsc_sd']):>14}{_pm(row['nsd_mean'], row['nsd_sd']):>14}"
            f"{row['hd95_median_mm']:>13.2f}{int(row['cases']):>7}"
        )
    lines.append(f"{'mean':<22}{_mean_of(table, 'dsc_mean'):>14.4f}{_mean_of(table, 'nsd_mean'):>14.4f}")
    return "\n".join(lines)


def _format_extra(table: list[Row], metrics: tuple[str, ...]) -> str:
    """The mean of each of the profile's extra metrics per organ (or region), over the cases scored ok."""
    lines = [f"{'extra metrics (mean)':<22}" + "".join(f"{m:>16}" for m in metrics)]
    for row in table:
        lines.append(f"{row['organ']!s:<22}" + "".join(f"{row.get(f'{m}_mean', math.nan):>16.4f}" for m in metrics))
    return "\n".join(lines)


def _mean_of(table: list[Row], column: str) -> float:
    values = [row[column] for row in table if not math.isnan(row[column])]
    return math.fsum(values) / len(values) if values else math.nan


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.4f}" if math.isnan(sd) else f"{mean:.4f}±{sd:.3f}"
