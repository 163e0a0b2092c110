"""Facts about the machine that produced a result (recorded with every run for provenance)."""

from __future__ import annotations

import functools
import platform
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class HostInfo:
    host: str
    cpu: str
    gpu: str  # "" when no NVIDIA GPU / NVML is available
    driver: str
    gpu_ids: tuple[str, ...]  # NVML indices of the visible GPUs


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def host_info() -> HostInfo:
    gpu, driver = "", ""
    ids: tuple[str, ...] = ()
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
            gpu = ", ".join(n.decode() if isinstance(n, bytes) else str(n) for n in names)
            raw = pynvml.nvmlSystemGetDriverVersion()
            driver = raw.decode() if isinstance(raw, bytes) else str(raw)
            ids = tuple(str(i) for i in range(count))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no library, no driver, no GPU: all mean "no GPU"
        pass
    import os

    return HostInfo(host=socket.gethostname(), cpu=f"{_cpu_model()} x{os.cpu_count()}", gpu=gpu, driver=driver, gpu_ids=ids)
