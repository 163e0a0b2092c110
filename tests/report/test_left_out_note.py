"""The report names who was left out of the ranking and why, as `harness rank` does: challengeR's
na.treat = "na.rm" drops an algorithm without any value of a metric; grand-challenge leaves a result
without one of its metrics off the leaderboard. Private and public editions alike."""

from __future__ import annotations

from dataclasses import replace

import pytest
from markupsafe import escape

from harness.ranking.config import FLARE22_RANKING, ranking_config_from_dict
from harness.report import load_report_inputs
from harness.report.builder import rank_inputs, render_report_files
from harness.report.inputs import ReportInputs
from harness.store import RunRecord, Store
from tests.report.conftest import copy_fixture, store_fixture


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> ReportInputs:
    """The committed store, plus `broken-net`, which crashed on every case (no DSC at all), as the
    report reads it (the tests only read it)."""
    folder = copy_fixture(tmp_path_factory.mktemp("broken") / "results")
    with Store.open(folder) as store:
        cases = sorted(set(store.runs()["case_id"]))
        for case in cases:
            store.record(RunRecord("broken-net", case, "segmenter", "crashed", 1, "exited with code 1", 2.0, 3.0,
                                   0.0, 2.0, "Traceback: boom", store_fixture._provenance("broken-net", case)))
    return load_report_inputs(folder)


@pytest.mark.parametrize("method, why", [
    ("aggregate_then_rank", "broken-net: no dsc value on any case; challengeR's na.treat = \"na.rm\" drops it from the "
                            "aggregate-then-rank (mean) ranking of dsc (not ranked last, not counted among the others)"),
    ("gc_mean_position", "broken-net: no dsc value; grand-challenge leaves a result without one of the leaderboard's "
                         "metrics off the leaderboard"),
])
def test_the_report_notes_who_was_left_out_and_why(broken: ReportInputs, method: str, why: str) -> None:
    # DSC without a failure value: a failed run's value stays missing, as challengeR's NA
    config = ranking_config_from_dict({"name": "t", "method": method, "na_treat": "na.rm", "draws": 20,
                                       "metrics": {"dsc": {"larger_is_better": True}}})
    inputs = broken
    ranking = rank_inputs(inputs, config)
    assert ranking.left_out == (why,)  # the note is the ranking's, word for word
    board = ranking.leaderboard.set_index("algorithm")
    assert board["rank"].isna().tolist() == [a == "broken-net" for a in board.index]  # left out, not ranked last
    for public in (False, True):
        page = render_report_files(inputs, config=config, public=public)[""]
        assert f'<p class="note">Left out of the ranking: {escape(why)}.</p>' in page, public


def test_no_note_when_nobody_is_left_out(broken: ReportInputs) -> None:
    inputs = broken
    # FLARE22's default: the crashed runs take DSC 0, ranked last
    page = render_report_files(inputs, config=replace(FLARE22_RANKING, n_draws=20))[""]
    assert "Left out of the ranking" not in page
