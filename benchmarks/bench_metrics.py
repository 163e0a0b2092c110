"""Seconds per full-size case: harness (DSC + NSD + HD95, 13 organs) versus the FLARE22 script's
way with DeepMind's surface-distance package (per organ on the full volume), in the same run.

Two kinds of prediction, each on the same cases: `perturbed` (`harness data perturb`'s realistic
errors: shifted, eroded, leaking organs) and `near` (the ground truth moved by one voxel: every
boundary one voxel off, the near-perfect submission). Then a size sweep: the first case resampled
(nearest neighbour, same anatomy and extent) to 128x128x64 ... 512x512x300, perturbed, both sides
timed at each size, and the time exponent of each (slope of log time against log voxels).

Goal (issue 2): at least 8x faster on a 2-core machine, NSD differences <= 1e-12.

    python benchmarks/bench_metrics.py [--cases 2] [--repeat 3] [--no-sweep]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np

from harness.data.perturb import perturb_labels
from harness.data.synth import generate_case
from harness.metrics.case import score_case
from harness.profiles import load_profile

for _alias, _value in (("Inf", np.inf), ("NaN", np.nan)):  # surface-distance 0.1 needs these
    if not hasattr(np, _alias):
        setattr(np, _alias, _value)
import surface_distance as sd  # noqa: E402 -- needs the aliases above


def flare_script_nsd(gt: np.ndarray, seg: np.ndarray, spacing: tuple[float, ...], profile) -> dict[str, float]:
    """The official FLARE22 loop (DSC, then NSD on the full volume per organ), unrounded."""
    nsd: dict[str, float] = {}
    for organ in profile.organs:
        i = organ.label
        if np.sum(gt == i) == 0 and np.sum(seg == i) == 0:
            nsd[organ.name] = 1.0
            continue
        if np.sum(gt == i) == 0:
            nsd[organ.name] = 0.0
            continue
        if organ.zrange_only:
            z = np.where(gt == i)[2]
            gt_i, seg_i = gt[:, :, z.min() : z.max()] == i, seg[:, :, z.min() : z.max()] == i
        else:
            gt_i, seg_i = gt == i, seg == i
        dsc = sd.compute_dice_coefficient(gt_i, seg_i)
        if dsc < 0.2:
            nsd[organ.name] = 0.0
        else:
            dists = sd.compute_surface_distances(gt_i, seg_i, spacing)
            nsd[organ.name] = sd.compute_surface_dice_at_tolerance(dists, organ.tolerance_mm)
    return nsd


def _prediction(kind: str, gt: np.ndarray, spacing: tuple[float, ...], index: int) -> np.ndarray:
    if kind == "perturbed":
        return perturb_labels(gt, rng=np.random.default_rng([7, index]), spacing_mm=spacing)
    return np.roll(gt, 1, axis=0)  # near: every boundary one voxel off


def _time_both(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], profile, *, repeat: int,
               threads: int) -> tuple[float, float, float]:
    """(harness s: median of `repeat`, surface-distance s: one run, largest |NSD difference|)."""
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        scores = score_case(gt, pred, spacing, profile, threads=threads)
        timings.append(time.perf_counter() - start)
    start = time.perf_counter()
    ref = flare_script_nsd(gt, pred, tuple(np.float32(s) for s in spacing), profile)
    ref_s = time.perf_counter() - start
    return statistics.median(timings), ref_s, max(abs(s.nsd - ref[s.organ]) for s in scores)


def _resampled(gt: np.ndarray, spacing: tuple[float, ...], shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[float, ...]]:
    """The label map on another grid over the same extent (nearest neighbour), and its spacing."""
    from scipy import ndimage

    factors = [n / m for n, m in zip(shape, gt.shape, strict=True)]
    out = ndimage.zoom(gt, factors, order=0, grid_mode=True, mode="grid-constant")
    # The spacing as a NIfTI header holds it (float32), as both sides would read it from the file.
    return np.asfortranarray(out), tuple(float(np.float32(float(s) / f)) for s, f in zip(spacing, factors, strict=True))


SWEEP = ((128, 128, 64), (256, 256, 128), (384, 384, 200), (512, 512, 300))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2, help="full-size phantom cases (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="harness timings per case, median kept")
    parser.add_argument("--no-sweep", action="store_true", help="leave out the size sweep")
    args = parser.parse_args()
    profile = dataclasses.replace(load_profile("flare22"), round_decimals=None)
    threads = os.cpu_count() or 1

    cases = [generate_case(seed=2022, index=index, size="full") for index in range(args.cases)]
    worst_diff = 0.0
    summary = {}
    for kind in ("perturbed", "near"):
        ours_s, ref_s = [], []
        for index, case in enumerate(cases):
            gt, spacing = case.label, case.spacing_mm
            ours, ref, diff = _time_both(gt, _prediction(kind, gt, spacing, index), spacing, profile,
                                         repeat=args.repeat, threads=threads)
            ours_s.append(ours)
            ref_s.append(ref)
            worst_diff = max(worst_diff, diff)
            print(f"{kind:<9} case {index}: shape {gt.shape}, spacing {tuple(round(s, 4) for s in spacing)} mm: "
                  f"harness {ours:.3f} s, surface-distance {ref:.3f} s, max |NSD diff| {diff:.1e}", flush=True)
        summary[kind] = (statistics.mean(ours_s), statistics.mean(ref_s))

    print()
    print(f"{'predictions':<12} {'harness s/case':>15} {'surface-distance s/case':>24} {'speed-up':>9}")
    for kind, (ours, ref) in summary.items():
        print(f"{kind:<12} {ours:15.3f} {ref:24.3f} {ref / ours:8.1f}x")
    print(f"harness: DSC+NSD+HD95, {threads} threads; surface-distance: NSD per organ on the full volume (goal >= 8x)")

    if not args.no_sweep:
        print()
        print("size sweep (case 0 resampled, perturbed):")
        print(f"{'shape':<16} {'voxels':>11} {'harness s':>10} {'surface-distance s':>19} {'speed-up':>9} {'max |NSD diff|':>15}")
        rows = []
        for shape in SWEEP:
            gt, spacing = _resampled(cases[0].label, cases[0].spacing_mm, shape)
            ours, ref, diff = _time_both(gt, _prediction("perturbed", gt, spacing, 0), spacing, profile,
                                         repeat=args.repeat, threads=threads)
            worst_diff = max(worst_diff, diff)
            rows.append((gt.size, ours, ref))
            print(f"{'x'.join(map(str, shape)):<16} {gt.size:11,d} {ours:10.3f} {ref:19.3f} {ref / ours:8.1f}x {diff:15.1e}",
                  flush=True)
        voxels = np.log([r[0] for r in rows])
        ours_exp = np.polyfit(voxels, np.log([r[1] for r in rows]), 1)[0]
        ref_exp = np.polyfit(voxels, np.log([r[2] for r in rows]), 1)[0]
        last = np.polyfit(voxels[-3:], np.log([r[1] for r in rows[-3:]]), 1)[0]
        print(f"time exponent (time ~ voxels^k, least squares over the sweep): harness k = {ours_exp:.2f} "
              f"(largest three sizes {last:.2f}), surface-distance k = {ref_exp:.2f}")
    print(f"largest NSD difference: {worst_diff:.1e} (goal <= 1e-12)")


if __name__ == "__main__":
    main()
