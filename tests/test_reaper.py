"""The run watcher (harness.runner.reaper): a process group outlives a host killed with SIGKILL
only until the watcher sees its pipe close; a released watcher leaves the group alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]

HOST = """\
import subprocess, sys, time
from harness.runner.reaper import GroupWatcher
run = subprocess.Popen(["sleep", "60"], start_new_session=True)
watcher = GroupWatcher(run.pid)
if sys.argv[1] == "release":
    watcher.release()
print(run.pid, flush=True)
time.sleep(60)
"""


def _host(mode: str) -> tuple[subprocess.Popen[str], int]:
    host = subprocess.Popen([sys.executable, "-c", HOST, mode], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert host.stdout is not None
    return host, int(host.stdout.readline())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, *, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_run_group_dies_with_a_host_killed_by_sigkill() -> None:
    host, run = _host("watch")
    assert _alive(run)
    host.kill()  # SIGKILL: no finally, no handler runs in the host
    host.wait()
    assert _wait_gone(run), "the run outlived its host"


def test_a_released_watcher_leaves_the_group_alone() -> None:
    host, run = _host("release")
    try:
        host.kill()
        host.wait()
        time.sleep(0.5)  # what a watcher would have needed to act (the other test shows it acts)
        assert _alive(run)
    finally:
        os.killpg(run, signal.SIGKILL)
    assert _wait_gone(run)
