"""Issue 36: a bootstrap that puts an algorithm on ranks 14 and 15 only gives it the rank interval
14-15 (ranks that exist) in every place that shows it: the leaderboard table of both report
editions, `harness rank`'s text, its leaderboard.csv and its `--json` document.

The draws are chosen from the data: of 300 seeded draws, one that ranks some algorithm 14th and
one that ranks it 15th; the bootstrap then uses the first once and the second 39 times (40 draws),
where linear interpolation made the interval 14.975-15. They reach the ranking through
`draw_cases`, the bootstrap's one source of draws.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.ranking import FLARE22_RANKING, bootstrap, rank_challenge
from harness.report import build_report, load_report_inputs
from harness.report.builder import rank_inputs
from harness.store import read_store_scores
from tests.ranking.conftest import synthetic_flare_table
from tests.report.conftest import store_fixture
from tests.report.test_build import section

N_DRAWS = 40


def _draws_on_14_and_15(boot_ranks: np.ndarray, draws: np.ndarray, algorithms: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """An algorithm that some draw ranks 14th and another 15th, and the 40 draws: the first once,
    the second 39 times."""
    for k, algorithm in enumerate(algorithms):
        at14 = np.flatnonzero(boot_ranks[:, k] == 14)
        at15 = np.flatnonzero(boot_ranks[:, k] == 15)
        if at14.size and at15.size:
            return algorithm, np.stack([draws[at14[0]]] + [draws[at15[0]]] * (N_DRAWS - 1))
    raise AssertionError("no algorithm ranked both 14th and 15th in 300 draws: choose another seed")


def _use_draws(monkeypatch: pytest.MonkeyPatch, chosen: np.ndarray) -> None:
    def draw_cases(n_cases: int, n_draws: int, *, seed: int | None = 0) -> np.ndarray:
        assert (n_cases, n_draws) == (chosen.shape[1], N_DRAWS)
        return chosen

    monkeypatch.setattr(bootstrap, "draw_cases", draw_cases)


def _check_boot(ranks: np.ndarray, algorithms: tuple[str, ...], algorithm: str) -> None:
    """The premise: the algorithm's draws are 14 once and 15 otherwise, which interpolation spoilt."""
    column = ranks[:, algorithms.index(algorithm)]
    assert sorted(column.tolist()) == [14.0] + [15.0] * (N_DRAWS - 1)
    assert np.percentile(column, 2.5) == pytest.approx(14.975)


def test_harness_rank_text_csv_and_json_show_an_integral_interval(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    table = synthetic_flare_table(20, 12, seed=5)
    scores = tmp_path / "scores.csv"
    table.to_csv(scores, index=False)
    probe = rank_challenge(table, replace(FLARE22_RANKING, n_draws=300, seed=3))
    algorithm, chosen = _draws_on_14_and_15(probe.bootstrap.ranks, bootstrap.draw_cases(12, 300, seed=3),
                                            probe.bootstrap.algorithms)
    _use_draws(monkeypatch, chosen)
    ranked = rank_challenge(table, replace(FLARE22_RANKING, n_draws=N_DRAWS))
    _check_boot(ranked.bootstrap.ranks, ranked.bootstrap.algorithms, algorithm)

    out = tmp_path / "out"
    text = CliRunner().invoke(cli, ["rank", "--results", str(scores), "--out", str(out), "--draws", str(N_DRAWS)],
                              standalone_mode=False)
    assert text.exception is None, text.output
    row = next(line for line in text.output.splitlines() if re.search(rf"\s{re.escape(algorithm)}\s", line))
    assert re.search(r"\s14-15\s", row), row
    assert "14.975" not in text.output

    board = pd.read_csv(out / "leaderboard.csv").set_index("algorithm")
    assert (board.loc[algorithm, "rank_lo"], board.loc[algorithm, "rank_hi"]) == (14, 15)
    assert board["rank_lo"].dtype == np.int64 and board["rank_median"].dtype == np.int64
    assert re.search(rf"^\d+,{re.escape(algorithm)},[^,]+,14,15,15,", (out / "leaderboard.csv").read_text(), re.M)

    done = CliRunner().invoke(cli, ["rank", "--results", str(scores), "--out", str(tmp_path / "json"), "--draws",
                                    str(N_DRAWS), "--json"], standalone_mode=False)
    assert done.exception is None, done.stderr
    document = json.loads(done.stdout)
    record = next(r for r in document["leaderboard"] if r["algorithm"] == algorithm)
    assert (record["rank_lo"], record["rank_hi"], record["rank_median"]) == (14, 15, 15)
    assert all(type(r[key]) is int for r in document["leaderboard"] for key in ("rank_lo", "rank_hi", "rank_median"))
    assert '"rank_lo": 14,' in done.stdout


def test_both_report_editions_show_an_integral_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = store_fixture.make_store(tmp_path / "results", algorithms=tuple(f"team-{i:02d}" for i in range(1, 21)),
                                      n_cases=12, monitored=(), failures=False)
    inputs = load_report_inputs(Path(folder))
    probe = rank_inputs(inputs, replace(FLARE22_RANKING, seed=3, n_draws=300))
    algorithm, chosen = _draws_on_14_and_15(probe.bootstrap.ranks, bootstrap.draw_cases(12, 300, seed=3),
                                            probe.bootstrap.algorithms)
    _use_draws(monkeypatch, chosen)
    table = read_store_scores(Path(folder))
    ranked = rank_challenge(table[table["metric"].isin(FLARE22_RANKING.metric_names)], replace(FLARE22_RANKING, n_draws=N_DRAWS))
    _check_boot(ranked.bootstrap.ranks, ranked.bootstrap.algorithms, algorithm)

    for public in (False, True):
        page = build_report(Path(folder), tmp_path / ("public" if public else "report") / "report.html",
                            config=replace(FLARE22_RANKING, n_draws=N_DRAWS), public=public)
        html = page.read_text(encoding="utf-8")
        board = section(html, "ranking")
        row = next(r for r in re.findall(r"<tr>.*?</tr>", board, re.S) if f">{algorithm}<" in r)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert "14\u201315" in [re.sub(r"<[^>]+>", "", c).strip() for c in cells], row
        assert "14.975" not in html
        assert "quantile(type = 1)" in section(html, "methods")
