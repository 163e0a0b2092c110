"""Scale-out on a loopback cluster without Docker: a real `dask scheduler` and real `dask worker`s
(each with its nanny, `--resources GPU=1 --nthreads 1`, as the README starts them) as separate
processes, the local runner, and toy segmenters that sleep and log every real execution to a file
outside the store (start and end, with their pid and the pid of the worker that started them).

What is checked is what a user who outgrows one machine relies on: each run is stored as it ends
(rows in the store while the evaluation still runs); a scheduler killed midway is exit 7 with every
finished run stored, and the rerun executes only what is not stored; a worker killed with its nanny
costs only what was running on it, and its orphaned process does not finish beside its retry.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.executor import DaskExecutor
from harness.pipeline import run_all
from harness.store import Store
from tests.runpath.conftest import Toy

REPO = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).with_name("dask"))

pytestmark = pytest.mark.slow

SLEEPY = '''\
import os, sys, time
from pathlib import Path
import nibabel as nib
import numpy as np

inp, out = Path(sys.argv[1]), Path(sys.argv[2])
here = Path(__file__).resolve().parent
image = next(inp.glob("*_0000.nii.gz"))
case = image.name[: -len("_0000.nii.gz")]

def note(event):
    with open("{log}", "a") as log:  # one short line per write: appends do not interleave
        log.write(f"{event} {here.name} {case} {os.getpid()} {os.getppid()} {time.time():.3f}\\n")

note("start")
time.sleep({sleep_s})
img = nib.load(image)
label = np.rint(np.asarray(img.dataobj) / 40.0).astype(np.uint8)
nib.save(nib.Nifti1Image(label, img.affine), out / f"{case}.nii.gz")
note("end")
'''


@dataclass(frozen=True)
class Execution:
    event: str  # start | end
    algorithm: str
    case_id: str
    pid: int
    worker_pid: int  # the process that started it: the Dask worker
    at: float  # epoch seconds


def sleepy(toy: Toy, name: str, *, sleep_s: float) -> None:
    folder = toy.algorithms / name
    folder.mkdir(parents=True)
    _log(toy).parent.mkdir(exist_ok=True)
    (folder / "sleepy.py").write_text(SLEEPY.replace("{log}", str(_log(toy))).replace("{sleep_s}", str(sleep_s)))
    (folder / "algorithm.toml").write_text(
        f'name = "{name}"\nversion = "0.0.1"\nkind = "segmenter"\ndockerfile = "dockerfiles/toy.Dockerfile"\n'
        'profile = "../../toy.toml"\ngpu = "none"\n\n[resources]\ntime_limit_s = 60\n\n'
        '[local]\ncommand = ["{python}", "sleepy.py", "{input}", "{output}"]\n')


def _log(toy: Toy) -> Path:
    return toy.root / "executions" / "log.txt"  # outside the store and the algorithm folders


def executions(toy: Toy) -> list[Execution]:
    path = _log(toy)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, algorithm, case_id, pid, ppid, at = line.split()
        out.append(Execution(event, algorithm, case_id, int(pid), int(ppid), float(at)))
    return out


def stored_rows(results: Path) -> dict[tuple[str, str], str]:
    """(algorithm, case) -> status, read as another process would while the harness writes."""
    database = results / "store.sqlite"
    if not database.exists():
        return {}
    try:
        with Store.open(results, lock=False, create=False) as store:
            runs = store.runs()
    except (sqlite3.Error, Exception):  # noqa: BLE001 - the store may be being created this instant
        return {}
    return {(r.algorithm, r.case_id): str(r.status) for r in runs.itertuples()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A scheduler and workers on 127.0.0.1, each its own process (workers under their nanny)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}  # the workers import this checkout's harness
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.nannies: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = (self.root / f"{name}-{self.started}.log").open("wb")
        return subprocess.Popen([DASK, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
                                     "scheduler")

    def start_workers(self, count: int) -> None:
        for i in range(count):
            self.nannies.append(self._spawn(
                ["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--resources", "GPU=1", "--name",
                 f"w{len(self.nannies)}-{i}", "--no-dashboard", "--local-directory", str(self.root / "dask")], "worker"))

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        deadline = time.monotonic() + 45
        while True:
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(count, timeout=30)
                return
            except Exception:  # noqa: BLE001 - the scheduler may still be starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def worker_pids(self) -> dict[int, subprocess.Popen[bytes]]:
        """Each live worker process's pid -> its nanny (the `dask worker` command started here)."""
        found = {}
        for nanny in self.nannies:
            if nanny.poll() is None:
                for child in psutil.Process(nanny.pid).children():
                    found[child.pid] = nanny
        return found

    def stop_workers(self) -> None:
        for nanny in self.nannies:
            if nanny.poll() is None:
                nanny.terminate()
        for nanny in self.nannies:
            try:
                nanny.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nanny.kill()
                nanny.wait()
        self.nannies = []

    def close(self) -> None:
        self.stop_workers()
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.kill()
            self.scheduler.wait()


@pytest.fixture
def cluster(tmp_path: Path):
    made = Cluster(tmp_path)
    made.start_scheduler()
    made.start_workers(2)
    made.wait_for_workers(2)
    yield made
    made.close()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _harness_run(toy: Toy, address: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(toy.root / "cache")}
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(toy.algorithms), "--data", str(toy.data),
                             "--results", str(toy.results), "--challenge", str(toy.challenge_file), "--runner", "local",
                             "--scheduler", address], env=env, cwd=toy.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_killed_scheduler_is_exit_7_with_every_finished_run_stored_and_the_rerun_runs_only_the_rest(
        toy: Toy, cluster: Cluster) -> None:
    toy.write_data(4)  # eight runs: three or more stored before the kill, the rest left to the rerun
    for name in ("alpha", "beta"):
        sleepy(toy, name, sleep_s=0.8)
    harness = _harness_run(toy, cluster.address)
    deadline = time.monotonic() + 60
    seen_mid_run = 0
    while True:  # kill once some runs are stored and every run that has ended so far is
        assert harness.poll() is None, f"harness ended before the scheduler was killed: {harness.communicate()}"
        assert time.monotonic() < deadline, "no run was stored within 60 s"
        rows = stored_rows(toy.results)
        ended = [e for e in executions(toy) if e.event == "end"]
        if len(rows) >= 3 and len(rows) == len(ended):
            seen_mid_run = len(rows)
            break
        time.sleep(0.05)
    assert cluster.scheduler is not None
    cluster.scheduler.send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, err = harness.communicate(timeout=45)
    assert harness.returncode == 7, err
    assert "lost the connection to the scheduler" in err and "run the same `harness run` again" in err, err
    assert 3 <= seen_mid_run < 8  # rows in the store while the evaluation was still running
    rows = stored_rows(toy.results)
    before = {(e.algorithm, e.case_id) for e in executions(toy) if e.event == "end" and e.at < killed_at - 0.5}
    assert before and before <= set(rows), "a run that finished before the kill is not stored"
    assert set(rows.values()) == {"ok"}  # nothing recorded as lost: the runs not stored simply run next time
    cluster.stop_workers()  # (their watchers stop what they were running)

    cluster.start_scheduler()  # the services restart: the scheduler on the same address, then the workers
    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    rerun_at = time.time()
    harness = _harness_run(toy, cluster.address)
    _, err = harness.communicate(timeout=60)
    assert harness.returncode == 0, err
    again = Counter((e.algorithm, e.case_id) for e in executions(toy) if e.event == "start" and e.at >= rerun_at)
    assert not set(again) & set(rows), "a stored run was executed again"
    assert set(again) == {(a, f"case_{i:02d}") for a in ("alpha", "beta") for i in range(4)} - set(rows)
    assert max(again.values()) == 1
    final = stored_rows(toy.results)
    assert len(final) == 8 and set(final.values()) == {"ok"}


def test_a_worker_killed_with_its_nanny_costs_only_its_run_in_flight(toy: Toy, cluster: Cluster) -> None:
    toy.write_data(4)  # eight runs: three or more ended before the kill, the rest after it
    for name in ("alpha", "beta"):
        sleepy(toy, name, sleep_s=1.5)
    killed: dict[str, object] = {}

    def kill_a_worker_mid_run() -> None:
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline:
            logged = executions(toy)
            ended = {(e.algorithm, e.case_id, e.pid) for e in logged if e.event == "end"}
            running = [e for e in logged if e.event == "start" and (e.algorithm, e.case_id, e.pid) not in ended]
            workers = cluster.worker_pids()
            now = time.time()  # a run well inside its 1.5 s sleep: surely running, surely not yet done
            sleeping = [e for e in running if 0.1 < now - e.at < 0.8 and e.worker_pid in workers]
            if len(ended) >= 3 and sleeping:
                victim = sleeping[0].worker_pid
                os.kill(workers[victim].pid, signal.SIGKILL)  # the nanny first, so that nothing restarts the worker
                os.kill(victim, signal.SIGKILL)
                killed.update(at=time.time(), worker=victim, nanny=workers[victim],
                              in_flight=[e for e in running if e.worker_pid == victim],
                              finished={(a, c) for a, c, _ in ended})
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_mid_run)
    killer.start()
    progress: list[tuple[int, int, float]] = []  # (done, total, when) of each progress line
    summary = run_all(toy.settings(), say=lambda m: None, executor=DaskExecutor(cluster.address),
                      on_result=lambda e: progress.append((e.done, e.total, time.time())))
    killer.join()
    assert killed, "no worker was killed mid-run"
    nanny = killed["nanny"]
    assert isinstance(nanny, subprocess.Popen) and nanny.wait(timeout=5) == -signal.SIGKILL
    assert _gone(int(killed["worker"]))  # type: ignore[arg-type]
    in_flight = killed["in_flight"]
    assert isinstance(in_flight, list) and len(in_flight) == 1  # one thread per worker: one run at a time
    orphan: Execution = in_flight[0]
    assert _gone(orphan.pid), "the killed worker's run is still running"

    logged = executions(toy)
    starts = Counter((e.algorithm, e.case_id) for e in logged if e.event == "start")
    ends = Counter((e.algorithm, e.case_id) for e in logged if e.event == "end")
    everything = {(a, f"case_{i:02d}") for a in ("alpha", "beta") for i in range(4)}
    assert set(ends) == everything and set(ends.values()) == {1}  # the orphan never finished beside its retry
    assert not [e for e in logged if e.event == "end" and e.pid == orphan.pid]
    assert starts[(orphan.algorithm, orphan.case_id)] == 2  # the one in flight: executed twice
    assert all(starts[run] == 1 for run in everything - {(orphan.algorithm, orphan.case_id)}), starts
    rows = stored_rows(toy.results)
    assert set(rows) == everything and set(rows.values()) == {"ok"}
    assert summary.executed == 8 and summary.failed == 0
    assert [(done, total) for done, total, _ in progress] == [(n, 8) for n in range(1, 9)]
    last_start = max(e.at for e in logged if e.event == "start")
    assert progress[0][2] < last_start, "progress came only once the batch was over"  # counted as runs finish
