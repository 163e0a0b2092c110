"""One owner per policy: the failure value of a failed run (the ranking's `failure_values`) and what
the public edition may show (the report's `shown_publicly`). Each test plants a change in the one
place and finds it everywhere that policy shows."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.ranking import FLARE22_RANKING, RankingConfig
from harness.ranking import table as ranking_table
from harness.report import builder, load_report_inputs
from harness.report.builder import Figure, Scene, rank_inputs, render_report_files, report_context
from harness.report.inputs import ReportInputs
from harness.report.tables import HtmlTable, organ_short
from tests.report.conftest import copy_fixture

CONFIG = replace(FLARE22_RANKING, n_draws=20)


@pytest.fixture(scope="module")
def fixture_inputs(tmp_path_factory: pytest.TempPathFactory) -> ReportInputs:
    """The committed store as the report reads it, read once for the tests that do not change it."""
    return load_report_inputs(copy_fixture(tmp_path_factory.mktemp("store") / "store"))


def _organ_cell(context: dict[str, object], metric_label: str, algorithm: str, organ: str) -> str:
    """The text of the report's per-organ table cell (algorithm, organ)."""
    table: HtmlTable = dict(context["organ_tables"])[metric_label]  # type: ignore[arg-type, call-overload]
    column = [c.label for c in table.columns].index(organ_short(organ))
    row = next(r for r in table.rows if r[0].text == algorithm)
    return row[column].text


def _expected_mean(inputs: ReportInputs, algorithm: str, organ: str, *, failed_value: float | None) -> float:
    """Independent reference: the organ's DSC over the algorithm's runs, straight from the store's
    tables: an ok run's stored score; a failed run's `failed_value` (None: what it stored, if any)."""
    runs = inputs.runs[(inputs.runs["algorithm"] == algorithm) & (inputs.runs["kind"] == "segmenter")]
    scores = inputs.scores[(inputs.scores["algorithm"] == algorithm) & (inputs.scores["organ"] == organ)]
    stored = dict(zip(scores["case_id"], scores["dsc"].astype(float), strict=True))
    values = []
    for case_id, status in zip(runs["case_id"], runs["status"], strict=True):
        value = stored.get(case_id, math.nan) if status == "ok" or failed_value is None else failed_value
        if not math.isnan(value):
            values.append(value)
    return float(np.mean(values))


@pytest.mark.parametrize("planted", [None, 0.5])
def test_the_failure_value_rule_changed_in_its_one_place_changes_the_ranking_and_the_report(
        planted: float | None, fixture_inputs: ReportInputs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted drift: `ranking.table.failure_values` gives failed runs 0.5 instead of the worst
    value 0; the leaderboard's mean DSC, the organ tasks and the report's per-organ table all move
    with it (fast-net timed out on case_04, voxel-classifier crashed on case_02)."""
    inputs = fixture_inputs
    if planted is not None:
        monkeypatch.setattr(ranking_table, "failure_values",
                            lambda config: {m.name: planted for m in config.metrics} if config.failed_as_worst else {})
    failed_value = 0.0 if planted is None else planted
    ranking = rank_inputs(inputs, CONFIG)
    context = report_context(inputs, ranking)
    for algorithm, failed_case in (("fast-net", "case_04"), ("voxel-classifier", "case_02")):
        organ = "liver"
        expected = _expected_mean(inputs, algorithm, organ, failed_value=failed_value)
        assert _organ_cell(context, "DSC", algorithm, organ) == f"{expected:.3f}"  # the report
        assert ranking.tasks is not None  # the ranking's organ tasks rank the same values
        case = sorted(set(inputs.runs["case_id"])).index(failed_case)
        column = list(ranking.tasks.ranking.ranks.index).index(algorithm)
        assert ranking.tasks.values[organ][case, column] == failed_value
        board = ranking.leaderboard.set_index("algorithm")  # and the case table the leaderboard ranks
        case_dsc = inputs.scores[inputs.scores["algorithm"] == algorithm].groupby("case_id")["dsc"].mean()
        per_case = [failed_value if c == failed_case else float(case_dsc[c]) for c in sorted(set(inputs.runs["case_id"]))]
        assert board.loc[algorithm, "mean_dsc"] == pytest.approx(np.mean(per_case), abs=1e-12)


def test_failures_not_counted_as_worst_keep_what_the_run_recorded_in_the_ranking_and_the_report(tmp_path: Path) -> None:
    """The rule the report once had of its own gave NaN to a failed run's organs when failures are
    not counted as worst; the ranking keeps what the run recorded. Now both read the one rule."""
    folder = copy_fixture(tmp_path / "store")
    with sqlite3.connect(folder / "store.sqlite") as db:  # a failed run that still left scores
        db.execute("UPDATE runs SET status = 'invalid_output' WHERE algorithm = 'atlas-unet' AND case_id = 'case_01'")
        db.execute("UPDATE scores SET dsc = 0.2 WHERE algorithm = 'atlas-unet' AND case_id = 'case_01' AND organ = 'liver'")
    inputs = load_report_inputs(folder)
    config = RankingConfig(name="kept", metrics=FLARE22_RANKING.metrics, failed_as_worst=False, n_draws=20)
    ranking = rank_inputs(inputs, config)
    context = report_context(inputs, ranking)
    expected = _expected_mean(inputs, "atlas-unet", "liver", failed_value=None)
    ok_only = float(inputs.scores[(inputs.scores["algorithm"] == "atlas-unet") & (inputs.scores["organ"] == "liver")
                                  & (inputs.scores["case_id"] != "case_01")]["dsc"].mean())
    assert f"{expected:.3f}" != f"{ok_only:.3f}"  # the premise: the recorded value moves the mean
    assert _organ_cell(context, "DSC", "atlas-unet", "liver") == f"{expected:.3f}"
    assert ranking.organ_table is not None
    kept = ranking.organ_table[(ranking.organ_table["algorithm"] == "atlas-unet") & (ranking.organ_table["case"] == "case_01")
                               & (ranking.organ_table["organ"] == "liver") & (ranking.organ_table["metric"] == "dsc")]
    stored = inputs.scores[(inputs.scores["algorithm"] == "atlas-unet") & (inputs.scores["case_id"] == "case_01")
                           & (inputs.scores["organ"] == "liver")]["dsc"]
    assert kept["value"].tolist() == stored.astype(float).tolist()


NEW_MARK = "a-figure-nobody-allowed-yet"


def _new_svg() -> str:  # module level: a forked drawing worker can run it
    return f'<svg xmlns="http://www.w3.org/2000/svg"><text>{NEW_MARK}</text></svg>'


def _new_figure(scene: Scene) -> list[Figure]:
    return [Figure("fig-new-per-case", "A new figure", "Added without a word on who may see it.",
                   scene.drawer.draw(_new_svg))]


def test_a_new_figure_is_private_until_the_allowlist_names_it(fixture_inputs: ReportInputs,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder, "FIGURES", [*builder.FIGURES, _new_figure])
    inputs = fixture_inputs
    private = render_report_files(inputs, config=CONFIG)[""]
    public = render_report_files(inputs, config=CONFIG, public=True)[""]
    assert '<figure id="fig-new-per-case"' in private and NEW_MARK in private
    assert '<section id="more-figures">' in private  # the template places what it does not know
    assert '<figure id="fig-new-per-case"' not in public and NEW_MARK not in public
    assert '<figure id="fig-blob"' in public  # an allowed figure still is there
    monkeypatch.setattr(builder, "PUBLIC", builder.PUBLIC | {"fig-new-per-case"})  # named: now public
    assert NEW_MARK in render_report_files(inputs, config=CONFIG, public=True)[""]


def test_a_new_context_entry_is_withheld_from_the_public_edition(fixture_inputs: ReportInputs) -> None:
    inputs = fixture_inputs
    ranking = rank_inputs(inputs, CONFIG)
    context = report_context(inputs, ranking)
    context = {**context, "new_rows": ["case_01"], "new_table": {"case_01": 1}, "new_text": "case_01"}
    public = builder.public_edition(context, inputs, ranking)
    assert (public["new_rows"], public["new_table"], public["new_text"]) == ([], {}, None)
    assert public["public"] is True and public["title"] == context["title"]  # allowed entries as they are
    assert public["case_matrix"] is None and public["algorithm_pages"] == [] and public["monitor_problems"] == []
    assert set(public["figures"]) <= builder.PUBLIC and set(public["figures"]) < set(context["figures"])
    assert isinstance(public["failures"], HtmlTable) and public["failures"].key == "failures"  # counts, no case


def test_the_organ_table_holds_every_segmenter_run_per_organ_in_label_order(fixture_inputs: ReportInputs) -> None:
    inputs = fixture_inputs
    table = inputs.organ_table
    assert table is not None
    runs = inputs.runs[inputs.runs["kind"] == "segmenter"]
    organs = list(pd.unique(table["organ"]))
    by_label = inputs.scores.drop_duplicates("organ").sort_values(["label", "organ"])["organ"].tolist()
    assert organs == by_label
    assert len(table) == len(runs) * len(organs) * 2  # DSC and NSD
    timed_out = table[(table["algorithm"] == "fast-net") & (table["case"] == "case_04")]
    assert set(timed_out["status"]) == {"timeout"} and timed_out["value"].isna().all()  # the ranking gives its value
