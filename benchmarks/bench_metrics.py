"""Seconds per full-size case: harness (DSC + NSD + HD95, 13 organs) versus the FLARE22 script's
way with DeepMind's surface-distance package (per organ on the full volume), in the same run.

Goal (issue 2): at least 8x faster on a 2-core machine, NSD differences <= 1e-12.

    python benchmarks/bench_metrics.py [--cases 2] [--repeat 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2, help="full-size phantom cases (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="harness timings per case, median kept")
    args = parser.parse_args()
    profile = dataclasses.replace(load_profile("flare22"), round_decimals=None)
    threads = os.cpu_count() or 1

    ours_s, ref_s, worst_diff = [], [], 0.0
    for index in range(args.cases):
        case = generate_case(seed=2022, index=index, size="full")
        gt = case.label
        pred = perturb_labels(gt, rng=np.random.default_rng([7, index]), spacing_mm=case.spacing_mm)
        spacing = case.spacing_mm
        print(f"case {index}: shape {gt.shape}, spacing {tuple(round(s, 4) for s in spacing)} mm", flush=True)

        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            scores = score_case(gt, pred, spacing, profile, threads=threads)
            timings.append(time.perf_counter() - start)
        ours_s.append(statistics.median(timings))

        start = time.perf_counter()
        ref = flare_script_nsd(gt, pred, tuple(np.float32(s) for s in spacing), profile)
        ref_s.append(time.perf_counter() - start)
        diff = max(abs(s.nsd - ref[s.organ]) for s in scores)
        worst_diff = max(worst_diff, diff)
        print(f"  harness {ours_s[-1]:.3f} s   surface-distance {ref_s[-1]:.3f} s   max |NSD diff| {diff:.1e}", flush=True)

    ours, ref = statistics.mean(ours_s), statistics.mean(ref_s)
    print()
    print(f"seconds per case, harness (DSC+NSD+HD95, {threads} threads): {ours:.3f}")
    print(f"seconds per case, surface-distance (NSD per organ, full volume): {ref:.3f}")
    print(f"speed-up: {ref / ours:.1f}x (goal >= 8x)")
    print(f"largest NSD difference: {worst_diff:.1e} (goal <= 1e-12)")


if __name__ == "__main__":
    main()
