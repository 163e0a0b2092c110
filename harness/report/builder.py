"""`build_report`: one self-contained, deterministic HTML leaderboard from a results folder.

The page is rendered from the Jinja2 templates in the repository's `leaderboard/` folder, with its
CSS and sorting script inlined and every figure an inline SVG: it requests nothing from any host.
The same store gives the same bytes: the ranking's bootstrap is seeded, figures are written
without dates and with fixed ids, and the page names the end of the latest run instead of the
time it was built.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness import __version__
from harness.errors import DataError, HarnessError, SpecError
from harness.layout import REPORT_FILE
from harness.models import Kind
from harness.ranking.challenge import ChallengeRanking, rank_challenge
from harness.ranking.combine import COMPARED, describe_method
from harness.ranking.config import FLARE22_RANKING, RankingConfig, load_ranking_config
from harness.ranking.tasks import TaskRanking, organ_tasks, rank_tasks, task_stability, task_tree
from harness.report import figures, svgplot, tables
from harness.report.drawing import Drawer
from harness.report.inputs import ReportInputs, load_report_inputs, read_monitor

TEMPLATE_ENV = "HARNESS_LEADERBOARD_DIR"
TEMPLATE_FILE = "report.html.j2"
PAGE_TEMPLATE_FILE = "algorithm.html.j2"
CASES_TEMPLATE_FILE = "cases.html.j2"
CASES_PAGE = "cases.html"
INLINE_CASE_CELLS = 2000  # a larger case matrix gets its own page
ASSETS = {"css": "report.css", "js": "sort.js"}
DEFAULT_NAME = REPORT_FILE


def default_template_dir() -> Path:
    """`$HARNESS_LEADERBOARD_DIR`, else the templates shipped in the package (`harness.leaderboard`:
    the repository's `leaderboard/`, mapped into the package by pyproject.toml, in a wheel too)."""
    env = os.environ.get(TEMPLATE_ENV)
    if env:
        return Path(env)
    from importlib.resources import files

    return Path(str(files("harness.leaderboard")))


def resolve_config(config: RankingConfig | str | Path | None) -> RankingConfig:
    if config is None:
        return FLARE22_RANKING
    if isinstance(config, RankingConfig):
        return config
    return load_ranking_config(config)


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    caption: str
    drawn: Future[str]  # the SVG text, drawn by a worker or already here (drawing.Drawer)

    @property
    def svg(self) -> Markup:
        return Markup(self.drawn.result())


def build_report(
    results_dir: Path,
    out: Path | None = None,
    *,
    config: RankingConfig | str | Path | None = None,
    seed: int | None = None,
    draws: int | None = None,
    template_dir: Path | None = None,
    public: bool = False,
) -> Path:
    """Read the results folder, rank it (`config`, default FLARE22's; `seed` and `draws` override
    the config's bootstrap) and write the HTML leaderboard to `out` (default
    `<results_dir>/report.html`). `public`: the edition without per-case results (challenges
    withhold per-case test scores: they leak the test labels). Returns the path written."""
    inputs = load_report_inputs(Path(results_dir))
    target = Path(out) if out is not None else inputs.folder / DEFAULT_NAME
    files = render_report_files(inputs, config=resolve_config(config), seed=seed, draws=draws,
                                template_dir=template_dir, public=public, pages_dir=pages_dir_of(target))
    pages = target.parent / pages_dir_of(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if pages.is_dir():  # pages of algorithms no longer in the store must not linger
            for stale in pages.glob("*.html"):
                stale.unlink()
        for relative, text in files.items():
            path = target if relative == "" else target.parent / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise DataError(f"{target}: cannot write the report ({exc.strerror}); choose another --out") from None
    return target


def pages_dir_of(target: Path) -> str:
    """The folder beside a report that holds its per-algorithm pages: `<name>-pages`."""
    return f"{Path(target).stem}-pages"


def rank_inputs(inputs: ReportInputs, config: RankingConfig, *, seed: int | None = None,
                draws: int | None = None) -> ChallengeRanking:
    """The ranking of the store's segmenter runs. Measurements outside the config (peak memory,
    sampling rate, ...) are shown in the report but not ranked."""
    table = inputs.table[inputs.table["metric"].isin(config.metric_names)]
    if table.empty:
        raise DataError(f"{inputs.folder}: the store holds none of the ranking's metrics "
                        f"({', '.join(config.metric_names)}); score some runs first")
    return rank_challenge(table, config, n_draws=draws, seed=seed, source=str(inputs.folder))


def render_report(
    inputs: ReportInputs,
    *,
    config: RankingConfig = FLARE22_RANKING,
    seed: int | None = None,
    draws: int | None = None,
    template_dir: Path | None = None,
    public: bool = False,
) -> str:
    """The main report page as text (no file written)."""
    return render_report_files(inputs, config=config, seed=seed, draws=draws, template_dir=template_dir,
                               public=public)[""]


def render_report_files(
    inputs: ReportInputs,
    *,
    config: RankingConfig = FLARE22_RANKING,
    seed: int | None = None,
    draws: int | None = None,
    template_dir: Path | None = None,
    public: bool = False,
    pages_dir: str = "report-pages",
) -> dict[str, str]:
    """Every file of the report as text: "" is the main page, "<pages_dir>/<file>" the pages of
    the algorithms (and of the case matrix when it is large); the public edition has no pages."""
    folder = Path(template_dir) if template_dir is not None else default_template_dir()
    env = _environment(folder)
    ranking = rank_inputs(inputs, config, seed=seed, draws=draws)
    with Drawer() as drawer:  # figures drawn by workers while the tables and pages are built
        return _render_files(inputs, ranking, env, folder, drawer=drawer, public=public, pages_dir=pages_dir)


def _render_files(inputs: ReportInputs, ranking: ChallengeRanking, env: Environment, folder: Path, *, drawer: Drawer,
                  public: bool, pages_dir: str) -> dict[str, str]:
    context = report_context(inputs, ranking, pages_dir=pages_dir, drawer=drawer, public=public)
    if public:
        context = public_edition(context, inputs, ranking)
    assets = {}
    for key, name in ASSETS.items():
        path = folder / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the report asset ({exc.strerror}); restore leaderboard/ "
                            f"or set {TEMPLATE_ENV}") from None
        if "</" + ("style" if key == "css" else "script") in text.lower():
            raise SpecError(f"{path}: holds a closing </style> or </script> tag; it would end the inline block")
        assets[key] = Markup(text)
    main = env.get_template(TEMPLATE_FILE)
    if public:
        return {"": _tidy(main.render(**context, assets=assets))}
    files = {"": ""}  # the main page last: it waits for the figures the workers draw meanwhile
    common = {"assets": assets, "harness_version": context["harness_version"], "title": context["title"],
              "report_file": "../" + pages_dir.removesuffix("-pages") + ".html",  # pages_dir_of's inverse
              "results_date": context["results_date"], "folder": context["folder"]}
    ranks = {str(r["algorithm"]): r for r in ranking.leaderboard.to_dict("records")}
    order = [link.algorithm for link in context["algorithm_pages"]]
    organs = tables.organs_of(inputs.scores)
    segmenter_runs = inputs.runs[inputs.runs["kind"] == Kind.SEGMENTER]
    n_chunks = min(len(order), 2 * drawer.workers) if drawer.parallel else 1
    chunks = [order[k::n_chunks] for k in range(n_chunks)] if order else []
    drawn = []
    for chunk in chunks:  # each worker gets only its algorithms' rows
        def own(frame: pd.DataFrame, names: list[str] = chunk) -> pd.DataFrame:
            return frame[frame["algorithm"].astype(str).isin(names)] if not frame.empty else frame
        drawn.append(drawer.draw(_page_files, folder, common, own(segmenter_runs), own(inputs.scores),
                                 own(inputs.measurements), algorithms=chunk, ok_status=ranking.config.ok_status,
                                 organs=organs, ranks={a: ranks.get(a) for a in chunk}, pages_dir=pages_dir))
    for future in drawn:
        files.update(future.result())
    if context["cases_page"] is not None:
        files[context["cases_page"]] = _tidy(env.get_template(CASES_TEMPLATE_FILE).render(
            **common, case_matrix=context["full_case_matrix"]))
    files[""] = _tidy(main.render(**context, assets=assets))
    return files


def _page_files(folder: Path, common: Mapping[str, Any], runs: pd.DataFrame, scores: pd.DataFrame,
                measurements: pd.DataFrame, *, algorithms: list[str], ok_status: str, organs: list[str],
                ranks: Mapping[str, Any], pages_dir: str) -> dict[str, str]:
    """The pages of `algorithms` (the frames may hold only their rows), by file; a worker's job."""
    template = _environment(folder).get_template(PAGE_TEMPLATE_FILE)
    pages = tables.algorithm_pages(runs, scores, measurements, algorithms=algorithms, ok_status=ok_status, organs=organs)
    return {f"{pages_dir}/{page.file}": _tidy(template.render(**common, page=page, rank=ranks.get(page.algorithm)))
            for page in pages}


def _tidy(page: str) -> str:
    return "\n".join(line.rstrip() for line in page.splitlines()) + "\n"


def table_html(t: tables.HtmlTable, caption: str = "", cls: str = "") -> Markup:
    """A data table as HTML (the templates' `table(...)`): rendered here rather than by a Jinja
    macro, since a page per algorithm holds thousands of cells (a macro spends ~10 us on each;
    `html.escape` is three times quicker than markupsafe's escape, which wraps each result)."""
    sortable = t.sortable
    classes = "data" + (" sortable" if sortable else "") + (f" {cls}" if cls else "")
    out = ['<div class="table-wrap">', f'<table id="{_e(t.key)}" class="{_e(classes)}">']
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    out.append("<thead><tr>")
    for c in t.columns:
        label = f'<button type="button">{_e(c.label)}</button>' if sortable else _e(c.label)
        first = c.first if sortable else ""
        out.append(f'<th scope="col"{_attr("class", c.cls)}{_attr("title", c.title)}{_attr("data-first", first)}>{label}</th>')
    out.append("</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        cells = []
        for cell in row:
            body = f'<a href="{_e(cell.href)}">{_e(cell.text)}</a>' if cell.href else _e(cell.text)
            if cell.sub:
                body += f' <span class="sd">{_e(cell.sub)}</span>'
            sort = f' data-v="{_e(cell.sort)}"' if sortable else ""
            cells.append(f"<td{_attr('id', cell.anchor)}{_attr('class', cell.cls)}{sort}{_attr('title', cell.title)}>{body}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>", "</div>"]
    if t.note:
        out.append(f'<p class="note">{_e(t.note)}</p>')
    return Markup("\n".join(out) + "\n")


def _attr(name: str, value: str) -> str:
    """` name="value"`, or nothing for an empty value."""
    return f' {name}="{html.escape(value, quote=True)}"' if value else ""


def _e(value: str) -> str:
    """Text for HTML content and double-quoted attributes."""
    return html.escape(value, quote=True)


def _environment(folder: Path) -> Environment:
    for name in (TEMPLATE_FILE, PAGE_TEMPLATE_FILE, CASES_TEMPLATE_FILE, "macros.html.j2"):
        if not (folder / name).is_file():
            raise SpecError(f"{folder / name}: report template not found; restore leaderboard/ or set "
                            f"{TEMPLATE_ENV} to a folder holding {TEMPLATE_FILE} and the templates beside it")
    env = Environment(loader=FileSystemLoader(str(folder)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals["table"] = table_html
    return env


def report_context(inputs: ReportInputs, ranking: ChallengeRanking, *, pages_dir: str = "report-pages",
                   drawer: Drawer | None = None, public: bool = False) -> dict[str, Any]:
    """Everything the templates show, as display data (pure apart from reading monitor series);
    `pages_dir` is the folder of the per-algorithm pages, relative to the report. Figures are
    drawn by `drawer` (default: here, at once), the largest first; `public` leaves out the
    per-algorithm pages (the public edition has none)."""
    drawer = drawer if drawer is not None else Drawer(workers=1)
    config = ranking.config
    runs = inputs.runs
    segmenters = runs[runs["kind"] == Kind.SEGMENTER]
    order = tables.rank_order(ranking)
    colors = figures.algorithm_colors(order)
    boot = ranking.bootstrap
    tau = boot.tau_summary()
    n_cases = len(ranking.matrices[ranking.metrics[0]].cases)
    organs = tables.organs_of(inputs.scores)

    figs: list[Figure] = []
    organ_tables = []
    box_figs = []
    organ_values = {}
    for metric in ("dsc", "nsd"):
        if not organs:
            break
        values = organ_values[metric] = tables.organ_values(runs, inputs.scores, config, metric)
        organ_tables.append((tables.metric_label(metric), tables.organ_table(values, algorithms=order, organs=organs, metric=metric)))
        label = tables.metric_label(metric)
        box_figs.append(_figure(f"fig-box-{metric}", f"{label} per organ",
                                f"{label} of every case per organ; one box per algorithm (rank order), whiskers 1.5 IQR.",
                                drawer.draw(figures.organ_box_figure, values, organs=organs, algorithms=order,
                                            colors=colors, metric_label=label, prefix=f"fig-box-{metric}",
                                            title=f"{label} per organ and algorithm")))

    board = ranking.leaderboard.set_index("algorithm")
    if {"dsc", "time_s"} <= set(ranking.metrics):
        points = pd.DataFrame({
            "algorithm": order,
            "time_s": [board.loc[a, "mean_time_s"] for a in order],
            "dsc": [board.loc[a, "mean_dsc"] for a in order],
            "nsd": [board.loc[a, "mean_nsd"] if "nsd" in ranking.metrics else float("nan") for a in order],
            "auc_gpu_mb_s": [board.loc[a, "mean_auc_gpu_mb_s"] if "auc_gpu_mb_s" in ranking.metrics else float("nan")
                             for a in order],
        })
        figs.append(_figure("fig-accuracy", "Accuracy against time",
                            "Mean DSC and NSD against mean time per case; bubble area proportional to the mean AUC_GPU "
                            "(as FLARE22's Fig. 2b). Failed runs count with their metric's failure value.",
                            drawer.draw(figures.accuracy_time_figure, points, colors)))

    blob = _figure("fig-blob", "Bootstrap rank distributions",
                   f"Share of the {boot.n_draws} bootstrap draws that gave each algorithm each rank (disc area); black bar: "
                   "median rank; line: 2.5-97.5% interval (inverse-CDF quantiles: ranks that draws gave).",
                   drawer.draw(figures.rank_blob_figure, boot.rank_frequencies(), boot.rank_intervals(), algorithms=order,
                               colors=colors))
    violin = _figure("fig-tau", "Kendall's tau",
                     f"Kendall's tau-b between each draw's ranking and the full ranking; {tau.n_dropped} undefined draw(s) "
                     "left out.", drawer.draw(figures.tau_violin_figure, boot.tau, variant=boot.variant))
    methods_fig = None
    if ranking.method_ranks is not None and len(ranking.method_ranks):
        chosen = next((label for label, kind, aggregate in COMPARED
                       if kind == config.method and (kind != "aggregate_then_rank" or aggregate == config.aggregate)), "")
        methods_fig = _figure("fig-methods", "Ranking robustness across methods",
                              f"Each algorithm's rank under each ranking method (challengeR's line plot); the "
                              f"leaderboard's method is {describe_method(config)}"
                              + (" (bold)." if chosen else "."),
                              drawer.draw(figures.method_lines_figure, ranking.method_ranks.reindex(order),
                                          colors=colors, chosen=chosen))
    figs += _rank_figures(ranking, order, colors, drawer=drawer, public=public)
    task_fig = task_tau_fig = None
    if organs and len(organs) > 1 and "dsc" in config.metric_names:  # the organs' DSC as tasks
        task_values = organ_tasks(organ_values["dsc"], algorithms=order, organs=organs)
        task_ranking = rank_tasks(task_values, algorithms=order, config=config, metric="dsc")
        consensus_order = [str(a) for a in task_ranking.consensus.index]
        leaves, tree = task_tree(task_ranking.ranks)
        taus = task_stability(task_values, task_ranking, larger_is_better=True, n_draws=boot.n_draws,
                              seed=boot.seed if boot.seed is not None else 0)
        if taus:
            task_tau_fig = _figure("fig-task-tau", "Ranking stability per organ",
                                   f"Kendall's tau-b between each organ's ranking on each of {boot.n_draws} bootstrap "
                                   "draws of its cases and its full ranking (challengeR's violin plot across tasks); "
                                   "white dot: median, bar: quartiles.",
                                   drawer.draw(svgplot.tau_violins_svg, {t: taus[t] for t in leaves if t in taus}))
        task_fig = _figure("fig-tasks", "Ranks per organ (multi-task)",
                           f"Each organ ranked as a task of its own on its DSC ({describe_task_method(task_ranking)}); "
                           "the consensus is each algorithm's mean rank over the organs (challengeR's consensus), "
                           "ranked; algorithms in consensus order; a cell's colour and number: its rank (dark = best); "
                           "above, the organs clustered by how alike they rank "
                           "the algorithms (complete linkage of the Euclidean distance between their ranks). "
                           f"Consensus winner: {consensus_order[0]}.",
                           drawer.draw(svgplot.task_ranks_svg, task_ranking.ranks.loc[consensus_order, leaves],
                                       consensus=task_ranking.consensus["rank"], tree=tree))
    adjust = "Holm-adjusted over all ordered pairs" if config.p_adjust == "holm" else "unadjusted"
    n_significant = {m: int(np.nansum(frame.to_numpy(dtype=float))) for m, frame in ranking.significance.items()}
    found = ", ".join(f"{tables.metric_label(m)} {n}" for m, n in n_significant.items())
    significance = _figure(
        "fig-significance", "Significance map",
        f"Dark cell: the row algorithm is significantly better than the column algorithm (one-sided paired Wilcoxon "
        f"signed-rank test per metric, {adjust}, alpha {config.alpha:g}). Algorithms in rank order. "
        f"Significant ordered pairs: {found}" + (" (with few cases no difference can reach significance)."
                                                 if not any(n_significant.values()) else "."),
        drawer.draw(svgplot.significance_svg, tables.significance_counts(ranking, order), algorithms=order,
                    labels={m: tables.metric_label(m) for m in ranking.metrics}))

    typical = tables.typical_cases(segmenters, inputs.monitor_paths, ok_status=config.ok_status)
    series = {}
    monitor_problems = []
    for algorithm in order:
        if algorithm in typical:
            case_id = typical[algorithm]
            try:
                series[algorithm] = (case_id, read_monitor(inputs.monitor_paths[(algorithm, case_id)]))
            except HarnessError as exc:
                monitor_problems.append(str(exc))
    resource_fig = None
    if series and not public:  # the public edition shows no case's curves
        cases = sorted({c for c, _ in series.values()})
        resource_fig = _figure("fig-resources", "Resource use of a typical case",
                               f"GPU memory, CPU and resident memory of each algorithm's container on case "
                               f"{', '.join(cases)} (the case nearest the median time; curves reduced to 300 "
                               "points, each the peak of its stretch).",
                               drawer.draw(figures.resource_figure, series, colors=colors))

    failures = tables.failures_table(runs, ok_status=config.ok_status)
    statuses = segmenters["status"].value_counts().sort_index()
    annotation = []
    titles = {"error_detection": "Error detection", "error_by_size": "Error detection by error size",
              "priority_check": "Priority list check", "review_queue": "Review queue"}
    for name in ("error_detection", "error_by_size", "priority_check", "review_queue"):
        if name in inputs.annotation:
            annotation.append((titles[name], tables.frame_table(inputs.annotation[name], key=f"annotation-{name}")))

    profiles = tables.distinct(segmenters["profile"])
    # Per-case detail lives on one page per algorithm beside the report; the case matrix stays on
    # the main page while it is small, else it gets a page of its own (the main page stays small).
    pages = {a: f"{pages_dir}/{tables.page_file(a)}" for a in order}
    case_matrix = tables.case_matrix_table(runs, inputs.scores, algorithms=order, ok_status=config.ok_status,
                                           pages={a: tables.page_file(a) for a in order})
    inline_matrix = len(case_matrix.rows) * max(1, len(order)) <= INLINE_CASE_CELLS
    if inline_matrix:
        case_matrix = tables.case_matrix_table(runs, inputs.scores, algorithms=order, ok_status=config.ok_status,
                                               pages=pages)
    return {
        "public": False,
        "title": f"Leaderboard \u2013 {config.name}",
        "folder": inputs.folder.name or str(inputs.folder),
        "n_algorithms": len(order),
        "n_cases": n_cases,
        "n_runs": len(segmenters),
        "n_failed_runs": int((segmenters["status"] != config.ok_status).sum()),
        "status_counts": [(str(k), int(v)) for k, v in statuses.items()],
        "results_date": tables.results_date(runs),
        "harness_version": __version__,
        "config": config,
        "ranked_metrics": [tables.metric_label(m) for m in ranking.metrics],
        "skipped_metrics": [tables.metric_label(m) for m in ranking.skipped_metrics],
        "unmeasured_metrics": [tables.metric_label(m) for m in ranking.unmeasured_metrics],
        "left_out": list(ranking.left_out),
        "method_text": describe_method(config),
        "leaderboard": tables.leaderboard_table(ranking, pages=pages),
        "winner": order[0] if order else "",
        "tau": tau,
        "boot": {"variant": boot.variant, "n_draws": boot.n_draws, "seed": "explicit draws" if boot.seed is None else boot.seed},
        "failures": failures,
        "not_scorable": _not_scorable(inputs),
        "organ_tables": organ_tables,
        "figures": {f.key: f for f in [*figs, *box_figs, blob, violin, significance]
                    + ([resource_fig] if resource_fig else []) + ([methods_fig] if methods_fig else [])
                    + ([task_fig] if task_fig else []) + ([task_tau_fig] if task_tau_fig else [])},
        "box_figures": box_figs,
        "resources": tables.resources_table(inputs.measurements, segmenters, algorithms=order, ok_status=config.ok_status),
        "monitor_problems": monitor_problems,
        "annotation": annotation,
        "methods": _methods(inputs, ranking, profiles),
        "case_matrix": case_matrix if inline_matrix else None,
        "pages": pages,
        "pages_dir": pages_dir,
        "cases_page": None if inline_matrix else f"{pages_dir}/{CASES_PAGE}",
        "algorithm_pages": [] if public else tables.page_links(runs, algorithms=order, ok_status=config.ok_status),
        "full_case_matrix": case_matrix,
    }


def public_edition(context: dict[str, Any], inputs: ReportInputs, ranking: ChallengeRanking) -> dict[str, Any]:
    """The context without anything per case: no case table or details, failures as counts per
    algorithm and status, no unscorable-organ list and no typical case's resource curves (a case id
    next to a failure, an organ or a curve says something of that case)."""
    import pandas as pd

    runs = inputs.runs[inputs.runs["kind"] == Kind.SEGMENTER]
    failed = runs[runs["status"] != ranking.config.ok_status]
    counts = (failed.groupby(["algorithm", "status"]).size().rename("runs").reset_index() if len(failed)
              else pd.DataFrame(columns=["algorithm", "status", "runs"]))
    figures_kept = {k: f for k, f in context["figures"].items() if k not in PER_CASE_FIGURES}
    methods = {**context["methods"], "hosts": tables.hosts_table(runs, with_names=False)}  # no host names
    return {**context, "public": True, "case_matrix": None, "algorithm_pages": [], "pages": {}, "cases_page": None,
            "full_case_matrix": None, "not_scorable": None, "methods": methods,
            "leaderboard": tables.leaderboard_table(ranking),
            "failures": tables.frame_table(counts, key="failures"), "figures": figures_kept}


# Figures of per-case values: not in the public edition (the resource curves also name their case).
PER_CASE_FIGURES = ("fig-resources", "fig-podium", "fig-dotbox")


def _rank_figures(ranking: ChallengeRanking, order: list[str], colors: Mapping[str, str], *, drawer: Drawer,
                  public: bool) -> list[Figure]:
    """challengeR's figures of the per-case ranks and values of the primary metric (DSC when ranked,
    else the first ranked metric) and of the bootstrap's rank frequencies."""
    primary = "dsc" if "dsc" in ranking.metrics else ranking.metrics[0]
    matrix = ranking.matrices[primary]
    columns = [matrix.algorithms.index(a) for a in order]
    values, ranks = matrix.values[:, columns], matrix.ranks[:, columns]
    n_cases, n = values.shape
    label = tables.metric_label(primary)
    counts = pd.DataFrame([np.bincount(np.clip(ranks[:, a].astype(int), 1, n) - 1, minlength=n) for a in range(n)],
                          index=pd.Index(order, name="algorithm"), columns=range(1, n + 1))
    better = "larger" if matrix.larger_is_better else "smaller"
    out = [
        _figure("fig-rank-heatmap", "Ranking heatmap",
                f"How many of the {n_cases} cases gave each algorithm (row, leaderboard order) each rank on {label} "
                f"({better} is better; ties share the best rank; a failed run at its failure value).",
                drawer.draw(svgplot.rank_heatmap_svg, counts, n_cases=n_cases, xlabel=f"rank on the case ({label})")),
        _figure("fig-stacked", "Stacked frequency plot",
                f"Each algorithm's ranks over the {ranking.bootstrap.n_draws} bootstrap draws, as shares of one bar "
                "(dark = best ranks); one colour means every draw agrees.",
                drawer.draw(svgplot.stacked_frequency_svg, ranking.bootstrap.rank_frequencies().reindex(order))),
    ]
    if public:
        return out
    finite = values[np.isfinite(values)]
    lo, hi = (0.0, 1.0) if primary in ("dsc", "nsd") else (float(finite.min()), float(finite.max())) if finite.size \
        else (0.0, 1.0)
    out += [
        _figure("fig-podium", "Podium plot",
                f"Each case's {label} of each algorithm, placed at the rank the algorithm took on that case; a case's "
                "points are linked by a grey line beneath them; each algorithm a colour (named at the right, leaderboard "
                "order)." if n <= svgplot.PODIUM_JOINT_MAX else
                f"One panel per algorithm (leaderboard order): each case's {label}, placed at the rank the algorithm took "
                f"on that case (1 to {n}); the grey line is the median {label} taken at each place by all algorithms.",
                drawer.draw(svgplot.podium_svg, values, ranks, algorithms=order, colors=colors, metric_label=label,
                            lo=lo, hi=hi)),
        _figure("fig-dotbox", "Dot-and-box plot",
                f"{label} of every case per algorithm (leaderboard order): quartile box, median bar, whiskers 1.5 IQR, "
                "a dot per case; each case's dots linked across the algorithms by a grey line.",
                drawer.draw(svgplot.dot_box_svg, values, algorithms=order, colors=colors, metric_label=label,
                            lo=lo, hi=hi)),
    ]
    return out


def describe_task_method(task_ranking: TaskRanking) -> str:
    method = task_ranking.method
    if method.kind == "aggregate_then_rank":
        return f"aggregate-then-rank by the {method.aggregate}"
    return method.kind.replace("_", "-")


def _figure(key: str, title: str, caption: str, drawn: Future[str]) -> Figure:
    return Figure(key=key, title=title, caption=caption, drawn=drawn)


def _methods(inputs: ReportInputs, ranking: ChallengeRanking, profiles: list[str]) -> dict[str, Any]:
    config = ranking.config
    runs = inputs.runs
    tolerance_tables = []
    # The folder's own profile (a built-in name or a file's path) scored it; a stored name is a fallback.
    sources = [inputs.identity.profile] if inputs.identity is not None else profiles
    for source in sources:
        organs = _profile_organs(source)
        if organs is not None:
            tolerance_tables.append((Path(source).stem if source.endswith(".toml") else source,
                                     tables.tolerances_table(organs)))
    order = tables.rank_order(ranking)
    others = sorted(set(runs["algorithm"].astype(str)) - set(order))
    details = tables.parsed_details(runs)
    return {
        "profiles": profiles or ["(none recorded)"],
        "tolerances": tolerance_tables,
        "weights": tables.weights_table(ranking),
        "ok_status": config.ok_status,
        "failed_as_worst": config.failed_as_worst,
        "alpha": config.alpha,
        "p_adjust": config.p_adjust,
        "description": config.description,
        "runners": tables.distinct(runs["runner"]),
        "harness_versions": tables.distinct(runs["harness_version"]),
        "provenance": tables.provenance_table(runs, algorithms=[*order, *others], details=details),
        "hosts": tables.hosts_table(runs),
        "gpu_sources": tables.distinct(str(d["gpu_memory_source"]) for d in details if d.get("gpu_memory_source")),
    }


def _not_scorable(inputs: ReportInputs) -> tables.HtmlTable | None:
    """Organs the profile's rules left nothing to score (counted apart, not averaged), with why."""
    scores = inputs.scores
    if "organ_status" not in scores.columns:
        return None
    rows = scores[scores["organ_status"] == "not_scorable"]
    if rows.empty:
        return None
    frame = rows[["algorithm", "case_id", "organ", "organ_message"]].rename(
        columns={"case_id": "case", "organ_message": "reason"})
    return tables.frame_table(frame.reset_index(drop=True), key="not-scorable")


def _profile_organs(name: str) -> list[tuple[int | str, str, float, bool]] | None:
    """The profile's scored organs or regions (label, or a region's labels as "1+2+3"; name, tolerance,
    z-range only), or None when it cannot be loaded here (a user's profile file that moved)."""
    from harness.profiles import load_profile

    try:
        profile = load_profile(name)
    except HarnessError:
        return None
    return [(r.labels[0] if len(r.labels) == 1 else "+".join(map(str, r.labels)), r.name, r.tolerance_mm, r.zrange_only)
            for r in profile.scored]


__all__ = ["DEFAULT_NAME", "TEMPLATE_ENV", "build_report", "default_template_dir", "rank_inputs", "render_report",
           "report_context", "resolve_config"]
