"""Run one case in a fresh, locked-down container (grand-challenge.org's sandbox, plus limits).

Each run: `network_mode=none`, read-only root file system, tmpfs `/tmp` of bounded size,
`/input` read-only, a per-run `/output`, a non-root user, every capability dropped,
`no-new-privileges`, a pids limit, a CPU limit, memory = memory + swap, a shared-memory size, `--init`, bounded
json-file logs, the GPU only when the host has one and the manifest asks for it, and a time limit
after which the container is killed and the run recorded as `timeout`.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from harness.monitor import RunMonitor
from harness.runner.base import RunOutcome, RunRequest, RunStatus, tail_text

POLL_S = 0.05
LOG_LIMIT_BYTES = 64 * 1024
# A container runs as the invoking user (MedPerf's choice) or, when harness runs as root, as this
# unprivileged id, which owns nothing on the host.
SANDBOX_UID = 10001


def sandbox_user() -> tuple[int, int]:
    uid, gid = os.getuid(), os.getgid()
    return (uid, gid) if uid != 0 else (SANDBOX_UID, SANDBOX_UID)


def directory_usage(root: Path, *, stop_at_entries: int | None = None) -> tuple[int, int]:
    """(bytes, entries) of a folder tree: allocated blocks (a sparse file counts what it uses) and
    the number of files and folders, never following symbolic links, iteratively (any depth);
    counting stops once `stop_at_entries` is passed."""
    total = count = 0
    stack = [os.fsencode(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    st = entry.stat(follow_symlinks=False)
                    total += max(st.st_blocks * 512, 0)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    if stop_at_entries is not None and count > stop_at_entries:
                        return total, count
        except OSError:
            continue
    return total, count


def directory_bytes(root: Path) -> int:
    return directory_usage(root)[0]


def remove_orphans(client, owner: str) -> int:  # type: ignore[no-untyped-def]
    """Remove every container (running or not) labelled with results folder `owner`: call it only
    while holding that folder's lock, when any such container is an orphan of a process that died.
    Returns how many were removed."""
    import docker

    removed = 0
    for container in client.containers.list(all=True, filters={"label": f"harness.results={owner}"}):
        try:
            container.remove(force=True)
            removed += 1
        except docker.errors.APIError:
            continue
    return removed


class DockerRunner:
    name = "docker"

    def __init__(self, client=None, *, gpu_ids: tuple[str, ...] = (), log_limit_bytes: int = LOG_LIMIT_BYTES) -> None:  # type: ignore[no-untyped-def]
        from harness.build import docker_client

        self.client = client or docker_client()
        self.gpu_ids = gpu_ids
        self.log_limit_bytes = log_limit_bytes

    def container_kwargs(self, request: RunRequest) -> dict[str, object]:
        from docker.types import DeviceRequest, LogConfig

        res = request.spec.resources
        uid, gid = sandbox_user()
        kwargs: dict[str, object] = {
            "image": request.image,
            "name": f"harness-{request.spec.name}-{request.case_id}-{uuid.uuid4().hex[:8]}"[:128],
            "detach": True,
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={res.tmp_bytes},mode=1777"},
            "volumes": {
                str(request.input_dir.resolve()): {"bind": "/input", "mode": "ro"},
                str(request.output_dir.resolve()): {"bind": "/output", "mode": "rw"},
            },
            "user": f"{uid}:{gid}",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": res.pids,
            "nano_cpus": int(min(res.cpus or float(os.cpu_count() or 1), float(os.cpu_count() or 1)) * 1e9),
            "mem_limit": res.memory_bytes,
            "memswap_limit": res.memory_bytes,
            "shm_size": res.shm_bytes,
            "init": True,
            "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            "labels": {"harness.algorithm": request.spec.name, "harness.case": request.case_id,
                       "harness.results": request.owner, "harness.pid": f"{os.getpid()}@{socket.gethostname()}"},
            "environment": {"HARNESS_CASE": request.case_id, "HOME": "/tmp"},
        }
        if self.gpu_ids and request.spec.gpu != "none":
            kwargs["device_requests"] = [DeviceRequest(device_ids=list(self.gpu_ids), capabilities=[["gpu"]])]
        return kwargs

    def run(self, request: RunRequest, monitor: RunMonitor | None = None) -> RunOutcome:
        import docker

        res = request.spec.resources
        wall0 = time.monotonic()
        started_at = time.time()
        uid, _ = sandbox_user()
        for folder, mode in ((request.input_dir, 0o755), (request.output_dir, 0o777 if uid == SANDBOX_UID else 0o755)):
            folder.chmod(mode)
        if request.spec.gpu == "required" and not self.gpu_ids:
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, 0.0, started_at, time.time(),
                              message=f"{request.spec.manifest}: gpu = \"required\" but this host has no GPU; run it on a GPU host")
        created_at = time.time()
        try:
            container = self.client.containers.create(**self.container_kwargs(request))
        except docker.errors.APIError as exc:
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=f"docker could not create the container: {' '.join(str(exc).split())[:300]}")
        status: RunStatus | None = None
        message = ""
        try:
            container.start()
            start = time.monotonic()
            if monitor is not None:
                container.reload()
                pid = int(container.attrs["State"].get("Pid") or 0)
                if pid > 0:  # 0: it has already exited; nothing left to sample
                    monitor.attach(pid, started_at=start)
            next_size_check = start
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                now = time.monotonic()
                if now - start > res.time_limit_s:
                    container.kill()
                    status, message = RunStatus.TIMEOUT, f"killed at the time limit of {res.time_limit_s:g} s"
                    break
                if now >= next_size_check:
                    next_size_check = now + 0.25
                    used, entries = directory_usage(request.output_dir, stop_at_entries=res.output_files)
                    if used > res.output_bytes or entries > res.output_files:
                        container.kill()
                        status = RunStatus.OUTPUT_TOO_LARGE
                        message = (f"/output grew to {used / 1e6:.0f} MB, over the limit of {res.output_bytes / 1e6:.0f} MB; killed"
                                   if used > res.output_bytes else
                                   f"/output holds more than {res.output_files} files and folders, the limit; killed")
                        break
                time.sleep(POLL_S)
            if monitor is not None:
                monitor.stop()
            result = container.wait(timeout=30)
            container.reload()
            state = container.attrs["State"]
            exit_code = int(result.get("StatusCode", state.get("ExitCode", -1)))
            started, finished = _docker_times(state)
            elapsed = finished - started if started is not None and finished is not None else time.monotonic() - start
            details: dict[str, object] = {}
            if started is not None:
                details["startup_s"] = max(0.0, started - created_at)  # create + runtime set-up, before the entry point
            if status is None:
                if state.get("OOMKilled"):
                    status, message = RunStatus.OOM, f"killed by the out-of-memory killer at {res.memory_bytes / 2**20:.0f} MiB"
                elif exit_code != 0:
                    status, message = RunStatus.CRASHED, f"exited with code {exit_code}"
                else:
                    status = RunStatus.OK
            logs = container.logs(stdout=True, stderr=True, tail=2000)
            return RunOutcome(status, exit_code, elapsed, time.monotonic() - wall0, started_at, time.time(),
                              log_tail=tail_text(logs, self.log_limit_bytes), message=message, details=details)
        except docker.errors.APIError as exc:
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=f"docker failed during the run: {' '.join(str(exc).split())[:300]}")
        finally:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass


def _docker_times(state: dict[str, object]) -> tuple[float | None, float | None]:
    """The daemon's own StartedAt / FinishedAt (RFC 3339, nanoseconds) as epoch seconds."""
    from datetime import datetime

    def parse(stamp: object) -> float | None:
        if not isinstance(stamp, str) or stamp.startswith("0001-"):
            return None
        head, _, frac = stamp.rstrip("Z").partition(".")
        base = datetime.fromisoformat(head + "+00:00").timestamp()
        return base + (float("0." + frac) if frac else 0.0)

    start, end = parse(state.get("StartedAt")), parse(state.get("FinishedAt"))
    if start is not None and end is not None and end < start:
        end = None
    return start, end
