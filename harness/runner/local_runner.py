"""Run one case as a local process: the same contract as the container, for hosts without Docker
(HPC clusters, GPU hosts where Docker is not allowed).

The manifest's `[local] command` is started in the algorithm's folder with `{input}`, `{output}`
and `{python}` replaced, in its own session (so a time-out kills the whole process tree), with a
scrubbed environment and `TMPDIR` pointing at a fresh per-run folder; a watcher process kills that
session if the process that started it dies first (a Dask worker killed with SIGKILL), so a run
never goes on beside its retry. The output folder is held to the manifest's `output` size and
`output_files` count, checked every 0.25 s and once the run has ended; the outcome is judged by
`harness.runner.base.classify`, as the Docker runner's. It is not a sandbox: no network, memory or
file-system isolation; use it only for trusted algorithms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from harness.monitor import RunMonitor
from harness.runner.base import RunOutcome, RunRequest, RunStatus, Verdict, classify, gpu_refusal, passed_limit, tail_text
from harness.runner.docker_runner import LOG_LIMIT_BYTES, POLL_S, directory_usage
from harness.runner.reaper import GroupWatcher

_PASS_ENV = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "HOME")


class LocalRunner:
    name = "local"

    def __init__(self, *, python: str = sys.executable, log_limit_bytes: int = LOG_LIMIT_BYTES,
                 gpu_ids: tuple[str, ...] = ()) -> None:
        self.python = python
        self.log_limit_bytes = log_limit_bytes
        self.gpu_ids = gpu_ids  # the GPUs visible here (`harness.casework.visible_gpu_ids`); none: `gpu = "required"` is refused

    def command(self, request: RunRequest) -> list[str]:
        template = request.spec.local_command
        if template is None:
            raise ValueError(f"{request.spec.manifest}: no [local] command")
        values = {"python": self.python, "input": str(request.input_dir.resolve()), "output": str(request.output_dir.resolve())}
        return [part.format(**values) for part in template]

    def run(self, request: RunRequest, monitor: RunMonitor | None = None) -> RunOutcome:
        res = request.spec.resources
        started_at = time.time()
        wall0 = time.monotonic()
        if request.spec.local_command is None:
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, 0.0, started_at, time.time(),
                              message=f"{request.spec.manifest}: no [local] command; add one to run it without Docker")
        refused = gpu_refusal(request.spec, self.gpu_ids, started_at=started_at)
        if refused is not None:
            return refused
        with tempfile.TemporaryDirectory(prefix="harness-local-tmp-") as tmp, \
                tempfile.TemporaryFile() as log:
            env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
            env.update({"TMPDIR": tmp, "HARNESS_CASE": request.case_id, "PYTHONUNBUFFERED": "1"})
            try:
                proc = subprocess.Popen(self.command(request), cwd=request.spec.directory, env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                return RunOutcome(RunStatus.CRASHED, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                                  message=f"{request.spec.manifest}: cannot start the local command ({exc.strerror})")
            start = time.monotonic()
            try:
                watcher = GroupWatcher(proc.pid)  # the session's leader's pid is its group's id
            except OSError as exc:
                _kill_group(proc)
                proc.wait()
                return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                                  message=f"cannot start the run's watcher process ({exc.strerror}); rerun `harness run`")
            if monitor is not None:
                monitor.attach(proc.pid, started_at=start)
            killed: Verdict | None = None
            used = entries = 0  # the output folder's bytes and files and folders, as last measured
            next_size_check = start
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if now >= next_size_check:
                        next_size_check = now + 0.25
                        used, entries = directory_usage(request.output_dir, stop_at_entries=res.output_files)
                    killed = passed_limit(res, elapsed_s=now - start, output_bytes=used, output_entries=entries)
                    if killed is not None:
                        _kill_group(proc)
                        break
                    try:
                        proc.wait(timeout=POLL_S)  # returns as soon as it exits, not at the end of the interval
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:  # Ctrl-C, SIGTERM: the process group goes with us
                _kill_group(proc)
                proc.wait()
                watcher.release()
                if monitor is not None:
                    monitor.stop()
                raise
            if monitor is not None:
                monitor.stop()  # before the wait: the exited process can still be read until reaped
            proc.wait()
            elapsed = time.monotonic() - start
            _kill_group(proc)  # leftovers of a process that exited but left children behind
            watcher.release()
            exit_code = proc.returncode
            if killed is None:  # what it left, once it ended (it may have written it all between two checks)
                used, entries = directory_usage(request.output_dir, stop_at_entries=res.output_files)
            status, message = classify(res, exit_code=exit_code, killed=killed, output_bytes=used, output_entries=entries)
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - self.log_limit_bytes))
            tail = log.read()
            text = tail_text(tail, self.log_limit_bytes) if size <= self.log_limit_bytes else "[... log cut ...]\n" + tail.decode(
                "utf-8", errors="replace")
        return RunOutcome(status, exit_code, elapsed, time.monotonic() - wall0, started_at, time.time(),
                          log_tail=text, message=message)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
