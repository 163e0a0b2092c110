"""A scripted two-phase challenge over simulated days (local runner, toy submissions): intake
decisions, each leaderboard policy against an independent computation, each team's feedback free
of every other team, and `harness verify` on the finished phase and on four kinds of tampering."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.models import RunnerKind
from harness.phases.arrivals import Decision, read_log, submissions
from harness.phases.board import build_board
from harness.phases.config import Policy, load_challenge_config
from harness.phases.cycle import PassOptions, one_pass
from harness.phases.layout import ChallengeLayout
from harness.phases.pages import read_board_tables, read_tables, team_signatures, write_pages
from harness.phases.record import verify, write_record
from tests.phases.conftest import TEAMS, World

# (phase, day, team, upload, liver share removed, token, crash, as tar, cut)
SCHEDULE = [
    ("validation", 0, "alpha", "a1", 0.30, "tokqa1", False, False, False),
    ("validation", 0, "alpha", "a2", 0.10, "tokqa9", False, False, False),  # a second one the same day: over quota
    ("validation", 0, "bravo", "b1", 0.10, "tokqb1", False, True, False),
    ("validation", 0, "charlie", "c1", 0.20, "tokqc1", False, False, False),
    ("validation", 0, "delta", "d1", 0.00, "tokqd1", True, False, False),  # crashes on every case
    ("validation", 0, "zulu", "z1", 0.00, "tokqz1", False, False, False),  # not registered
    ("validation", 1, "alpha", "a3", 0.50, "tokqa2", False, False, False),  # later and worse
    ("validation", 1, "bravo", "b2", 0.05, "tokqb2", False, False, False),  # later and better
    ("validation", 1, "echo", "e1", 0.15, "tokqe1", False, True, True),  # still being written: partial
    ("validation", 2, "echo", "e1", 0.15, "tokqe1", False, True, False),  # the same upload, now whole
    ("final", 4, "alpha", "f", 0.25, "tokfa1", False, False, False),
    ("final", 4, "bravo", "f", 0.15, "tokfb1", False, False, False),
    ("final", 4, "charlie", "f", 0.12, "tokfc1", False, False, False),
    ("final", 4, "delta", "f", 0.40, "tokfd1", False, False, False),
    ("final", 4, "echo", "f", 0.08, "tokfe1", False, True, False),
    ("final", 5, "charlie", "g", 0.01, "tokfc2", False, False, False),  # over the phase's total quota
]
ACCEPTED = {  # submission id -> (liver share removed, token, crash)
    "validation": {"alpha-1": (0.30, "tokqa1", False), "bravo-1": (0.10, "tokqb1", False),
                   "charlie-1": (0.20, "tokqc1", False), "delta-1": (0.0, "tokqd1", True),
                   "alpha-2": (0.50, "tokqa2", False), "bravo-2": (0.05, "tokqb2", False),
                   "echo-1": (0.15, "tokqe1", False)},
    "final": {"alpha-1": (0.25, "tokfa1", False), "bravo-1": (0.15, "tokfb1", False), "charlie-1": (0.12, "tokfc1", False),
              "delta-1": (0.40, "tokfd1", False), "echo-1": (0.08, "tokfe1", False)},
}
ARRIVAL_DAY = {"validation": {"alpha-1": 0, "bravo-1": 0, "charlie-1": 0, "delta-1": 0, "alpha-2": 1, "bravo-2": 1,
                              "echo-1": 2},
               "final": {t: 4 for t in ("alpha-1", "bravo-1", "charlie-1", "delta-1", "echo-1")}}


def case_dsc(label: np.ndarray, drop: float) -> float:
    """Mean over the four organs: liver 2(n - k) / (2n - k), the others untouched (1)."""
    n = int((label == 1).sum())
    k = int(drop * n)
    return (2 * (n - k) / (2 * n - k) + 3.0) / 4


def expected_means(world: World, phase: str) -> dict[str, float]:
    cases = world.labels[phase]
    return {sid: 0.0 if crash else float(np.mean([case_dsc(cases[c], drop) for c in sorted(cases)]))
            for sid, (drop, _, crash) in ACCEPTED[phase].items()}


def expected_board(world: World, phase: str, policy: Policy) -> list[tuple[str, str, int, float]]:
    """(team, submission, rank, mean DSC), best first, computed here from the labels alone."""
    means = expected_means(world, phase)
    order = sorted(ACCEPTED[phase], key=lambda s: (ARRIVAL_DAY[phase][s], s))  # arrival order
    chosen = []
    for team in TEAMS:
        own = [s for s in order if s.rpartition("-")[0] == team]
        if not own:
            continue
        if policy is Policy.ALL:
            chosen += own
        elif policy is Policy.LATEST:
            chosen.append(own[-1])
        else:
            chosen.append(max(own, key=lambda s: (means[s], -order.index(s))))
    chosen.sort(key=lambda s: -means[s])
    return [(s.rpartition("-")[0], s, 1 + sum(means[o] > means[s] for o in chosen), means[s]) for s in chosen]


def play(world: World) -> tuple[ChallengeLayout, dict[str, object]]:
    config = load_challenge_config(world.challenge)
    layout = ChallengeLayout.of(world.root)
    options = PassOptions(runner=RunnerKind.LOCAL, cache_dir=world.root.parent / "cache", settle_s=0.0,
                          clock=world.clock)
    start = world.now
    for day in sorted({row[1] for row in SCHEDULE}):
        for phase, when, team, upload, drop, token, crash, as_tar, cut in SCHEDULE:
            if when == day:
                world.upload(phase, team, upload, drop=drop, token=token, crash=crash, as_tar=as_tar, cut=cut)
        world.now = start.replace(hour=9) + __import__("datetime").timedelta(days=day)
        for phase in ("validation", "final"):
            one_pass(config, config.phase(phase), layout, options, say=lambda _m: None, on_result=lambda _e: None)
    return layout, {"config": config}


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, ChallengeLayout]:
    os.environ.setdefault("HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    world = World(tmp_path_factory.mktemp("weeks") / "challenge")
    layout, _ = play(world)
    return world, layout


def test_intake_decisions_are_logged_with_their_reasons(played: tuple[World, ChallengeLayout]) -> None:
    world, layout = played
    log = read_log(layout, "validation")
    by = {(e.team, e.upload, e.decision): e for e in log}
    assert ("alpha", "a2", Decision.OVER_QUOTA) in by and "1 of 1 on 2026-03-01" in by[("alpha", "a2", "over_quota")].reason
    assert ("zulu", "z1", Decision.UNREGISTERED) in by and "not registered" in by[("zulu", "z1", "unregistered")].reason
    partial = by[("echo", "e1.tar.gz", Decision.PARTIAL)]
    assert "ends early" in partial.reason and partial.at.startswith("2026-03-02")
    assert by[("echo", "e1.tar.gz", Decision.ACCEPTED)].submission == "echo-1"
    final = read_log(layout, "final")
    assert [(e.team, e.decision) for e in final if e.decision == Decision.OVER_QUOTA] == [("charlie", "over_quota")]
    for phase in ("validation", "final"):
        got = {s.id: s for s in submissions(layout, phase)}
        assert set(got) == set(ACCEPTED[phase])
        for sid, day in ARRIVAL_DAY[phase].items():  # the harness's clock, not a file's time
            assert got[sid].arrival.startswith(f"2026-03-0{1 + day}T09:00")
    # refused uploads never ran: their tokens are nowhere in the start log
    started = {line.split()[0] for line in world.starts_list()}
    assert started == {tok for accepted in ACCEPTED.values() for _, tok, _ in accepted.values()}
    assert (world.root / "refused" / "validation" / "zulu").is_dir()
    assert not any((world.root / "drop" / "validation").rglob("*.gz"))  # taken once whole


@pytest.mark.parametrize("policy", list(Policy))
def test_each_policy_against_an_independent_computation(played: tuple[World, ChallengeLayout], policy: Policy) -> None:
    world, layout = played
    config = load_challenge_config(world.challenge)
    phase = config.phase("validation")
    tables = read_tables(phase, layout.results("validation"))
    assert tables is not None
    board = build_board(tables.tidy, submissions(layout, "validation"), phase.ranking, policy)
    got = [(e.team, e.submission, e.rank, e.score) for e in board.entries]
    want = expected_board(world, "validation", policy)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    assert [g[3] for g in got] == pytest.approx([w[3] for w in want], abs=2e-4)  # the profile rounds to 4 decimals
    if policy is Policy.BEST:
        assert ("alpha", "alpha-1") in [g[:2] for g in got] and ("bravo", "bravo-2") in [g[:2] for g in got]
    if policy is Policy.LATEST:
        assert ("alpha", "alpha-2") in [g[:2] for g in got]


def test_the_written_pages_follow_each_phases_policy(played: tuple[World, ChallengeLayout]) -> None:
    world, layout = played
    for phase, policy in (("validation", Policy.BEST), ("final", Policy.LATEST)):
        rows = (layout.public(phase) / "leaderboard.csv").read_text().splitlines()[1:]
        got = [(r.split(",")[1], f"{r.split(',')[1]}-{r.split(',')[2]}", int(r.split(",")[0])) for r in rows]
        assert got == [w[:3] for w in expected_board(world, phase, policy)]
        svg = (layout.public(phase) / "history.svg").read_text()
        assert svg.count("<polyline") == len({w[0] for w in expected_board(world, phase, policy)})


def _own_and_others(world: World, phase: str, team: str) -> tuple[set[str], set[str]]:
    """Strings that identify a team's results: names, log lines, per-case and per-organ scores."""
    def strings(sid: str) -> set[str]:
        drop, token, crash = ACCEPTED[phase][sid]
        found = {token}
        for case, label in world.labels[phase].items():
            found |= {f"log {token} {case} starting", f"log {token} {case} done", f"crash {token} {case}"}
            if not crash:
                n = int((label == 1).sum())
                k = int(drop * n)
                liver = 2 * (n - k) / (2 * n - k)
                values = {f"{case_dsc(label, drop):.4f}", f"{liver:.4f}", repr(round(liver, 4))}
                found |= {v for v in values if len(v) >= 6}  # "0.95" would match 0.9512: too short to tell
        return found

    own = set().union(*(strings(s) for s in ACCEPTED[phase] if s.startswith(team + "-")))
    others = set().union(*(strings(s) for s in ACCEPTED[phase] if not s.startswith(team + "-")))
    return own, others - own  # a value the team has too is no evidence either way


@pytest.mark.parametrize("phase", ["validation", "final"])
def test_each_teams_feedback_holds_nothing_of_another_team(played: tuple[World, ChallengeLayout], phase: str) -> None:
    world, layout = played
    for team in TEAMS:
        folder = layout.team_pages(phase, team)
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files, f"no feedback for {team}"
        text = "\n".join(p.read_text(encoding="utf-8") for p in files)
        own, others = _own_and_others(world, phase, team)
        leaks = [name for name in TEAMS if name != team and name in text.lower()]
        leaks += [s for s in others if s in text]
        assert not leaks, f"{team}'s pages show {leaks[:5]}"
        own_scores = [s for s in own if s.startswith(("0.", "1."))]
        if own_scores:  # and they do show its own results (delta's crashed: it has none)
            assert any(s in text for s in own_scores), team
    alpha = (layout.team_pages("validation", "alpha") / "index.html").read_text()
    assert "Resource curves" in alpha and "<figcaption>memory (MB): peak" in alpha  # the local runner is monitored
    delta = (layout.team_pages("validation", "delta") / "index.html").read_text()
    assert "crashed" in delta and "crash tokqd1 case_00: toy weights do not fit" in delta  # reason and log tail
    public = "\n".join(p.read_text() for p in layout.public("validation").rglob("*") if p.is_file())
    assert not any(tok in public for _, tok, _ in ACCEPTED["validation"].values())  # no log on the public page


def test_only_the_pages_whose_content_changed_are_written_again(played: tuple[World, ChallengeLayout]) -> None:
    world, layout = played
    config = load_challenge_config(world.challenge)
    phase = config.phase("validation")
    items = submissions(layout, "validation")
    teams_written = lambda written: sorted({p.parent.name for p in written if p.parent.parent.name == "teams"})  # noqa: E731
    _, written = write_pages(phase, layout, items, config.teams)
    assert teams_written(written) == [] and (layout.public("validation") / "index.html") in written
    _, written = write_pages(phase, layout, items, config.teams, force=True)
    assert teams_written(written) == sorted(TEAMS)
    light = read_board_tables(phase, layout.results("validation"))
    assert light is not None
    board = build_board(light[1], items, phase.ranking, phase.policy)
    before = team_signatures(phase, light[0], board, items)
    runs = light[0].copy()
    runs.loc[(runs["algorithm"] == "bravo-1") & (runs["case_id"] == "case_01"), "ended_at"] += 1.0  # bravo-1 ran again
    after = team_signatures(phase, runs, board, items)
    assert [t for t in TEAMS if before[t] != after[t]] == ["bravo"]


def test_verify_is_identical_then_names_each_change(played: tuple[World, ChallengeLayout],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    world, layout = played
    config = load_challenge_config(world.challenge)
    record = write_record(config, config.phase("validation"), layout)
    raw = json.loads(record.read_text())
    assert set(raw["data"]["cases"]) == set(world.labels["validation"]) and raw["ranking"]["seed"] == 7
    assert {s["id"] for s in raw["submissions"]} == set(ACCEPTED["validation"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:  # `harness verify` (from a shell: tests/phases/test_cli.py)
        main(["verify", str(record)])
    out, err = capsys.readouterr()
    assert done.value.code == 0 and out.strip() == "identical", out + err

    results = layout.results("validation")
    output = next(results.rglob("case_01.nii.gz"))
    label = world.root / "data" / "validation" / "labelsTr" / "case_02.nii.gz"
    profile = world.root / "toy.toml"
    store = next(results.rglob("store.sqlite"))
    for target, change, named in (
            (output, lambda: output.write_bytes(next(p for p in results.rglob("case_00.nii.gz")).read_bytes()), output),
            (label, lambda: label.write_bytes((world.root / "data" / "final" / "labelsTr" / "case_00.nii.gz").read_bytes()),
             label),
            (profile, lambda: profile.write_text(profile.read_text().replace("tolerance_mm = 5", "tolerance_mm = 7")),
             profile),
            (store, lambda: _change_row(store), store)):
        saved = world.root.parent / "saved"
        shutil.copy2(target, saved)
        change()
        differences = verify(record)
        assert differences and any(str(named) in d for d in differences), (named, differences)
        shutil.copy2(saved, target)
    assert verify(record) == []


def _change_row(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE scores SET dsc = 0.5 WHERE algorithm = 'charlie-1' AND case_id = 'case_00' AND organ = 'spleen'")
