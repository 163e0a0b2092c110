"""The verifiable record of a phase, and `harness verify`.

`record.json` names everything the phase's ranking depends on: the data set (each case's id and
its image's and label's sha256), the challenge file's and the profile's hashes, the ranking
configuration (seed and draws included), harness and scoring versions, each submission (team,
number, arrival, upload hash, image id, manifest hash) with, per case, its status, the sha256 of
its kept output and of its store row (the run, its scores per organ, its measurements), and the
leaderboard itself.

`verify` reads everything again: it compares every hash, scores every kept output again against
the ground truth under the profile as they are now, ranks those scores under the policy, and names
each difference (a changed kept output, label, profile, challenge file, ranking configuration or
store row); no difference: "identical".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__
from harness.casework import score_label_map
from harness.errors import DataError
from harness.layout import ResultsLayout
from harness.models import RunStatus
from harness.phases.arrivals import submissions
from harness.phases.board import build_board
from harness.phases.config import ChallengeConfig, Phase, load_challenge_config
from harness.phases.layout import ChallengeLayout
from harness.phases.pages import PhaseTables, read_tables
from harness.pipeline import load_data
from harness.scoring import SCORING_VERSION
from harness.store import tidy_scores

RECORD_VERSION = 1
_VOLATILE = {"started_at", "ended_at"}  # when a row was written says nothing of its result


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return _canonical(value.item())
    return value


def _sha(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: Path) -> str:
    if not path.is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def row_digests(tables: PhaseTables) -> dict[tuple[str, str], str]:
    """(submission, case) -> sha256 of its store row, its score rows and its measurements."""
    runs = tables.runs.drop(columns=[c for c in _VOLATILE if c in tables.runs])
    scores = {k: g for k, g in tables.scores.groupby(["algorithm", "case_id"])}
    extra = {k: g for k, g in tables.measurements.groupby(["algorithm", "case_id"])} if not tables.measurements.empty else {}
    found = {}
    for row in runs.to_dict("records"):
        key = (row["algorithm"], row["case_id"])
        organ = scores.get(key, pd.DataFrame())
        measured = extra.get(key, pd.DataFrame())
        found[key] = _sha({"run": {k: _canonical(v) for k, v in row.items()},
                           "scores": [{k: _canonical(v) for k, v in r.items()} for r in organ.to_dict("records")],
                           "measurements": [{k: _canonical(v) for k, v in r.items()} for r in measured.to_dict("records")]})
    return found


def make_record(config: ChallengeConfig, phase: Phase, layout: ChallengeLayout) -> dict[str, Any]:
    """The record of `phase` as it stands (see the module's docstring)."""
    data = load_data(phase.data_dir)
    items = submissions(layout, phase.name)
    results = layout.results(phase.name)
    tables = read_tables(phase, results)
    if tables is None:
        raise DataError(f"{results}: nothing evaluated in phase {phase.name} yet; run `harness challenge evaluate` first")
    kept = ResultsLayout.of(results)
    digests = row_digests(tables)
    runs = tables.runs.set_index(["algorithm", "case_id"])
    board = build_board(tables.tidy, items, phase.ranking, phase.policy)
    listed = []
    for item in items:
        mine = tables.runs[tables.runs["algorithm"] == item.id]
        first = mine.iloc[0] if len(mine) else None
        per_case = {}
        for case in data.cases:
            key = (item.id, case.case_id)
            if key not in runs.index:
                continue
            per_case[case.case_id] = {"status": str(runs.loc[key, "status"]),
                                      "output_sha256": _file_sha(kept.label_map(item.id, case.case_id)),
                                      "row_sha256": digests[key]}
        listed.append({"id": item.id, "team": item.team, "number": item.number, "arrival": item.arrival,
                       "upload": item.upload, "upload_sha256": item.sha256,
                       "image_id": str(first["image_digest"]) if first is not None else "",
                       "manifest_sha256": str(first["manifest_sha256"]) if first is not None else "", "cases": per_case})
    ranking = dataclasses.asdict(phase.ranking)
    return {
        "record_version": RECORD_VERSION, "harness_version": __version__, "scoring_version": SCORING_VERSION,
        "challenge": {"file": str(config.source), "sha256": config.sha256, "name": config.challenge.name},
        "layout": {"root": str(layout.root), "drop": str(layout.drop_root)},
        "phase": phase.name, "policy": str(phase.policy),
        "profile": {"name": phase.challenge.profile.name, "source": phase.challenge.profile.source,
                    "sha256": phase.challenge.profile.content_sha256},
        "ranking": {"source": phase.ranking_source, "sha256": _sha(ranking), "seed": phase.ranking.seed,
                    "n_draws": phase.ranking.n_draws, "config": ranking},
        "data": {"root": str(phase.data_dir), "dataset_id": data.id,
                 "cases": {c: {"image_sha256": d.image_sha256, "label_sha256": d.label_sha256}
                           for c, d in sorted(data.digests.items())}},
        "submissions": listed,
        "leaderboard": [dataclasses.asdict(e) for e in board.entries],
    }


def write_record(config: ChallengeConfig, phase: Phase, layout: ChallengeLayout) -> Path:
    record = make_record(config, phase, layout)
    target = layout.record(phase.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(target)
    return target


def _entries(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["rank"], e["team"], e["submission"], round(float(e["score"]), 9)) for e in entries]


def verify(record_path: Path, *, challenge_file: Path | None = None, root: Path | None = None) -> list[str]:
    """Every difference between the record and what the files say now (empty: identical).
    `challenge_file` and `root`: where the challenge file and folder are now, when they were copied
    elsewhere (default: where the record says they were)."""
    record = json.loads(Path(record_path).read_text(encoding="utf-8"))
    differ: list[str] = []
    source = Path(challenge_file or record["challenge"]["file"]).resolve()
    now_sha = _file_sha(source)
    if now_sha != record["challenge"]["sha256"]:
        differ.append(f"{source}: the challenge file changed since the record (sha256 {now_sha[:12] or 'missing'}, "
                      f"recorded {record['challenge']['sha256'][:12]})")
    config = load_challenge_config(source)
    phase = config.phase(record["phase"])
    layout = ChallengeLayout.of(Path(root or record["layout"]["root"]), None if root else Path(record["layout"]["drop"]))
    profile = phase.challenge.profile
    if profile.content_sha256 != record["profile"]["sha256"]:
        differ.append(f"{profile.source}: the scoring profile {profile.name} changed since the record")
    ranking = dataclasses.asdict(phase.ranking)
    if _sha(ranking) != record["ranking"]["sha256"]:
        changed = sorted(k for k in ranking if json.dumps(ranking[k], default=str) !=
                         json.dumps(record["ranking"]["config"].get(k), default=str))
        differ.append(f"{phase.ranking_source}: the ranking configuration changed ({', '.join(changed)})")
    for version, expected_version in (("harness_version", __version__), ("scoring_version", SCORING_VERSION)):
        if record[version] != expected_version:
            differ.append(f"{version}: recorded {record[version]}, this harness is {expected_version}")
    data = load_data(phase.data_dir)
    cases = {c.case_id: c for c in data.cases}
    for case_id, recorded in record["data"]["cases"].items():
        now = data.digests.get(case_id)
        if now is None:
            differ.append(f"{phase.data_dir}: case {case_id} is gone")
            continue
        if now.image_sha256 != recorded["image_sha256"]:
            differ.append(f"{cases[case_id].image}: the case's image changed since the record")
        if now.label_sha256 != recorded["label_sha256"]:
            differ.append(f"{cases[case_id].label}: the ground-truth label changed since the record")
    for case_id in sorted(set(cases) - set(record["data"]["cases"])):
        differ.append(f"{cases[case_id].image}: case {case_id} is not in the record")
    results = layout.results(phase.name)
    tables = read_tables(phase, results)
    if tables is None:
        return [*differ, f"{results}: the phase's store is gone"]
    kept = ResultsLayout.of(results)
    digests = row_digests(tables)
    recorded_rows = {(s["id"], c): v for s in record["submissions"] for c, v in s["cases"].items()}
    for key in sorted(set(digests) - set(recorded_rows)):
        differ.append(f"{kept.store_file}: a row {key[0]} / {key[1]} that the record does not have")
    for key, expected in sorted(recorded_rows.items()):
        if key not in digests:
            differ.append(f"{kept.store_file}: the row {key[0]} / {key[1]} is gone")
            continue
        if digests[key] != expected["row_sha256"]:
            differ.append(f"{kept.store_file}: the row {key[0]} / {key[1]} changed since the record")
        output = kept.label_map(*key)
        if _file_sha(output) != expected["output_sha256"]:
            differ.append(f"{output}: the kept output changed since the record")
    # every score again, from the kept outputs and the ground truth as they are now
    scores = tables.scores.copy()
    index = {(r.algorithm, r.case_id, r.organ): i for i, r in zip(scores.index, scores.itertuples(), strict=True)}
    for row in tables.runs[tables.runs["status"] == RunStatus.OK].itertuples():
        output = kept.label_map(row.algorithm, row.case_id)
        case = cases.get(row.case_id)
        if case is None or not output.is_file():
            differ.append(f"{output}: the kept output is missing; its scores cannot be recomputed")
            continue
        again = score_label_map(case, output, profile)
        for organ in again.scores:
            at = index.get((row.algorithm, row.case_id, organ.organ))
            if at is None:
                continue
            for metric in ("dsc", "nsd"):
                stored, now_value = float(scores.at[at, metric]), float(getattr(organ, metric))
                if not (stored == now_value or (math.isnan(stored) and math.isnan(now_value))):
                    differ.append(f"{kept.store_file}: {row.algorithm} / {row.case_id} / {organ.organ}: {metric} is "
                                  f"{stored:.6g} in the store, {now_value:.6g} recomputed from {output.name}")
                scores.at[at, metric] = now_value
    tidy = tidy_scores(results, tables.runs, scores, tables.measurements)
    tidy = tidy[tidy["metric"].isin(phase.ranking.metric_names)]
    board = build_board(tidy, submissions(layout, phase.name), phase.ranking, phase.policy)
    now_board = _entries([dataclasses.asdict(e) for e in board.entries])
    if now_board != _entries(record["leaderboard"]):
        differ.append(f"{record_path}: the leaderboard recomputed from the scores differs from the recorded one: "
                      f"{now_board} recomputed, {_entries(record['leaderboard'])} recorded")
    return differ
