"""The priority list and the review queue from annotator summaries."""

from __future__ import annotations

import pytest

from harness.attention import attention_table, priority_list, queue_size, review_queue
from harness.errors import DataError


def summary(case: str, **organs: tuple[int, float]) -> dict:
    return {"case": case, "models": ["a", "b"], "attention_voxels": sum(v for v, _ in organs.values()),
            "organs": {o: {"attention_voxels": v, "heat_sum": h, "inconsistency_voxels": v, "uncertainty_voxels": 0,
                           "overlap_voxels": 0} for o, (v, h) in organs.items()}}


SUMMARIES = [
    summary("c01", liver=(100, 5.0), spleen=(0, 9.0)),
    summary("c02", liver=(300, 1.0), spleen=(200, 2.0), pancreas=(10, 40.0)),
    summary("c03", liver=(0, 0.0), spleen=(0, 0.0)),
    summary("c00", liver=(50, 1.0), spleen=(50, 1.0)),
]


@pytest.mark.parametrize("cases, expected", [(0, 0), (1, 1), (19, 1), (20, 1), (21, 2), (100, 5), (101, 6), (8448, 423)])
def test_queue_size_is_the_top_5_percent_and_at_least_one(cases: int, expected: int) -> None:
    assert queue_size(cases) == expected


def test_queue_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match="fraction = 0"):
        queue_size(10, fraction=0)


def test_priority_list_sorts_by_attention_size_then_case() -> None:
    priority = priority_list(attention_table(SUMMARIES))
    assert list(priority["case"]) == ["c02", "c00", "c01", "c03"]  # c00 and c01 tie at 100: by case id
    assert list(priority["rank"]) == [1, 2, 3, 4]
    assert list(priority["attention_voxels"]) == [510, 100, 100, 0]
    assert list(priority["in_queue"]) == [True, False, False, False]
    assert priority.iloc[0]["organs"] == "pancreas;spleen;liver"  # by heat sum
    assert priority.iloc[1]["organs"] == "liver;spleen"  # heat tie: summary order
    assert priority.iloc[2]["organs"] == "spleen;liver"
    larger = priority_list(attention_table(SUMMARIES), fraction=0.5)
    assert list(larger["in_queue"]) == [True, True, False, False]


def test_review_queue_lists_each_queued_case_organs_by_heat() -> None:
    table = attention_table(SUMMARIES)
    queue = review_queue(table, priority_list(table, fraction=0.5))
    assert list(zip(queue["case"], queue["organ_rank"], queue["organ"], strict=True)) == [
        ("c02", 1, "pancreas"), ("c02", 2, "spleen"), ("c02", 3, "liver"), ("c00", 1, "liver"), ("c00", 2, "spleen")]
    assert list(queue["rank"]) == [1, 1, 1, 2, 2]
    assert queue.iloc[0]["heat_sum"] == 40.0 and queue.iloc[0]["attention_voxels"] == 10


def test_empty_input_gives_an_empty_list() -> None:
    assert priority_list(attention_table([])).empty


@pytest.mark.parametrize("bad, message", [
    ({"organs": {}}, "key 'case' = None"),
    ({"case": "x", "organs": []}, "key 'organs' = \\[\\]"),
    ({"case": "x", "organs": {"liver": {"attention_voxels": -1}}}, "organs.liver.attention_voxels = -1"),
    ({"case": "x", "organs": {"liver": {"attention_voxels": 3, "heat_sum": "hot"}}}, "organs.liver.heat_sum = 'hot'"),
])
def test_bad_summaries_name_the_key(bad: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        attention_table([bad])


def test_a_case_twice_is_an_error() -> None:
    with pytest.raises(DataError, match="c01: the case appears twice"):
        attention_table([SUMMARIES[0], SUMMARIES[0]])
