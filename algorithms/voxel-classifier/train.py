"""Train the voxel-classifier's model on synthetic phantoms that are not in the evaluation set.

The committed model.joblib was made, in this folder, with the repository's virtual environment:

    OMP_NUM_THREADS=1 ../../.venv/bin/python train.py --out model.joblib --seed 1000 --cases 10

(about 2 CPU minutes; scikit-learn 1.9.1, numpy 2.4.6, scipy 1.17.1; the file is byte-identical on
every run with one thread).

The default evaluation set is `harness data synth --seed 0`; training uses `--seed 1000` cases, so
no evaluated patient is seen in training. Per case, every organ gives up to `--per-organ` voxels and
the body's background `--background` voxels, drawn at random; sample weights restore each class's
true frequency, so the predicted probabilities are calibrated and thresholding an organ at 0.5
agrees with the argmax label map. A small organ-vs-background gate model is trained on the same
sample; predict.py skips the main model where the gate's organ probability is under GATE_THRESHOLD
(about 3/4 of the body). Same arguments, same model (fixed seeds, no early stopping).
Runs on the host (it imports harness); the model must be loaded with the scikit-learn version of
requirements.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier

from harness.data.synth import generate_case, organ_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
import features  # noqa: E402  (the algorithm's own module, next to this file)

N_CLASSES = 14  # background + the 13 FLARE22 organs
GATE_ROUNDS = 30
GATE_THRESHOLD = 0.01  # organ probability of the gate below which a voxel is background without asking the main model


def sample_case(
    seed: int, index: int, *, per_organ: int, background: int, rng: np.random.Generator,
) -> tuple[NDArray[np.float32], NDArray[np.uint8], NDArray[np.float64]]:
    """Features, labels and prior-restoring weights of a class-balanced voxel sample of one case."""
    case = generate_case(seed=seed, index=index, size="small")
    if features.block_factors(case.spacing_mm) != (1, 1, 1):
        raise ValueError(f"small phantom spacing {case.spacing_mm} mm is not on the working grid {features.WORK_SPACING_MM} mm")
    label = case.label
    feats = features.case_features(case.image_hu.astype(np.float32), case.spacing_mm)
    xs, ys, ws = [], [], []
    for cls in range(N_CLASSES):
        where = np.flatnonzero((label == cls).ravel() & feats.body.ravel())
        if len(where) == 0:
            continue
        take = per_organ if cls else background
        pick = np.sort(rng.choice(where, size=min(take, len(where)), replace=False))
        ix, iy, iz = np.unravel_index(pick, label.shape)
        xs.append(feats.matrix((ix, iy, iz)))
        ys.append(np.full(len(pick), cls, np.uint8))
        ws.append(np.full(len(pick), len(where) / len(pick)))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="model file to write (joblib)")
    parser.add_argument("--seed", type=int, default=1000, help="phantom data set seed (not 0: that is the evaluation set)")
    parser.add_argument("--cases", type=int, default=10, help="number of small phantom cases to train on")
    parser.add_argument("--per-organ", type=int, default=4000, help="voxels sampled per organ and case (at most)")
    parser.add_argument("--background", type=int, default=40000, help="background voxels sampled per case, inside the body")
    parser.add_argument("--max-iter", type=int, default=120, help="boosting rounds (each adds one tree per class)")
    parser.add_argument("--max-leaf-nodes", type=int, default=31)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.seed == 0:
        parser.error("--seed 0 is the default evaluation set; train on another seed, e.g. --seed 1000")

    start = time.perf_counter()
    rng = np.random.default_rng([args.seed, 7])
    parts = [sample_case(args.seed, i, per_organ=args.per_organ, background=args.background, rng=rng) for i in range(args.cases)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    w = np.concatenate([p[2] for p in parts])
    w /= w.mean()
    sampled_s = time.perf_counter() - start
    print(f"sampled {len(y)} voxels of {args.cases} cases in {sampled_s:.1f} s; per class {np.bincount(y).tolist()}", file=sys.stderr)

    # The gate: a small organ-vs-background model that spares the main model the ~75 % of body voxels
    # that are plainly background (fat, muscle, bone, bowel far from any organ).
    gate = HistGradientBoostingClassifier(
        max_iter=GATE_ROUNDS, learning_rate=0.2, max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0,
        early_stopping=False, random_state=args.seed,
    )
    organ = y > 0
    gate.fit(x, organ, sample_weight=w)
    passed = gate.predict_proba(x)[:, 1] >= GATE_THRESHOLD
    print(f"gate: keeps {passed[organ].mean():.4f} of organ voxels, {np.average(passed[~organ], weights=w[~organ]):.3f} of "
          f"background voxels ({time.perf_counter() - start - sampled_s:.1f} s)", file=sys.stderr)

    clf = HistGradientBoostingClassifier(
        max_iter=args.max_iter, learning_rate=args.learning_rate, max_leaf_nodes=args.max_leaf_nodes,
        min_samples_leaf=40, l2_regularization=1.0, early_stopping=False, random_state=args.seed,
    )
    clf.fit(x, y, sample_weight=w)
    fit_s = time.perf_counter() - start - sampled_s
    print(f"fitted {clf.n_iter_} rounds x {len(clf.classes_)} classes in {fit_s:.1f} s", file=sys.stderr)

    model = {
        "classifier": clf,
        "gate": gate,
        "gate_threshold": GATE_THRESHOLD,
        "feature_names": features.FEATURE_NAMES,
        "work_spacing_mm": features.WORK_SPACING_MM,
        "labels": {"background": 0, **organ_labels()},
        "sklearn_version": sklearn.__version__,
        "trained_on": {"seed": args.seed, "cases": args.cases, "size": "small", "per_organ": args.per_organ,
                       "background": args.background, "voxels": int(len(y))},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    joblib.dump(model, tmp, compress=3)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
