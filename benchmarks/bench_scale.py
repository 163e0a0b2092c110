"""Scale-out on loopback, measured side by side in one run: the same evaluation in one process (the
reference) and through a real `dask scheduler` with 1, 2 and 4 `dask worker`s (each `--nworkers 1
--nthreads 1 --resources GPU=1`, as the README starts one per GPU), the local runner, and toy
segmenters that sleep; then a projection of a final evaluation (50 teams x 200 cases x 30 s) on 4
and 16 GPU hosts.

Per setting: the runs phase's wall time (`harness run`'s `time:` line), the speed-up over one
process and the efficiency (speed-up / workers), the per-run overhead (worker-seconds per run
beyond the algorithm's own time, as the store records it: staging, the local process, scheduling,
the result's trip; scoring and storing too in one process, beside the workers under Dask), when
the first run was stored (under Dask it is stored as it ends, not after the batch), and the workers'
warm-up (their import of the harness, done once per worker before the evaluation, not per run).

On a machine with fewer cores than workers + the client, the workers share the cores: the larger
settings measure contention as much as scheduling (the toy's own Python start is CPU work).

    python benchmarks/bench_scale.py [--cases 8] [--algorithms 2] [--sleep 1.0] [--workers 1 2 4]
                                     [--teams 50] [--eval-cases 200] [--run-s 30] [--hosts 4 16]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.challenge import load_challenge  # noqa: E402
from harness.executor import DaskExecutor, LocalExecutor  # noqa: E402
from harness.models import RunnerKind  # noqa: E402
from harness.pipeline import CaseEvent, RunSettings, run_all  # noqa: E402
from harness.store import Store  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))

TOY = '''\
import sys, time
from pathlib import Path
import nibabel as nib
import numpy as np
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
image = next(inp.glob("*_0000.nii.gz"))
case = image.name[: -len("_0000.nii.gz")]
time.sleep({sleep_s})
img = nib.load(image)
nib.save(nib.Nifti1Image(np.rint(np.asarray(img.dataobj) / 40.0).astype(np.uint8), img.affine), out / f"{{case}}.nii.gz")
'''

PROFILE = """\
name = "toy"
description = "four boxy organs, FLARE22's rules"
both_empty = 1.0
nsd_min_dsc = 0.2
zrange_drop_last_slice = true
zrange_axis = 2
round_decimals = 4
organs = [
  { label = 1, name = "liver", tolerance_mm = 5 },
  { label = 2, name = "right_kidney", tolerance_mm = 3 },
  { label = 3, name = "spleen", tolerance_mm = 3 },
  { label = 5, name = "aorta", tolerance_mm = 2, zrange_only = true },
]
"""


@dataclass(frozen=True)
class Measured:
    setting: str
    workers: int  # 0: in one process
    runs: int
    runs_s: float  # the runs phase's wall time
    algorithm_s: float  # mean per run, as the store records it (elapsed_s)
    first_stored_s: float  # from the start of the evaluation
    warm_up_s: float = 0.0  # the workers' import of the harness, before the evaluation (once per worker)

    def overhead_s(self) -> float:
        """Worker-seconds per run beyond the algorithm's own time."""
        return max(1, self.workers) * self.runs_s / self.runs - self.algorithm_s


def write_sandbox(root: Path, *, cases: int, algorithms: int, sleep_s: float) -> None:
    rng = np.random.default_rng(0)
    for i in range(cases):
        label = np.zeros((24, 22, 12), np.uint8)
        for value, (x, y) in zip((1, 2, 3, 5), ((2, 2), (13, 2), (2, 12), (13, 12)), strict=True):
            dx, dy, dz = rng.integers(4, 8, size=3)
            z = int(rng.integers(1, 12 - dz))
            label[x:x + dx, y:y + dy, z:z + dz] = value
        for folder, name, data in (("labelsTr", f"case_{i:02d}.nii.gz", label),
                                   ("imagesTr", f"case_{i:02d}_0000.nii.gz", (label * 40).astype(np.int16))):
            (root / "data" / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), root / "data" / folder / name)
    (root / "toy.toml").write_text(PROFILE)
    (root / "challenge.toml").write_text('name = "bench-scale"\nprofile = "toy.toml"\n')
    (root / "dockerfiles").mkdir()
    (root / "dockerfiles" / "toy.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY . /opt/algorithm\n")
    for k in range(algorithms):
        folder = root / "algorithms" / f"sleeper-{k}"
        folder.mkdir(parents=True)
        (folder / "toy.py").write_text(TOY.format(sleep_s=sleep_s))
        (folder / "algorithm.toml").write_text(
            f'name = "sleeper-{k}"\nversion = "0.0.1"\nkind = "segmenter"\ndockerfile = "dockerfiles/toy.Dockerfile"\n'
            'profile = "../../toy.toml"\ngpu = "none"\n\n[resources]\ntime_limit_s = 120\n\n'
            '[local]\ncommand = ["{python}", "toy.py", "{input}", "{output}"]\n')


def evaluate(root: Path, setting: str, workers: int, executor: LocalExecutor | DaskExecutor, *,
             warm_up_s: float = 0.0) -> Measured:
    results = root / f"results-{setting}"
    settings = RunSettings(algorithms_dir=root / "algorithms", data_dir=root / "data", results_dir=results,
                           runner=RunnerKind.LOCAL, cache_dir=root / "cache", repo_root=root,
                           challenge=load_challenge(root / "challenge.toml"))
    stored_at: list[float] = []

    def on_result(event: CaseEvent) -> None:
        stored_at.append(time.monotonic())

    started = time.monotonic()
    summary = run_all(settings, say=lambda m: None, on_result=on_result, executor=executor)
    if summary.failed or not stored_at:
        raise SystemExit(f"{setting}: {summary.failed} runs failed ({summary.problems}); see {results}")
    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs()
    return Measured(setting, workers, len(runs), summary.phases["runs"], float(runs.elapsed_s.mean()),
                    min(stored_at) - started, warm_up_s)


class LoopbackCluster:
    """`dask scheduler` and `workers` x `dask worker` on 127.0.0.1, each a process of its own."""

    def __init__(self, root: Path, workers: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.address = f"tcp://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        self.procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                       **quiet)]  # type: ignore[call-overload]
        for i in range(workers):
            self.procs.append(subprocess.Popen(  # type: ignore[call-overload]
                [DASK, "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--resources", "GPU=1",
                 "--name", f"gpu-{i}", "--no-dashboard", "--local-directory", str(root / "dask")], **quiet))
        from distributed import Client

        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(workers, timeout=60)
                    started = time.monotonic()
                    client.run(_warm)  # a worker's first run imports the harness: once per worker, not per run
                    self.warm_up_s = time.monotonic() - started
                return
            except Exception:  # noqa: BLE001 - the scheduler may still be starting
                if time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.3)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _warm() -> None:
    import harness.casework  # noqa: F401
    import harness.runner.local_runner  # noqa: F401


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--algorithms", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each toy run sleeps")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--eval-cases", type=int, default=200)
    parser.add_argument("--run-s", type=float, default=30.0, help="per-run time of the projection (FLARE22: ~30 s)")
    parser.add_argument("--hosts", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        root = Path(tmp_name)
        write_sandbox(root, cases=args.cases, algorithms=args.algorithms, sleep_s=args.sleep)
        measured.append(evaluate(root, "one-process", 0, LocalExecutor(scoring_workers=0)))
        for workers in args.workers:
            cluster = LoopbackCluster(root, workers)
            try:
                measured.append(evaluate(root, f"dask-{workers}", workers, DaskExecutor(cluster.address),
                                         warm_up_s=cluster.warm_up_s))
            finally:
                cluster.close()
    reference = measured[0]
    print(f"{reference.runs} runs ({args.algorithms} toy segmenters x {args.cases} cases, each sleeping {args.sleep:g} s; "
          f"algorithm time {statistics.mean(m.algorithm_s for m in measured):.2f} s a run as stored), "
          f"local runner, loopback, {os.cpu_count()} cores")
    print(f"  {'setting':<12}{'workers':>8}{'runs wall':>11}{'speed-up':>10}{'efficiency':>12}{'overhead/run':>14}"
          f"{'first stored':>14}{'warm-up':>10}")
    for m in measured:
        speed_up = reference.runs_s / m.runs_s
        print(f"  {m.setting:<12}{max(1, m.workers):>8}{m.runs_s:>9.1f} s{speed_up:>9.2f}x{speed_up / max(1, m.workers):>12.2f}"
              f"{m.overhead_s():>12.2f} s{m.first_stored_s:>12.1f} s{m.warm_up_s:>8.1f} s")
    runs = args.teams * args.eval_cases
    dask = [m for m in measured if m.workers]
    print(f"\nprojection: {args.teams} teams x {args.eval_cases} cases = {runs} runs of {args.run_s:g} s, one per GPU host "
          "at a time, plus the per-run overhead measured above")
    print(f"  {'overhead from':<36}" + "".join(f"{f'{h} hosts':>12}" for h in args.hosts))
    for label, overhead in [("none (ideal)", 0.0),
                            *((f"{m.setting}, {m.overhead_s():.2f} s a run", m.overhead_s()) for m in dask)]:
        print(f"  {label:<36}" + "".join(f"{_hours(runs * (args.run_s + overhead) / h):>12}" for h in args.hosts))
    print(f"  a lost scheduler or host costs the runs in flight: at most {max(args.hosts)} x {args.run_s:g} s of work "
          "(every finished run is stored as it ends)")


if __name__ == "__main__":
    main()
