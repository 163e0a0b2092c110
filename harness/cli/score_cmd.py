"""`harness score`: DSC, NSD and HD95 of a folder of predictions against ground-truth labels."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pandas as pd

from harness.errors import DataError, ExitStatus
from harness.models import CaseStatus
from harness.profiles import BUILTIN_PROFILES, load_profile
from harness.scoring import CaseResult, plan, score_many, summary, to_frame, write_table


@click.command()
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of predicted label maps, <case>.nii.gz.")
@click.option("--labels", "labels_dir", required=True, type=click.Path(path_type=Path),
              help="Data set root (labelsTr/, labelsTs/, imagesTr/ ...) or a folder of <case>.nii.gz labels.")
@click.option("--profile", "profile_name", default="flare22", show_default=True,
              help=f"Scoring rules: {', '.join(BUILTIN_PROFILES)}, or the path of a profile TOML file.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output table of (case, organ) rows: FILE.csv or FILE.parquet.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Cases scored in parallel (processes).  [default: number of CPUs]")
def score(pred_dir: Path, labels_dir: Path, profile_name: str, out: Path, jobs: int | None) -> int:
    """Score predictions against ground truth: one row per (case, organ).

    \b
    Columns: case, organ, label, dsc, nsd, hd95_mm, status, message.
    status is ok, missing_prediction, unreadable, grid_mismatch, invalid_labels or
    missing_label; a case that fails keeps its rows (scores NaN) with the reason, and
    the other cases are scored. NaN in an ok row means "not applicable" (strict profile:
    organ absent from both). HD95 is DeepMind's robust Hausdorff distance at 95 %
    (surfel-area weighted), in mm.

    Exit status 0 when every case was scored, 3 (partial) when some failed.
    """
    if out.suffix not in (".csv", ".parquet"):
        raise DataError(f"{out}: unknown table format '{out.suffix}'; use a .csv or .parquet file name")
    profile = load_profile(profile_name)
    case_jobs, problems = plan(pred_dir, labels_dir)
    for problem in problems:
        click.echo(f"harness: warning: {problem.message}", err=True)
    n_jobs = jobs if jobs is not None else (os.cpu_count() or 1)

    results: list[CaseResult] = []
    above_bar = "\n" if sys.stderr.isatty() else ""
    with click.progressbar(length=len(case_jobs), label="scoring", file=sys.stderr) as bar:
        for result in score_many(case_jobs, profile, n_jobs=n_jobs):
            if result.status != CaseStatus.OK:
                # Printed as it happens, above the bar, so the error is seen even if the run stops.
                click.echo(f"{above_bar}harness: error: {result.message}", err=True)
            results.append(result)
            bar.update(1)

    frame = to_frame(results)
    write_table(frame, out)
    failed = [r for r in results if r.status != CaseStatus.OK]
    click.echo(_format_summary(summary(frame), profile.name))
    click.echo(
        f"{len(results) - len(failed)} of {len(results)} cases scored, {len(failed)} failed; "
        f"table written to {out}"
    )
    return ExitStatus.PARTIAL if failed else ExitStatus.OK


def _format_summary(table: pd.DataFrame, profile: str) -> str:
    if table.empty:
        return "no case could be scored"
    lines = [f"profile {profile}: mean over cases scored ok",
             f"{'organ':<22}{'DSC':>14}{'NSD':>14}{'HD95 med mm':>13}{'cases':>7}"]
    for organ, row in table.iterrows():
        lines.append(
            f"{organ!s:<22}{_pm(row.dsc_mean, row.dsc_sd):>14}{_pm(row.nsd_mean, row.nsd_sd):>14}"
            f"{row.hd95_median_mm:>13.2f}{int(row.cases):>7}"
        )
    lines.append(f"{'mean':<22}{table.dsc_mean.mean():>14.4f}{table.nsd_mean.mean():>14.4f}")
    return "\n".join(lines)


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.4f}" if pd.isna(sd) else f"{mean:.4f}±{sd:.3f}"
