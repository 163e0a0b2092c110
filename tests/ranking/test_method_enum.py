"""Ranking methods are a StrEnum checked once; the command line's overrides reach the ranking
through the configuration alone."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.cli.overrides import with_overrides
from harness.ranking import FLARE22_RANKING, RANKING_METHODS, RankingConfig, RankingMethod, load_ranking_config

PACKAGE = Path(__file__).resolve().parents[2] / "harness"


def test_a_configs_method_string_becomes_the_enum(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\nmethod = "gc_mean_position"\n[metrics.dsc]\nlarger_is_better = true\n')
    config = load_ranking_config(path)
    assert config.method is RankingMethod.GC_MEAN_POSITION and config.method == "gc_mean_position"
    assert replace(config, method="test_then_rank").method is RankingMethod.TEST_THEN_RANK
    assert set(RANKING_METHODS) == {m.value for m in RankingMethod}
    with pytest.raises(ValueError, match="'borda' is not a valid RankingMethod"):
        RankingConfig(method="borda")  # type: ignore[arg-type]


def test_overrides_replace_only_what_was_given() -> None:
    config = with_overrides(FLARE22_RANKING, seed=9, n_draws=None, bootstrap="challengeR", method=None, aggregate=None)
    assert (config.seed, config.n_draws, config.bootstrap, config.method) == (9, FLARE22_RANKING.n_draws, "challengeR",
                                                                              RankingMethod.FLARE)
    assert with_overrides(FLARE22_RANKING) == FLARE22_RANKING


def test_the_command_lines_options_reach_the_ranking_through_the_config(tmp_path: Path, make_flare_table) -> None:
    import json

    path = tmp_path / "scores.csv"
    make_flare_table(3, 6, seed=1).to_csv(path, index=False)
    def rank(*options: str) -> tuple[str, dict[str, object]]:
        done = CliRunner().invoke(cli, ["rank", "--results", str(path), "--out", str(tmp_path / "o"), "--json", *options],
                                  standalone_mode=False)
        assert done.exception is None, done.output
        return done.stderr, json.loads(done.stdout)

    text, document = rank("--seed", "3", "--draws", "25", "--bootstrap", "challengeR")
    assert "Bootstrap: challengeR, 25 draws, seed 3" in text and len(document["leaderboard"]) == 3  # type: ignore[arg-type]
    text, _ = rank("--method", "aggregate_then_rank", "--aggregate", "median", "--draws", "10")
    assert "aggregate-then-rank by the median" in text and "Bootstrap: textbook, 10 draws, seed 0" in text


def test_no_module_compares_a_ranking_method_as_a_string() -> None:
    """A method is the enum everywhere; its strings are spelled only where the enum is defined."""
    names = set(RANKING_METHODS)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    isinstance(n, ast.Constant) and n.value in names for n in ast.walk(node)):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, offenders
    templates = (PACKAGE.parent / "leaderboard").glob("*.j2")
    assert not [t.name for t in templates if any(f'"{m}"' in t.read_text() for m in names)]
