"""The example algorithms' images built one at a time, then side by side (`harness build --jobs`).

Each round removes the images of `algorithms/` (their tags, so their layers go with them; the base
image and the wheelhouse stay), then times `harness build algorithms` as a subprocess: first with
`--jobs 1` (the reference, as every build ran before), then with the default (one per core, at most
4, as memory allows). Rounds alternate, `--repeat` times. Prints each wall time and the ratio.
Issue 18: the cold `make demo` built its four images one after another.

Needs a Docker engine and the base image (`harness images base`); fetches wheels once if missing.

    python benchmarks/bench_build.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness"]


NAMES = [p.parent.name for p in sorted((REPO / "algorithms").glob("*/algorithm.toml"))]


def _remove_images() -> None:
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                            text=True, check=True).stdout.split()
    tags = [t for t in listed if any(t.startswith(f"harness-{n}:") for n in NAMES)]
    if tags:
        subprocess.run(["docker", "rmi", "--force", *tags], capture_output=True, check=True)


def _build(jobs: int | None) -> float:
    _remove_images()
    command = [*HARNESS, "build", "algorithms"] + ([f"--jobs={jobs}"] if jobs else [])
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    built = done.stdout.count(" built")
    if done.returncode != 0 or built != len(NAMES):
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}, {built} built of {len(NAMES)}):\n{done.stderr[-2000:]}")
    print(f"  jobs={jobs or 'default'}: {built} images in {wall:.1f} s", flush=True)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    subprocess.run([*HARNESS, "build", "algorithms"], cwd=REPO, capture_output=True, check=True)  # base, wheels
    serial, parallel = [], []
    for _ in range(args.repeat):
        serial.append(_build(1))
        parallel.append(_build(None))
    one, many = statistics.median(serial), statistics.median(parallel)
    print(f"one at a time {one:.1f} s, side by side {many:.1f} s: {one / many:.2f}x")


if __name__ == "__main__":
    main()
