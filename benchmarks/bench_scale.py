"""Scoring throughput in one process versus a Dask LocalCluster on this machine's cores, measured in
the same run, and a projection of a final evaluation's wall-clock time on 1, 4 and 16 GPU hosts.

The projection uses the per-run wall time measured in a results store (`--results`, e.g. the one
`make demo` writes) and, for comparison, FLARE22's reported ~30 s per case; one container at a
time per GPU, runs spread evenly, scoring overlapped with running (so it adds nothing while the
cluster's scoring throughput exceeds the run rate).

    python benchmarks/bench_scale.py [--cases 24] [--results results] [--teams 50] [--eval-cases 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.casework import score_bytes  # noqa: E402
from harness.data.dataset import discover  # noqa: E402
from harness.data.perturb import write_predictions  # noqa: E402
from harness.data.synth import write_dataset  # noqa: E402
from harness.profiles import load_profile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--eval-cases", type=int, default=200)
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        write_dataset(tmp / "data", cases=args.cases, seed=77, size="small")
        write_predictions(tmp / "data", tmp / "pred", seed=5)
        dataset, _ = discover(tmp / "data")
        jobs = [(case, (tmp / "pred" / f"{case.case_id}.nii.gz").read_bytes()) for case in dataset.cases]

        profile = load_profile("flare22")
        start = time.perf_counter()
        single = [score_bytes(case, label, profile).scores for case, label in jobs]
        single_s = time.perf_counter() - start

        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            client.submit(score_bytes, jobs[0][0], jobs[0][1], profile).result()  # warm the workers
            start = time.perf_counter()
            futures = [client.submit(score_bytes, case, label, profile, pure=False) for case, label in jobs]
            clustered = [result.scores for result in client.gather(futures)]
            cluster_s = time.perf_counter() - start
    assert [[s.dsc for s in scores] for scores in single] == [[s.dsc for s in scores] for scores in clustered]
    print(f"scoring {args.cases} small phantom cases (13 organs, DSC + NSD + HD95)")
    print(f"  one process:            {args.cases / single_s:6.2f} cases/s")
    print(f"  LocalCluster, {workers} workers: {args.cases / cluster_s:6.2f} cases/s   speed-up {single_s / cluster_s:.2f}x")

    measured = per_run_seconds(args.results)
    runs = args.teams * args.eval_cases
    print(f"\nprojected wall clock for {args.teams} teams x {args.eval_cases} cases = {runs} runs, one container per GPU:")
    header = f"  {'per-run time':<34}" + "".join(f"{f'{n} GPU host' + ('s' if n > 1 else ''):>14}" for n in (1, 4, 16))
    print(header)
    rows = [("FLARE22 reported, 30 s", 30.0)]
    if measured is not None:
        rows.insert(0, (f"measured here, {measured:.1f} s ({args.results.name})", measured))
    for label, seconds in rows:
        cells = "".join(f"{_hours(runs * seconds / n):>14}" for n in (1, 4, 16))
        print(f"  {label:<34}{cells}")


def per_run_seconds(results: Path) -> float | None:
    if not (results / "store.sqlite").is_file():
        return None
    from harness.store import Store

    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs()
    runs = runs[(runs.kind == "segmenter") & (runs.status == "ok")]
    return float(runs.wall_s.mean()) if len(runs) else None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
