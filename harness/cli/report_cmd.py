"""`harness report`: the static HTML leaderboard of a results folder."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.overrides import with_overrides
from harness.errors import ExitStatus
from harness.ranking import FLARE22_RANKING, load_ranking_config
from harness.report.builder import DEFAULT_NAME, build_report


@click.command()
@click.option(
    "--results", "results_dir", required=True, type=click.Path(path_type=Path),
    help="Results folder of `harness run` (holding store.sqlite).",
)
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help=f"HTML file to write; default: {DEFAULT_NAME} in the results folder.",
)
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=None,
    help="Ranking config (TOML); default: FLARE22's scheme (harness/ranking/flare22_ranking.toml).",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Bootstrap seed (default: the config's, 0).")
@click.option("--draws", type=click.IntRange(min=1), default=None, help="Bootstrap draws (default: the config's, 1000).")
@click.option("--edition", type=click.Choice(["private", "public"]), default="private", show_default=True,
              help="private: everything, for the organisers; public: only what its allowlist names, aggregates and rank "
                   "intervals (no per-case result, log, case id or host name: per-case test scores leak the test "
                   "labels; anything new stays private until named), no pages.")
@click.option("--public", is_flag=True, help="The same as --edition public.")
def report(results_dir: Path, out: Path | None, config_path: Path | None, seed: int | None, draws: int | None,
           edition: str, public: bool) -> int:
    """Write the leaderboard of a results folder as self-contained HTML.

    \b
    The page holds the ranking (the config's method, rank, 95% bootstrap rank interval,
    mean +- sd of each metric, failed cases; click a header to sort), per-organ DSC and
    NSD, accuracy against time (bubble area = AUC_GPU), per-organ box plots, bootstrap
    rank blobs and Kendall's tau, ranks under every ranking method, the significance
    maps, resource curves of a typical case, the annotator's tables when there are any,
    and the methods (profile, tolerances, weights, bootstrap, versions, image digests,
    hosts). Every case's runs and per-organ scores are on one page per algorithm beside
    it, in <name>-pages/ (not in the public edition).

    Nothing requests anything from any host (CSS, script and SVG figures are inline),
    it prints on A4, and is byte-identical for the same store, config, seed and draws.
    """
    config = FLARE22_RANKING if config_path is None else load_ranking_config(config_path)
    written = build_report(results_dir, out, config=with_overrides(config, seed=seed, n_draws=draws),
                           public=public or edition == "public")
    click.echo(f"Wrote {written} ({written.stat().st_size / 1024:.0f} KiB)")
    return ExitStatus.OK
