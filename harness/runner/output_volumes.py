"""The Docker runner's `/output` file systems: tmpfs volumes, kept mounted by a holder container.

A tmpfs volume's files vanish once the last container using it stops, so a run's `/output` must
stay mounted in a second container while its files are copied out. Starting that holder for every
run cost about 0.3 s of the daemon's time per case, most of the harness's overhead over a bare
`docker run --rm`. Inside `keep_holders()` (what `harness run` does on one host) a holder instead
mounts VOLUMES_PER_HOLDER fresh volumes at once, each read-only, and every run takes the next unused
one for its `/output`:
- every run still gets an empty file system of its own, with the exact size and file limits;
- no volume is ever written twice or cleared, so nothing a run leaves can reach a later run (the
  holder's own process, the image's `sleep`, sees the volumes read-only and has no network);
- a holder is retired, with its volumes, once they are used up, once they hold more than
  HELD_BYTES (as the runs' archives and, near a limit, the image's `stat` count them), once the host
  has less memory available than twice the run's memory limit (space reserved past a file's end is
  in no archive, and a hostile image's `stat` could hide it; the kernel's count cannot be bent),
  when a run needs another image or other limits, and when `keep_holders()` ends (also when it ends
  by Ctrl-C or SIGTERM).
Outside `keep_holders()` (a Dask worker, a single run) each run gets a holder of its own, removed
with it. Every holder and volume carries the results folder's label, so a harness killed outright
leaves orphans that the next run on that folder removes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness.safetext import safe_text

VOLUMES_PER_HOLDER = 16
HELD_BYTES = 256 * 1024**2  # the volumes' files stay in memory until their holder is retired

_keeping = 0  # how many keep_holders() blocks are open
_pools: weakref.WeakSet[OutputVolumes] = weakref.WeakSet()
_lock = threading.Lock()


@atexit.register
def _close_all() -> None:  # a safety net: keep_holders() retires them first
    for pool in list(_pools):
        with contextlib.suppress(Exception):  # at exit the daemon may be gone already: the next run removes orphans
            pool.close(force=True)


@contextlib.contextmanager
def keep_holders() -> Iterator[None]:
    """Within this block, runs share holders (see the module's note); at its end every holder is retired."""
    global _keeping
    with _lock:
        _keeping += 1
    try:
        yield
    finally:
        with _lock:
            _keeping -= 1
            pools = list(_pools) if _keeping == 0 else []
        for pool in pools:
            pool.close()


@dataclass
class Lease:
    """One run's `/output`: `volume`, mounted by `holder` at `path` (read-only)."""

    volume: str
    path: str
    _owner: _Holder = field(repr=False)

    @property
    def holder(self) -> Any:
        return self._owner.container


@dataclass(frozen=True)
class _Want:
    """What a run's /output needs: the holder's image, the results folder, the owner and the limits."""

    image: str
    owner: str
    uid: int
    gid: int
    mode: str
    size: int
    files: int


@dataclass
class _Holder:
    key: _Want
    container: Any
    volumes: list[Any]  # docker Volume objects
    taken: int = 0
    held: int = 0
    active: int = 0  # runs that hold a lease on it now: it is removed only once none does
    retired: bool = False


class OutputVolumes:
    """The holders and volumes of one Docker runner. Runs normally go one at a time through it; a
    holder retired while another run still uses one of its volumes is removed when that run ends."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._holder: _Holder | None = None
        self._lock = threading.Lock()
        with _lock:
            _pools.add(self)

    def take(self, *, image: str, owner: str, uid: int, gid: int, mode: str, size: int, files: int) -> Lease | str:
        """A fresh volume for one run, or why there is none (the runner then watches a host folder)."""
        key = _Want(image, owner, uid, gid, mode, size, files)
        with self._lock:
            holder = self._holder
            if holder is not None and (holder.key != key or holder.taken >= len(holder.volumes)
                                       or not _running(holder.container)):
                self._retire()
                holder = None
            if holder is None:
                made = self._make(key, volumes=VOLUMES_PER_HOLDER if _keeping else 1)
                if isinstance(made, str):
                    return made
                holder = self._holder = made
            index = holder.taken
            holder.taken += 1
            holder.active += 1
            return Lease(holder.volumes[index].name, f"/v{index}", holder)

    def give_back(self, lease: Lease, held_bytes: int, *, keep_free: int = 0) -> None:
        """The run is over and its files were copied out: `held_bytes` stay in its volume. The
        holder is retired as well once the host has less than `keep_free` bytes of memory
        available: the kernel's count, which no image can bend."""
        with self._lock:
            holder = lease._owner
            holder.held += max(0, held_bytes)
            holder.active -= 1
            if holder is self._holder and (not _keeping or holder.taken >= len(holder.volumes)
                                           or holder.held > HELD_BYTES
                                           or psutil.virtual_memory().available < keep_free):
                self._retire()
            elif holder.retired:
                _remove_when_idle(holder)

    def close(self, *, force: bool = False) -> None:
        """Retire the holder: now, or (unless `force`) once the runs using it have ended."""
        with self._lock:
            self._retire(force=force)

    def _retire(self, *, force: bool = False) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.retired = True
            _remove_when_idle(holder, force=force)

    def _make(self, key: _Want, *, volumes: int) -> _Holder | str:
        import docker

        labels = {"harness.results": key.owner, "harness.pid": f"{os.getpid()}@{socket.gethostname()}"}
        made: list[Any] = []
        container = None
        try:
            for _ in range(volumes):
                made.append(self.client.volumes.create(
                    name=f"harness-output-{uuid.uuid4().hex[:16]}", driver="local", labels=labels,
                    driver_opts={"type": "tmpfs", "device": "tmpfs",
                                 "o": f"size={key.size},nr_inodes={key.files + 1},uid={key.uid},gid={key.gid},"
                                      f"mode={key.mode}"}))
            why = ""
            for image in (key.image, *_harness_images(self.client)):  # the image's own sleep, else the harness's
                try:
                    container = self.client.containers.create(
                        image=image, entrypoint=["sleep", "infinity"], command=[], detach=True, network_mode="none",
                        read_only=True, user=f"{key.uid}:{key.gid}", cap_drop=["ALL"], security_opt=["no-new-privileges"],
                        pids_limit=8, mem_limit=64 * 1024**2, cpu_shares=2,
                        labels={**labels, "harness.role": "output-holder"},
                        volumes={v.name: {"bind": f"/v{i}", "mode": "ro"} for i, v in enumerate(made)})
                    container.start()
                    if _running(container):
                        return _Holder(key, container, made)
                    why = "the holder container did not stay up (no `sleep` in the image?)"
                except docker.errors.APIError as exc:
                    why = str(exc)
                remove(container)
                container = None
            raise RuntimeError(why)
        except (docker.errors.APIError, RuntimeError) as exc:
            remove(container, *made)
            return safe_text(str(exc), limit=160)


def _harness_images(client: Any) -> list[str]:
    """The harness's own base image(s) on this host (made by `harness images base`): a holder for an
    image without `sleep`, so that its /output is still a bounded file system of its own."""
    from harness.baseimage import BASE_REPOSITORY

    try:
        return [image.id for image in client.images.list(name=BASE_REPOSITORY)][:1]
    except Exception:  # noqa: BLE001 - none: the runner watches a host folder instead
        return []


def _remove_when_idle(holder: _Holder, *, force: bool = False) -> None:
    """Remove a retired holder and its volumes once no run uses them (or at once, with `force`)."""
    if holder.active == 0 or force:
        remove(holder.container, *holder.volumes)


def _running(container: Any) -> bool:
    import docker

    try:
        container.reload()
    except docker.errors.APIError:
        return False
    return bool(container.status == "running")


def remove(*things: Any) -> None:
    """Remove containers (running or not) and volumes, in this order, ignoring what is gone."""
    import docker

    for thing in things:
        if thing is None:
            continue
        try:
            thing.remove(force=True)
        except docker.errors.APIError:
            pass
