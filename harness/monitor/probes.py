"""Probes: what one sample reads. Each returns a dict of named numbers; all are injectable.

- `CgroupProbe`: a container's own CPU time (cumulative, seconds) and resident memory, from its
  cgroup (v1 `cpuacct.usage` / `memory.stat`, or v2 `cpu.stat` / `memory.stat`), and its PIDs.
- `ProcessTreeProbe`: the same for a local process and its descendants, from psutil.
- `NvmlGpuProbe`: GPU memory of the watched processes (NVML's per-process list, matched on PIDs)
  and, beside it, the whole card's used memory minus an idle baseline taken before the run.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

Reading = dict[str, float]
MB = 1024 * 1024  # FLARE's "MB" is the MiB NVML and psutil report in bytes / 2**20


class CgroupProbe:
    """CPU seconds and RSS of one container, read from its cgroup files."""

    def __init__(self, pid: int, *, proc_root: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> None:
        self.cpu_file, self.memory_stat, self.procs_file, self.cpu_unit = _cgroup_files(pid, proc_root, cgroup_root)

    def pids(self) -> set[int]:
        try:
            return {int(x) for x in self.procs_file.read_text().split()}
        except (OSError, ValueError):
            return set()

    def read(self) -> Reading:
        reading: Reading = {}
        text = self.cpu_file.read_text()
        if self.cpu_unit == "ns":  # v1 cpuacct.usage: nanoseconds
            reading["cpu_s"] = int(text) / 1e9
        else:  # v2 cpu.stat: usage_usec
            for line in text.splitlines():
                if line.startswith("usage_usec"):
                    reading["cpu_s"] = int(line.split()[1]) / 1e6
        stat = dict(line.split() for line in self.memory_stat.read_text().splitlines() if line.count(" ") == 1)
        rss = stat.get("total_rss", stat.get("rss", stat.get("anon")))
        if rss is not None:
            reading["rss_mb"] = int(rss) / MB
        return reading


def _cgroup_files(pid: int, proc_root: Path, cgroup_root: Path) -> tuple[Path, Path, Path, str]:
    """The cgroup files of process `pid` (v1 controllers or the v2 unified tree)."""
    lines = (proc_root / str(pid) / "cgroup").read_text().splitlines()
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path.lstrip("/")
    if "cpuacct" in paths and (cgroup_root / "cpuacct" / paths["cpuacct"] / "cpuacct.usage").exists():
        cpu_dir = cgroup_root / "cpuacct" / paths["cpuacct"]
        memory_dir = cgroup_root / "memory" / paths.get("memory", paths["cpuacct"])
        return cpu_dir / "cpuacct.usage", memory_dir / "memory.stat", cpu_dir / "cgroup.procs", "ns"
    unified = cgroup_root / paths.get("", "")
    if (unified / "cpu.stat").exists():
        return unified / "cpu.stat", unified / "memory.stat", unified / "cgroup.procs", "us"
    raise FileNotFoundError(f"no cgroup CPU accounting found for pid {pid} under {cgroup_root}")


class ProcessTreeProbe:
    """CPU seconds and RSS of a local process and all its descendants (psutil)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self._finished_cpu_s: dict[int, float] = {}  # last CPU time seen of descendants that ended

    def _tree(self) -> list[Any]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except self._psutil.Error:
            return []

    def pids(self) -> set[int]:
        return {p.pid for p in self._tree()}

    def read(self) -> Reading:
        cpu_s, rss = 0.0, 0.0
        seen: dict[int, float] = {}
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                seen[proc.pid] = times.user + times.system
                rss += proc.memory_info().rss
            except self._psutil.Error:
                continue
        # A descendant that has exited keeps the CPU time it used (the root's children_* fields
        # count only children it has waited for).
        for pid, value in list(self._finished_cpu_s.items()):
            if pid not in seen:
                cpu_s += value
        self._finished_cpu_s.update(seen)
        cpu_s += sum(seen.values())
        return {"cpu_s": cpu_s, "rss_mb": rss / MB}


class NvmlGpuProbe:
    """GPU memory used by the watched processes, and the card's used memory minus its idle baseline.

    `nvml` is the `pynvml` module or a stand-in with the same functions (tests inject a fake).
    `pids` returns the host PIDs of the watched run at each sample.
    """

    def __init__(self, pids: Callable[[], set[int]], *, device_indices: tuple[int | str, ...] = (0,), nvml: Any = None) -> None:
        if nvml is None:
            nvml = importlib.import_module("pynvml")
        self.nvml = nvml
        self.nvml.nvmlInit()
        self.handles = [device_handle(nvml, d) for d in device_indices]
        self.pids = pids
        self.baseline_mb = self._card_used_mb()
        self.per_process_available = True

    def _card_used_mb(self) -> float:
        return sum(self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles) / MB

    def read(self) -> Reading:
        watched = self.pids()
        own = 0.0
        for handle in self.handles:
            for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in watched:
                    used = getattr(proc, "usedGpuMemory", None)
                    if used is None:  # the driver hides per-process figures (some containers)
                        self.per_process_available = False
                    else:
                        own += used
        return {"gpu_mb": own / MB, "gpu_card_mb": max(0.0, self._card_used_mb() - self.baseline_mb)}

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def device_handle(nvml: Any, device: int | str) -> Any:
    """The NVML handle of a GPU named as CUDA_VISIBLE_DEVICES names it: an index ("1"), a GPU or MIG
    UUID ("GPU-8f6a...", "MIG-..."), or a unique UUID prefix, as Slurm, Kubernetes and MIG set it."""
    text = str(device).strip()
    if text.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(text))
    try:
        return nvml.nvmlDeviceGetHandleByUUID(text)
    except Exception:  # noqa: BLE001 - not a full UUID: a prefix, as CUDA accepts
        matches = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            if (uuid.decode() if isinstance(uuid, bytes) else str(uuid)).startswith(text):
                matches.append(handle)
        if len(matches) != 1:
            raise LookupError(f"CUDA_VISIBLE_DEVICES names {text!r}, which matches {len(matches)} GPUs") from None
        return matches[0]


def gpu_probe_or_none(pids: Callable[[], set[int]], *, device_indices: tuple[int | str, ...], nvml: Any = None) -> NvmlGpuProbe | None:
    """An NVML probe, or None when there is no GPU / no NVML (GPU figures are then 'not measured')."""
    if not device_indices and nvml is None:
        return None
    try:
        return NvmlGpuProbe(pids, device_indices=device_indices or (0,), nvml=nvml)
    except Exception:  # noqa: BLE001 - no driver, no library, no device
        return None


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
