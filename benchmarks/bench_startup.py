"""Start-up of the command line: `harness --help` and `harness score` on one small case, beside a
bare `python -c pass` measured in the same run (the same interpreter, interleaved).

Wall and CPU (user + system of the child) are medians over the repetitions. Goals (issue 19):
`harness --help` within 0.3 s of bare Python; `harness score` on one small case well under 1 s.

    python benchmarks/bench_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _measure(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one child process."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from harness.data.synth import write_dataset

    scratch = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        write_dataset(scratch / "data", cases=1, seed=3, size="small")
        shutil.copytree(scratch / "data" / "labelsTr", scratch / "pred")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "harness --help": [sys.executable, "-m", "harness", "--help"],
            "harness score (1 small case)": [sys.executable, "-m", "harness", "score", "--pred", str(scratch / "pred"),
                                             "--labels", str(scratch / "data" / "labelsTr"), "--out",
                                             str(scratch / "scores.csv")],
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeat):  # interleaved: the same machine state for each
            for name, argv in commands.items():
                runs[name].append(_measure(argv))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bare_wall = statistics.median(w for w, _ in runs["python -c pass"])
    bare_cpu = statistics.median(c for _, c in runs["python -c pass"])
    print(f"{'command':<30} {'wall s':>8} {'CPU s':>8} {'wall - bare':>12}")
    for name, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{name:<30} {wall:8.3f} {cpu:8.3f} {wall - bare_wall:+12.3f}")
    help_extra = statistics.median(w for w, _ in runs["harness --help"]) - bare_wall
    print(f"goal: harness --help within 0.3 s of bare Python: {help_extra:+.3f} s "
          f"({'met' if help_extra <= 0.3 else 'NOT met'}); bare Python: {bare_wall:.3f} s wall, {bare_cpu:.3f} s CPU")
    score_wall = statistics.median(w for w, _ in runs["harness score (1 small case)"])
    print(f"goal: harness score on one small case well under 1 s: {score_wall:.3f} s wall "
          f"({'met' if score_wall < 0.75 else 'NOT met'}, taking 'well under' as < 0.75 s)")


if __name__ == "__main__":
    main()
