"""A phase's pages: the public leaderboard with its history figure, and each team's own feedback.

Only the pages whose content changed are written again: the public ones after every change, a
team's when its own rows, the submission the leaderboard shows of it or the phase's rules changed
(`team_signatures`, kept in `phases/<phase>/pages.json`).

Public (`phases/<phase>/public/`): `index.html` (the leaderboard under the phase's policy, the
history figure inline), `history.svg`, `leaderboard.csv`. Nothing per case, no log.

A team's (`phases/<phase>/teams/<team>/`): `index.html` with each of its submissions: arrival,
status, whether the leaderboard shows it, its per-case and per-organ scores, each failure with its
reason and the last lines of its log, and resource curves (memory, CPU) where the run was
monitored; `scores.csv` of the same scores. Everything on it is read from the rows of the team's
own submissions: no other team's name, score or log line can reach it.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from harness.layout import ResultsLayout
from harness.phases.arrivals import Submission
from harness.phases.board import Board, build_board, history
from harness.phases.config import Phase, Policy
from harness.phases.layout import ChallengeLayout
from harness.safetext import safe_block, safe_text
from harness.store import Store, tidy_scores

LOG_LINES = 30  # of a failed run's log tail on a team's page
_STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}td.l,th.l{text-align:left}"
          "pre{background:#f6f6f6;padding:.5em;overflow-x:auto;max-height:20em}.bad{color:#b00}")


@dataclass(frozen=True, eq=False)
class PhaseTables:
    """What a phase's store holds, read once."""

    runs: pd.DataFrame
    scores: pd.DataFrame
    measurements: pd.DataFrame
    tidy: pd.DataFrame  # only the ranking configuration's metrics


def read_tables(phase: Phase, results: Path) -> PhaseTables | None:
    """The phase's store as tables (None before anything was stored)."""
    if not results.is_dir():
        return None
    with Store.open(results, lock=False, create=False) as store:
        runs, scores, extra = store.runs(), store.scores(), store.measurements()
    if runs.empty:
        return None
    tidy = tidy_scores(results, runs, scores, extra)
    return PhaseTables(runs, scores, extra, tidy[tidy["metric"].isin(phase.ranking.metric_names)])


def _write(path: Path, text: str) -> Path:
    """Replace `path` in one step (a reader never sees half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, left: int = 1) -> str:
    head = "".join(f"<th class='l'>{h}</th>" if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def history_svg(points: dict[str, list[tuple[str, float]]], *, metric: str, width: int = 640, height: int = 280) -> str:
    """Each team's best value so far against arrival time: one step line per team."""
    pad = 40
    flat = [(datetime.fromisoformat(t).timestamp(), v) for line in points.values() for t, v in line if math.isfinite(v)]
    if not flat:
        return f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='40'><text x='4' y='20'>no scores yet</text></svg>"
    t0, t1 = min(t for t, _ in flat), max(t for t, _ in flat)
    v0, v1 = min(v for _, v in flat), max(v for _, v in flat)
    t1, v1 = (t1 if t1 > t0 else t0 + 1), (v1 if v1 > v0 else v0 + 1e-9)

    def xy(t: float, v: float) -> str:
        return f"{pad + (t - t0) / (t1 - t0) * (width - 2 * pad):.1f},{height - pad - (v - v0) / (v1 - v0) * (height - 2 * pad):.1f}"

    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 20 * len(points)}' "
             "font-family='sans-serif' font-size='11'>",
             f"<text x='{pad}' y='14'>best {html.escape(metric)} so far (mean over cases) by arrival</text>",
             f"<text x='2' y='{pad}'>{v1:.4g}</text><text x='2' y='{height - pad}'>{v0:.4g}</text>"]
    for i, (team, line) in enumerate(sorted(points.items())):
        colour = colours[i % len(colours)]
        steps: list[str] = []
        for j, (t, v) in enumerate(line):
            ts = datetime.fromisoformat(t).timestamp()
            if j:
                steps.append(xy(ts, line[j - 1][1]))
            steps.append(xy(ts, v))
        steps.append(xy(t1, line[-1][1]))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(steps)}'/>")
        parts.append(f"<text x='{pad}' y='{height + 14 + 20 * i}' fill='{colour}'>{html.escape(team)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def write_public(phase: Phase, layout: ChallengeLayout, board: Board, items: Sequence[Submission]) -> list[Path]:
    folder = layout.public(phase.name)
    rule = phase.ranking.metric(board.metric) if board.metric in phase.ranking.metric_names else None
    svg = history_svg(history(items, board.headline, larger_is_better=rule.larger_is_better if rule else True),
                      metric=board.metric)
    rows = [(html.escape(e.team), str(e.rank), e.submission.rpartition("-")[2], html.escape(e.arrival), _fmt(e.score),
             _fmt(e.headline), str(e.n_failed)) for e in board.entries]
    body = (f"<p>Phase <b>{html.escape(phase.name)}</b>: {len(items)} submissions from "
            f"{len({s.team for s in items})} teams; policy <b>{board.policy}</b>; ranking "
            f"{html.escape(phase.ranking.name)} ({html.escape(phase.ranking.method)}).</p>"
            + _table(["team", "rank", "submission", "arrival (UTC)", "score", f"mean {html.escape(board.metric)}",
                      "failed cases"], rows) + f"<h2>History</h2>{svg}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "team", "submission", "arrival", "score", f"mean_{board.metric}", "n_failed"])
    for e in board.entries:
        writer.writerow([e.rank, e.team, e.number, e.arrival, repr(e.score), repr(e.headline), e.n_failed])
    return [_write(folder / "index.html", _page(f"Leaderboard: {phase.name}", body)),
            _write(folder / "history.svg", svg), _write(folder / "leaderboard.csv", out.getvalue())]


def _curve(frame: pd.DataFrame, column: str, label: str, *, width: int = 300, height: int = 60) -> str:
    if column not in frame or frame[column].isna().all() or len(frame) < 2:
        return ""
    t, v = frame["t_s"].to_numpy(float), frame[column].fillna(0).to_numpy(float)
    t_span, v_top = max(t[-1] - t[0], 1e-9), max(v.max(), 1e-9)
    points = " ".join(f"{(a - t[0]) / t_span * width:.1f},{height - b / v_top * height:.1f}" for a, b in zip(t, v, strict=True))
    return (f"<figure style='display:inline-block'><svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
            f"height='{height}'><polyline fill='none' stroke='#1f77b4' points='{points}'/></svg>"
            f"<figcaption>{label}: peak {v.max():.1f} over {t_span:.1f} s</figcaption></figure>")


@dataclass(frozen=True, eq=False)
class Rows:
    """The store's rows grouped once for every team's page: submission id -> its runs (by case), and
    (submission id, case) -> its organs' scores."""

    runs: dict[str, list[dict[str, object]]]
    scores: dict[tuple[str, str], list[tuple[str, float, float, float, str]]]

    @classmethod
    def of(cls, tables: PhaseTables | None) -> Rows:
        runs: dict[str, list[dict[str, object]]] = {}
        scores: dict[tuple[str, str], list[tuple[str, float, float, float, str]]] = {}
        if tables is None:
            return cls(runs, scores)
        columns = ["algorithm", "case_id", "status", "message", "elapsed_s", "log_tail"]
        for row in tables.runs[columns].to_dict("records"):
            runs.setdefault(str(row["algorithm"]), []).append(row)
        frame = tables.scores[["algorithm", "case_id", "organ", "dsc", "nsd", "hd95_mm", "organ_status"]]
        for algorithm, case_id, organ, dsc, nsd, hd95, status in frame.itertuples(index=False, name=None):
            scores.setdefault((algorithm, case_id), []).append((organ, float(dsc), float(nsd), float(hd95), status))
        return cls(runs, scores)


def _mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else float("nan")


def write_team(phase: Phase, layout: ChallengeLayout, team: str, board: Board, items: Sequence[Submission],
               rows: Rows) -> list[Path]:
    """The team's own pages; built from the rows of its own submissions only."""
    own = [s for s in items if s.team == team]
    kept = ResultsLayout.of(layout.results(phase.name))
    entry = board.by_team().get(team) if board.policy is not Policy.ALL else None
    sections = [f"<p>Team <b>{html.escape(team)}</b>, phase <b>{html.escape(phase.name)}</b>: "
                f"{len(own)} submission(s) accepted of a quota of {phase.quota_total} "
                f"({phase.quota_per_day} a day). Leaderboard policy: {board.policy}.</p>"]
    placed = {e.submission: e for e in board.entries if e.team == team}
    if entry is not None:
        sections.append(f"<p>The leaderboard shows your submission {entry.number} (the public leaderboard has the "
                        "ranks).</p>")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["submission", "case", "organ", "dsc", "nsd", "hd95_mm", "status"])
    for item in sorted(own, key=lambda s: s.number):
        mine = sorted(rows.runs.get(item.id, []), key=lambda r: str(r["case_id"]))
        counts: dict[str, int] = {}
        for run in mine:
            counts[str(run["status"])] = counts.get(str(run["status"]), 0) + 1
        status = ", ".join(f"{k} {v}" for k, v in counts.items()) or "waiting"
        where = placed.get(item.id)
        sections.append(f"<h2>Submission {item.number}</h2><p>Arrived {html.escape(item.arrival)} (upload "
                        f"{html.escape(item.upload)}); cases: {html.escape(status)}; mean {html.escape(board.metric)} "
                        f"{_fmt(board.headline.get(item.id, float('nan')))}"
                        + ("; shown on the leaderboard" if where else "") + ".</p>")
        if not mine:
            continue
        table_rows: list[tuple[str, ...]] = []
        organ_rows: list[tuple[str, ...]] = []
        organs: list[str] = []
        for run in mine:
            case_id = str(run["case_id"])
            case_scores = rows.scores.get((item.id, case_id), [])
            elapsed = run["elapsed_s"]
            assert elapsed is None or isinstance(elapsed, (int, float))
            table_rows.append((html.escape(case_id), html.escape(str(run["status"])),
                               _fmt(_mean([s[1] for s in case_scores])), _fmt(_mean([s[2] for s in case_scores])),
                               _fmt(float(elapsed) if elapsed is not None else float("nan"), 2)))
            for organ, dsc, nsd, hd95, organ_status in case_scores:
                writer.writerow([item.number, case_id, organ, repr(dsc), repr(nsd), repr(hd95), organ_status])
            if case_scores:
                organs = organs or [s[0] for s in case_scores]
                by_organ = {s[0]: s[1] for s in case_scores}
                organ_rows.append((html.escape(case_id), *[_fmt(by_organ.get(o, float("nan"))) for o in organs]))
        sections.append(_table(["case", "status", "mean DSC", "mean NSD", "time (s)"], table_rows))
        if organ_rows:
            sections.append("<details><summary>DSC per organ</summary>"
                            + _table(["case", *[html.escape(o) for o in organs]], organ_rows) + "</details>")
        for run in mine:
            if run["status"] == "ok":
                continue
            tail = "\n".join(safe_block(str(run["log_tail"] or "")).splitlines()[-LOG_LINES:])
            sections.append(f"<h3 class='bad'>{html.escape(str(run['case_id']))}: {html.escape(str(run['status']))}</h3>"
                            f"<p>{html.escape(safe_text(str(run['message'] or ''), limit=500))}</p>"
                            f"<pre>{html.escape(tail)}</pre>")
        curves = []
        for run in mine:
            monitor = kept.monitor_file(item.id, str(run["case_id"]))
            if run["status"] == "ok" and monitor.is_file():
                frame = pd.read_parquet(monitor)
                curves.append(f"<p>{html.escape(str(run['case_id']))}</p>" + _curve(frame, "rss_mb", "memory (MB)")
                              + _curve(frame, "cpu_pct", "CPU (%)") + _curve(frame, "gpu_mb", "GPU memory (MB)"))
        if curves:
            sections.append("<details><summary>Resource curves</summary>" + "".join(curves) + "</details>")
    folder = layout.team_pages(phase.name, team)
    return [_write(folder / "index.html", _page(f"{team}: {phase.name}", "".join(sections))),
            _write(folder / "scores.csv", out.getvalue())]


PAGES_VERSION = "1"  # of what a team's page shows: a new one rewrites every team's pages


def read_board_tables(phase: Phase, results: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(every run's row, lightly; the tidy table of the ranking's metrics) read with the means over
    organs taken by the store (`Store.case_means`), not organ by organ."""
    if not ResultsLayout.of(results).store_file.is_file():
        return None
    with Store.open(results, lock=False, create=False) as store:
        runs, means, extra = store.case_means(phase.ranking.metric_names)
    if runs.empty:
        return None
    tidy = tidy_scores(results, runs, means, extra)
    return runs, tidy[tidy["metric"].isin(phase.ranking.metric_names)]


def team_signatures(phase: Phase, runs: pd.DataFrame | None, board: Board, items: Sequence[Submission]) -> dict[str, str]:
    """team -> a hash of everything its pages show: its submissions, their rows (status, when they
    ended, what they were scored against), which of them the leaderboard shows, the phase's rules."""
    per_submission: dict[str, str] = {}
    if runs is not None and not runs.empty:
        columns = ["case_id", "status", "score_status", "ended_at", "label_sha256", "profile_sha256", "scoring_version"]
        hashed = pd.util.hash_pandas_object(runs[columns], index=False)
        per_submission = {str(k): str(int(v)) for k, v in hashed.groupby(runs["algorithm"]).sum().items()}
    shown = {e.submission for e in board.entries}
    teams: dict[str, list[str]] = {}
    for item in items:
        teams.setdefault(item.team, []).append(
            f"{item.id}:{item.arrival}:{per_submission.get(item.id, '')}:{item.id in shown}:"
            f"{board.headline.get(item.id, float('nan'))!r}")
    rules = f"{PAGES_VERSION}:{board.policy}:{board.metric}:{phase.quota_total}:{phase.quota_per_day}"
    return {team: hashlib.sha256("|".join([rules, *sorted(lines)]).encode()).hexdigest() for team, lines in teams.items()}


def write_pages(phase: Phase, layout: ChallengeLayout, items: Sequence[Submission], teams: Iterable[str], *,
                force: bool = False) -> tuple[Board, list[Path]]:
    """Rank the phase and write its public pages, and the feedback pages of each team of `teams`
    whose content changed since they were last written (after one new submission: that team's, and
    those whose shown submission changed), or of every team with `force`."""
    results = layout.results(phase.name)
    light = read_board_tables(phase, results)
    if light is None or light[1].empty:
        board = Board(phase.policy, phase.ranking.metric_names[0], (), None, {})
    else:
        board = build_board(light[1], items, phase.ranking, phase.policy)
    written = write_public(phase, layout, board, items)
    signatures = team_signatures(phase, light[0] if light else None, board, items)
    state_file = layout.pages_state(phase.name)
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    stale = [t for t in teams if force or state.get(t) != signatures.get(t, "none")
             or not (layout.team_pages(phase.name, t) / "index.html").is_file()]
    for team in stale:
        ids = [s.id for s in items if s.team == team]
        tables = None
        if ids and light is not None:
            with Store.open(results, lock=False, create=False) as store:
                runs, scores = store.rows_of(ids)
            tables = PhaseTables(runs, scores, pd.DataFrame(), pd.DataFrame())
        written += write_team(phase, layout, team, board, items, Rows.of(tables))
        state[team] = signatures.get(team, "none")
        _write(state_file, json.dumps(state, indent=1, sort_keys=True))  # after each team: a kill loses no page
    return board, written
