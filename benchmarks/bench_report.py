"""The leaderboard at challenge scale: a 50-algorithm x 200-case store (10,000 runs, synthesised
here) through `harness rank` and `harness report`, as the command line runs them.

Prints wall time and peak memory (max RSS of the child) of each command, and the size of the main
page and of all pages (the per-algorithm pages beside it). Goals (issue 17): report <= 10 s,
main page <= 2 MB. The reference is the report before per-case detail moved to the algorithms'
pages, measured on the same kind of store when the issue was filed: 49 s (46-56) and a 23 MB page
(that code path is gone, so it is quoted, not re-run).

    python benchmarks/bench_report.py [--algorithms 50] [--cases 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REFERENCE_S = 49.0
REFERENCE_MB = 23.0


def _run(argv: list[str]) -> tuple[float, float]:
    """(wall s, peak RSS MB of the child)."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr[-500:]}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", type=int, default=50)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from tests.fixtures.make_store_fixture import make_store

    scratch = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        start = time.perf_counter()
        names = tuple(f"team-{i:02d}" for i in range(1, args.algorithms + 1))
        folder = make_store(scratch / "results", algorithms=names, n_cases=args.cases, monitored=names[:3])
        print(f"store: {args.algorithms} algorithms x {args.cases} cases, written in {time.perf_counter() - start:.0f} s")
        harness = [sys.executable, "-m", "harness"]
        rank_runs, report_runs = [], []
        for _ in range(args.repeat):
            rank_runs.append(_run([*harness, "rank", "--results", str(folder), "--out", str(scratch / "ranking")]))
            report_runs.append(_run([*harness, "report", "--results", str(folder), "--out", str(scratch / "report.html")]))
        main_mb = (scratch / "report.html").stat().st_size / 1e6
        pages = sorted((scratch / "report-pages").glob("*.html"))
        pages_mb = sum(p.stat().st_size for p in pages) / 1e6
        largest = max((p.stat().st_size for p in pages), default=0) / 1e6
        peak = max(m for _, m in report_runs)
        rank_s = statistics.median(w for w, _ in rank_runs)
        report_s = statistics.median(w for w, _ in report_runs)
        print(f"{'command':<16} {'median wall s':>14} {'runs':>26}")
        print(f"{'harness rank':<16} {rank_s:14.1f} {', '.join(f'{w:.1f}' for w, _ in rank_runs):>26}")
        print(f"{'harness report':<16} {report_s:14.1f} {', '.join(f'{w:.1f}' for w, _ in report_runs):>26}")
        print(f"peak RSS of a child: {peak:.0f} MB")
        print(f"main page {main_mb:.2f} MB; {len(pages)} pages beside it, {pages_mb:.1f} MB in all (largest {largest:.2f} MB)")
        print(f"report: {report_s:.1f} s vs {REFERENCE_S:.0f} s before ({REFERENCE_S / report_s:.1f}x); goal <= 10 s: "
              f"{'met' if report_s <= 10 else 'NOT met'}")
        print(f"main page: {main_mb:.2f} MB vs {REFERENCE_MB:.0f} MB before ({REFERENCE_MB / main_mb:.1f}x smaller); "
              f"goal <= 2 MB: {'met' if main_mb <= 2 else 'NOT met'}")
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"kept: {scratch}")


if __name__ == "__main__":
    main()
