"""The GPU proof's allocation algorithm (`benchmarks/gpu_proof.py` runs it through the local runner).

    python allocate.py INPUT_DIR OUTPUT_DIR      # plan.json beside this file

A segmenter that holds known amounts of GPU memory for known times, so the monitor's figures can be
checked against the plan. It reads `plan.json` ({"phases": [{"name", "alloc_mib", "hold_s"}, ...]})
beside itself, starts CUDA with PyTorch (or CuPy where torch does not import or sees no GPU), runs
one fill kernel on a small buffer and frees it (the context and the lazily loaded kernel are then
in place), then for each phase grows its buffers to `alloc_mib` MiB (each filled, so the memory is
really there; a phase of 0 frees everything back to the driver) and holds them `hold_s` seconds.

It logs one line `gpu-proof-timeline {json}`: the allocator, the device's UUID, the context's
memory (the card's used memory after the warm-up minus before CUDA started, from NVML's card-level
reading: not the per-process list the monitor reads), and per phase its `time.monotonic()` start
and end (the same clock as the harness's sampler) with the card's and its own per-process memory
as NVML gave them then. It writes an all-background label map, so the run is `ok`.
Exit status 0; 2 with one line when no GPU or no allocator is usable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
IMAGE_SUFFIX = "_0000.nii.gz"


class Allocator:
    """PyTorch or CuPy: `grow(mib)` adds one filled buffer of `mib` MiB; `free()` gives all back."""

    def __init__(self) -> None:
        self.buffers: list[Any] = []
        try:
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("torch sees no GPU")
            self.name, self.lib = f"torch {torch.__version__}", torch
            torch.cuda.init()
            self.uuid = str(torch.cuda.get_device_properties(0).uuid)
        except Exception as torch_error:  # noqa: BLE001 - no torch, or no GPU for it: CuPy
            try:
                import cupy

                cupy.cuda.runtime.getDeviceCount()
                self.name, self.lib = f"cupy {cupy.__version__}", cupy
                raw = cupy.cuda.runtime.getDeviceProperties(0)["uuid"]
                hexed = raw.hex() if isinstance(raw, bytes) else str(raw)
                self.uuid = f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:32]}"
            except Exception as cupy_error:  # noqa: BLE001
                raise SystemExit(f"error: no GPU allocator: torch ({torch_error}); cupy ({cupy_error})") from None

    def grow(self, mib: int) -> None:
        if self.name.startswith("torch"):
            self.buffers.append(self.lib.ones(mib * MIB, dtype=self.lib.uint8, device="cuda"))
            self.lib.cuda.synchronize()
        else:
            self.buffers.append(self.lib.ones(mib * MIB, dtype=self.lib.uint8))
            self.lib.cuda.runtime.deviceSynchronize()

    def free(self) -> None:
        self.buffers.clear()
        if self.name.startswith("torch"):
            self.lib.cuda.synchronize()
            self.lib.cuda.empty_cache()
        else:
            self.lib.cuda.runtime.deviceSynchronize()
            self.lib.get_default_memory_pool().free_all_blocks()


class Nvml:
    """The card's used memory and this process's own (NVML), for the timeline; NaN where unknown."""

    def __init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml: Any = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no NVML: the proof says the context is unknown
            self.nvml, self.handles = None, []
        self.handle: Any = None

    def card_used(self) -> list[float]:
        return [self.nvml.nvmlDeviceGetMemoryInfo(h).used / MIB for h in self.handles] if self.nvml else []

    def pick(self, uuid: str) -> int | None:
        """The NVML index of the device CUDA calls 0 (by UUID; the only one, where NVML sees one), or None."""
        def digits(text: str) -> str:
            return "".join(c for c in text.lower().removeprefix("gpu-") if c in "0123456789abcdef")

        for index, handle in enumerate(self.handles):
            text = self.nvml.nvmlDeviceGetUUID(handle)
            if digits(text.decode() if isinstance(text, bytes) else str(text)) == digits(uuid):
                self.handle = handle
                return index
        if len(self.handles) == 1:
            self.handle = self.handles[0]
            return 0
        return None

    def own(self) -> float:
        if self.handle is None:
            return float("nan")
        for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if proc.pid == os.getpid() and getattr(proc, "usedGpuMemory", None) is not None:
                return proc.usedGpuMemory / MIB
        return float("nan")

    def card(self) -> float:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / MIB if self.handle is not None else float("nan")


def write_background(input_dir: Path, output_dir: Path) -> str:
    """An all-background uint8 label map on the input's grid (the contract's output)."""
    import nibabel as nib
    import numpy as np

    image = next(p for p in sorted(input_dir.iterdir()) if p.name.endswith(IMAGE_SUFFIX))
    case = image.name[: -len(IMAGE_SUFFIX)]
    img: Any = nib.load(image)
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    out = nib.Nifti1Image(np.zeros(img.shape[:3], np.uint8), img.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)
    nib.save(out, output_dir / f"{case}.nii.gz")
    return case


def main(argv: list[str]) -> int:
    input_dir, output_dir = Path(argv[1]), Path(argv[2])
    plan = json.loads((Path(__file__).resolve().parent / "plan.json").read_text())
    nvml = Nvml()
    before = nvml.card_used()  # before this process has a CUDA context
    try:
        gpu = Allocator()
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    gpu.grow(1)  # the fill kernel loads lazily: load it now, outside the plan
    gpu.free()
    index = nvml.pick(gpu.uuid)
    context_mib = nvml.card() - before[index] if index is not None else float("nan")
    timeline: dict[str, Any] = {"allocator": gpu.name, "uuid": gpu.uuid, "nvml_index": index,
                                "context_mib": context_mib, "phases": []}
    held = 0
    for phase in plan["phases"]:
        target = int(phase["alloc_mib"])
        if target == 0:
            gpu.free()
        elif target > held:
            gpu.grow(target - held)
        held = target
        start = time.monotonic()
        card, own = nvml.card(), nvml.own()
        time.sleep(float(phase["hold_s"]))
        timeline["phases"].append({"name": phase["name"], "alloc_mib": target, "start_s": start, "end_s": time.monotonic(),
                                   "card_used_mib": card, "own_mib": own})
    gpu.free()
    case = write_background(input_dir, output_dir)
    print("gpu-proof-timeline " + json.dumps(timeline), flush=True)
    held_mib = ", ".join(f"{p['alloc_mib']} MiB" for p in plan["phases"])
    print(f"{case}: held {held_mib} with {gpu.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
