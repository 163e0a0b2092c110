"""Wall time and test counts of the fast tier (`make test-fast`) and, with --full, the full suite.

The fast tier leaves out Docker, browser and slow tests; the full suite is `make test`, what CI runs.

Each tier is one `python -m pytest -q -p no:cacheprovider -n JOBS --dist loadscope` child in the
repository root (the Makefile's pytest-xdist options; --jobs 0 for one process), with the
interpreter running this script; counts come from pytest's last line. Each tier's time is printed
beside its goal (issue 33, 2 cores: fast tier < 2 min, full suite < 8 min) as a ratio, and the fast
tier's as a share of the full suite's, measured in the same run with `--full`, otherwise of the last
full-suite figure recorded below (labelled as such).

    python benchmarks/bench_tests.py [--full] [--jobs N]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST_MARKERS = "not docker and not browser and not slow"  # the Makefile's test-fast
DEFAULT_JOBS = "logical"  # the Makefile's TEST_JOBS: one pytest-xdist worker a logical core
XDIST = ("--dist", "loadscope")  # with -n JOBS: the Makefile's XDIST
FAST_GOAL_S = 120.0
FULL_GOAL_S = 480.0
# The last clean full-suite run on the 2-core development machine (`bench_tests.py --full` on a clean clone, at b07fb59).
RECORDED_FULL = (572.7, "2230 passed, 2 xdist workers, clean clone at d910b90, AMD EPYC machine")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?)\b")


@dataclass
class Tier:
    name: str
    wall_s: float
    rc: int
    last_line: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ran(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("passed", "failed", "skipped", "xfailed", "xpassed"))


def parse_counts(last_line: str) -> dict[str, int]:
    """`{'passed': 1287, 'failed': 1, ...}` from pytest's summary line ('error' counted as 'errors')."""
    counts: dict[str, int] = {}
    for number, word in COUNT.findall(last_line):
        key = {"error": "errors", "warning": "warnings"}.get(word, word)
        counts[key] = counts.get(key, 0) + int(number)
    return counts


def run_tier(name: str, markers: str | None, *, jobs: str = DEFAULT_JOBS) -> Tier:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", jobs, *XDIST]
    if markers:
        argv += ["-m", markers]
    print(f"{name}: {' '.join(argv[1:])} ...", flush=True)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1].strip("= ") if lines else ""
    tier = Tier(name, wall, done.returncode, last, parse_counts(last))
    for line in lines:  # pytest's short summary (-ra): what failed, by name
        if line.startswith(("FAILED ", "ERROR ")):
            print(f"  {name}: {line}", flush=True)
    if done.returncode not in (0, 1) or not tier.counts:  # 1 = some tests failed: still a measurement
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise SystemExit(f"{name}: pytest exit {done.returncode}, no summary line to count; its output ends:\n{tail}")
    return tier


def describe(tier: Tier, goal_s: float) -> str:
    """One line: wall time, tests run and their outcomes, the goal beside it as a ratio."""
    counts = ", ".join(f"{v} {k}" for k, v in tier.counts.items() if k != "warnings")
    verdict = "met" if tier.wall_s < goal_s else "NOT met"
    return (f"{tier.name}: {tier.wall_s:.1f} s ({tier.wall_s / 60:.1f} min), {tier.ran} tests run ({counts}); "
            f"goal < {goal_s:.0f} s: {tier.wall_s / goal_s:.2f} x the goal, {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="also run the full suite (needs Docker and Chromium; see the README for its time)")
    parser.add_argument("--jobs", default=DEFAULT_JOBS,
                        help="pytest-xdist workers, as the Makefile's TEST_JOBS (default logical: one a logical core; 0: one process)")
    args = parser.parse_args()
    fast = run_tier("fast tier", FAST_MARKERS, jobs=args.jobs)
    print(describe(fast, FAST_GOAL_S), flush=True)  # at once: the full suite takes a while
    full = run_tier("full suite", None, jobs=args.jobs) if args.full else None
    if full is not None:
        print(describe(full, FULL_GOAL_S))
        print(f"fast tier / full suite: {fast.wall_s / full.wall_s:.1%} of the time, "
              f"{fast.ran} of {full.ran} tests (measured in this run)")
    else:
        full_s, what = RECORDED_FULL
        print(f"fast tier / full suite: {fast.wall_s / full_s:.1%} of the time of the recorded full suite "
              f"({full_s:.0f} s, {what}; not measured in this run: pass --full)")


if __name__ == "__main__":
    main()
