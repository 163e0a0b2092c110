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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
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
from harness.ranking import (
    EXTRA_METRIC_RULES,
    FLARE22_RANKING,
    ChallengeRanking,
    RankingConfig,
    RankingMethod,
    TaskRanking,
    compared_label,
    describe_method,
    failure_values,
    load_ranking_config,
    rank_challenge,
)
from harness.report import figures, svgplot, tables
from harness.report.axes import WHISKER_RULE
from harness.report.drawing import Drawer
from harness.report.inputs import ReportInputs, judged, load_report_inputs, read_monitor

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
    template_dir: Path | None = None,
    public: bool = False,
) -> Path:
    """Read the results folder, rank it (`config`, default FLARE22's; the command line applies its
    --seed and --draws to it) and write the HTML leaderboard to `out` (default
    `<results_dir>/report.html`). `public`: the edition without per-case results (challenges
    withhold per-case test scores: they leak the test labels). Returns the path written."""
    inputs = load_report_inputs(Path(results_dir))
    target = Path(out) if out is not None else inputs.folder / DEFAULT_NAME
    files = render_report_files(inputs, config=resolve_config(config), template_dir=template_dir, public=public,
                                pages_dir=pages_dir_of(target))
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


def rank_inputs(inputs: ReportInputs, config: RankingConfig) -> ChallengeRanking:
    """The ranking of the store's segmenter runs, the organs ranked as tasks included. Measurements
    outside the config (peak memory, sampling rate, ...) are shown in the report but not ranked."""
    table = inputs.table[inputs.table["metric"].isin(config.metric_names)]
    if table.empty:
        raise DataError(f"{inputs.folder}: the store holds none of the ranking's metrics "
                        f"({', '.join(config.metric_names)}); score some runs first")
    return rank_challenge(table, config, organ_table=inputs.organ_table, source=str(inputs.folder))


def render_report(
    inputs: ReportInputs,
    *,
    config: RankingConfig = FLARE22_RANKING,
    template_dir: Path | None = None,
    public: bool = False,
) -> str:
    """The main report page as text (no file written)."""
    return render_report_files(inputs, config=config, template_dir=template_dir, public=public)[""]


def render_report_files(
    inputs: ReportInputs,
    *,
    config: RankingConfig = FLARE22_RANKING,
    template_dir: Path | None = None,
    public: bool = False,
    pages_dir: str = "report-pages",
) -> dict[str, str]:
    """Every file of the report as text: "" is the main page, "<pages_dir>/<file>" the pages of
    the algorithms (and of the case matrix when it is large); the public edition has no pages."""
    folder = Path(template_dir) if template_dir is not None else default_template_dir()
    env = _environment(folder)
    ranking = rank_inputs(inputs, config)
    with Drawer() as drawer:  # figures drawn by workers while the tables and pages are built
        return _render_files(judged(inputs, config), ranking, env, folder, drawer=drawer, public=public,
                             pages_dir=pages_dir)


def _render_files(inputs: ReportInputs, ranking: ChallengeRanking, env: Environment, folder: Path, *, drawer: Drawer,
                  public: bool, pages_dir: str) -> dict[str, str]:
    """The report's files from `inputs` judged (`judged`: the runs' `ok` column)."""
    context = _context(inputs, ranking, pages_dir=pages_dir, drawer=drawer, public=public)
    if public:
        context = public_edition(context, inputs, ranking)
    context = _laid_out(context)
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
    # The pages beside the main one come from the context's page links and case page, which the
    # public edition withholds (`shown_publicly`): it gets none.
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
                                 own(inputs.measurements), algorithms=chunk, organs=organs,
                                 ranks={a: ranks.get(a) for a in chunk}, pages_dir=pages_dir))
    for future in drawn:
        files.update(future.result())
    if context["cases_page"] is not None:
        files[context["cases_page"]] = _tidy(env.get_template(CASES_TEMPLATE_FILE).render(
            **common, case_matrix=context["full_case_matrix"]))
    files[""] = _tidy(main.render(**context, assets=assets))
    return files


def _page_files(folder: Path, common: Mapping[str, Any], runs: pd.DataFrame, scores: pd.DataFrame,
                measurements: pd.DataFrame, *, algorithms: list[str], organs: list[str],
                ranks: Mapping[str, Any], pages_dir: str) -> dict[str, str]:
    """The pages of `algorithms` (the frames may hold only their rows), by file; a worker's job."""
    template = _environment(folder).get_template(PAGE_TEMPLATE_FILE)
    pages = tables.algorithm_pages(runs, scores, measurements, algorithms=algorithms, organs=organs)
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


@dataclass(frozen=True, eq=False)
class Scene:
    """What every figure is drawn from: the inputs, the ranking, the algorithms in rank order with
    their colours, the drawer, and the edition (`shown` asks `shown_publicly` in the public one)."""

    inputs: ReportInputs
    ranking: ChallengeRanking
    order: list[str]
    colors: Mapping[str, str]
    drawer: Drawer
    public: bool = False

    def shown(self, key: str) -> bool:
        """Whether the figure or context entry `key` is drawn for this edition."""
        return not self.public or shown_publicly(key)

    @cached_property
    def typical_series(self) -> tuple[dict[str, tuple[str, pd.DataFrame]], list[str]]:
        """Per algorithm, its typical case and that case's monitor series; and the monitor files
        that could not be read (their messages)."""
        segmenters = self.inputs.runs[self.inputs.runs["kind"] == Kind.SEGMENTER]
        typical = tables.typical_cases(segmenters, self.inputs.monitor_paths)
        series, problems = {}, []
        for algorithm in self.order:
            if algorithm in typical:
                case_id = typical[algorithm]
                try:
                    series[algorithm] = (case_id, read_monitor(self.inputs.monitor_paths[(algorithm, case_id)]))
                except HarnessError as exc:
                    problems.append(str(exc))
        return series, problems


def report_context(inputs: ReportInputs, ranking: ChallengeRanking, *, pages_dir: str = "report-pages",
                   drawer: Drawer | None = None, public: bool = False) -> dict[str, Any]:
    """Everything the templates show, as display data (pure apart from reading monitor series);
    `pages_dir` is the folder of the per-algorithm pages, relative to the report. Figures come
    from the `FIGURES` registry, drawn by `drawer` (default: here, at once), the largest first;
    `public` draws only what `shown_publicly` names (`public_edition` withholds the rest)."""
    return _context(judged(inputs, ranking.config), ranking, pages_dir=pages_dir, drawer=drawer,
                    public=public)


def _context(inputs: ReportInputs, ranking: ChallengeRanking, *, pages_dir: str, drawer: Drawer | None,
             public: bool) -> dict[str, Any]:
    """`report_context` of `inputs` judged (`judged`: the runs' `ok` column)."""
    drawer = drawer if drawer is not None else Drawer(workers=1)
    config = ranking.config
    runs = inputs.runs
    segmenters = runs[runs["kind"] == Kind.SEGMENTER]
    order = tables.rank_order(ranking)
    scene = Scene(inputs, ranking, order, figures.algorithm_colors(order), drawer, public)
    drawn = [f for make in FIGURES for f in make(scene) if scene.shown(f.key)]
    boot = ranking.bootstrap
    statuses = segmenters["status"].value_counts().sort_index()
    pages = {a: f"{pages_dir}/{tables.page_file(a)}" for a in order}
    # Per-case detail lives on one page per algorithm beside the report; the case matrix stays on
    # the main page while it is small, else it gets a page of its own (the main page stays small).
    inline_matrix = segmenters["case_id"].nunique() * max(1, len(order)) <= INLINE_CASE_CELLS
    case_matrix = tables.case_matrix_table(runs, inputs.scores, algorithms=order,
                                           pages=pages if inline_matrix else {a: tables.page_file(a) for a in order})
    return {
        "public": False,
        "title": f"Leaderboard \u2013 {config.name}",
        "folder": inputs.folder.name or str(inputs.folder),
        "n_algorithms": len(order),
        "n_cases": len(ranking.matrices[ranking.metrics[0]].cases),
        "n_runs": len(segmenters),
        "n_failed_runs": int((~segmenters["ok"]).sum()),
        "status_counts": [(str(k), int(v)) for k, v in statuses.items()],
        "results_date": tables.results_date(runs),
        "harness_version": __version__,
        "config": config,
        "ranked_metrics": [tables.metric_label(m) for m in ranking.metrics],
        "skipped_metrics": [tables.metric_label(m) for m in ranking.skipped_metrics],
        "unmeasured_metrics": [tables.metric_label(m) for m in ranking.unmeasured_metrics],
        "left_out": list(ranking.left_out),
        "method_text": describe_method(config),
        "flare_score": config.method is RankingMethod.FLARE,
        "leaderboard": tables.leaderboard_table(ranking, pages=pages),
        "winner": order[0] if order else "",
        "tau": boot.tau_summary(),
        "boot": {"variant": boot.variant, "n_draws": boot.n_draws, "seed": "explicit draws" if boot.seed is None else boot.seed},
        "failures": tables.failures_table(runs),
        "not_scorable": _not_scorable(inputs),
        "organ_tables": _organ_tables(ranking, order),
        "figures": {f.key: f for f in drawn},
        "resources": tables.resources_table(inputs.measurements, segmenters, algorithms=order),
        "monitor_problems": scene.typical_series[1] if scene.shown("monitor_problems") else [],
        "annotation": _annotation(inputs, ANNOTATION_AGGREGATES),
        "annotation_cases": _annotation(inputs, ANNOTATION_PER_CASE),
        "methods": _methods(inputs, ranking, tables.distinct(segmenters["profile"])),
        "case_matrix": case_matrix if inline_matrix else None,
        "pages": pages,
        "pages_dir": pages_dir,
        "cases_page": None if inline_matrix else f"{pages_dir}/{CASES_PAGE}",
        "algorithm_pages": tables.page_links(runs, algorithms=order),
        "full_case_matrix": case_matrix,
    }


ANNOTATION_TITLES = {"error_detection": "Error detection", "error_by_size": "Error detection by error size",
                     "priority_check": "Priority list check", "review_queue": "Review queue"}
ANNOTATION_AGGREGATES = ("error_detection", "error_by_size")
ANNOTATION_PER_CASE = ("priority_check", "review_queue")  # they name cases


def _annotation(inputs: ReportInputs, names: tuple[str, ...]) -> list[tuple[str, tables.HtmlTable]]:
    return [(ANNOTATION_TITLES[name], tables.frame_table(inputs.annotation[name], key=f"annotation-{name}"))
            for name in names if name in inputs.annotation]


def _organ_values(ranking: ChallengeRanking, *, extra: bool = False) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Per organ metric (DSC, NSD; with `extra`, then the profile's extra metrics that have a rule:
    lesion-wise DSC and HD95, false volumes, panoptic qualities, not the lesion counts), its values
    as ranked (columns algorithm, case, organ, value: the ranking's organ table, failure values
    applied by the ranking's one rule) and the organs."""
    table = ranking.organ_table
    if table is None or table.empty:
        return {}
    organs = [str(o) for o in pd.unique(table["organ"].astype(str))]
    metrics = [m for m in pd.unique(table["metric"].astype(str))
               if m in ("dsc", "nsd") or (extra and m in EXTRA_METRIC_RULES)]
    return {metric: (table[table["metric"] == metric][["algorithm", "case", "organ", "value"]], organs)
            for metric in metrics}


def _organ_tables(ranking: ChallengeRanking, order: list[str]) -> list[tuple[str, tables.HtmlTable]]:
    """The per-organ mean tables: DSC and NSD, then each extra metric labelled with its direction and
    the value a failed run counts (the ranking's one rule)."""
    worst = failure_values(ranking.config)
    out = []
    for metric, (values, organs) in _organ_values(ranking, extra=True).items():
        label = tables.metric_label(metric)
        larger = True
        if metric in EXTRA_METRIC_RULES:
            larger = EXTRA_METRIC_RULES[metric].larger_is_better
            label += (f" ({'larger' if larger else 'lower'} is better"
                      + (f"; a failed run counts {tables.fmt_value(worst[metric], metric)}" if metric in worst else "")
                      + ")")
        out.append((label, tables.organ_table(values, algorithms=order, organs=organs, metric=metric,
                                              larger_is_better=larger)))
    return out


# What the public edition may show, by context entry and figure key: aggregates, rank
# distributions and the methods. Anything not named here (a new figure, a new entry) is private
# until it is added; `public_edition` withholds it. Per-case values leak the test labels.
PUBLIC = frozenset({
    # context entries, as they are
    "title", "folder", "n_algorithms", "n_cases", "n_runs", "n_failed_runs", "status_counts", "results_date",
    "harness_version", "config", "ranked_metrics", "skipped_metrics", "unmeasured_metrics", "left_out", "method_text",
    "flare_score", "winner", "tau", "boot", "organ_tables", "resources", "annotation",
    # context entries in their public form (`public_forms`): no links, no case, no host name
    "leaderboard", "failures", "methods",
    # figures of aggregates and of the bootstrap's rank distributions
    "fig-box-dsc", "fig-box-nsd", "fig-accuracy", "fig-rank-heatmap", "fig-stacked", "fig-blob", "fig-tau",
    "fig-methods", "fig-tasks", "fig-task-tau", "fig-significance",
})


def shown_publicly(key: str) -> bool:
    """The one rule of the public edition: may the context entry or figure `key` be shown?"""
    return key in PUBLIC


def public_edition(context: dict[str, Any], inputs: ReportInputs, ranking: ChallengeRanking) -> dict[str, Any]:
    """The context as the public may see it: what `shown_publicly` names (leaderboard, failures and
    methods in their public form: failures as counts per algorithm and status, no host names, no
    page links); every other entry and figure withheld (emptied: None, [] or {})."""
    forms = public_forms(judged(inputs, ranking.config), ranking, methods=context["methods"])
    out: dict[str, Any] = {}
    for key, value in context.items():
        if key == "figures":
            out[key] = {k: f for k, f in value.items() if shown_publicly(k)}
        elif not shown_publicly(key):
            out[key] = [] if isinstance(value, list) else {} if isinstance(value, dict) else None
        else:
            out[key] = forms.get(key, value)
    out["public"] = True
    return out


def public_forms(inputs: ReportInputs, ranking: ChallengeRanking, *, methods: Mapping[str, Any]) -> dict[str, Any]:
    """The public form of the entries that have one (`inputs` judged: the runs' `ok` column)."""
    runs = inputs.runs[inputs.runs["kind"] == Kind.SEGMENTER]
    failed = runs[~runs["ok"]]
    counts = (failed.groupby(["algorithm", "status"]).size().rename("runs").reset_index() if len(failed)
              else pd.DataFrame(columns=["algorithm", "status", "runs"]))
    return {"leaderboard": tables.leaderboard_table(ranking), "failures": tables.frame_table(counts, key="failures"),
            "methods": {**methods, "hosts": tables.hosts_table(runs, with_names=False)}}


def _primary(ranking: ChallengeRanking) -> str:
    """The metric of the per-case figures: DSC when ranked, else the first ranked metric."""
    return "dsc" if "dsc" in ranking.metrics else ranking.metrics[0]


def _organ_figures(scene: Scene) -> list[Figure]:
    """A box plot per organ metric: every case's value per organ, one box per algorithm."""
    out = []
    for metric, (values, organs) in _organ_values(scene.ranking).items():
        key, label = f"fig-box-{metric}", tables.metric_label(metric)
        if scene.shown(key):
            out.append(_figure(key, f"{label} per organ",
                               f"{label} of every case per organ; one box per algorithm (rank order), whiskers "
                               f"{WHISKER_RULE}.",
                               scene.drawer.draw(figures.organ_box_figure, values, organs=organs, algorithms=scene.order,
                                                 colors=scene.colors, metric_label=label, prefix=key,
                                                 title=f"{label} per organ and algorithm")))
    return out


def _accuracy_figure(scene: Scene) -> list[Figure]:
    ranking, order = scene.ranking, scene.order
    if not {"dsc", "time_s"} <= set(ranking.metrics):
        return []
    board = ranking.leaderboard.set_index("algorithm")

    def means(metric: str) -> list[float]:
        if metric not in ranking.metrics:
            return [float("nan")] * len(order)
        return [float(v) for v in board[f"mean_{metric}"].reindex(order).to_numpy(dtype=float)]

    points = pd.DataFrame({"algorithm": order, "time_s": means("time_s"), "dsc": means("dsc"), "nsd": means("nsd"),
                           "auc_gpu_mb_s": means("auc_gpu_mb_s")})
    return [_figure("fig-accuracy", "Accuracy against time",
                    "Mean DSC and NSD against mean time per case; bubble area proportional to the mean AUC_GPU "
                    "(as FLARE22's Fig. 2b). Failed runs count with their metric's failure value.",
                    scene.drawer.draw(figures.accuracy_time_figure, points, scene.colors))]


def _stability_figures(scene: Scene) -> list[Figure]:
    boot = scene.ranking.bootstrap
    tau = boot.tau_summary()
    return [
        _figure("fig-blob", "Bootstrap rank distributions",
                f"Share of the {boot.n_draws} bootstrap draws that gave each algorithm each rank (disc area); black bar: "
                "median rank; line: 2.5-97.5% interval (inverse-CDF quantiles: ranks that draws gave).",
                scene.drawer.draw(figures.rank_blob_figure, boot.rank_frequencies(), boot.rank_intervals(),
                                  algorithms=scene.order, colors=scene.colors)),
        _figure("fig-tau", "Kendall's tau",
                f"Kendall's tau-b between each draw's ranking and the full ranking; {tau.n_dropped} undefined draw(s) "
                "left out.", scene.drawer.draw(figures.tau_violin_figure, boot.tau, variant=boot.variant)),
    ]


def _methods_figure(scene: Scene) -> list[Figure]:
    ranking, config = scene.ranking, scene.ranking.config
    if ranking.method_ranks is None or not len(ranking.method_ranks):
        return []
    chosen = compared_label(config)
    return [_figure("fig-methods", "Ranking robustness across methods",
                    f"Each algorithm's rank under each ranking method (challengeR's line plot); the leaderboard's "
                    f"method is {describe_method(config)}" + (" (bold)." if chosen else "."),
                    scene.drawer.draw(figures.method_lines_figure, ranking.method_ranks.reindex(scene.order),
                                      colors=scene.colors, chosen=chosen))]


def _task_figures(scene: Scene) -> list[Figure]:
    """The ranking's organs-as-tasks: ranks per organ with the consensus, and each organ's stability."""
    tasks = scene.ranking.tasks
    if tasks is None:
        return []
    label = tables.metric_label(tasks.metric)
    consensus_order = [str(a) for a in tasks.ranking.consensus.index]
    out = [_figure("fig-tasks", "Ranks per organ (multi-task)",
                   f"Each organ ranked as a task of its own on its {label} ({describe_task_method(tasks.ranking)}); "
                   "the consensus is each algorithm's mean rank over the organs (challengeR's consensus), "
                   "ranked; algorithms in consensus order; a cell's colour and number: its rank (dark = best); "
                   "above, the organs clustered by how alike they rank "
                   "the algorithms (complete linkage of the Euclidean distance between their ranks). "
                   f"Consensus winner: {consensus_order[0]}.",
                   scene.drawer.draw(svgplot.task_ranks_svg, tasks.ranking.ranks.loc[consensus_order, tasks.leaves],
                                     consensus=tasks.ranking.consensus["rank"], tree=tasks.links))]
    if tasks.stability:
        out.append(_figure("fig-task-tau", "Ranking stability per organ",
                           f"Kendall's tau-b between each organ's ranking on each of {tasks.n_draws} bootstrap "
                           "draws of its cases and its full ranking (challengeR's violin plot across tasks); "
                           "white dot: median, bar: quartiles.",
                           scene.drawer.draw(svgplot.tau_violins_svg,
                                             {t: tasks.stability[t] for t in tasks.leaves if t in tasks.stability})))
    return out


def _significance_figure(scene: Scene) -> list[Figure]:
    ranking, config, order = scene.ranking, scene.ranking.config, scene.order
    adjust = "Holm-adjusted over all ordered pairs" if config.p_adjust == "holm" else "unadjusted"
    n_significant = {m: int(np.nansum(frame.to_numpy(dtype=float))) for m, frame in ranking.significance.items()}
    found = ", ".join(f"{tables.metric_label(m)} {n}" for m, n in n_significant.items())
    return [_figure(
        "fig-significance", "Significance map",
        f"Dark cell: the row algorithm is significantly better than the column algorithm (one-sided paired Wilcoxon "
        f"signed-rank test per metric, {adjust}, alpha {config.alpha:g}). Algorithms in rank order. "
        f"Significant ordered pairs: {found}" + (" (with few cases no difference can reach significance)."
                                                 if not any(n_significant.values()) else "."),
        scene.drawer.draw(svgplot.significance_svg, tables.significance_counts(ranking, order), algorithms=order,
                          labels={m: tables.metric_label(m) for m in ranking.metrics}))]


def _resource_figure(scene: Scene) -> list[Figure]:
    """The monitor's curves of a typical case per algorithm (they name the case)."""
    if not scene.shown("fig-resources"):
        return []
    series, _ = scene.typical_series
    if not series:
        return []
    cases = sorted({c for c, _ in series.values()})
    return [_figure("fig-resources", "Resource use of a typical case",
                    f"GPU memory, CPU and resident memory of each algorithm's container on case "
                    f"{', '.join(cases)} (the case nearest the median time; curves reduced to 300 "
                    "points, each the peak of its stretch).",
                    scene.drawer.draw(figures.resource_figure, series, colors=scene.colors))]


def _rank_figures(scene: Scene) -> list[Figure]:
    """challengeR's figures of the per-case ranks and values of the primary metric (`_primary`)
    and of the bootstrap's rank frequencies."""
    ranking, order, colors, drawer = scene.ranking, scene.order, scene.colors, scene.drawer
    primary = _primary(ranking)
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
    finite = values[np.isfinite(values)]
    lo, hi = (0.0, 1.0) if primary in ("dsc", "nsd") else (float(finite.min()), float(finite.max())) if finite.size \
        else (0.0, 1.0)
    if scene.shown("fig-podium"):
        out.append(_figure(
            "fig-podium", "Podium plot",
            f"Each case's {label} of each algorithm, placed at the rank the algorithm took on that case; a case's "
            "points are linked by a grey line beneath them; each algorithm a colour (named at the right, leaderboard "
            "order)." if n <= svgplot.PODIUM_JOINT_MAX else
            f"One panel per algorithm (leaderboard order): each case's {label}, placed at the rank the algorithm took "
            f"on that case (1 to {n}); the grey line is the median {label} taken at each place by all algorithms.",
            drawer.draw(svgplot.podium_svg, values, ranks, algorithms=order, colors=colors, metric_label=label,
                        lo=lo, hi=hi)))
    if scene.shown("fig-dotbox"):
        out.append(_figure(
            "fig-dotbox", "Dot-and-box plot",
            f"{label} of every case per algorithm (leaderboard order): quartile box, median bar, whiskers "
            f"{WHISKER_RULE}, a dot per case; each case's dots linked across the algorithms by a grey line.",
            drawer.draw(svgplot.dot_box_svg, values, algorithms=order, colors=colors, metric_label=label, lo=lo, hi=hi)))
    return out


# The report's figures, in drawing order (the largest first): each maker returns its figures for a
# scene. A new figure is private until `PUBLIC` names its key; the page shows a figure the template
# does not place under "More figures".
FIGURES: list[Callable[[Scene], list[Figure]]] = [
    _organ_figures, _accuracy_figure, _stability_figures, _methods_figure, _rank_figures, _task_figures,
    _significance_figure, _resource_figure,
]
# Figures the template places itself (the organ box plots, `fig-box-*`, too).
PLACED_FIGURES = frozenset({"fig-accuracy", "fig-rank-heatmap", "fig-podium", "fig-dotbox", "fig-tasks", "fig-task-tau",
                            "fig-blob", "fig-tau", "fig-stacked", "fig-methods", "fig-significance", "fig-resources"})


def _laid_out(context: dict[str, Any]) -> dict[str, Any]:
    """The context with the figures grouped for the page: the organ box plots, and the figures the
    template does not place (shown under "More figures")."""
    shown = context["figures"]
    return {**context, "box_figures": [f for k, f in shown.items() if k.startswith("fig-box-")],
            "more_figures": [f for k, f in shown.items() if k not in PLACED_FIGURES and not k.startswith("fig-box-")]}


def describe_task_method(task_ranking: TaskRanking) -> str:
    method = task_ranking.method
    if method.kind is RankingMethod.AGGREGATE_THEN_RANK:
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


__all__ = ["DEFAULT_NAME", "FIGURES", "PUBLIC", "TEMPLATE_ENV", "Figure", "Scene", "build_report", "default_template_dir",
           "public_edition", "rank_inputs", "render_report", "report_context", "resolve_config", "shown_publicly"]
