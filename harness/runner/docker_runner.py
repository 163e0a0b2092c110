"""Run one case in a fresh, locked-down container (grand-challenge.org's sandbox, plus limits).

Each run: `network_mode=none`, read-only root file system, tmpfs `/tmp` of bounded size,
`/input` read-only, a per-run `/output`, a non-root user, every capability dropped,
`no-new-privileges`, a pids limit, a CPU limit, memory = memory + swap, a shared-memory size, `--init`, bounded
json-file logs, the GPU only when the host has one and the manifest asks for it, and a time limit
after which the container is killed and the run recorded as `timeout`.

`/output` is a file system of its own, the run's output limit in size and in files and folders
(a `tmpfs` Docker volume): a sparse file counts what it holds (but files that read as more than the
limit are `output_too_large`, never streamed in full), a file deleted but still open counts until
it is closed, and nothing is written on the host's disk while the run goes on. A small holder
container (the same image, `sleep infinity`, no network, read-only; one for several runs, see
harness.runner.output_volumes) keeps the volume mounted after the algorithm exits; only the
contract's files are then copied out, through a streamed tar archive, into the host's output
folder; everything else is listed, never copied. The archive's own count says how full /output
was; only when it is within a page or a file of the limit, or the run failed, is the file system
itself asked (`stat -f` in the holder). The volume's pages count in the run's memory. Where the
daemon cannot make such a volume (or the image has no `sleep`), `/output` is a host folder watched
every 0.25 s instead (noted in the run's details as `output_limit = "polled"`).
"""

from __future__ import annotations

import atexit
import math
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from harness.acceptance import (
    ArchiveTooLong,
    archive_bound,
    archive_usage,
    copy_out,
    folder_copy,
    open_folder_copy,
)
from harness.contracts import Launch, contract_of
from harness.contracts.grand_challenge import PASSWD_BYTES, RunAs, platform_user, refused_at_upload
from harness.fstree import pack_folder
from harness.monitor import RunMonitor
from harness.runner.base import (
    RunOutcome,
    RunRequest,
    RunStatus,
    Verdict,
    classify,
    gets_gpu,
    gpu_refusal,
    passed_limit,
    tail_text,
)
from harness.runner.output_volumes import Lease, OutputVolumes, remove

POLL_S = 0.05  # the local runner's check of its process
OUTPUT_POLL_S = 0.25  # the watched host folder's check interval (the fallback /output)
LOG_LIMIT_BYTES = 64 * 1024
SCRATCH_PATH = "/workdir"  # where the holder mounts FLARE's writable WORKDIR volume
SEED_BYTES = 4 * 1024**3  # the most of an image's WORKDIR copied into FLARE's writable WORKDIR (besides the output limit)
# A container runs as the invoking user (MedPerf's choice) or, when harness runs as root, as this
# unprivileged id, which owns nothing on the host.
SANDBOX_UID = 10001


def sandbox_user() -> tuple[int, int]:
    uid, gid = os.getuid(), os.getgid()
    return (uid, gid) if uid != 0 else (SANDBOX_UID, SANDBOX_UID)


class ImageFacts(NamedTuple):
    """What an image's config says about how it starts."""

    user: str  # its USER ("" when none)
    workdir: str  # its WORKDIR ("" when none)
    home: str | None = None  # the HOME its ENV sets (None when it sets none)


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
    for volume in client.volumes.list(filters={"label": f"harness.results={owner}"}):
        try:
            volume.remove(force=True)
        except docker.errors.APIError:
            continue
    return removed


def launch_of(spec) -> Launch:  # type: ignore[no-untyped-def]
    """How `spec`'s container starts under its contract (harness.contracts)."""
    return contract_of(spec.contract).launch(spec.options, probabilities=spec.writes_probabilities)


class DockerRunner:
    name = "docker"

    def __init__(self, client=None, *, gpu_ids: tuple[str, ...] = (), log_limit_bytes: int = LOG_LIMIT_BYTES,  # type: ignore[no-untyped-def]
                 output_fs: bool = True) -> None:
        from harness.build import docker_client

        self.client = client or docker_client()
        self.gpu_ids = gpu_ids
        self.log_limit_bytes = log_limit_bytes
        self.output_fs = output_fs  # False: /output is a watched host folder (the fallback)
        self.volumes = OutputVolumes(self.client)
        self._facts: dict[str, ImageFacts] = {}
        self._users: dict[str, RunAs] = {}  # image -> grand-challenge's user and HOME for it
        self._seeds: dict[tuple[str, str], _Seed] = {}  # (image, WORKDIR) -> its contents, for FLARE's scratch

    def image_facts(self, image: str | None) -> ImageFacts:
        """The image's USER and WORKDIR (read once per image id)."""
        if not image:
            return ImageFacts("", "")
        if image not in self._facts:
            config = self.client.images.get(image).attrs.get("Config") or {}
            homes = [str(e)[5:] for e in config.get("Env") or [] if str(e).startswith("HOME=")]
            self._facts[image] = ImageFacts(str(config.get("User") or ""), str(config.get("WorkingDir") or ""),
                                            homes[-1] if homes else None)
        return self._facts[image]

    def run_as(self, request: RunRequest) -> RunAs:
        """grand-challenge's user and HOME for the request's image (`platform_user`; its /etc/passwd
        read once per image from a created, never started container)."""
        image = request.image or ""
        if image not in self._users:
            facts = self.image_facts(image)
            passwd = None if refused_at_upload(facts.user.strip()) else self._passwd(request)
            self._users[image] = platform_user(facts.user, passwd=passwd, env_home=facts.home)
        return self._users[image]

    def _passwd(self, request: RunRequest) -> str | None:
        """The image's /etc/passwd (its first PASSWD_BYTES), or None where it has no such regular file
        (the daemon's other failures are raised: the run is then `runner_error`)."""
        import docker

        from harness.acceptance import image_file

        source = self.client.containers.create(image=request.image, entrypoint=["true"], command=[], network_mode="none",
                                               labels={"harness.results": request.owner, "harness.role": "passwd"})
        try:
            bits, _ = source.get_archive("/etc/passwd")
            try:
                data = image_file(bits, limit=PASSWD_BYTES)
            finally:
                bits.close()
            return data.decode("utf-8", "replace") if data is not None else None
        except docker.errors.NotFound:
            return None
        finally:
            remove(source)

    def container_kwargs(self, request: RunRequest, *, output_volume: str | None = None,
                         input_volume: str | None = None, workdir_volume: str | None = None) -> dict[str, object]:
        from docker.types import DeviceRequest, LogConfig, Mount

        res = request.spec.resources
        contract = launch_of(request.spec)
        output = ({output_volume: {"bind": contract.output_path, "mode": "rw"}} if output_volume is not None
                  else {str(request.output_dir.resolve()): {"bind": contract.output_path, "mode": "rw"}})
        uid, gid = sandbox_user()
        kwargs: dict[str, object] = {
            "image": request.image,
            "name": f"harness-{request.spec.name}-{request.case_id}-{uuid.uuid4().hex[:8]}"[:128],
            "detach": True,
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={res.tmp_bytes},mode=1777"},
            "volumes": {(input_volume or str(request.input_dir.resolve())): {
                "bind": contract.input_path, "mode": "rw" if input_volume is not None else "ro"}, **output},
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
            "environment": {**dict(contract.environment), "HARNESS_CASE": request.case_id, "HOME": "/tmp"},
        }
        if contract.mounts:  # read-only extras: a model folder, a parameters file; no host: an empty folder
            kwargs["mounts"] = [Mount(target=m.container, source=str(m.host), type="bind", read_only=True)
                                for m in contract.mounts if m.host is not None]
            for m in contract.mounts:
                if m.host is None:
                    kwargs["tmpfs"][m.container] = "ro,nosuid,nodev,size=4k,mode=0755"  # type: ignore[index]
        if contract.entrypoint is not None:
            kwargs["entrypoint"] = list(contract.entrypoint)
        if contract.own_user:
            del kwargs["user"]
        if contract.declared_user and (run_as := self.run_as(request)).user is not None:
            # grand-challenge's: the image's own (non-root) USER, HOME as the platform's shim sets it
            kwargs["user"] = run_as.user
            kwargs["environment"]["HOME"] = run_as.home or "/tmp"  # type: ignore[index]
        if workdir_volume is not None:  # FLARE's writable WORKDIR (the input and output mounts lie inside it)
            kwargs["volumes"][workdir_volume] = {  # type: ignore[index]
                "bind": self.image_facts(request.image).workdir, "mode": "rw"}
        if contract.command is not None:
            kwargs["command"] = list(contract.command)
        if gets_gpu(request.spec, self.gpu_ids):  # the one rule, shared with the local runner and nnU-Net's -device
            kwargs["device_requests"] = [DeviceRequest(device_ids=list(self.gpu_ids), capabilities=[["gpu"]])]
        return kwargs

    def run(self, request: RunRequest, monitor: RunMonitor | None = None) -> RunOutcome:
        import docker

        res = request.spec.resources
        wall0 = time.monotonic()
        started_at = time.time()
        uid, _ = sandbox_user()
        contract = launch_of(request.spec)
        for folder, mode in ((request.input_dir, 0o755),
                             (request.output_dir, 0o777 if uid == SANDBOX_UID or _image_user(contract) else 0o755)):
            folder.chmod(mode)
        refused = gpu_refusal(request.spec, self.gpu_ids, started_at=started_at)
        if refused is not None:
            return refused
        try:
            run_as = self.run_as(request) if contract.declared_user else None
        except docker.errors.APIError as exc:
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=f"docker could not read the image's user: {' '.join(str(exc).split())[:300]}")
        if run_as is not None and run_as.failure:  # the platform's job fails before the algorithm starts
            return RunOutcome(RunStatus.CRASHED, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=run_as.failure)
        lease = self._lease(request) if self.output_fs else "disabled"
        volume, fallback = (lease, "") if isinstance(lease, Lease) else (None, lease)
        created_at = time.time()
        writable: _WritableInputs | None = None
        try:
            workdir = self.image_facts(request.image).workdir.rstrip("/") if contract.writable_workdir else ""
            if contract.input_writable or workdir:  # FLARE's: size- and inode-limited volumes of their own
                writable = self._writable_volumes(request, inputs=contract.input_writable, workdir=workdir)
            container = self.client.containers.create(
                **self.container_kwargs(
                    request, output_volume=volume.volume if volume is not None else None,
                    input_volume=writable.volume.name if writable is not None and writable.volume is not None else None,
                    workdir_volume=writable.scratch.name if writable is not None and writable.scratch is not None else None))
        except SeedError as exc:  # the image's own WORKDIR is past what its writable copy may hold
            self._give_back(volume, 0)
            return RunOutcome(RunStatus.OUTPUT_TOO_LARGE, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=str(exc))
        except docker.errors.APIError as exc:
            self._give_back(volume, 0)
            _remove_inputs(writable)
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=f"docker could not create the container: {' '.join(str(exc).split())[:300]}")
        killed: Verdict | None = None
        held = 0
        closing: _LogsThenRemove | None = None
        try:
            container.start()
            start = time.monotonic()
            if monitor is not None:
                container.reload()
                pid = int(container.attrs["State"].get("Pid") or 0)
                if pid > 0:  # 0: it has already exited; nothing left to sample
                    monitor.attach(pid, started_at=start)
            result: dict[str, Any] | None = None
            used = entries = 0  # the watched host folder's bytes and entries (the fallback /output only)
            while True:  # one blocking wait on the daemon, not a poll: the run's CPU is left alone
                now = time.monotonic()
                step = res.time_limit_s - (now - start)
                if volume is None:  # the fallback: a host folder, watched every OUTPUT_POLL_S
                    step = min(step, OUTPUT_POLL_S)
                if step > 0 and (result := _wait_for_exit(container, step)) is not None:
                    break
                if volume is None:
                    used, entries = directory_usage(request.output_dir, stop_at_entries=res.output_files)
                killed = passed_limit(res, elapsed_s=time.monotonic() - start, output_bytes=used, output_entries=entries)
                if killed is not None:
                    if killed.status is RunStatus.TIMEOUT:
                        container.reload()
                        if container.status in ("exited", "dead"):  # it ended by itself, at the limit
                            killed = None
                            break
                    container.kill()
                    break
            if monitor is not None:
                monitor.stop()
            if result is None:  # killed, or it exited at the limit: the daemon's exit status
                result = container.wait(timeout=30)
            container.reload()
            state = container.attrs["State"]
            exit_code = int(result.get("StatusCode", state.get("ExitCode", -1)))
            started, finished = _docker_times(state)
            elapsed = finished - started if started is not None and finished is not None else time.monotonic() - start
            details: dict[str, object] = {}
            if run_as is not None and run_as.note:
                details["image_user"] = run_as.note
            if started is not None:
                details["startup_s"] = max(0.0, started - created_at)  # create + runtime set-up, before the entry point
            if volume is None and killed is None:  # what the watched folder holds, once it ended
                used, entries = directory_usage(request.output_dir, stop_at_entries=res.output_files)
            status, message = classify(res, exit_code=exit_code, killed=killed, oom_killed=bool(state.get("OOMKilled")),
                                       output_bytes=used, output_entries=entries)
            closing = _LogsThenRemove(container)  # another container than the copy-out's: the daemon does both at once
            if volume is not None:
                copied = None
                if status is RunStatus.OK:
                    bits, _ = volume.holder.get_archive(volume.path)
                    bound = archive_bound(res.output_bytes, res.output_files)
                    try:
                        copied = copy_out(bits, request.output_dir, request.contract, bound=bound)
                    except ArchiveTooLong:  # a sparse file: it holds nothing, yet would stream in full
                        status = RunStatus.OUTPUT_TOO_LARGE
                        message = (f"/output's files read as more than {bound / 1e6:.0f} MB (its limit of "
                                   f"{res.output_bytes / 1e6:.0f} MB and the archive's headers; a sparse file?); "
                                   "not copied")
                    finally:
                        bits.close()
                # The archive's count says whether /output is within a page or a file of its limit;
                # only then (or when the run failed) is the file system asked (an exec in the holder).
                if copied is not None and copied.held + 4096 < res.output_bytes and copied.entries < res.output_files:
                    full, held = "", copied.held
                else:
                    full, held = _output_full(volume, res)
                if full and status in (RunStatus.OK, RunStatus.CRASHED):  # a crash on a full /output is the limit's
                    status, message = RunStatus.OUTPUT_TOO_LARGE, full
                if writable is not None and status in (RunStatus.OK, RunStatus.CRASHED):  # a full writable space too
                    status, message = _inputs_full(writable, contract.input_path, res, status, message)
                if status is RunStatus.OK and copied is not None:
                    if copied.others:
                        details["not_kept"] = copied.others
                    if started is not None and not math.isnan(copied.first):
                        details["first_output_s"] = max(0.0, copied.first - started)
            else:
                details["output_limit"] = "polled" + (f" ({fallback})" if fallback else "")
            logs = closing.result()
            return RunOutcome(status, exit_code, elapsed, time.monotonic() - wall0, started_at, time.time(),
                              log_tail=tail_text(logs, self.log_limit_bytes), message=message, details=details)
        except docker.errors.APIError as exc:
            return RunOutcome(RunStatus.RUNNER_ERROR, None, 0.0, time.monotonic() - wall0, started_at, time.time(),
                              message=f"docker failed during the run: {' '.join(str(exc).split())[:300]}")
        finally:
            if closing is None:
                remove(container)
            else:
                closing.result()
            self._give_back(volume, held, keep_free=2 * res.memory_bytes)
            _remove_inputs(writable)

    def _writable_volumes(self, request: RunRequest, *, inputs: bool, workdir: str) -> _WritableInputs:
        """FLARE's writable space, where its platform gives a writable container file system: fresh
        tmpfs volumes, each bounded in bytes and inodes, kept mounted by a holder (the image's own
        `sleep`, sandboxed), as a tmpfs volume is emptied when nothing mounts it:
        - with `inputs`, the inputs (/workspace/inputs): a copy of the staged case, bounded as
          /output is (the case's files plus the run's output bytes and files);
        - with a `workdir` (the image's WORKDIR, not /), a scratch space there seeded with the
          image's own WORKDIR contents (a tmpfs volume does not copy them up), bounded by those
          contents plus the run's output bytes and files; the input and output mounts lie inside it."""
        res = request.spec.resources
        labels = {"harness.results": request.owner, "harness.pid": f"{os.getpid()}@{socket.gethostname()}"}
        seed = self._seed(request, workdir) if workdir and workdir != "/" else None

        def tmpfs(prefix: str, size: int, inodes: int) -> Any:
            return self.client.volumes.create(
                name=f"harness-{prefix}-{uuid.uuid4().hex[:16]}", driver="local", labels=labels,
                driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"size={size},nr_inodes={inodes},mode=1777"})

        volume = scratch = holder = None
        staged = _Seed(Path(), 0, 0)
        try:
            mounts: dict[str, dict[str, str]] = {}
            if inputs:
                files = list(request.input_dir.rglob("*"))
                staged = _Seed(Path(), sum(-(-p.stat().st_size // 4096) * 4096 for p in files if p.is_file()), len(files))
                volume = tmpfs("input", staged.held + res.output_bytes, staged.entries + res.output_files + 1)
                mounts[volume.name] = {"bind": "/inputs", "mode": "rw"}
            if seed is not None:
                # room for the mount points of the inputs and outputs, which the runtime makes in it
                scratch = tmpfs("workdir", seed.held + res.output_bytes, seed.entries + res.output_files + 4)
                mounts[scratch.name] = {"bind": SCRATCH_PATH, "mode": "rw"}
            uid, gid = sandbox_user()
            holder = self.client.containers.create(
                image=request.image, entrypoint=["sleep", "infinity"], command=[], detach=True, network_mode="none",
                read_only=True, user=f"{uid}:{gid}", cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=8,
                mem_limit=64 * 1024**2, cpu_shares=2, labels={**labels, "harness.role": "input-holder"},
                volumes=mounts)
            holder.start()
            if volume is not None:
                holder.put_archive("/inputs", pack_folder(request.input_dir))
            if seed is not None and seed.entries:
                with open_folder_copy(seed.path) as contents:
                    holder.put_archive(SCRATCH_PATH, contents)
        except Exception:
            remove(holder, volume, scratch)
            raise
        return _WritableInputs(volume, holder, scratch, seed, workdir, staged)

    def _seed(self, request: RunRequest, workdir: str) -> _Seed:
        """The image's WORKDIR contents as a tar of the paths inside it (once per image and run of
        harness, on the host's temporary disk), read from a created, never started container."""
        key = (request.image or "", workdir)
        if key in self._seeds:
            return self._seeds[key]
        limit = request.spec.resources.output_bytes + SEED_BYTES
        source = self.client.containers.create(image=request.image, entrypoint=["true"], command=[], network_mode="none",
                                               labels={"harness.results": request.owner, "harness.role": "seed"})
        try:
            bits, _ = source.get_archive(workdir)
            copy = folder_copy(bits, bound=limit)
        except ArchiveTooLong:
            raise SeedError(f"the image's WORKDIR {workdir} holds more than {limit / 1e6:.0f} MB; keep the model "
                            "elsewhere in the image (FLARE's writable WORKDIR is a copy in memory)") from None
        finally:
            remove(source)
        atexit.register(copy.path.unlink, missing_ok=True)  # close() removes it first, where it is called
        self._seeds[key] = _Seed(copy.path, copy.held, copy.entries)
        return self._seeds[key]

    def _lease(self, request: RunRequest) -> Lease | str:
        """A fresh size- and inode-limited tmpfs volume for the run's /output, or why there is none."""
        res = request.spec.resources
        uid, gid = sandbox_user()
        return self.volumes.take(image=request.image or "", owner=request.owner, uid=uid, gid=gid,
                                 mode="0777" if _image_user(launch_of(request.spec)) else "0700",
                                 size=res.output_bytes, files=res.output_files)

    def _give_back(self, volume: Lease | None, held: int, *, keep_free: int = 0) -> None:
        if volume is not None:
            self.volumes.give_back(volume, held, keep_free=keep_free)

    def close(self) -> None:
        """Retire this runner's output holder, if one is kept, and its copies of images' WORKDIRs."""
        self.volumes.close()
        for seed in self._seeds.values():
            seed.path.unlink(missing_ok=True)
        self._seeds.clear()


class SeedError(Exception):
    """An image's WORKDIR could not be copied for FLARE's writable WORKDIR."""


class _Seed(NamedTuple):
    path: Path  # a tar of the WORKDIR's contents, names relative to it
    held: int  # its regular files' bytes, rounded up to pages
    entries: int


class _WritableInputs(NamedTuple):
    volume: Any  # the writable inputs (None: read-only inputs)
    holder: Any
    scratch: Any = None  # the WORKDIR's volume (None: no writable WORKDIR)
    seed: _Seed | None = None
    workdir: str = ""
    staged: _Seed | None = None  # the staged case's bytes (in pages) and entries, in the inputs' volume


def _inputs_full(writable: _WritableInputs, path: str, res: Any, status: RunStatus,
                 message: str) -> tuple[RunStatus, str]:
    """OUTPUT_TOO_LARGE when a run ended with its writable inputs or its writable WORKDIR full (as
    /output: a write past the cap fails, and a tool that ignores the failure leaves a truncated
    file), else the status as it was. The file systems themselves are asked (one `stat -f` in the
    holder); where the image has no `stat`, a crashed run's volumes are counted from their archives."""
    empty = _Seed(Path(), 0, 0)
    spaces = [(volume, inside, shown, base) for volume, inside, shown, base in (
        (writable.volume, "/inputs", path, writable.staged or empty),
        (writable.scratch, SCRATCH_PATH, writable.workdir, writable.seed or empty)) if volume is not None]
    filled: list[bool | None] | None = [_filled_on_host(volume) for volume, _, _, _ in spaces]
    if filled is None or any(full is None for full in filled):
        found = _filled(writable.holder, [inside for _, inside, _, _ in spaces])
        filled = None if found is None else list(found)
    for (_, inside, shown, base), full in zip(spaces, filled or [None] * len(spaces), strict=True):
        if full is None and status is RunStatus.CRASHED:
            try:
                bits, _ = writable.holder.get_archive(inside)
                held, entries = archive_usage(bits, bound=archive_bound(base.held + res.output_bytes * 2,
                                                                        base.entries + res.output_files * 2))
                held, entries = held - base.held, entries - base.entries  # what the run added
                full = held + 64 * 1024 >= res.output_bytes or entries >= res.output_files
            except Exception:  # noqa: BLE001 - nothing to count: the crash stands
                full = None
        if full:
            return RunStatus.OUTPUT_TOO_LARGE, (f"{shown} filled its writable space (the image's own files there plus "
                                                f"the run's output limits: {res.output_bytes / 1e6:.0f} MB, "
                                                f"{res.output_files} files and folders); write less there")
    return status, message


def _filled_on_host(volume: Any) -> bool | None:
    """Whether a tmpfs volume has less than 64 KiB or no inode left, from the host where the daemon
    mounts it (its own file system at its Mountpoint; None where that cannot be seen: another mount
    namespace, a remote or rootless daemon, no permission)."""
    mountpoint = str((volume.attrs or {}).get("Mountpoint") or "")
    try:
        if not mountpoint or not os.path.ismount(mountpoint):
            return None
        st = os.statvfs(mountpoint)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize < 64 * 1024 or st.f_favail == 0


def _filled(holder: Any, paths: list[str]) -> list[bool] | None:
    """For each file system at `paths` in `holder`: whether it has less than 64 KiB or no inode
    left (None: no `stat` in the image)."""
    try:
        done = holder.exec_run(["stat", "-f", "-c", "%f %S %d", *paths])
        values = [int(v) for v in done.output.split()]
        if done.exit_code != 0 or len(values) != 3 * len(paths):
            return None
    except Exception:  # noqa: BLE001 - no `stat` in the image
        return None
    return [values[i] * values[i + 1] < 64 * 1024 or values[i + 2] == 0 for i in range(0, len(values), 3)]


def _remove_inputs(writable: _WritableInputs | None) -> None:
    if writable is not None:
        remove(writable.holder, writable.volume, writable.scratch)


def _image_user(launch: Launch) -> bool:
    """Whether a contract may run the image's own user (whose id harness does not know beforehand)."""
    return launch.own_user or launch.declared_user


class _LogsThenRemove:
    """An exited run's log tail read and its container removed in a thread, beside the copy-out of
    its /output from the holder. `result()` waits and gives the log (what could be read of it: a
    log the daemon fails to give is empty, not a lost run)."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.logs = b""
        self.thread = threading.Thread(target=self._run, name="logs-then-remove", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import docker

        try:
            self.logs = bytes(self.container.logs(stdout=True, stderr=True, tail=2000))
        except docker.errors.APIError:
            pass
        finally:
            remove(self.container)

    def result(self) -> bytes:
        self.thread.join()
        return self.logs


def _output_full(volume: Lease, res) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """Why the run's /output reached its limit ("" when it did not), from the file system itself, and
    the bytes it holds."""
    try:
        done = volume.holder.exec_run(["stat", "-f", "-c", "%b %f %S %c %d", volume.path])
        blocks, free, size, inodes, free_inodes = (int(v) for v in done.output.split())
    except Exception:  # noqa: BLE001 - no `stat` in the image: the archive will tell what is there
        return "", 0
    held = (blocks - free) * size
    if free == 0:
        return f"/output reached the limit of {res.output_bytes / 1e6:.0f} MB (its own file system); killed by it", held
    if free_inodes == 0:
        return f"/output reached the limit of {res.output_files} files and folders (its own file system)", held
    return "", held


def _wait_for_exit(container, seconds: float) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    """The daemon's answer (its `StatusCode`) once `container` has exited, or None when it has not
    within `seconds` (one blocking request). Only the request's own read timeout means "not yet";
    a daemon that cannot be reached raises."""
    import requests
    import urllib3

    try:
        return dict(container.wait(timeout=max(0.05, seconds)))
    except requests.exceptions.ReadTimeout:
        return None
    except requests.exceptions.ConnectionError as exc:  # over the unix socket, a read timeout arrives wrapped
        if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
            return None
        raise


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
