"""A ranking config naming a profile's extra metrics: their direction and failure value are known
(lesion-wise Dice 0 and HD95 374 mm as BraTS 2023 penalises, volumes 1e6 ml, panoptic qualities 0),
a wrong direction is refused, and a failed run enters the ranking with that value."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.errors import SpecError
from harness.models import FALSE_VOLUME_METRICS, LesionWise, Panoptic
from harness.ranking.challenge import rank_challenge
from harness.ranking.config import EXTRA_METRIC_RULES, FLARE22_RANKING, ranking_config_from_dict
from harness.ranking.table import failure_values


def test_every_rankable_extra_metric_has_a_direction_and_a_failure_value() -> None:
    rankable = {"lesion_dice", "lesion_hd95_mm", *FALSE_VOLUME_METRICS, *Panoptic.METRICS}
    assert set(EXTRA_METRIC_RULES) == rankable
    assert not {"lesion_tp", "lesion_fn", "lesion_fp"} & set(EXTRA_METRIC_RULES)  # counts: descriptive
    assert set(LesionWise.METRICS) - rankable == {"lesion_tp", "lesion_fn", "lesion_fp"}
    shown = {name: (rule.larger_is_better, rule.worst_value) for name, rule in EXTRA_METRIC_RULES.items()}
    assert shown == {"lesion_dice": (True, 0.0), "lesion_hd95_mm": (False, 374.0), "fp_volume_ml": (False, 1e6),
                     "fn_volume_ml": (False, 1e6), "pq": (True, 0.0), "sq": (True, 0.0), "rq": (True, 0.0),
                     "sq_dsc": (True, 0.0), "pq_dsc": (True, 0.0)}


def test_a_config_may_name_them_without_direction_or_failure_value() -> None:
    config = ranking_config_from_dict({"metrics": {"lesion_dice": {}, "lesion_hd95_mm": {"weight": 0.5},
                                                   "fn_volume_ml": {"worst_value": 5000}}})
    assert config.metric("lesion_dice") == EXTRA_METRIC_RULES["lesion_dice"]
    hd95 = config.metric("lesion_hd95_mm")
    assert (hd95.larger_is_better, hd95.weight, hd95.worst_value) == (False, 0.5, 374.0)
    assert config.metric("fn_volume_ml").worst_value == 5000.0  # the config's own wins
    worst = failure_values(config)  # the one rule, for the case table and the organ table alike
    assert worst["fn_volume_ml"] == 5000.0
    assert worst["pq"] == 0.0  # not ranked: its own (the report's per-organ tables use it)
    assert "lesion_tp" not in worst and failure_values(FLARE22_RANKING)["dsc"] == 0.0
    off = ranking_config_from_dict({"failed_as_worst": False, "metrics": {"lesion_dice": {}}})
    assert failure_values(off) == {}


def test_a_wrong_direction_is_refused() -> None:
    with pytest.raises(SpecError, match=r"rank\.toml: \[metrics\.lesion_hd95_mm\]: larger_is_better = true, but "
                                        r"lesion_hd95_mm is lower-is-better; write larger_is_better = false or leave it out"):
        ranking_config_from_dict({"metrics": {"lesion_hd95_mm": {"larger_is_better": True}}}, source="rank.toml")
    with pytest.raises(SpecError, match=r"\[metrics\.pq\]: larger_is_better = false, but pq is larger-is-better"):
        ranking_config_from_dict({"metrics": {"pq": {"larger_is_better": False}}}, source="rank.toml")
    with pytest.raises(SpecError, match=r"\[metrics\.lesion_tp\]: larger_is_better is missing"):
        ranking_config_from_dict({"metrics": {"lesion_tp": {}}}, source="rank.toml")


def test_a_failed_run_enters_with_the_failure_value_and_ranks_last() -> None:
    rows = []
    for case, (a, b, c) in enumerate([(2.0, 3.0, 1.0), (4.0, 5.0, 6.0), (1.5, 2.5, math.nan)]):
        for algorithm, value in (("A", a), ("B", b), ("C", c)):
            rows.append({"algorithm": algorithm, "case": f"c{case}", "metric": "lesion_hd95_mm", "value": value,
                         "status": "crashed" if math.isnan(value) else "ok"})
    config = ranking_config_from_dict({"method": "aggregate_then_rank", "draws": 5, "metrics": {"lesion_hd95_mm": {}}})
    result = rank_challenge(pd.DataFrame(rows), config)
    ranked = result.table.set_index(["algorithm", "case"])["value"]
    assert ranked[("C", "c2")] == 374.0
    board = result.leaderboard.set_index("algorithm")
    assert board["mean_lesion_hd95_mm"].to_dict() == {"A": 7.5 / 3, "B": 10.5 / 3, "C": 381.0 / 3}
    assert board["rank"].to_dict() == {"A": 1, "B": 2, "C": 3}  # lower is better: C's 374 last
