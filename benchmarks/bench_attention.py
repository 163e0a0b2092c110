"""Seconds and peak memory per full-size case (3 models x 9 organs) of the attention annotator's
implementation (organ crops, float32; algorithms/attention-annotator/attention.py) against a
straightforward whole-volume float64 NumPy implementation of the same definition, in the same run.

Goal (issue 7): at least 5x faster, at most a quarter of the memory, identical outputs.

Each implementation runs in its own fresh process, twice: once for the time and the peak RSS
(`resource.getrusage`), once under `tracemalloc` for the peak of traced (NumPy) allocations, so
the two implementations and the two measurements do not contaminate each other. Both read the
same uint8 probability volumes from .npy files, one organ at a time, and hand each organ's result
to a cheap sink (its time is left out of both figures). `--end-to-end` also times annotate.py on
NIfTI inputs, as the container runs it.

    python benchmarks/bench_attention.py [--seed 2022] [--index 0] [--end-to-end]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
ALGORITHM = REPO / "algorithms" / "attention-annotator"
ORGANS = {"liver": 1, "right_kidney": 2, "spleen": 3, "pancreas": 4, "aorta": 5, "inferior_vena_cava": 6,
          "gallbladder": 9, "stomach": 11, "left_kidney": 13}
# Three synthetic segmenters: (blur sigma in mm, shift in voxels).
MODELS = {"model_a": (1.5, (0, 0, 0)), "model_b": (2.0, (2, 0, 0)), "model_c": (2.5, (0, 2, 0))}
CUBE = np.ones((3, 3, 3), bool)
MB = 1024 * 1024


# --- the straightforward reference: whole volume, float64, scipy's binary morphology ---------------
def reference_annotate(load: Callable[[str], Iterator[NDArray[Any]]], organs: dict[str, int], shape: tuple[int, ...],
                       sink: Callable[[str, NDArray[np.bool_], NDArray[np.float64], NDArray[np.uint8], dict[str, Any]], None], *,
                       std_threshold: float = 0.1, entropy_threshold: float = 0.05, erosions: int = 2, dilations: int = 2,
                       pseudo_threshold: float = 0.5) -> NDArray[np.uint8]:
    """The attention map as the definition reads, on whole volumes in float64. Returns the pseudo
    label map; hands each organ's attention map, heat map (float and uint8) and counts to `sink`."""

    def probabilities(organ: str) -> NDArray[np.float64]:
        return np.stack([np.asarray(a, np.float64) / 255.0 for a in load(organ)])

    pseudo: dict[str, NDArray[np.bool_]] = {}
    best = np.zeros(shape)
    label = np.zeros(shape, np.uint8)
    for organ, value in organs.items():
        mean = probabilities(organ).mean(axis=0)
        pseudo[organ] = mean > pseudo_threshold
        wins = pseudo[organ] & (mean > best)
        best[wins] = mean[wins]
        label[wins] = value
    claims = np.sum([m.astype(np.uint8) for m in pseudo.values()], axis=0)
    for organ in organs:
        p = probabilities(organ)
        std = p.std(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = np.where(p > 0, -p * np.log(p), 0.0).mean(axis=0)
        del p
        overlap = pseudo[organ] & (claims >= 2)
        kept = []
        for mask in (std > std_threshold, entropy > entropy_threshold):
            for _ in range(erosions):
                mask = ndimage.binary_erosion(mask, structure=CUBE)
            for _ in range(dilations):
                mask = ndimage.binary_dilation(mask, structure=CUBE)
            kept.append(mask)
        attention = kept[0] | kept[1] | overlap
        total = std + entropy + overlap
        peak = total.max()
        heat = total / peak if peak > 0 else np.zeros(shape)
        figures = {"attention_voxels": int(attention.sum()), "heat_sum": float(heat.sum()), "inconsistency_voxels": int(kept[0].sum()),
                   "uncertainty_voxels": int(kept[1].sum()), "overlap_voxels": int(overlap.sum())}
        sink(organ, attention, heat, np.rint(heat * 255).astype(np.uint8), figures)
    return label


# --- synthetic inputs ----------------------------------------------------------------------------
def soft_prediction(mask: NDArray[np.bool_], spacing_mm: tuple[float, ...], sigma_mm: float,
                    shift: tuple[int, int, int]) -> NDArray[np.uint8]:
    """uint8 round(255 p) of a blurred, shifted mask, zeroed outside a one-voxel dilation of its
    own hard mask (the AbdomenAtlas-8K models' convention); computed on the mask's box."""
    out = np.zeros(mask.shape, np.uint8)
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        return out
    sigma = tuple(sigma_mm / s for s in spacing_mm)
    margin = [int(np.ceil(4 * s)) + 4 for s in sigma]
    box = tuple(slice(max(int(i.min()) - m, 0), min(int(i.max()) + m + 1, n)) for i, m, n in zip(idx, margin, mask.shape, strict=True))
    p = ndimage.gaussian_filter(np.roll(mask[box].astype(np.float32), shift, axis=(0, 1, 2)), sigma)
    q = np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)
    q[~ndimage.binary_dilation(q >= 128, structure=CUBE)] = 0
    out[box] = q
    return out


def deepest(mask: NDArray[np.bool_], step: int = 4) -> tuple[int, ...]:
    """About the voxel of `mask` farthest from its boundary (a distance map on every `step`-th row)."""
    depth = ndimage.distance_transform_edt(mask[::step, ::step], sampling=(step, step, 1))
    return tuple(int(i) * s for i, s in zip(np.unravel_index(np.argmax(depth), depth.shape), (step, step, 1), strict=True))


def make_inputs(folder: Path, *, seed: int, index: int) -> dict[str, Any]:
    """Write model/organ.npy for a full-size phantom; plant a miss, an island and an overlap."""
    from harness.data.synth import generate_case

    case = generate_case(seed=seed, index=index, size="full")
    label = case.label
    centre = deepest(label == ORGANS["liver"])
    hole = tuple(slice(c - h, c + h + 1) for c, h in zip(centre, (20, 20, 3), strict=True))
    overlap = tuple(slice(c + d - h, c + d + h + 1) for c, d, h in zip(centre, (0, 45, 0), (8, 8, 2), strict=True))
    island = tuple(slice(c - h, c + h + 1) for c, h in zip(deepest(label == 0), (10, 10, 3), strict=True))
    for model, (sigma_mm, shift) in MODELS.items():
        for organ, value in ORGANS.items():
            q = soft_prediction(label == value, case.spacing_mm, sigma_mm, shift)
            if model == "model_a" and organ == "liver":
                q[hole] = 0
            if model == "model_b" and organ == "spleen":
                q[island] = 220
            if organ == "right_kidney":
                q[overlap] = 200
            (folder / model).mkdir(parents=True, exist_ok=True)
            np.save(folder / model / f"{organ}.npy", q)
    np.save(folder / "affine.npy", case.affine)
    return {"case": case.case_id, "shape": list(label.shape), "spacing_mm": list(case.spacing_mm)}


# --- workers ------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MiB. Not ru_maxrss: on Linux that also counts
    the parent's memory at the fork, which holds the synthetic case here."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


def load_attention_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("attention_annotator_attention", ALGORITHM / "attention.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.dont_write_bytecode = True  # no __pycache__ in the algorithm's folder
    spec.loader.exec_module(module)
    return module


def worker(name: str, data: Path, measure: str) -> None:
    """Run one implementation once; print its figures as JSON; save compact outputs (time run)."""
    meta = json.loads((data / "meta.json").read_text())
    shape = tuple(meta["shape"])

    def load(organ: str) -> Iterator[NDArray[np.uint8]]:
        for model in MODELS:
            yield np.load(data / model / f"{organ}.npy")

    saved: dict[str, NDArray[Any]] = {}
    stats: dict[str, Any] = {}
    sink_s = 0.0

    def sink(organ: str, attention: NDArray[np.bool_], heat: NDArray[Any], heat_uint8: NDArray[np.uint8], figures: dict[str, Any]) -> None:
        nonlocal sink_s
        t = time.perf_counter()
        if measure == "time":  # keep the outputs compact: packed bits and the nonzero heat
            nz = np.flatnonzero(heat)
            saved[f"{organ}_attention"] = np.packbits(attention.ravel())
            saved[f"{organ}_heat_index"], saved[f"{organ}_heat"] = nz, heat.ravel()[nz].astype(np.float64)
            saved[f"{organ}_heat_uint8"] = heat_uint8.ravel()[nz]
        stats[organ] = figures
        sink_s += time.perf_counter() - t

    amap = load_attention_module() if name == "annotator" else None
    if measure == "memory":
        tracemalloc.start()
    start = time.perf_counter()
    if amap is not None:
        maps = amap.annotate(load, list(ORGANS.items()), shape)
        label = maps.pseudo_label
        elapsed = time.perf_counter() - start
    else:
        label = reference_annotate(load, ORGANS, shape, sink)
        elapsed = time.perf_counter() - start - sink_s
    # Both peaks are read before the annotator's crops are pasted to full size for the comparison.
    peak_traced = tracemalloc.get_traced_memory()[1] if measure == "memory" else None
    if measure == "memory":
        tracemalloc.stop()
    max_rss_mb = peak_rss_mb()
    if amap is not None:
        for organ, organ_maps in maps.organs.items():
            sink(organ, organ_maps.full(organ_maps.attention, shape), organ_maps.full(organ_maps.heat, shape),
                 organ_maps.full(organ_maps.heat_uint8, shape), organ_maps.stats())
    if measure == "time":
        saved["label"] = label
        np.savez(data / f"out_{name}.npz", **saved)
        (data / f"stats_{name}.json").write_text(json.dumps(stats))
    print(json.dumps({"seconds": elapsed, "peak_traced_mb": None if peak_traced is None else peak_traced / MB, "max_rss_mb": max_rss_mb}))


def run_worker(name: str, data: Path, measure: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", name, "--measure", measure, "--data", str(data)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} ({measure}) failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --- comparison ---------------------------------------------------------------------------------
def compare(data: Path, shape: tuple[int, ...]) -> dict[str, Any]:
    ours, ref = np.load(data / "out_annotator.npz"), np.load(data / "out_reference.npz")
    stats_ours = json.loads((data / "stats_annotator.json").read_text())
    stats_ref = json.loads((data / "stats_reference.json").read_text())
    size = int(np.prod(shape))
    result: dict[str, Any] = {"label_equal": bool(np.array_equal(ours["label"], ref["label"])), "attention_equal": 0,
                              "heat_max_abs_diff": 0.0, "heat_uint8_differing_voxels": 0, "counts_equal": 0}
    for organ in ORGANS:
        result["attention_equal"] += bool(np.array_equal(ours[f"{organ}_attention"], ref[f"{organ}_attention"]))
        heats, heats_uint8 = [], []
        for out in (ours, ref):
            full, full_uint8 = np.zeros(size), np.zeros(size, np.uint8)
            full[out[f"{organ}_heat_index"]] = out[f"{organ}_heat"]
            full_uint8[out[f"{organ}_heat_index"]] = out[f"{organ}_heat_uint8"]
            heats.append(full)
            heats_uint8.append(full_uint8)
        result["heat_max_abs_diff"] = max(result["heat_max_abs_diff"], float(np.abs(heats[0] - heats[1]).max()))
        result["heat_uint8_differing_voxels"] += int(np.count_nonzero(heats_uint8[0] != heats_uint8[1]))
        a, b = stats_ours[organ], stats_ref[organ]
        same_heat = abs(a["heat_sum"] - b["heat_sum"]) <= 1e-4 * max(1, b["heat_sum"])
        result["counts_equal"] += all(a[k] == b[k] for k in a if k != "heat_sum") and same_heat
    result["stats"] = stats_ref
    return result


def end_to_end(data: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """annotate.py on NIfTI inputs, in its own process: wall seconds and the child's peak RSS."""
    import nibabel as nib

    affine = np.load(data / "affine.npy")
    root = data / "nifti"
    input_dir, output_dir = root / "input", root / "output"
    shape = tuple(meta["shape"])
    input_dir.mkdir(parents=True)
    output_dir.mkdir()
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), affine), input_dir / f"{meta['case']}_0000.nii.gz")
    for model in MODELS:
        folder = input_dir / "segmenters" / model / "probabilities"
        folder.mkdir(parents=True)
        for organ in ORGANS:
            nib.save(nib.Nifti1Image(np.load(data / model / f"{organ}.npy"), affine), folder / f"{organ}.nii.gz")
    # annotate.py's main() in a fresh interpreter that reports its own peak resident set at the end.
    code = ("import runpy, sys, time; t = time.perf_counter(); sys.path.insert(0, '.'); rc = 0\n"
            "try:\n    runpy.run_path('annotate.py', run_name='__main__')\nexcept SystemExit as e:\n    rc = e.code\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(rc, time.perf_counter() - t, int(hwm) / 1024)")
    proc = subprocess.run([sys.executable, "-c", code, str(input_dir), str(output_dir)], capture_output=True, text=True, check=False,
                          cwd=ALGORITHM)
    rc, seconds, rss = proc.stdout.split()
    timings = next((line for line in proc.stderr.splitlines() if line.startswith("timings")), "")
    return {"returncode": int(rc), "seconds": float(seconds), "max_rss_mb": float(rss), "log": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--end-to-end", action="store_true", help="also run annotate.py on NIfTI inputs")
    parser.add_argument("--worker", choices=("annotator", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("time", "memory"), default="time", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.measure)
        return

    data = Path(tempfile.mkdtemp(prefix="bench_attention_"))
    try:
        t = time.perf_counter()
        meta = make_inputs(data, seed=args.seed, index=args.index)
        (data / "meta.json").write_text(json.dumps(meta))
        shape = tuple(meta["shape"])
        print(f"case {meta['case']} (seed {args.seed}): {'x'.join(map(str, shape))} voxels @ "
              f"{'x'.join(f'{s:.3g}' for s in meta['spacing_mm'])} mm, {len(MODELS)} models x {len(ORGANS)} organs, "
              f"uint8 inputs ({time.perf_counter() - t:.1f} s to make)", flush=True)
        figures = {}
        for name in ("annotator", "reference"):
            timed = run_worker(name, data, "time")
            traced = run_worker(name, data, "memory")
            figures[name] = {"seconds": timed["seconds"], "max_rss_mb": timed["max_rss_mb"], "peak_traced_mb": traced["peak_traced_mb"]}
            print(f"  {name:<10} {timed['seconds']:8.2f} s   peak traced {traced['peak_traced_mb']:8.1f} MB   "
                  f"max RSS {timed['max_rss_mb']:8.1f} MB", flush=True)
        ours, ref = figures["annotator"], figures["reference"]
        speedup = ref["seconds"] / ours["seconds"]
        traced_ratio = ours["peak_traced_mb"] / ref["peak_traced_mb"]
        rss_ratio = ours["max_rss_mb"] / ref["max_rss_mb"]
        print(f"annotator vs reference: {speedup:.1f}x faster (goal >= 5x: {'met' if speedup >= 5 else 'NOT met'}); "
              f"peak traced memory {traced_ratio:.3f} of the reference's, max RSS {rss_ratio:.3f} "
              f"(goal <= 0.25: {'met' if max(traced_ratio, rss_ratio) <= 0.25 else 'NOT met'})")
        same = compare(data, shape)
        equal = (same["label_equal"] and same["attention_equal"] == len(ORGANS) and same["counts_equal"] == len(ORGANS)
                 and same["heat_uint8_differing_voxels"] == 0)
        print(f"outputs equal: {'yes' if equal else 'NO'} (pseudo label {'equal' if same['label_equal'] else 'DIFFERS'}; "
              f"attention maps equal for {same['attention_equal']}/{len(ORGANS)} organs; counts equal for "
              f"{same['counts_equal']}/{len(ORGANS)}; uint8 heat maps: {same['heat_uint8_differing_voxels']} voxels differ; "
              f"float heat (float32 against float64) max |diff| {same['heat_max_abs_diff']:.2e})")
        total = sum(s["attention_voxels"] for s in same["stats"].values())
        print(f"attention voxels {total}: " + ", ".join(f"{o} {s['attention_voxels']}" for o, s in same["stats"].items()))
        if args.end_to_end:
            e2e = end_to_end(data, meta)
            print(f"annotate.py end to end (NIfTI in and out): exit {e2e['returncode']}, {e2e['seconds']:.2f} s, "
                  f"max RSS {e2e['max_rss_mb']:.1f} MB ({e2e['log']})")
        if not equal:
            raise SystemExit(1)
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
