"""The report's tables as display data: pure functions from the store's tables and the ranking.

Each function returns an `HtmlTable` (columns and rows of `Cell`s holding the shown text and the
sort key the page's script sorts by), so the templates only lay them out. No I/O here. A run's
success is the runs table's boolean `ok` column (`harness.report.inputs.judged`: the ranking's rule
`succeeded`, read once); no function here compares statuses itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from harness.models import Kind
from harness.ranking import ChallengeRanking, RankingMethod, describe_method
from harness.safetext import safe_block, safe_text

METRIC_LABELS = {
    "dsc": "DSC",
    "nsd": "NSD",
    "time_s": "Time (s)",
    "auc_gpu_mb_s": "AUC GPU (MB\u00a0s)",
    "auc_cpu_pct_s": "AUC CPU (%\u00a0s)",
    "lesion_dice": "Lesion-wise DSC",
    "lesion_hd95_mm": "Lesion-wise HD95 (mm)",
    "fp_volume_ml": "False-positive volume (ml)",
    "fn_volume_ml": "False-negative volume (ml)",
    "pq": "PQ",
    "sq": "SQ",
    "rq": "RQ",
    "sq_dsc": "SQ (DSC)",
    "pq_dsc": "PQ (DSC)",
}
UNIT_METRICS = ("dsc", "nsd", "lesion_dice", "pq", "sq", "rq", "sq_dsc", "pq_dsc")  # 0..1: shown to 3 decimals
MEASUREMENT_LABELS = {
    "peak_gpu_mb": "peak GPU (MB)",
    "peak_rss_mb": "peak RSS (MB)",
    "cpu_core_s": "CPU time (core s)",
    "startup_s": "start-up (s)",
    "first_output_s": "first output (s)",
    "sample_rate_hz": "sampling (Hz)",
    "jitter_p99_ms": "jitter p99 (ms)",
    "gpu_measured": "GPU measured",
}
MISSING = "\u2013"  # an en dash marks a value that does not exist


@dataclass(slots=True)  # not frozen: a frozen dataclass takes 6x as long to make, and pages hold 10^5 cells
class Cell:
    """One table cell: shown `text`, its sort key (`sort`, "" = missing, sorts last), a CSS class,
    an optional tooltip and an optional in-page link."""

    text: str
    sort: str = ""
    cls: str = ""
    title: str = ""
    href: str = ""
    sub: str = ""  # secondary text shown smaller after `text` (a standard deviation)
    anchor: str = ""  # an id on the cell, for links into the table (e.g. a case's row)


@dataclass(frozen=True)
class Column:
    label: str
    cls: str = ""
    title: str = ""
    first: str = ""  # "descending": the first click sorts the best first where larger is better


@dataclass(frozen=True)
class HtmlTable:
    """A table for the page: `key` becomes its HTML id; `sortable` tables get clickable headers."""

    key: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    sortable: bool = True
    note: str = ""


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def sort_key(value: float | None) -> str:
    """A float as the page's sort key ("" for a missing value)."""
    if value is None or not math.isfinite(float(value)):
        return ""
    return f"{float(value):.10g}"


def fmt_value(value: float | None, metric: str = "") -> str:
    """Display form: DSC/NSD 3 decimals; other values 3 significant digits, k (1e3) and M (1e6)
    for large ones (AUCs in MB s)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric in UNIT_METRICS:
        return f"{value:.3f}"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if metric not in ("time_s",) else f"{value:.2f}"


def num_cell(value: float | None, metric: str = "", *, cls: str = "num") -> Cell:
    if metric in ("dsc", "nsd") and value is not None:  # the common case of the per-organ tables, made quick
        v = float(value)
        if math.isfinite(v):
            return Cell(f"{v:.3f}", f"{v:.10g}", cls)
    return Cell(fmt_value(value, metric), sort_key(value), cls)


def text_cell(text: object, *, cls: str = "", title: str = "") -> Cell:
    s = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return Cell(s or MISSING, s.lower(), cls, title)


def status_cell(status: str, *, title: str = "") -> Cell:
    return Cell(status, status, f"status status-{'ok' if status == 'ok' else 'bad'}", title)


def rank_order(ranking: ChallengeRanking) -> list[str]:
    """Algorithms best first (the leaderboard's order; ties by name)."""
    return [str(a) for a in ranking.leaderboard["algorithm"]]


def metric_stats(ranking: ChallengeRanking) -> pd.DataFrame:
    """Mean and sample sd (ddof 1) per (algorithm, metric) of the values as ranked (failed runs at
    their metric's worst value; missing values left out); columns mean, sd, n."""
    table = ranking.table[ranking.table["metric"].isin(ranking.metrics)]
    grouped = table.groupby(["algorithm", "metric"])["value"]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()})


def leaderboard_table(ranking: ChallengeRanking, *, pages: Mapping[str, str] | None = None) -> HtmlTable:
    """Rank, algorithm (linked to its page in `pages`), the score, 95% bootstrap rank interval,
    mean +- sd of each ranked metric, failed cases."""
    board = ranking.leaderboard
    stats = metric_stats(ranking)
    config = ranking.config
    pages = pages or {}
    columns = [
        Column("Rank", "num"),
        Column("Algorithm"),
        Column("FLARE score", "num", "weighted mean of all per-case ranks (lower is better)") if config.method is RankingMethod.FLARE
        else Column("Score", "num", describe_method(config)),
        Column("95% rank interval", "num", "2.5% to 97.5% quantile of the bootstrap ranks (inverse CDF: ranks "
                                                "that draws gave)"),
    ]
    best: dict[str, float] = {}
    for name in ranking.metrics:
        rule = config.metric(name)
        arrow = "\u2191" if rule.larger_is_better else "\u2193"
        columns.append(Column(f"{metric_label(name)}\u00a0{arrow}", "num",
                              f"mean \u00b1 sd over cases; weight {rule.weight:g}; "
                              f"{'higher' if rule.larger_is_better else 'lower'} is better",
                              first="descending" if rule.larger_is_better else ""))
        means = board[f"mean_{name}"].to_numpy(dtype=float)
        if np.isfinite(means).any():
            best[name] = float(np.nanmax(means) if rule.larger_is_better else np.nanmin(means))
    columns.append(Column("Failed cases", "num", "cases whose run did not end ok"))
    rows = []
    for record in board.to_dict("records"):
        algorithm = str(record["algorithm"])
        lo, hi = float(record["rank_lo"]), float(record["rank_hi"])
        cells = [
            Cell(f"{float(record['rank']):g}", sort_key(record["rank"]), "num"),
            Cell(algorithm, algorithm.lower(), "name", href=pages.get(algorithm, "")),
            Cell(f"{record['score']:.3f}", sort_key(record["score"]), "num"),
            Cell(f"{lo:g}\u2013{hi:g}", sort_key(lo * 1000 + hi), "num"),
        ]
        for name in ranking.metrics:
            mean = float(record[f"mean_{name}"])
            sd = float(stats["sd"].get((algorithm, name), float("nan")))
            sub = f"\u00b1 {fmt_value(sd, name)}" if math.isfinite(mean) and math.isfinite(sd) else ""
            cls = "num best" if name in best and math.isfinite(mean) and math.isclose(mean, best[name]) else "num"
            cells.append(Cell(fmt_value(mean, name), sort_key(mean), cls, sub=sub))
        failed = int(record["n_failed"])
        cells.append(Cell(str(failed), str(failed), "num bad" if failed else "num"))
        rows.append(tuple(cells))
    return HtmlTable("leaderboard", tuple(columns), tuple(rows))


def organs_of(scores: pd.DataFrame) -> list[str]:
    """The scored organs in label order."""
    if scores.empty:
        return []
    pairs = scores[["label", "organ"]].drop_duplicates().sort_values(["label", "organ"], kind="stable")
    return [str(o) for o in pairs["organ"].drop_duplicates()]


def organ_short(name: str) -> str:
    """A column header for an organ: "R kidney", "L adrenal", "IVC"."""
    if name == "inferior_vena_cava":
        return "IVC"
    short = name.removesuffix("_gland")
    for side, letter in (("right_", "R "), ("left_", "L ")):
        if short.startswith(side):
            short = letter + short[len(side):]
    return short.replace("_", " ")


def organ_table(values: pd.DataFrame, *, algorithms: Sequence[str], organs: Sequence[str], metric: str,
                larger_is_better: bool = True) -> HtmlTable:
    """Mean per organ (columns) and algorithm (rows, rank order); the best of each organ marked
    (the largest mean, or the smallest for a lower-is-better metric)."""
    means = values.groupby(["algorithm", "organ"])["value"].mean().unstack("organ")
    means = means.reindex(index=list(algorithms), columns=list(organs))
    first = "descending" if larger_is_better else "ascending"
    columns = [Column("Algorithm")] + [Column(organ_short(o), "num", o.replace("_", " "), first=first)
                                       for o in organs]
    columns.append(Column("mean", "num", "mean over organs", first=first))
    best = means.max(axis=0) if larger_is_better else means.min(axis=0)
    rows = []
    for algorithm in algorithms:
        cells = [Cell(algorithm, algorithm.lower(), "name")]
        for organ in organs:
            v = float(means.loc[algorithm, organ])
            top = math.isfinite(v) and math.isclose(v, float(best[organ]))
            cells.append(Cell(fmt_value(v, metric), sort_key(v), "num best" if top else "num"))
        overall = float(np.nanmean(means.loc[algorithm].to_numpy(dtype=float))) if means.loc[algorithm].notna().any() else math.nan
        cells.append(num_cell(overall, metric))
        rows.append(tuple(cells))
    return HtmlTable(f"organs-{metric}", tuple(columns), tuple(rows))


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


LOG_TAIL_LINES = 8  # a failed run's last log lines shown beside its message
LOG_TAIL_CHARS = 1200  # and at most this many characters of them (a line is cut at 200)


def log_tail_text(log: object) -> str:
    """The last LOG_TAIL_LINES non-blank lines of a run's stored log as safe text (no escape codes or
    control characters; markup is escaped where it is shown), each cut to 200 characters, at most
    LOG_TAIL_CHARS in all: what says why a run failed. "" for no log."""
    if log is None or (isinstance(log, float) and math.isnan(log)):
        return ""
    lines = [safe_text(line, limit=200) for line in safe_block(str(log)).splitlines() if line.strip()]
    text = "\n".join(lines[-LOG_TAIL_LINES:])
    return text if len(text) <= LOG_TAIL_CHARS else "\u2026" + text[len(text) - LOG_TAIL_CHARS + 1:]


def log_cell(log: object) -> Cell:
    """A failed run's log tail, shown as lines (organisers' edition only: logs are private)."""
    text = log_tail_text(log)
    return Cell(text or MISSING, text.lower(), "log" if text else "")


def failures_table(runs: pd.DataFrame) -> HtmlTable:
    """Every run that did not end ok (`runs` judged: its `ok` column): algorithm, case, kind, status,
    exit code, time, message and the last lines of its log (why it failed)."""
    bad = runs[~runs["ok"]].sort_values(["algorithm", "case_id"], kind="stable")
    columns = (Column("Algorithm"), Column("Case"), Column("Kind"), Column("Status"), Column("Exit code", "num"),
               Column("Time (s)", "num"), Column("Message"), Column("Log (last lines)"))
    rows = []
    for r in bad.to_dict("records"):
        exit_code = r.get("exit_code")
        has_code = exit_code is not None and not (isinstance(exit_code, float) and math.isnan(exit_code))
        rows.append((
            text_cell(r["algorithm"], cls="name"),
            Cell(str(r["case_id"]), str(r["case_id"]), "case"),
            text_cell(r["kind"]),
            status_cell(str(r["status"])),
            Cell(str(int(exit_code)) if has_code else MISSING, sort_key(exit_code) if has_code else "", "num"),
            num_cell(r.get("elapsed_s"), "time_s"),
            text_cell(_short(r.get("message") or ""), cls="message"),
            log_cell(r.get("log_tail")),
        ))
    return HtmlTable("failed-runs", columns, tuple(rows))


def resources_table(measurements: pd.DataFrame, runs: pd.DataFrame, *, algorithms: Sequence[str]) -> HtmlTable | None:
    """Median over each algorithm's ok runs of the monitor's measurements (peak GPU and RSS, CPU
    time, start-up, sampling); GPU measured as the share of runs. None when nothing was measured."""
    if measurements.empty:
        return None
    ok = runs[runs["ok"]][["algorithm", "case_id"]]
    data = measurements.merge(ok, on=["algorithm", "case_id"], how="inner")
    present = set(data["name"].tolist())
    names = [n for n in MEASUREMENT_LABELS if n in present]
    if not names:
        return None
    medians = data.groupby(["algorithm", "name"])["value"].median().unstack("name")
    shares = data[data["name"] == "gpu_measured"].groupby("algorithm")["value"].mean()
    columns = [Column("Algorithm")] + [Column(MEASUREMENT_LABELS[n], "num") for n in names]
    rows = []
    for algorithm in algorithms:
        cells = [Cell(algorithm, algorithm.lower(), "name")]
        for name in names:
            if name == "gpu_measured":
                share = shares.get(algorithm, math.nan)
                cells.append(Cell(MISSING if math.isnan(share) else f"{share:.0%}", sort_key(share), "num"))
            else:
                v = medians.loc[algorithm, name] if algorithm in medians.index else math.nan
                cells.append(num_cell(float(v)))
        rows.append(tuple(cells))
    return HtmlTable("resource-medians", tuple(columns), tuple(rows), note="median over each algorithm's ok runs")


def case_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean DSC and NSD over organs per (algorithm, case_id), as stored (no failure values)."""
    if scores.empty:
        return pd.DataFrame(columns=["dsc", "nsd"], index=pd.MultiIndex.from_tuples([], names=["algorithm", "case_id"]))
    return scores.groupby(["algorithm", "case_id"])[["dsc", "nsd"]].mean()


def _pairs(frame: pd.DataFrame, column: str) -> dict[tuple[str, str], object]:
    """{(algorithm, case_id): value} of a table's column: one pass, no per-cell pandas lookup."""
    if frame.empty:
        return {}
    keys = zip(frame["algorithm"].astype(str), frame["case_id"].astype(str), strict=True)
    return dict(zip(keys, frame[column], strict=True))


def case_matrix_table(runs: pd.DataFrame, scores: pd.DataFrame, *, algorithms: Sequence[str],
                      pages: Mapping[str, str] | None = None) -> HtmlTable:
    """Cases (rows) x algorithms (columns, rank order): the mean DSC of each ok run, or the status
    of a failed one. `pages` (algorithm -> its page) adds a link to each column's page per case."""
    segmenters = runs[runs["kind"] == Kind.SEGMENTER]
    status = _pairs(segmenters, "status")
    ok = _pairs(segmenters, "ok")
    means = case_means(scores)["dsc"].to_dict() if not scores.empty else {}
    cases = sorted({str(c) for c in segmenters["case_id"].unique()})
    columns = [Column("Case")] + [Column(a, "num", f"mean DSC over organs of {a}", first="descending") for a in algorithms]
    pages = pages or {}
    rows = []
    for case_id in cases:
        cells = [Cell(case_id, case_id.lower(), "case")]
        for algorithm in algorithms:
            s = status.get((algorithm, case_id))
            link = f"{pages[algorithm]}#case-{case_id}" if algorithm in pages and s is not None else ""
            if s is None:
                cells.append(Cell(MISSING, "", "num"))
            elif not ok[(algorithm, case_id)]:
                cells.append(Cell(str(s), "-1", "num status status-bad", href=link))
            else:
                value = float(means.get((algorithm, case_id), math.nan))  # type: ignore[arg-type]
                cells.append(Cell(fmt_value(value, "dsc"), sort_key(value), "num", href=link))
        rows.append(tuple(cells))
    return HtmlTable("case-matrix", tuple(columns), tuple(rows))


@dataclass(frozen=True)
class AlgorithmPage:
    """One algorithm's own page: every case's run, then DSC and NSD per (case, organ)."""

    algorithm: str
    file: str  # the page's file name, relative to the pages folder
    n_ok: int
    n_runs: int
    runs: HtmlTable
    dsc: HtmlTable | None
    nsd: HtmlTable | None


def page_file(algorithm: str) -> str:
    """A file name for an algorithm's page: its name with anything but [A-Za-z0-9._-] replaced."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in algorithm).lstrip(".") or "_"
    return f"{safe}.html"


def _ran_on(host: object, worker: object) -> str:
    """The host that ran it, and its Dask worker when one did."""
    host_text, worker_text = str(host or ""), str(worker or "")
    return f"{host_text} ({worker_text})" if worker_text and worker_text != "local" else host_text


def _column(frame: pd.DataFrame, name: str) -> list[object]:
    """A column as a Python list (None where absent): one conversion, no per-cell pandas access
    (iterating an Arrow-backed string column costs a microsecond a value)."""
    return frame[name].tolist() if name in frame.columns else [None] * len(frame)


@dataclass(frozen=True)
class PageLink:
    """What the main page says of an algorithm's page: its file and how many of its runs were ok."""

    algorithm: str
    file: str
    n_ok: int
    n_runs: int


def page_links(runs: pd.DataFrame, *, algorithms: Sequence[str]) -> list[PageLink]:
    """One link per algorithm (rank order) that has segmenter runs."""
    segmenters = runs[runs["kind"] == Kind.SEGMENTER]
    names = segmenters["algorithm"].astype(str)
    n_runs = names.value_counts().to_dict()
    n_ok = names[segmenters["ok"]].value_counts().to_dict()
    return [PageLink(a, page_file(a), int(n_ok.get(a, 0)), int(n_runs[a])) for a in algorithms if a in n_runs]


def algorithm_pages(runs: pd.DataFrame, scores: pd.DataFrame, measurements: pd.DataFrame, *,
                    algorithms: Sequence[str], organs: Sequence[str] | None = None) -> list[AlgorithmPage]:
    """Per algorithm: each case's status, exit code, time, mean DSC/NSD, median HD95, AUCs, host and
    the full message (plain text, printed too); then its DSC and NSD per organ (`organs`, default
    those in `scores`), a row per case."""
    wanted = set(algorithms)
    segmenters = runs[(runs["kind"] == Kind.SEGMENTER) & runs["algorithm"].astype(str).isin(wanted)]
    if not scores.empty:
        scores = scores[scores["algorithm"].astype(str).isin(wanted)]
    means = case_means(scores)
    dsc_mean = means["dsc"].to_dict() if not means.empty else {}
    nsd_mean = means["nsd"].to_dict() if not means.empty else {}
    hd95_median = scores.groupby(["algorithm", "case_id"])["hd95_mm"].median().to_dict() \
        if not scores.empty and "hd95_mm" in scores else {}
    measured = {name: _pairs(group, "value") for name, group in measurements.groupby("name")} \
        if not measurements.empty else {}
    auc_gpu, auc_cpu = measured.get("auc_gpu_mb_s", {}), measured.get("auc_cpu_pct_s", {})
    organs = list(organs) if organs is not None else organs_of(scores)
    per_organ: dict[str, dict[tuple[str, str, str], float]] = {"dsc": {}, "nsd": {}}
    if not scores.empty:
        keys = list(zip(scores["algorithm"].astype(str).tolist(), scores["case_id"].astype(str).tolist(),
                        scores["organ"].astype(str).tolist(), strict=True))
        for metric in per_organ:
            per_organ[metric] = dict(zip(keys, scores[metric].astype(float).tolist(), strict=True))
    columns = (Column("Case"), Column("Status"), Column("Exit code", "num"), Column("Time (s)", "num"),
               Column("DSC", "num", first="descending"), Column("NSD", "num", first="descending"),
               Column("HD95 (mm)", "num", "median over organs of the 95th-percentile Hausdorff distance"),
               Column("AUC GPU (MB\u00a0s)", "num"),
               Column("AUC CPU (%\u00a0s)", "num"), Column("Ran on"), Column("Message"),
               Column("Log (last lines)", title="the last lines of a failed run's log"))
    organ_columns = tuple([Column("Case")] + [Column(organ_short(o), "num", o.replace("_", " "), first="descending")
                                              for o in organs])
    records: dict[str, list[tuple[object, ...]]] = {}
    for record in zip(*(_column(segmenters, c) for c in ("algorithm", "case_id", "status", "ok", "exit_code",
                                                         "elapsed_s", "host", "worker", "message", "log_tail")),
                      strict=True):
        records.setdefault(str(record[0]), []).append(record)
    pages = []
    for algorithm in [a for a in dict.fromkeys(_column(segmenters, "algorithm")) if str(a) in wanted]:
        algorithm = str(algorithm)
        rows = []
        cases = []
        n_ok = 0
        for _, case, status, ok, exit_code, elapsed, host, worker, message, log in sorted(records[algorithm],
                                                                                       key=lambda r: str(r[1])):
            case_id = str(case)
            key = (algorithm, case_id)
            has_code = exit_code is not None and not (isinstance(exit_code, float) and math.isnan(exit_code))
            n_ok += bool(ok)
            cases.append(case_id)
            rows.append((
                Cell(case_id, case_id.lower(), "case", anchor=f"case-{case_id}"),
                status_cell(str(status)),
                Cell(str(int(exit_code)) if has_code else MISSING, sort_key(exit_code) if has_code else "", "num"),  # type: ignore[call-overload, arg-type]
                num_cell(elapsed, "time_s"),  # type: ignore[arg-type]
                num_cell(dsc_mean.get(key), "dsc"),
                num_cell(nsd_mean.get(key), "nsd"),
                num_cell(hd95_median.get(key)),  # type: ignore[arg-type]
                num_cell(auc_gpu.get(key), "auc_gpu_mb_s"),  # type: ignore[arg-type]
                num_cell(auc_cpu.get(key), "auc_cpu_pct_s"),  # type: ignore[arg-type]
                text_cell(_ran_on(host, worker)),
                text_cell(str(message or ""), cls="message"),
                log_cell(log) if not ok else Cell(MISSING),
            ))
        organ_tables = {}
        for metric in ("dsc", "nsd"):
            values_of = per_organ[metric]
            orows = []
            for case_id in cases:
                values = [values_of.get((algorithm, case_id, o)) for o in organs]
                if all(v is None for v in values):
                    continue
                orows.append((Cell(case_id, case_id.lower(), "case"), *[_score_cell(v) for v in values]))
            organ_tables[metric] = HtmlTable(f"organ-{metric}", organ_columns, tuple(orows)) if orows else None
        pages.append(AlgorithmPage(algorithm, page_file(algorithm), int(n_ok), len(rows),
                                   HtmlTable("runs", columns, tuple(rows)), organ_tables["dsc"], organ_tables["nsd"]))
    return pages


def _score_cell(value: float | None) -> Cell:
    """A DSC or NSD cell: num_cell(value, "dsc") without its checks, for the 10^5 cells of the pages."""
    if value is None or value != value or value in (math.inf, -math.inf):
        return Cell(fmt_value(value, "dsc"), sort_key(value), "num")
    return Cell(f"{value:.3f}", f"{value:.10g}", "num")


def human_header(name: str) -> str:
    """A column name for people: `volume_sensitivity` -> "volume sensitivity", `hd95_mm` -> "hd95 (mm)"."""
    text = str(name)
    for suffix, unit in (("_mm", "mm"), ("_ml", "ml"), ("_s", "s")):
        if text.endswith(suffix) and len(text) > len(suffix):
            text = f"{text[: -len(suffix)]} ({unit})"
            break
    return text.replace("_", " ")


def _shown_number(value: float) -> str:
    """A number read from a CSV, for people: whole numbers as they are, others to 4 significant
    digits (19061.92236803798 -> 19,062; 0.6666666666666666 -> 0.6667)."""
    if not math.isfinite(value):
        return MISSING if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def frame_table(frame: pd.DataFrame, *, key: str, max_rows: int = 500) -> HtmlTable:
    """Any table as written (an annotator's CSV): numbers sort as numbers and show 4 significant
    digits, headers read as words; at most `max_rows` rows."""
    columns = tuple(Column(human_header(str(c))) for c in frame.columns)
    rows = []
    for values in frame.head(max_rows).itertuples(index=False):
        cells = []
        for v in values:
            text = str(v)
            number = pd.to_numeric(pd.Series([text]), errors="coerce").iloc[0]
            if pd.notna(number) and not isinstance(v, bool):
                cells.append(Cell(_shown_number(float(number)), sort_key(number), "num"))
            else:
                cells.append(Cell(text or MISSING, text.lower(), ""))
        rows.append(tuple(cells))
    note = f"first {max_rows} of {len(frame)} rows" if len(frame) > max_rows else f"{len(frame)} rows"
    return HtmlTable(key, columns, tuple(rows), note=note)


def typical_cases(runs: pd.DataFrame, available: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The case whose resource curves the report shows for each algorithm.

    One case for all where possible: among the cases with a monitor series for the most
    algorithms (ok runs only), the one whose median time over those algorithms is nearest the
    median of all such medians (ties: first case id). An algorithm without a series for that case
    gets its own ok case with a series whose time is nearest its median time.
    """
    have = set(available)
    ok = runs[(runs["kind"] == Kind.SEGMENTER) & runs["ok"]]
    ok = ok[[(a, c) in have for a, c in zip(ok["algorithm"], ok["case_id"], strict=True)]]
    if ok.empty:
        return {}
    counts = ok.groupby("case_id")["algorithm"].nunique()
    candidates = sorted(str(c) for c in counts[counts == counts.max()].index)
    medians = ok[ok["case_id"].isin(candidates)].groupby("case_id")["elapsed_s"].median()
    target = float(np.nanmedian(medians.to_numpy(dtype=float))) if medians.notna().any() else math.nan
    def distance(case_id: str) -> tuple[float, str]:
        value = float(medians.get(case_id, math.nan))
        gap = abs(value - target) if math.isfinite(target) and math.isfinite(value) else math.inf
        return gap, case_id

    chosen = min(candidates, key=distance)
    out = {}
    for algorithm, group in ok.groupby("algorithm", sort=True):
        times = dict(zip(group["case_id"].astype(str), group["elapsed_s"].astype(float), strict=True))
        if chosen in times:
            out[str(algorithm)] = chosen
            continue
        own = float(np.nanmedian(list(times.values()))) if any(math.isfinite(t) for t in times.values()) else math.nan
        gaps = {c: abs(t - own) if math.isfinite(t) and math.isfinite(own) else math.inf for c, t in times.items()}
        out[str(algorithm)] = min(sorted(times), key=lambda c: (gaps[c], c))
    return out


def results_date(runs: pd.DataFrame) -> str:
    """The end of the latest run, UTC (the report carries no build time: it is deterministic)."""
    ended = pd.to_numeric(runs.get("ended_at", pd.Series(dtype=float)), errors="coerce").dropna()
    if ended.empty:
        return MISSING
    return datetime.fromtimestamp(float(ended.max()), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def distinct(values: Iterable[object]) -> list[str]:
    """Sorted distinct non-empty strings."""
    return sorted({str(v) for v in values if v is not None and str(v) != "" and str(v) != "nan"})


def parsed_details(runs: pd.DataFrame) -> list[Mapping[str, object]]:
    """Each run's details (JSON text in the store) parsed once; {} where absent or malformed."""
    import json

    out: list[Mapping[str, object]] = []
    for text in _column(runs, "details"):
        try:
            details = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            details = None
        out.append(details if isinstance(details, Mapping) else {})
    return out


def provenance_table(runs: pd.DataFrame, *, algorithms: Sequence[str],
                     details: Sequence[Mapping[str, object]] | None = None) -> HtmlTable:
    """Per algorithm: its manifest's version and description, when it first ran, image digest(s),
    manifest hash(es), runner(s), harness version(s); `details`: `parsed_details(runs)` when the
    caller has it."""
    columns = (Column("Algorithm"), Column("Version"), Column("Description"), Column("First run"),
               Column("Image digest"), Column("Manifest sha256"), Column("Runner"), Column("harness"))
    fields = ("image_digest", "manifest_sha256", "runner", "harness_version")
    seen: dict[str, dict[str, set[str]]] = {}
    first: dict[str, float] = {}
    started = pd.to_numeric(runs["started_at"], errors="coerce").tolist() if "started_at" in runs else [math.nan] * len(runs)
    details = parsed_details(runs) if details is None else details
    rows_of = zip(_column(runs, "algorithm"), details, started, *(_column(runs, f) for f in fields), strict=True)
    for algorithm, detail, start, *values in rows_of:
        own = seen.setdefault(str(algorithm), {k: set() for k in ("manifest_version", "manifest_description", *fields)})
        for key in ("manifest_version", "manifest_description"):
            if detail.get(key):
                own[key].add(str(detail[key]))
        for key, value in zip(fields, values, strict=True):
            own[key].add("" if value is None else str(value))
        if isinstance(start, float) and math.isfinite(start):
            first[str(algorithm)] = min(first.get(str(algorithm), math.inf), start)
    rows = []
    for algorithm in algorithms:
        own = seen.get(algorithm, {})
        when = first.get(algorithm)
        rows.append((
            Cell(algorithm, algorithm.lower(), "name"),
            text_cell(", ".join(distinct(own.get("manifest_version", ())))),
            text_cell(" / ".join(distinct(own.get("manifest_description", ()))), cls="message"),
            text_cell(datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC") if when is not None else ""),
            text_cell("\n".join(distinct(own.get("image_digest", ()))), cls="digest"),
            text_cell("\n".join(distinct(own.get("manifest_sha256", ()))), cls="digest"),
            text_cell(", ".join(distinct(own.get("runner", ())))),
            text_cell(", ".join(distinct(own.get("harness_version", ())))),
        ))
    return HtmlTable("provenance", columns, tuple(rows), sortable=False)


def hosts_table(runs: pd.DataFrame, *, with_names: bool = True) -> HtmlTable:
    """Each distinct machine (host, CPU, GPU, driver) with its number of runs; without the host
    names (the public edition), each distinct CPU, GPU and driver."""
    keys = ["host", "cpu", "gpu", "driver"] if with_names else ["cpu", "gpu", "driver"]
    counts = runs.fillna({k: "" for k in keys}).groupby(keys, sort=True).size().reset_index(name="runs")
    columns = ((Column("Host"),) if with_names else ()) + (Column("CPU"), Column("GPU"), Column("Driver"),
                                                           Column("Runs", "num"))
    rows = tuple(
        ((text_cell(r["host"]),) if with_names else ())
        + (text_cell(r["cpu"]), text_cell(r["gpu"] or "none"), text_cell(r["driver"]),
           Cell(str(int(r["runs"])), str(int(r["runs"])), "num"))
        for r in counts.to_dict("records")
    )
    return HtmlTable("hosts", columns, rows, sortable=False)


def weights_table(ranking: ChallengeRanking) -> HtmlTable:
    """The ranking's metrics: direction, weight, failure value, and whether the store had them."""
    config = ranking.config
    columns = (Column("Metric"), Column("Better"), Column("Weight", "num"), Column("Value of a failed run", "num"),
               Column("Ranked"))
    rows = []
    for rule in config.metrics:
        ranked = rule.name in ranking.metrics
        rows.append((
            text_cell(metric_label(rule.name)),
            text_cell("higher" if rule.larger_is_better else "lower"),
            Cell(f"{rule.weight:g}", sort_key(rule.weight), "num"),
            Cell(_exact(rule.worst_value), sort_key(rule.worst_value), "num"),
            text_cell("yes" if ranked else "no: not in the store"),
        ))
    return HtmlTable("weights", columns, tuple(rows), sortable=False)


def _exact(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def tolerances_table(organs: Sequence[tuple[int | str, str, float, bool]]) -> HtmlTable:
    """(label, organ, NSD tolerance in mm, z-range only) rows of the scoring profile (a region's
    label: its labels joined, "1+2+3")."""
    columns = (Column("Label", "num"), Column("Organ"), Column("NSD tolerance (mm)", "num"), Column("z-range only"))
    rows = tuple(
        (Cell(str(label), str(label), "num"), text_cell(name.replace("_", " ")), Cell(f"{tol:g}", sort_key(tol), "num"),
         text_cell("yes" if zonly else "no"))
        for label, name, tol, zonly in organs
    )
    return HtmlTable("tolerances", columns, rows, sortable=False)


def significance_counts(ranking: ChallengeRanking, algorithms: Sequence[str]) -> Mapping[str, pd.DataFrame]:
    """The ranking's significance matrices, reindexed to rank order."""
    return {name: frame.reindex(index=list(algorithms), columns=list(algorithms))
            for name, frame in ranking.significance.items()}


__all__ = [
    "METRIC_LABELS",
    "MISSING",
    "AlgorithmPage",
    "Cell",
    "Column",
    "HtmlTable",
    "LOG_TAIL_CHARS",
    "LOG_TAIL_LINES",
    "algorithm_pages",
    "case_matrix_table",
    "page_file",
    "distinct",
    "failures_table",
    "fmt_value",
    "frame_table",
    "hosts_table",
    "leaderboard_table",
    "log_cell",
    "log_tail_text",
    "metric_label",
    "metric_stats",
    "organ_short",
    "organ_table",
    "organs_of",
    "parsed_details",
    "provenance_table",
    "rank_order",
    "resources_table",
    "results_date",
    "significance_counts",
    "sort_key",
    "tolerances_table",
    "typical_cases",
    "weights_table",
]
