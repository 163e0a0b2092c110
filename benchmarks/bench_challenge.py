"""A phase at challenge scale: the time to apply one new submission (its 100 cases recorded in the
store) and rewrite the phase's pages (rank every submission, apply the policy, rank the entries,
write the public leaderboard, the history figure and the feedback of each team whose pages
changed). Every page of the phase written from scratch (`harness challenge pages`) is timed too.

The store is synthesised as `bench_report.py` does (tests/fixtures/make_store_fixture.py): TEAMS
teams x 5 submissions x 100 cases, FLARE22's ranking (1000 bootstrap draws), policy `best`. The
reference, measured in the same run, is the same phase with half the teams: growing no worse than
linearly means the ratio of the two times is at most about 2. Goal (issue 34): under 10 s on 2 cores.

    python benchmarks/bench_challenge.py [--teams 50] [--submissions 5] [--cases 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_S = 10.0


def _phase(root: Path, teams: list[str], submissions: int, cases: int, *, new: str):  # type: ignore[no-untyped-def]
    """A challenge folder whose phase's store holds every team's submissions but `new`."""
    from harness.phases.config import load_challenge_config
    from harness.phases.layout import SUBMISSION_FILE, ChallengeLayout
    from tests.fixtures.make_store_fixture import make_store

    root.mkdir(parents=True)
    (root / "challenge.toml").write_text(
        'name = "bench"\n[teams]\nnames = ' + json.dumps(teams) + '\n[phases.validation]\ndata = "data"\n'
        'policy = "best"\nquota_total = 100\nquota_per_day = 10\n')
    config = load_challenge_config(root / "challenge.toml")
    layout = ChallengeLayout.of(root)
    ids = []
    for t_index, team in enumerate(teams):
        for number in range(1, submissions + 1):
            sid = f"{team}-{number}"
            folder = layout.submission("validation", team, number)
            folder.mkdir(parents=True)
            day = 1 + number * 3 + t_index % 3
            (folder / SUBMISSION_FILE).write_text(json.dumps({
                "phase": "validation", "team": team, "number": number, "arrival": f"2026-03-{day:02d}T09:00:00+00:00",
                "upload": "u", "sha256": sid}))
            if sid != new:
                ids.append(sid)
    make_store(layout.results("validation"), algorithms=tuple(ids), n_cases=cases, monitored=())
    return config, layout


def _apply(config, layout, new: str, cases: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(seconds to record the new submission's cases, seconds to rewrite the pages, team pages written)."""
    from harness.phases.arrivals import submissions
    from harness.phases.pages import write_pages
    from tests.fixtures.make_store_fixture import make_store

    phase = config.phase("validation")
    start = time.perf_counter()
    make_store(layout.results("validation"), algorithms=(new,), n_cases=cases, monitored=())
    recorded = time.perf_counter() - start
    start = time.perf_counter()
    _, written = write_pages(phase, layout, submissions(layout, "validation"), config.teams)
    return recorded, time.perf_counter() - start, sum(p.name == "index.html" for p in written) - 1


def _measure(scratch: Path, teams: int, submissions: int, cases: int, repeat: int) -> tuple[float, float, int]:
    from harness.store import Store

    names = [f"team-{chr(97 + i // 26)}{chr(97 + i % 26)}x" for i in range(teams)]
    new = f"{names[-1]}-{submissions}"
    start = time.perf_counter()
    config, layout = _phase(scratch / f"teams{teams}", names, submissions, cases, new=new)
    print(f"  {teams} teams: store of {teams * submissions - 1} submissions x {cases} cases written in "
          f"{time.perf_counter() - start:.0f} s")
    from harness.phases.arrivals import submissions
    from harness.phases.pages import write_pages

    start = time.perf_counter()  # the phase's pages as they were before the new arrival
    write_pages(config.phase("validation"), layout, submissions(layout, "validation"), config.teams, force=True)
    print(f"  {teams} teams: every page written in {time.perf_counter() - start:.1f} s (before the new arrival)")
    records, pages, teams_written = [], [], 0
    for _ in range(repeat):
        with Store.open(layout.results("validation"), lock=False, create=False) as store:
            store.forget(new)  # the same new arrival, applied again
        write_pages(config.phase("validation"), layout, submissions(layout, "validation"), config.teams)  # as before it
        recorded, written, teams_written = _apply(config, layout, new, cases)
        records.append(recorded)
        pages.append(written)
    return statistics.median(records), statistics.median(pages), teams_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--submissions", type=int, default=5)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-challenge-"))
    try:
        half = max(1, args.teams // 2)
        print(f"apply one new submission ({args.cases} cases) and rewrite the pages; cpus: {os.cpu_count()}")
        ref_record, ref_pages, _ = _measure(scratch, half, args.submissions, args.cases, args.repeat)
        record, pages, files = _measure(scratch, args.teams, args.submissions, args.cases, args.repeat)
        total, ref_total = record + pages, ref_record + ref_pages
        print(f"{'teams':>6} {'submissions':>12} {'record s':>9} {'pages s':>8} {'total s':>8}")
        print(f"{half:>6} {half * args.submissions:>12} {ref_record:9.2f} {ref_pages:8.2f} {ref_total:8.2f}  (reference)")
        print(f"{args.teams:>6} {args.teams * args.submissions:>12} {record:9.2f} {pages:8.2f} {total:8.2f}  "
              f"(public pages and {files} team's pages rewritten)")
        ratio = total / ref_total
        print(f"{args.teams} teams: {total:.1f} s vs {ref_total:.1f} s at {half} teams ({ratio:.2f}x for "
              f"{args.teams / half:.1f}x the submissions; no worse than linear: {'yes' if ratio <= 1.15 * args.teams / half else 'NO'}); "
              f"goal < {GOAL_S:.0f} s: {'met' if total < GOAL_S else 'NOT met'}")
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"kept: {scratch}")


if __name__ == "__main__":
    main()
