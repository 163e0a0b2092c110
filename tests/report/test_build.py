"""The report built from a results store: contents, failures, self-containment, determinism, size."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli.report_cmd import report
from harness.errors import SpecError
from harness.ranking import FLARE22_RANKING, rank_challenge
from harness.report import build_report, figures, load_report_inputs, render_report, tables
from harness.report.builder import render_report_files
from harness.report.inputs import judged
from harness.store import StoreError, read_store_scores
from tests.report.conftest import copy_fixture, store_fixture

MAX_BYTES = 2 * 1024 * 1024


class _Page(HTMLParser):
    """Every tag with its attributes, every element id, and the text of each section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def section(html: str, key: str) -> str:
    start = html.index(f'<section id="{key}">')
    return html[start:html.index("</section>", start)]


def visible_text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


def test_report_from_committed_fixture(fixture_report: Path) -> None:
    html = fixture_report.read_text(encoding="utf-8")
    size = fixture_report.stat().st_size
    print(f"fixture report: {fixture_report} ({size / 1024:.0f} KiB)")
    assert size < MAX_BYTES
    for key in ("ranking", "failures", "organs", "accuracy-time", "case-ranks", "tasks", "stability", "significance",
                "resources", "methods", "cases"):
        assert f'<section id="{key}">' in html, key
    for figure in ("fig-accuracy", "fig-box-dsc", "fig-box-nsd", "fig-blob", "fig-tau", "fig-significance", "fig-resources",
                   "fig-rank-heatmap", "fig-stacked", "fig-podium", "fig-dotbox", "fig-tasks", "fig-task-tau", "fig-methods"):
        assert f'<figure id="{figure}"' in html, figure
    assert '<section id="annotation">' not in html  # no annotator ran

    # The leaderboard's order is the ranking's, computed from the same store.
    table = read_store_scores(fixture_report.parent)
    expected = rank_challenge(table[table["metric"].isin(FLARE22_RANKING.metric_names)], FLARE22_RANKING)
    board = section(html, "ranking")
    rows = re.findall(r'<td class="name" data-v="[^"]*"><a href="report-pages/[^"]+\.html">([^<]+)</a></td>', board)
    assert rows == list(expected.leaderboard["algorithm"])
    first = expected.leaderboard.iloc[0]
    assert f"{first['score']:.3f}" in board
    assert f"{first['rank_lo']:g}\u2013{first['rank_hi']:g}" in board

    methods = visible_text(section(html, "methods"))
    for expected_text in ("textbook variant, 1000 draws, seed 0", "flare22", "holm", "NVIDIA A10 (23028 MiB)", "550.54.15",
                          "AMD EPYC 7543", "docker", "29,491,200", "inferior vena cava"):
        assert expected_text in methods, expected_text
    digest = store_fixture._provenance("atlas-unet", "case_01").image_digest
    assert digest in methods

    organs = section(html, "organs")
    assert "<h3>DSC</h3>" in organs and "<h3>NSD</h3>" in organs
    assert organs.count('<td class="name" data-v="atlas-unet">atlas-unet</td>') == 2

    cases = section(html, "cases")
    pages = fixture_report.parent / "report-pages"
    for algorithm in expected.leaderboard["algorithm"]:
        assert f'href="report-pages/{algorithm}.html"' in cases
        page = (pages / f"{algorithm}.html").read_text(encoding="utf-8")
        assert 'href="../report.html"' in page
        for case_id in (f"case_{i:02d}" for i in range(1, 7)):
            assert f'id="case-{case_id}"' in page  # the run's row, the target of the case matrix's links
            assert f'href="report-pages/{algorithm}.html#case-{case_id}"' in cases
        assert '<table id="organ-dsc"' in page and '<table id="organ-nsd"' in page
        assert ">HD95 (mm)</button>" in page
    assert 'id="case-case_01"' not in html  # per-case detail is on the pages, not the main page


def test_report_shows_failures(fixture_report: Path) -> None:
    html = fixture_report.read_text(encoding="utf-8")
    failures = visible_text(section(html, "failures"))
    assert "2 run(s) did not end ok: crashed 1, timeout 1" in failures
    assert re.search(r"fast-net case_04 segmenter timeout .* killed after the time limit of 600 s", failures)
    assert re.search(r"voxel-classifier case_02 segmenter crashed 1 .* MemoryError", failures)
    assert "2 failed" in visible_text(html[: html.index("</header>")])
    # The failed-case counts of the leaderboard and the status in the case matrix.
    board = section(html, "ranking")
    assert board.count('class="num bad" data-v="1">1</td>') == 2
    matrix = html[html.index('<table id="case-matrix"'):html.index("</table>", html.index('<table id="case-matrix"'))]
    assert ">timeout</a></td>" in matrix and ">crashed</a></td>" in matrix
    fast_net = (fixture_report.parent / "report-pages" / "fast-net.html").read_text(encoding="utf-8")
    row = fast_net[fast_net.index('id="case-case_04"'):]
    row = visible_text(row[:row.index("</tr>")])
    assert "timeout" in row and "killed after the time limit of 600 s" in row  # the reason as text, printed too


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three algorithms x 5 cases, every run ok, no monitor series; the tests only read it."""
    return Path(store_fixture.make_store(tmp_path_factory.mktemp("clean") / "results",
                                         algorithms=("atlas-unet", "classical", "fast-net"), n_cases=5, failures=False,
                                         monitored=()))


@pytest.fixture(scope="module")
def clean_report(clean_store: Path) -> str:
    """The clean store's report under FLARE22's ranking (20 draws)."""
    out = clean_store.parent / "flare" / "page.html"
    return build_report(clean_store, out, config=replace(FLARE22_RANKING, n_draws=20)).read_text(encoding="utf-8")


def test_report_of_a_clean_store_says_every_run_was_ok(clean_report: str) -> None:
    html = clean_report
    assert "Every run ended ok." in html
    assert '<table id="failed-runs"' not in html
    assert "No run has a monitor series" in html


def test_report_requests_nothing_from_any_host(fixture_report: Path) -> None:
    # The main page links only to its own pages beside it, the pages only back to it and to each other.
    own = {fixture_report: re.compile(r"report-pages/[A-Za-z0-9._-]+\.html(#[\w-]+)?")}
    for extra in sorted((fixture_report.parent / "report-pages").glob("*.html")):
        own[extra] = re.compile(r"\.\./report\.html|[A-Za-z0-9._-]+\.html(#[\w-]+)?")
    assert len(own) == 5  # the report and its 4 algorithms' pages
    for path, allowed in own.items():
        html = path.read_text(encoding="utf-8")
        page = parse(html)
        for tag, attrs in page.tags:
            for name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                value = attrs.get(name)
                if value is not None:
                    assert value.startswith(("#", "data:")) or (tag == "a" and name == "href" and allowed.fullmatch(value)), \
                        f"{path.name}: <{tag} {name}={value!r}>"
            assert not (tag == "link" and attrs.get("rel") == "stylesheet"), "external stylesheet"
            assert not (tag == "script" and "src" in attrs), "external script"
        lowered = html.lower()
        assert "@import" not in lowered
        assert not re.search(r"url\(\s*['\"]?(https?:|//)", lowered)
        assert "<img" not in lowered  # figures are inline SVG, not raster images


def test_element_ids_are_unique(fixture_report: Path) -> None:
    ids = parse(fixture_report.read_text(encoding="utf-8")).ids
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates


def test_same_store_gives_identical_bytes(tmp_path: Path, fixture_report: Path, fresh_drawings: None) -> None:
    # Two copies of the store in different places, one built in another process with another
    # string-hash seed (set and dict orders), the session's report before either. Every figure
    # drawn anew here (`fresh_drawings`): the same bytes as the session's report, whose figures
    # the other tests' identical drawings may have given (conftest's memo checked too).
    # The report's name is kept (its pages folder, <name>-pages, is in the links).
    first = build_report(copy_fixture(tmp_path / "a" / "results"), tmp_path / "a" / "report.html")
    other = copy_fixture(tmp_path / "b" / "results")
    script = "import sys; from pathlib import Path; from harness.report import build_report; " \
             "build_report(Path(sys.argv[1]), Path(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", script, str(other), str(tmp_path / "b" / "report.html")], check=True,
                   timeout=300, env={**os.environ, "PYTHONHASHSEED": "12345"})
    second = (tmp_path / "b" / "report.html").read_bytes()
    assert first.read_bytes() == second == fixture_report.read_bytes()
    for page in sorted((fixture_report.parent / "report-pages").glob("*.html")):
        assert (tmp_path / "a" / "report-pages" / page.name).read_bytes() == page.read_bytes()
        assert (tmp_path / "b" / "report-pages" / page.name).read_bytes() == page.read_bytes()
    # A different seed gives a different bootstrap, hence a different page.
    third = build_report(tmp_path / "a" / "results", tmp_path / "c.html", config=replace(FLARE22_RANKING, seed=7))
    assert third.read_bytes() != first.read_bytes()


def test_report_of_3_algorithms_x_10_cases_stays_under_2_mb(tmp_path: Path) -> None:
    cases = [f"case_{i:02d}" for i in range(1, 11)]
    algorithms = ("atlas-unet", "fast-net", "voxel-classifier")
    folder = store_fixture.make_store(tmp_path / "results", algorithms=algorithms, n_cases=10, monitored=algorithms,
                                      monitored_cases=cases)
    assert len(list(folder.glob("runs/*/*/monitor.parquet"))) == 28  # every ok run (one timed out, one crashed)
    out = build_report(folder, tmp_path / "report.html")
    size = out.stat().st_size
    print(f"3 algorithms x 10 cases: {size / 1024:.0f} KiB")
    assert size < MAX_BYTES


def test_annotator_tables_are_shown_when_present(results: Path, tmp_path: Path) -> None:
    (results / "annotation").mkdir()
    pd.DataFrame({"case_id": ["case_03", "case_01"], "organ": ["pancreas", "duodenum"], "priority": [0.91, 0.42],
                  "reason": ["low confidence", "boundary disagreement"]}).to_csv(results / "annotation" / "review_queue.csv",
                                                                                 index=False)
    pd.DataFrame({"algorithm": ["classical"], "case_id": ["case_02"], "organ": ["spleen"], "flagged": [1],
                  "error_dsc": [0.31]}).to_csv(results / "annotation" / "error_detection.csv", index=False)
    pd.DataFrame({"error_size": ["0-1 ml"], "components": [3], "detected": [2], "sensitivity": [2 / 3]}).to_csv(
        results / "annotation" / "error_by_size.csv", index=False)
    html = build_report(results, tmp_path / "report.html", config=replace(FLARE22_RANKING, n_draws=50)).read_text(encoding="utf-8")
    annotation = section(html, "annotation")
    assert "<h3>Error detection</h3>" in annotation and "<h3>Review queue</h3>" in annotation
    assert "<h3>Error detection by error size</h3>" in annotation and "0-1 ml" in annotation
    assert "<h3>Priority list check</h3>" not in annotation  # not written: not shown
    assert "boundary disagreement" in annotation and "0.91" in annotation and "error dsc" in annotation
    assert "0.6667" in annotation and "0.6666666666666666" not in annotation  # 4 significant digits
    assert '<a href="#annotation">' in html


def test_cli_writes_the_report(results: Path) -> None:
    outcome = CliRunner().invoke(report, ["--results", str(results), "--draws", "40"])
    assert outcome.exit_code == 0, outcome.output
    assert (results / "report.html").is_file()
    assert f"Wrote {results / 'report.html'}" in outcome.output


def test_store_file_as_results_writes_beside_it(results: Path) -> None:
    written = build_report(results / "store.sqlite", config=replace(FLARE22_RANKING, n_draws=20))
    assert written == results / "report.html" and written.is_file()


def test_cli_without_a_store_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"empty: no results store \(store.sqlite\); run `harness run`"):
        report.main(["--results", str(tmp_path / "empty"), "--draws", "10"], standalone_mode=False)


def test_missing_template_is_a_spec_error(results: Path, tmp_path: Path) -> None:
    inputs = load_report_inputs(results)
    with pytest.raises(SpecError, match=r"report.html.j2: report template not found; restore leaderboard/"):
        render_report(inputs, config=replace(FLARE22_RANKING, n_draws=10), template_dir=tmp_path / "nowhere")


def test_ranking_config_from_toml_is_used(results: Path, tmp_path: Path) -> None:
    config = tmp_path / "dsc_only.toml"
    config.write_text('name = "dsc-only"\ndraws = 20\nseed = 3\n[metrics.dsc]\nlarger_is_better = true\n')
    html = build_report(results, tmp_path / "report.html", config=config).read_text(encoding="utf-8")
    assert "<title>Leaderboard \u2013 dsc-only</title>" in html
    assert "textbook variant, 20 draws, seed 3" in visible_text(section(html, "methods"))
    assert "Not in the store" not in html  # the config names only dsc
    assert '<figure id="fig-accuracy">' not in html  # no time metric ranked


# Pure parts --------------------------------------------------------------------------------------


def test_typical_case_is_shared_and_near_the_median_time() -> None:
    runs = pd.DataFrame({
        "algorithm": ["a", "a", "a", "b", "b", "c"],
        "case_id": ["c1", "c2", "c3", "c1", "c2", "c9"],
        "kind": "segmenter",
        "status": ["ok", "ok", "ok", "ok", "timeout", "ok"],
        "elapsed_s": [10.0, 20.0, 99.0, 12.0, 600.0, 5.0],
    })
    runs["ok"] = runs["status"] == "ok"
    available = {("a", "c1"), ("a", "c2"), ("a", "c3"), ("b", "c1"), ("b", "c2"), ("c", "c9")}
    # c1 is the only case with an ok series for both a and b; c has only its own case.
    assert tables.typical_cases(runs, available) == {"a": "c1", "b": "c1", "c": "c9"}
    assert tables.typical_cases(runs, set()) == {}


def test_a_runs_success_is_judged_once_by_the_rankings_ok_status(tmp_path: Path) -> None:
    inputs = load_report_inputs(copy_fixture(tmp_path / "store"))
    statuses = inputs.runs["status"].astype(str).tolist()
    assert "ok" in statuses and set(statuses) != {"ok"}  # the fixture has both
    assert judged(inputs, FLARE22_RANKING).runs["ok"].tolist() == [s == "ok" for s in statuses]
    assert "ok" not in inputs.runs.columns  # the inputs are not modified
    # another ok_status (an external table's "success"): every run of the store is a failure,
    # in every table that judges runs
    other = judged(inputs, replace(FLARE22_RANKING, ok_status="success"))
    assert not other.runs["ok"].any()
    order = sorted(set(other.runs["algorithm"].astype(str)))
    assert len(tables.failures_table(other.runs).rows) == len(statuses)
    assert all(link.n_ok == 0 for link in tables.page_links(other.runs, algorithms=order))
    assert sum(link.n_ok for link in tables.page_links(judged(inputs, FLARE22_RANKING).runs, algorithms=order)) == \
        sum(s == "ok" for k, s in zip(inputs.runs["kind"], statuses, strict=True) if k == "segmenter")


def test_downsampling_keeps_the_peaks() -> None:
    t = np.arange(10_000) / 10.0
    gpu = np.zeros_like(t)
    gpu[4321] = 9000.0
    small = figures.downsample_series(pd.DataFrame({"t_s": t, "gpu_mb": gpu}), max_points=300)
    assert len(small) == 300
    assert small["gpu_mb"].max() == 9000.0
    assert small["t_s"].is_monotonic_increasing and small["t_s"].iloc[0] == 0.0


def test_figures_are_deterministic_svg_with_prefixed_ids() -> None:
    points = pd.DataFrame({"algorithm": ["a", "b"], "time_s": [10.0, 300.0], "dsc": [0.9, 0.8], "nsd": [0.92, 0.7],
                           "auc_gpu_mb_s": [1e5, np.nan]})
    colors = figures.algorithm_colors(["a", "b"])
    svg = figures.accuracy_time_figure(points, colors, prefix="fig-x")
    assert svg == figures.accuracy_time_figure(points, colors, prefix="fig-x")
    assert svg.startswith("<svg ") and "<?xml" not in svg and "<metadata" not in svg
    assert "<title>Accuracy against time" in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("fig-x-") for i in ids)
    for ref in re.findall(r'url\(#([^)]+)\)', svg):
        assert ref in ids


def test_number_formats() -> None:
    assert tables.fmt_value(0.91234, "dsc") == "0.912"
    assert tables.fmt_value(4_936_927.0) == "4.94M"
    assert tables.fmt_value(61_067.5) == "61.1k"
    assert tables.fmt_value(2345.5) == "2,346"
    assert tables.fmt_value(43.01, "time_s") == "43.0"
    assert tables.fmt_value(6.4, "time_s") == "6.40"
    assert tables.fmt_value(float("nan")) == tables.MISSING
    assert tables.organ_short("inferior_vena_cava") == "IVC"
    assert tables.organ_short("right_adrenal_gland") == "R adrenal"
    assert tables.organ_short("left_kidney") == "L kidney"


def test_case_details_show_which_host_and_worker_ran_each_run(tmp_path: Path) -> None:
    import sqlite3

    results = copy_fixture(tmp_path / "results")
    with sqlite3.connect(results / "store.sqlite") as db:
        db.execute("UPDATE runs SET worker = 'tcp://worker-b:40001' WHERE algorithm = 'fast-net' AND case_id = 'case_01'")
    build_report(results)
    page = (results / "report-pages" / "fast-net.html").read_text(encoding="utf-8")
    case = page[page.index('id="case-case_01"'):]
    assert "gpu-runner-01 (tcp://worker-b:40001)" in visible_text(case[: case.index("</tr>")])
    case = page[page.index('id="case-case_02"'):]
    assert "gpu-runner-01" in visible_text(case[: case.index("</tr>")])


def test_the_public_edition_withholds_every_per_case_result(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "store")
    inputs = load_report_inputs(folder)
    case_ids = sorted(set(inputs.runs["case_id"]))
    full = render_report_files(inputs, config=replace(FLARE22_RANKING, n_draws=50))
    public_files = render_report_files(inputs, config=replace(FLARE22_RANKING, n_draws=50), public=True)
    assert list(public_files) == [""]  # no pages beside the public page
    public = public_files[""]
    pages = "".join(text for name, text in full.items() if name)
    assert all(f'id="case-{c}"' in pages for c in case_ids)  # the organisers' edition has every case
    assert not [c for c in case_ids if c in public]  # no case id anywhere: no row, no detail, no failure line
    hosts = sorted({str(h) for h in inputs.runs["host"] if h})
    assert hosts and all(h in full[""] for h in hosts) and not [h for h in hosts if h in public]  # no host name
    logs = sorted({line.strip() for text in inputs.runs["log_tail"] for line in str(text).splitlines() if line.strip()})
    assert logs and not [line for line in logs if line in public]  # no log line
    assert "Public edition: per-case results are withheld" in public and 'href="#cases"' not in public
    for key in ("fig-podium", "fig-dotbox", "fig-resources"):  # per-case values
        assert f'<figure id="{key}"' in full[""] and f'<figure id="{key}"' not in public, key
    for key in ("fig-rank-heatmap", "fig-stacked", "fig-tasks", "fig-blob"):  # aggregates
        assert f'<figure id="{key}"' in public, key
    page = parse(public)
    assert page.ids and "ranking" in page.ids  # the ranking itself is there
    done = CliRunner().invoke(report, ["--results", str(folder), "--out", str(tmp_path / "public.html"),
                                       "--edition", "public", "--draws", "50"])
    assert done.exit_code == 0, done.output
    assert not [c for c in case_ids if c in (tmp_path / "public.html").read_text()]


def test_methods_show_each_algorithms_version_description_and_first_run(tmp_path: Path) -> None:
    import json
    import sqlite3

    results = copy_fixture(tmp_path / "results")
    with sqlite3.connect(results / "store.sqlite") as db:
        db.execute("UPDATE runs SET details = ? WHERE algorithm = 'fast-net'",
                   (json.dumps({"manifest_version": "2.1.0", "manifest_description": "nnU-Net, 5 folds"}),))
    html = build_report(results, config=replace(FLARE22_RANKING, n_draws=20)).read_text(encoding="utf-8")
    provenance = html[html.index('<table id="provenance"'):]
    start = provenance.index('>fast-net</td>')
    row = visible_text(provenance[start:provenance.index("</tr>", start)])
    assert "2.1.0" in row and "nnU-Net, 5 folds" in row and " UTC" in row


def test_report_names_the_configured_method_and_draws_every_methods_rank(clean_store: Path, clean_report: str,
                                                                         tmp_path: Path) -> None:
    import dataclasses

    config = dataclasses.replace(FLARE22_RANKING, method="aggregate_then_rank", aggregate="median")
    html = build_report(clean_store, tmp_path / "page.html", config=config).read_text(encoding="utf-8")
    assert "Ranking method: <strong>aggregate-then-rank by the median (challengeR; na_treat worst)" in html
    assert "FLARE score</strong> is their weighted mean" not in html
    figure = html[html.index('id="fig-methods'):]
    figure = figure[:figure.index("</svg>")]
    for label in ("aggregate-then-rank", "rank-then-aggregate", "test-then-rank", "FLARE score"):
        assert label in figure
    # the chosen method's label, bold: its two lines "aggregate-then-rank" and "(median)"
    assert figure.count("font-weight: 700") == 2
    flare = clean_report  # the same store under FLARE22's ranking
    assert "FLARE score</strong> is their weighted mean" in flare
    flare_figure = flare[flare.index('id="fig-methods'):]
    assert flare_figure[:flare_figure.index("</svg>")].count("font-weight: 700") == 1  # "FLARE score"


def test_csv_tables_read_as_words_and_rounded_numbers() -> None:
    frame = pd.DataFrame({"volume_sensitivity": [0.6666666666666666], "hd95_mm": [19061.92236803798],
                          "error_cases": [12000], "note": ["x_y"]})
    table = tables.frame_table(frame, key="t")
    assert [c.label for c in table.columns] == ["volume sensitivity", "hd95 (mm)", "error cases", "note"]
    assert [c.text for c in table.rows[0]] == ["0.6667", "19,062", "12,000", "x_y"]
    assert table.rows[0][1].sort == "19061.92237"  # the sort key keeps the precision


def test_failures_and_algorithm_pages_show_the_log_tail_and_the_public_edition_none(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that crashed (the local runner, a real process): beside "exited with code 1" its last log
    lines say why, bounded and as text (no markup, no escape codes); the public edition shows no log."""
    from harness.pipeline import run_all
    from tests.runpath.conftest import Toy

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    toy = Toy(tmp_path / "toy")
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("crasher", "noisy_crash")
    summary = run_all(toy.settings(), say=lambda _m: None, on_result=lambda _e: None)
    assert summary.failed == 2
    reason = "ValueError: toy weights do not fit the input"
    report_file = build_report(toy.results, tmp_path / "report.html", config=replace(FLARE22_RANKING, n_draws=20))
    page = report_file.read_text()
    failures = page.split('<section id="failures">', 1)[1].split("</section>", 1)[0]
    assert "exited with code 1" in failures and failures.count(reason) == 2  # one row per crashed case
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in failures and "<script>alert" not in failures
    assert "\x1b" not in page and "[31m" not in failures
    assert "toy: step 299" in failures and "toy: step 0 " not in failures  # the tail, not the whole log
    logs = re.findall(r'<td class="log"[^>]*>(.*?)</td>', failures, flags=re.S)
    assert len(logs) == 2 and all(len(log) <= 2 * tables.LOG_TAIL_CHARS for log in logs)  # escaped, still bounded
    pages = (tmp_path / "report-pages" / tables.page_file("crasher")).read_text()
    assert pages.count(reason) == 2 and "exited with code 1" in pages
    alpha = (tmp_path / "report-pages" / tables.page_file("alpha")).read_text()
    assert 'class="log"' not in alpha and "Log (last lines)" in alpha  # ok runs: no log shown

    public = build_report(toy.results, tmp_path / "public" / "report.html", config=replace(FLARE22_RANKING, n_draws=20),
                          public=True).read_text()
    assert reason not in public and "toy: step" not in public and '<td class="log"' not in public
