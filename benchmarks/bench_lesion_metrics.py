"""Seconds per full-size case: harness's lesion-wise and instance-wise metrics versus their
official code, side by side on the same arrays, in the same run.

- BraTS 2023 lesion-wise Dice and HD95 (one region, whole tumour by default) versus the official
  script's steps (tests/metrics/lesion_oracles.py: cc3d, full-volume dilations per lesion,
  surface-distance);
- autoPET false-positive and false-negative volumes versus `val_script.py`'s loops (same file);
- panoptic quality (RQ, SQ, PQ, instance-wise DSC) versus panoptica 2.1.7 itself.

Cases are tumour phantoms (tests/metrics/lesion_cases.py) of 512x512x100 voxels with a dozen
lesions and a perturbed prediction (shifted, one lesion missed, one split, false positives), in
NIfTI's memory order (Fortran). Every value is checked equal before the times are printed.

Goal (issue 35): each metric at least 5x faster than its official code.

    PYTHONPATH=. python benchmarks/bench_lesion_metrics.py [--cases 1] [--shape 512 512 100] [--regions WT]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np

from harness.metrics.lesion import BRATS_2023_MATCHING, autopet_false_volumes, autopet_voxel_volume_ml, brats_lesion_wise
from harness.metrics.panoptic import panoptic_quality
from tests.metrics import lesion_oracles as oracle
from tests.metrics.lesion_cases import perturbed_prediction, tumour_phantom

for _alias, _value in (("Inf", np.inf), ("NaN", np.nan)):  # surface-distance 0.1 needs these
    if not hasattr(np, _alias):
        setattr(np, _alias, _value)
import surface_distance as sd  # noqa: E402 -- needs the aliases above

SPACING_MM = (1.0, 1.0, 1.0)  # BraTS: 1 mm isotropic
PIXDIM_MM = (2.0364201, 2.0364201, 3.0)  # an autoPET PET grid


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _brats(gt, pred, region):
    matching = BRATS_2023_MATCHING["BraTS-GLI"]
    labels = oracle.REGIONS[region]
    ours, ours_s = _timed(lambda: brats_lesion_wise(np.isin(gt, labels), np.isin(pred, labels), SPACING_MM, matching=matching))
    gt64, pred64 = gt.astype(np.float64), pred.astype(np.float64)  # what get_fdata() hands the script
    ref, ref_s = _timed(lambda: oracle.brats_lesion_results(
        pred64, gt64, SPACING_MM, region, dilation_factor=matching.dilation_iterations,
        lesion_volume_thresh=matching.small_lesion_max_mm3, sd=sd))
    assert (ours.dice, ours.hd95_mm, ours.n_tp, ours.n_fp, ours.n_fn) == (
        ref["LesionWise_Score_Dice"], ref["LesionWise_Score_HD95"], ref["Num_TP"], ref["Num_FP"], ref["Num_FN"]), (ours, ref)
    return ours_s, ref_s, f"{len(ours.lesions)} lesions, Dice {ours.dice:.4f}, HD95 {ours.hd95_mm:.2f} mm"


def _autopet(gt, pred):
    voxel = oracle.autopet_voxel_vol(PIXDIM_MM)
    ours, ours_s = _timed(lambda: autopet_false_volumes(gt > 0, pred > 0, voxel_volume_ml=autopet_voxel_volume_ml(PIXDIM_MM)))
    gt64, pred64 = (gt > 0).astype(np.float64), (pred > 0).astype(np.float64)
    (fp, fn), ref_s = _timed(lambda: oracle.autopet_false_volumes(gt64, pred64, voxel))
    assert (ours.false_positive_ml, ours.false_negative_ml) == (float(fp), float(fn))
    return ours_s, ref_s, f"FP {ours.false_positive_ml:.3f} ml, FN {ours.false_negative_ml:.3f} ml"


def _panoptic(gt, pred):
    from panoptica import ConnectedComponentsInstanceApproximator, InputType, Metric, NaiveThresholdMatching, Panoptica_Evaluator

    evaluator = Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC, instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=NaiveThresholdMatching(), instance_metrics=[Metric.DSC, Metric.IOU], global_metrics=[Metric.DSC])
    ours, ours_s = _timed(lambda: panoptic_quality(gt > 0, pred > 0))
    gt8, pred8 = (gt > 0).astype(np.uint8), (pred > 0).astype(np.uint8)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ref, ref_s = _timed(lambda: evaluator.evaluate(pred8, gt8, verbose=False)["ungrouped"])
    assert (ours.tp, ours.fp, ours.fn, ours.rq, ours.sq, ours.pq, ours.sq_dsc) == (
        ref.tp, ref.fp, ref.fn, ref.rq, ref.sq, ref.pq, ref.sq_dsc)
    return ours_s, ref_s, f"TP {ours.tp} FP {ours.fp} FN {ours.fn}, PQ {ours.pq:.4f}, SQ-DSC {ours.sq_dsc:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100))
    parser.add_argument("--lesions", type=int, default=12)
    parser.add_argument("--regions", nargs="+", default=["WT"], choices=sorted(oracle.REGIONS))
    args = parser.parse_args()

    totals: dict[str, list[float]] = {}
    for index in range(args.cases):
        rng = np.random.default_rng([35, 1000 + index])
        gt = np.asfortranarray(tumour_phantom(rng, tuple(args.shape), n_lesions=args.lesions))
        pred = np.asfortranarray(perturbed_prediction(rng, gt, n_false_positives=4))
        runs = [(f"brats-{r}", lambda r=r, g=gt, p=pred: _brats(g, p, r)) for r in args.regions]
        runs += [("autopet", lambda g=gt, p=pred: _autopet(g, p)), ("panoptic", lambda g=gt, p=pred: _panoptic(g, p))]
        for name, run in runs:
            ours_s, ref_s, summary = run()
            totals.setdefault(name, [0.0, 0.0])
            totals[name][0] += ours_s
            totals[name][1] += ref_s
            print(f"case {index} {name:10s} harness {ours_s:7.3f} s  official {ref_s:8.3f} s  "
                  f"{ref_s / ours_s:6.1f}x   (equal: {summary})", flush=True)
    print(f"\n{args.cases} case(s) of {'x'.join(map(str, args.shape))}, {args.lesions} lesions; goal >= 5x")
    for name, (ours_s, ref_s) in totals.items():
        print(f"{name:10s} harness {ours_s:7.3f} s  official {ref_s:8.3f} s  speed-up {ref_s / ours_s:6.1f}x")


if __name__ == "__main__":
    main()
