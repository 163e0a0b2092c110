"""Multi-task ranking: each task ranked by the challenge's method, the consensus = mean task rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, rankdata

from harness.ranking.bootstrap import draw_cases
from harness.ranking.config import FLARE22_RANKING, load_ranking_config
from harness.ranking.methods import rank_by
from harness.ranking.tasks import organ_tasks, rank_tasks, task_method, task_stability, task_tree

ALGS = ["a", "b", "c"]


def test_flare_ranks_each_task_rank_then_aggregate_and_takes_the_mean_rank() -> None:
    # task 1: per case a > b > c on every case; task 2: c best on 2 of 3 cases; task 3: a tie of a and b
    t1 = np.array([[0.9, 0.8, 0.7], [0.8, 0.7, 0.6], [0.9, 0.5, 0.1]])
    t2 = np.array([[0.1, 0.2, 0.9], [0.5, 0.6, 0.4], [0.2, 0.1, 0.8]])
    t3 = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1], [0.5, 0.5, 0.1]])
    got = rank_tasks({"t1": t1, "t2": t2, "t3": t3}, algorithms=ALGS, config=FLARE22_RANKING, metric="dsc")
    assert got.method.kind == "rank_then_aggregate"
    # independent reference: per-case "min" ranks of -values, their mean, ranked with ties "min"
    expected = {}
    for name, t in (("t1", t1), ("t2", t2), ("t3", t3)):
        mean_rank = np.vstack([rankdata(-row, method="min") for row in t]).mean(axis=0)
        expected[name] = rankdata(mean_rank, method="min")
    for name in expected:
        np.testing.assert_array_equal(got.ranks[name].to_numpy(), expected[name])
    assert got.ranks["t3"].tolist() == [1, 1, 3]  # a tie keeps the best rank
    mean = np.mean([expected["t1"], expected["t2"], expected["t3"]], axis=0)
    assert got.consensus.loc[ALGS, "mean_rank"].tolist() == mean.tolist()
    assert got.consensus.loc[ALGS, "rank"].tolist() == rankdata(mean, method="min").tolist()
    assert list(got.consensus.index) == sorted(ALGS, key=lambda a: mean[ALGS.index(a)])  # consensus order
    frame = got.to_frame()
    assert list(frame.columns) == ["algorithm", "t1", "t2", "t3", "mean_rank", "consensus_rank"]


def test_aggregate_then_rank_by_median_per_task(tmp_path: Path) -> None:
    path = tmp_path / "ranking.toml"
    path.write_text('name = "median"\nmethod = "aggregate_then_rank"\naggregate = "median"\n'
                    '[metrics.dsc]\nlarger_is_better = true\nworst_value = 0.0\n', encoding="utf-8")
    config = load_ranking_config(path)
    t = np.array([[0.9, 0.1, 0.5], [0.1, 0.8, 0.5], [0.2, 0.9, 0.5], [np.nan, 0.7, 0.5]])
    got = rank_tasks({"only": t}, algorithms=ALGS, config=config, metric="dsc")
    assert task_method(config, "dsc").aggregate == "median"
    # NaN takes the worst value 0.0: medians a = 0.15, b = 0.75, c = 0.5
    assert got.ranks["only"].tolist() == [3, 1, 2]


def test_organ_tasks_follow_the_organ_order() -> None:
    rows = [("a", "c1", "spleen", 0.7), ("b", "c1", "spleen", 0.6), ("a", "c2", "spleen", 0.4), ("b", "c2", "spleen", 0.3),
            ("a", "c1", "liver", 0.9), ("b", "c1", "liver", 0.8), ("a", "c2", "liver", 0.5), ("b", "c2", "liver", np.nan)]
    values = pd.DataFrame(rows, columns=["algorithm", "case", "organ", "value"]).assign(metric="dsc")
    other = pd.DataFrame([("a", "c1", "kidney", 0.1, "nsd")], columns=["algorithm", "case", "organ", "value", "metric"])
    tasks = organ_tasks(pd.concat([other, values]), algorithms=["b", "a"], metric="dsc")
    assert list(tasks) == ["spleen", "liver"]  # the table's organ order; kidney has no DSC: no task
    np.testing.assert_array_equal(tasks["liver"], np.array([[0.8, 0.9], [np.nan, 0.5]]))


def test_task_tree_joins_tasks_that_rank_alike_first() -> None:
    ranks = pd.DataFrame({"t1": [1, 2, 3, 4], "t3": [4, 3, 2, 1], "t2": [1, 2, 4, 3], "t4": [4, 3, 1, 2]},
                         index=["a", "b", "c", "d"], dtype=float)
    leaves, links = task_tree(ranks)
    assert sorted(leaves) == ["t1", "t2", "t3", "t4"]
    assert {frozenset(leaves[:2]), frozenset(leaves[2:])} == {frozenset({"t1", "t2"}), frozenset({"t3", "t4"})}
    heights = sorted(max(ys) for _, ys in links)
    # independent reference: the two pairs join at their Euclidean distance sqrt(2), the two groups
    # at complete linkage = the largest distance between them, t1 to t3: sqrt(9 + 1 + 1 + 9)
    assert heights == pytest.approx([np.sqrt(2), np.sqrt(2), np.sqrt(20)])
    assert task_tree(ranks[["t1", "t2"]]) == (["t1", "t2"], [])  # two tasks: nothing to cluster


@pytest.mark.parametrize("kind", ["rank_then_aggregate", "aggregate_then_rank"])
def test_task_stability_equals_ranking_every_draw_again(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "ranking.toml"
    path.write_text(f'name = "t"\nmethod = "{kind}"\naggregate = "mean"\n'
                    '[metrics.dsc]\nlarger_is_better = true\nworst_value = 0.0\n', encoding="utf-8")
    config = load_ranking_config(path)
    rng = np.random.default_rng(7)
    values = {"t1": rng.random((12, 5)), "t2": np.round(rng.random((12, 5)), 1)}  # t2: many ties
    values["t2"][3, 1] = np.nan
    algorithms = list("abcde")
    ranking = rank_tasks(values, algorithms=algorithms, config=config, metric="dsc")
    got = task_stability(values, ranking, larger_is_better=True, n_draws=40, seed=5)
    assert got is not None
    draws = draw_cases(12, 40, seed=5)
    for task, matrix in values.items():
        full = ranking.ranks[task].to_numpy()
        expected = [kendalltau(rank_by(matrix[rows], ranking.method, larger_is_better=True)[1], full).statistic
                    for rows in draws]  # the task ranked again on each draw, as rank_tasks ranks it
        np.testing.assert_allclose(got[task], expected, rtol=0, atol=1e-12)


def test_task_stability_leaves_out_what_it_cannot_vectorise(tmp_path: Path) -> None:
    path = tmp_path / "ranking.toml"
    path.write_text('name = "t"\nmethod = "aggregate_then_rank"\naggregate = "median"\n'
                    '[metrics.dsc]\nlarger_is_better = true\nworst_value = 0.0\n', encoding="utf-8")
    config = load_ranking_config(path)
    values = {"t": np.random.default_rng(1).random((6, 3))}
    ranking = rank_tasks(values, algorithms=list("abc"), config=config, metric="dsc")
    assert task_stability(values, ranking, larger_is_better=True, n_draws=10) is None


def _organ_table(organs: list[str], metrics: tuple[str, ...] = ("dsc", "nsd")) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = [(a, f"c{c}", o, m, float(rng.uniform()), "ok") for o in organs for m in metrics for a in ALGS for c in range(5)]
    return pd.DataFrame(rows, columns=["algorithm", "case", "organ", "metric", "value", "status"])


def test_rank_organ_tasks_ranks_dsc_when_ranked_else_the_configs_first_metric_and_needs_two_organs(tmp_path: Path) -> None:
    from harness.ranking.tasks import rank_organ_tasks, task_metric

    table = _organ_table(["liver", "spleen", "aorta"])
    tasks = rank_organ_tasks(table, algorithms=ALGS, config=FLARE22_RANKING, n_draws=15, seed=2)
    assert tasks is not None and tasks.metric == "dsc" and list(tasks.values) == ["liver", "spleen", "aorta"]
    expected = rank_tasks(tasks.values, algorithms=ALGS, config=FLARE22_RANKING, metric="dsc")
    pd.testing.assert_frame_equal(tasks.ranking.to_frame(), expected.to_frame())
    summary = tasks.stability_summary().set_index("task")
    for organ, tau in (tasks.stability or {}).items():
        valid = tau[np.isfinite(tau)]
        assert summary.loc[organ, "n_draws"] == 15 and summary.loc[organ, "n_valid"] == valid.size
        assert summary.loc[organ, "median"] == pytest.approx(np.median(valid))
    assert len(tasks.stability_frame()) == 15 * 3
    path = tmp_path / "nsd.toml"
    path.write_text('name = "n"\n[metrics.nsd]\nlarger_is_better = true\n[metrics.time_s]\nlarger_is_better = false\n')
    assert task_metric(table, load_ranking_config(path)) == "nsd"
    assert task_metric(table[table["metric"] == "time_s"], FLARE22_RANKING) is None
    assert rank_organ_tasks(_organ_table(["liver"]), algorithms=ALGS, config=FLARE22_RANKING, n_draws=5, seed=0) is None
