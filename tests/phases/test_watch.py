"""`harness challenge watch` killed with SIGKILL mid-evaluation and started again: nothing
evaluated twice, nothing lost; an upload taken by an intake stopped before removing it is not a
second submission."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main, verbosity
from harness.layout import ResultsLayout
from harness.phases.arrivals import Decision, intake, submissions
from harness.phases.config import load_challenge_config
from harness.phases.layout import ChallengeLayout
from tests.phases.conftest import World

REPO = Path(__file__).resolve().parents[2]


def _rows(store: Path) -> list[tuple[str, str, str]]:
    if not store.exists():
        return []
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT algorithm, case_id, status FROM runs").fetchall()
    except sqlite3.OperationalError:  # created, schema not yet written
        return []


def test_watch_survives_sigkill_mid_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    world = World(tmp_path / "challenge", validation_cases=3, hold_after=2)  # the third run waits for the kill
    world.hold.touch()
    world.upload("validation", "alpha", "a1", drop=0.3, token="tokwa1")
    world.upload("validation", "bravo", "b1", drop=0.1, token="tokwb1")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(tmp_path / "cache")}
    args = ["-q", "challenge", "watch", "--challenge", str(world.challenge), "--phase", "validation", "--runner", "local",
            "--settle", "0", "--poll", "0.1", "--until-idle"]
    store = ResultsLayout.of(ChallengeLayout.of(world.root).results("validation")).store_file
    first = subprocess.Popen([sys.executable, "-m", "harness", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (len(_rows(store)) < 2 or len(world.starts_list()) < 3) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.02)
    assert first.poll() is None, "the watch ended before it was killed"
    os.kill(first.pid, signal.SIGKILL)  # the third case's run is under way (it waits for the hold file)
    first.wait(timeout=30)
    before = _rows(store)
    assert len(before) == 2 and len(world.starts_list()) == 3, (before, world.starts_list())  # killed mid-evaluation
    world.hold.unlink()  # from here on every run goes straight through
    world.upload("validation", "charlie", "c1", drop=0.2, token="tokwc1")  # arrives while it is down
    monkeypatch.setenv("HARNESS_CACHE", env["HARNESS_CACHE"])
    monkeypatch.setattr(verbosity, "LEVEL", verbosity.LEVEL)  # -q sets it: put back afterwards
    with pytest.raises(SystemExit) as again:  # started again (in this process: what it finds is the point)
        main(args)
    assert again.value.code == 0, capsys.readouterr().err[-2000:]
    after = _rows(store)
    assert sorted((a, c) for a, c, _ in after) == sorted(
        (s, f"case_0{i}") for s in ("alpha-1", "bravo-1", "charlie-1") for i in range(3))  # nothing lost
    assert {s for _, _, s in after} == {"ok"}
    assert set(before) <= set(after)  # what was recorded before the kill was kept, not redone
    starts = Counter(world.starts_list())
    twice = [k for k, n in starts.items() if n > 1]
    assert len(twice) == 1 and all(n <= 2 for n in starts.values()), starts  # only the case cut short ran again
    ids = {"tokwa1": "alpha-1", "tokwb1": "bravo-1", "tokwc1": "charlie-1"}
    recorded = {(a, c) for a, c, _ in before}
    assert not [k for k in twice if (ids[k.split()[0]], k.split()[1]) in recorded]  # a stored case never ran again
    layout = ChallengeLayout.of(world.root)
    assert [s.id for s in submissions(layout, "validation")] == ["alpha-1", "bravo-1", "charlie-1"]
    assert (layout.public("validation") / "index.html").is_file()


def test_an_upload_already_accepted_is_not_taken_twice(tmp_path: Path) -> None:
    world = World(tmp_path / "challenge", validation_cases=1)
    config = load_challenge_config(world.challenge)
    layout = ChallengeLayout.of(world.root)
    phase = config.phase("validation")
    world.upload("validation", "alpha", "a1", drop=0.3, token="tokda1")
    assert [d.decision for d in intake(config, phase, layout, settle_s=0, clock=world.clock)] == [Decision.ACCEPTED]
    # an intake killed after the rename, before the upload was removed: the same upload is still there
    world.upload("validation", "alpha", "a1", drop=0.3, token="tokda1")
    world.advance(days=1)
    decisions = intake(config, phase, layout, settle_s=0, clock=world.clock)
    assert [(d.decision, d.reason.split(";")[0]) for d in decisions] == [(Decision.DUPLICATE, "already accepted as alpha-1")]
    assert [s.id for s in submissions(layout, "validation")] == ["alpha-1"]
    assert not (world.root / "drop" / "validation" / "alpha" / "a1").exists()
    # a half-made copy a killed intake left is removed, never taken for a submission
    half = layout.team_submissions("validation", "alpha") / ".2.partial"
    half.mkdir()
    world.upload("validation", "alpha", "a2", drop=0.2, token="tokda2")
    assert [d.submission for d in intake(config, phase, layout, settle_s=0, clock=world.clock)] == ["alpha-2"]
    assert not half.exists()


def test_an_upload_that_is_still_growing_is_partial_and_stays(tmp_path: Path) -> None:
    world = World(tmp_path / "challenge", validation_cases=1)
    config = load_challenge_config(world.challenge)
    layout = ChallengeLayout.of(world.root)
    upload = world.upload("validation", "bravo", "b1", drop=0.1, token="tokdb1")

    def someone_writes(_seconds: float) -> None:  # the injected sleep: a file grows while we wait
        with open(upload / "toy" / "params", "a") as handle:
            handle.write("more=1\n")

    decisions = intake(config, config.phase("validation"), layout, settle_s=1.0, clock=world.clock, sleep=someone_writes)
    assert [d.decision for d in decisions] == [Decision.PARTIAL] and "still being written" in decisions[0].reason
    assert upload.is_dir() and submissions(layout, "validation") == []
    decisions = intake(config, config.phase("validation"), layout, settle_s=1.0, clock=world.clock, sleep=lambda _s: None)
    assert [d.decision for d in decisions] == [Decision.ACCEPTED]


def test_watch_tries_a_submission_that_no_longer_loads_once(tmp_path: Path) -> None:
    from harness.models import RunnerKind
    from harness.phases.cycle import PassOptions, watch

    world = World(tmp_path / "challenge", validation_cases=1)
    config = load_challenge_config(world.challenge)
    layout = ChallengeLayout.of(world.root)
    phase = config.phase("validation")
    world.upload("validation", "alpha", "a1", drop=0.3, token="tokla1")
    assert [d.decision for d in intake(config, phase, layout, settle_s=0, clock=world.clock)] == [Decision.ACCEPTED]
    manifest = submissions(layout, "validation")[0].manifest()
    manifest.write_text(manifest.read_text().replace('kind = "segmenter"', 'kind = "painter"'))  # broken since
    said: list[str] = []
    options = PassOptions(runner=RunnerKind.LOCAL, cache_dir=tmp_path / "cache", settle_s=0, sleep=lambda _s: None)
    assert watch(config, phase, layout, options, say=said.append, on_result=lambda _e: None, until_idle=True) == 1
    assert [m for m in said if m.startswith("error: alpha-1:")] and "key 'kind' = 'painter'" in " ".join(said)
    assert world.starts_list() == []
