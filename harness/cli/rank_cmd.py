"""`harness rank`: rank algorithms from a scores table, with bootstrap stability and tests."""

from __future__ import annotations

import math
from pathlib import Path

import click
import pandas as pd

from harness.cli.jsonout import JSON_OPTION, json_mode, records
from harness.cli.overrides import with_overrides
from harness.errors import ExitStatus
from harness.layout import STORE_FILE
from harness.ranking.challenge import ChallengeRanking, rank_challenge
from harness.ranking.combine import describe_method
from harness.ranking.config import BOOTSTRAP_VARIANTS, FLARE22_RANKING, RANKING_METHODS, load_ranking_config
from harness.ranking.io import (
    default_out_dir,
    load_organ_scores,
    load_scores,
    resolve_scores_path,
    write_ranking_tables,
)


@click.command()
@click.option(
    "--results", "results", required=True, type=click.Path(path_type=Path),
    help="Scores: a CSV or parquet file, or a folder with scores.parquet or scores.csv.",
)
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=None,
    help="Ranking config (TOML); default: FLARE22's scheme (harness/ranking/flare22_ranking.toml).",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None,
    help="Folder for the ranking tables; default: ranking/ beside the scores.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Bootstrap seed (default: the config's, 0).")
@click.option("--draws", type=click.IntRange(min=1), default=None,
              help="Bootstrap draws (default: the config's, 1000).")
@click.option("--bootstrap", "variant", type=click.Choice(BOOTSTRAP_VARIANTS), default=None,
              help="textbook (default) or challengeR (a case drawn k times ranked as one pooled "
                   "group, as challengeR 1.0.5 does).")
@click.option("--method", type=click.Choice(RANKING_METHODS), default=None,
              help="Ranking method (default: the config's, flare): challengeR's aggregate_then_rank, "
                   "rank_then_aggregate, test_then_rank, or grand-challenge's gc_absolute, gc_mean_position, "
                   "gc_median_position.")
@click.option("--aggregate", default=None, metavar="mean|median|qNN",
              help="aggregate_then_rank's aggregate (default: the config's, mean): mean, median or a quantile "
                   "such as q25.")
@JSON_OPTION
def rank(
    results: Path,
    config_path: Path | None,
    out_dir: Path | None,
    seed: int | None,
    draws: int | None,
    variant: str | None,
    method: str | None,
    aggregate: str | None,
    as_json: bool,
) -> int:
    """Rank algorithms (FLARE's score, or another method), with bootstrap intervals and tests.

    The scores are tidy (columns algorithm, case, metric, value[, status]) or wide (algorithm,
    case, one column per metric[, status]). A row whose status is not "ok" (timeout, crashed,
    oom, invalid_output, ...) enters with its metric's worst value (FLARE22: DSC 0, NSD 0,
    3600 s, AUC_GPU 29491200, AUC_CPU 360000); a missing value or an absent row takes the worst
    rank of its case. Every per-case rank of every metric is pooled with the config's weights;
    the weighted means (the score, lower is better) are ranked, ties sharing the best rank.

    \b
    Files written to --out:
      leaderboard.csv          rank, algorithm, score, bootstrap rank interval (rank_lo,
                               rank_hi: the 2.5% and 97.5% inverse-CDF quantiles of the
                               draws' ranks, ranks that draws gave), rank_median (the same
                               rule), mean_<metric>
                               (as ranked), n_failed (cases with a failed run), n_missing
      bootstrap_ranks.csv      draw, algorithm, rank, score, tau (one row per draw/algorithm)
      tau.csv                  draw, Kendall's tau-b against the full ranking (empty: undefined)
      tau_summary.csv          variant, seed, draws, valid/dropped draws, mean, median, quartiles
      significance_<metric>.csv  1 = row algorithm significantly better than column algorithm
                               (one-sided paired Wilcoxon; by default Holm over all
                               ordered pairs, alpha 0.05; missing values set to the
                               metric's worst value)
      per_case_ranks.csv       algorithm, case, metric, value (as ranked), status, rank, missing
      method_ranks.csv         each algorithm's rank under every ranking method, side by side
      task_ranks.csv           from a results store: each organ ranked as a task (on DSC, by
                               the method's per-task form), the mean rank over the organs
                               and its rank (challengeR's consensus)
      task_stability.csv       task, draw, Kendall's tau-b of the organ's ranking on each
                               bootstrap draw of its cases against its full ranking

    --json prints the leaderboard and "tasks" (null for a scores file): metric, method,
    organs, ranks (per algorithm: its rank per organ, mean_rank, consensus_rank) and
    stability (per organ: n_draws, n_valid, mean, median, q25, q75 of tau).

    A table of `harness score` (per organ) or a results store also gives a profile's
    extra metrics (lesion_dice, lesion_hd95_mm, fp_volume_ml, fn_volume_ml, pq, ...) as
    the case mean, and each organ's or region's own as <metric>@<organ>, when the config
    names them; their direction and failure value are known (e.g.
    harness/ranking/brats2023_ranking.toml, autopet_ranking.toml).

    --method other than flare ranks each metric by that method (challengeR's semantics,
    R's arithmetic: equal means tie) and then the weighted mean of the metric ranks; the
    bootstrap re-runs that ranking on every draw.
    """
    with json_mode(as_json) as emit:
        return _rank(results, config_path, out_dir, seed, draws, variant, method, aggregate, emit)


def _rank(results: Path, config_path: Path | None, out_dir: Path | None, seed: int | None, draws: int | None,
          variant: str | None, method: str | None, aggregate: str | None, emit) -> int:  # type: ignore[no-untyped-def]
    config = FLARE22_RANKING if config_path is None else load_ranking_config(config_path)
    if aggregate is not None:
        from harness.ranking.methods import aggregate_function

        try:
            aggregate_function(aggregate)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--aggregate") from None
    config = with_overrides(config, seed=seed, n_draws=draws, bootstrap=variant, method=method, aggregate=aggregate)
    source = resolve_scores_path(results)
    table = load_scores(source, config)
    if source.name == STORE_FILE:
        # A store records more measurements than any ranking uses (peak memory, sample rate, ...).
        table = table[table["metric"].isin(config.metric_names)]
    result = rank_challenge(table, config, organ_table=load_organ_scores(source), source=str(source))
    target = default_out_dir(results) if out_dir is None else out_dir
    written = write_ranking_tables(result, target)
    _print_report(result, n_cases=len(result.matrices[result.metrics[0]].cases))
    click.echo(f"Wrote {', '.join(p.name for p in written)} to {target}")
    emit({"command": "rank", "source": str(source), "out": str(target), "files": [p.name for p in written],
          "metrics": list(result.metrics), "left_out": list(result.left_out), "leaderboard": records(result.leaderboard),
          "tasks": tasks_document(result), "exit_status": 0})
    return ExitStatus.OK


def tasks_document(result: ChallengeRanking) -> dict[str, object] | None:
    """`--json`'s "tasks": each organ ranked as a task (None without organs: a scores file, or one organ)."""
    tasks = result.tasks
    if tasks is None:
        return None
    return {"metric": tasks.metric, "method": tasks.ranking.method.label, "organs": list(tasks.values),
            "ranks": records(tasks.ranking.to_frame()), "stability": records(tasks.stability_summary()),
            "stability_draws": tasks.n_draws, "stability_seed": tasks.seed}


def _fmt(value: float) -> str:
    """Compact fixed-point display: 0.829, 30.1, 53424; "-" for a missing mean."""
    if math.isnan(value):
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:.0f}"
    return f"{value:.1f}" if size >= 10 else f"{value:.3f}"


def _print_report(result: ChallengeRanking, *, n_cases: int) -> None:
    config = result.config
    boot = result.bootstrap
    weights = ", ".join(f"{m} x{config.metric(m).weight:g}" for m in result.metrics)
    click.echo(f"Ranking {config.name}: {len(result.leaderboard)} algorithms x {n_cases} cases; {describe_method(config)} "
               f"over ({weights})")
    if result.skipped_metrics:
        click.echo(f"Not in the table, left out: {', '.join(result.skipped_metrics)}")
    if result.unmeasured_metrics:
        click.echo(f"Not measured here (no run scored ok has a value; e.g. no GPU), left out: "
                   f"{', '.join(result.unmeasured_metrics)}")
    for note in result.left_out:
        click.echo(f"Left out of the ranking: {note}")
    seed = "explicit draws" if boot.seed is None else f"seed {boot.seed}"
    click.echo(f"Bootstrap: {boot.variant}, {boot.n_draws} draws, {seed}\n")

    board = result.leaderboard
    shown = pd.DataFrame(
        {
            "rank": board["rank"].map(lambda r: "-" if pd.isna(r) else f"{r:g}"),
            "algorithm": board["algorithm"],
            "score": board["score"].map(lambda v: f"{v:.3f}"),
            "95% rank CI": [f"{lo:g}-{hi:g}"
                            for lo, hi in zip(board["rank_lo"], board["rank_hi"], strict=True)],
        }
    )
    for name in result.metrics:
        shown[name] = board[f"mean_{name}"].map(_fmt)
    shown["failed"] = board["n_failed"]
    click.echo(shown.to_string(index=False))

    tau = boot.tau_summary()
    if tau.n_valid:
        click.echo(
            f"\nKendall's tau vs the full ranking: mean {tau.mean:.3f}, median {tau.median:.3f} "
            f"(IQR {tau.q25:.3f}-{tau.q75:.3f}); {tau.n_dropped} of {tau.n_draws} draws dropped "
            "(tau undefined: every algorithm tied)"
        )
    else:
        click.echo(
            f"\nKendall's tau undefined in all {tau.n_draws} draws (every algorithm tied in the "
            "full ranking or in every draw); all dropped"
        )
