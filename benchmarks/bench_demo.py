"""The README's main command (`make demo`) timed cold and then warm, with the phases it prints.

Cold: a fresh clone of this commit (no `.venv/`), an empty harness cache (`HARNESS_CACHE` in a
scratch folder: no phantoms, no wheels, no fetched tools) and none of the demo's images (the tags of
the example algorithms' images and of the local base image are removed first, so debootstrap and
every build run again). Warm: the same clone run again with a new results folder (environment,
caches and images in place). Prints each run's wall time and the `time:` line `harness run` ends
with. Goals (issue 18): cold < 10 min and warm < 3 min on a 2-core machine.

Needs what `make demo` needs (Python 3.11+, make, a Docker engine, the network for the wheels on a
cold run). Removes the demo images' tags from the local engine; the warm run builds them again.

    python benchmarks/bench_demo.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLD_GOAL_S, WARM_GOAL_S = 600.0, 180.0


def _demo_tags() -> list[str]:
    """Local tags of the example algorithms' images and of the base image."""
    names = [p.parent.name for p in sorted((REPO / "algorithms").glob("*/algorithm.toml"))]
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                            text=True, check=True).stdout.split()
    return [t for t in listed if t.startswith("harness/base:") or any(t.startswith(f"harness-{n}:") for n in names)]


def _demo(clone: Path, env: dict[str, str], results: str) -> tuple[float, int, str]:
    """(wall s, exit status, the `time:` line) of `make demo` with its results in `results`."""
    start = time.perf_counter()
    done = subprocess.run(["make", "demo", f"RESULTS={results}"], cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("time:")]
    if done.returncode != 0:
        print((done.stdout + done.stderr)[-2000:])
    return wall, done.returncode, lines[-1] if lines else "(no time: line)"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone and cache")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    try:
        clone = scratch / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True,
                                check=True).stdout.strip()
        env = {**os.environ, "HARNESS_CACHE": str(scratch / "cache")}
        tags = _demo_tags()
        if tags:
            subprocess.run(["docker", "rmi", "--force", *tags], capture_output=True, check=False)
        print(f"commit {commit}; removed {len(tags)} image tag(s); empty cache {env['HARNESS_CACHE']}", flush=True)
        cold = _demo(clone, env, "results-cold")
        print(f"cold: {_minutes(cold[0])} (exit {cold[1]})\n  {cold[2]}", flush=True)
        warm = _demo(clone, env, "results-warm")
        print(f"warm: {_minutes(warm[0])} (exit {warm[1]})\n  {warm[2]}", flush=True)
        print(f"cold {cold[0]:.0f} s vs goal {COLD_GOAL_S:.0f} s: {'met' if cold[0] < COLD_GOAL_S and cold[1] == 0 else 'NOT met'}; "
              f"warm {warm[0]:.0f} s vs goal {WARM_GOAL_S:.0f} s: {'met' if warm[0] < WARM_GOAL_S and warm[1] == 0 else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
