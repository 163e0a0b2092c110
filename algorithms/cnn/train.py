"""Train the cnn segmenter's small 3D U-Net on phantoms that are not in the evaluation set; write ONNX.

The committed model.onnx was made, from the repository root, with:

    .venv/bin/python algorithms/cnn/train.py --seed 2000 --cases 12 --epochs 100 --out algorithms/cnn/model.onnx

The default evaluation set is `harness data synth --seed 0`; training uses phantoms of `--seed 2000`
(indices 0 .. cases-1 on the small grid, plus `--full-cases` on the full grid from index 100), and
the held-out check at the end uses indices 200, 201, so no evaluated patient is seen in training.

Framework: TensorFlow (the CPU-only `tensorflow-cpu` wheel from PyPI), used only here on the host.
Its oneDNN 3D convolutions ran about 10x faster than JAX/XLA's on this 2-core machine; the image
never sees it: the ONNX graph (Conv, Relu, MaxPool, Resize, Concat, Softmax) is written from the
trained weights with the `onnx` helper API and checked against TensorFlow's output before saving.

Same arguments, same model on the same machine: NumPy and TensorFlow seeds are fixed and
TensorFlow's op determinism is on (a different CPU may differ in the last bits). Runs on the host
(it imports harness); needs tensorflow-cpu, onnx and onnxruntime besides the harness's packages.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from harness.data.synth import generate_case, organ_labels  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grid  # noqa: E402  (the algorithm's own module, next to this file)

CHANNELS = (8, 16, 32, 64)  # features per level; level l works at the working grid pooled l times
POOLS = ((2, 2, 1), (2, 2, 2), (2, 2, 2))  # the first pool is in-plane only: 3 x 3 x 6 mm -> 6 mm cubes
N_IN = len(grid.HU_WINDOWS)
N_CLASSES = grid.N_CLASSES
OPSET = 17
HELD_OUT = (200, 201)  # seed-2000 indices used for the check at the end, never for training
FULL_FIRST = 100  # seed-2000 index of the first full-size training case


# --- data ----------------------------------------------------------------------------------------
def working_case(seed: int, index: int, size: str) -> tuple[NDArray[np.float32], NDArray[np.float16]]:
    """A phantom on the working grid: HU (X, Y, Z) and soft one-hot labels (N_CLASSES, X, Y, Z).

    The labels go through the same anti-aliased linear resampling as the image, so each working
    voxel's target is the fraction of each class it covers (the network learns partial volumes,
    which keeps the boundaries of the probabilities interpolated back to a finer grid in place).
    """
    case = generate_case(seed=seed, index=index, size=size)
    shape = grid.working_shape(case.image_hu.shape, case.spacing_mm)
    hu = grid.resample(case.image_hu.astype(np.float32), shape)
    soft = np.empty((N_CLASSES, *shape), np.float16)
    for c in range(N_CLASSES):
        soft[c] = grid.resample((case.label == c).astype(np.float32), shape)
    return hu, soft


class Sampler:
    """Random training patches: 2/3 centred near a voxel of a uniformly chosen organ (so small organs
    are seen often), 1/3 anywhere; intensity jitter (gain, offset, noise) on the HU before windowing."""

    def __init__(self, cases: list[tuple[NDArray[np.float32], NDArray[np.float16]]], patch: tuple[int, int, int],
                 rng: np.random.Generator) -> None:
        self.patch = patch
        self.rng = rng
        self.cases = []
        for hu, soft in cases:
            pad = [(0, max(0, p - n)) for p, n in zip(patch, hu.shape, strict=True)]
            if any(b for _, b in pad):
                hu = np.pad(hu, pad, constant_values=grid.PAD_HU)
                soft = np.pad(soft, [(0, 0), *pad])
                soft[0][np.asarray(soft.sum(axis=0) == 0)] = 1
            hard = soft.argmax(axis=0)
            where = {c: np.argwhere(hard == c) for c in range(1, N_CLASSES) if (hard == c).any()}
            self.cases.append((hu, soft, where))

    def patch_at(self, case: int, centre: NDArray[np.int64] | None) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        hu, soft, _ = self.cases[case]
        starts = []
        for a, p in enumerate(self.patch):
            hi = hu.shape[a] - p
            if centre is None:
                s = int(self.rng.integers(0, hi + 1))
            else:
                s = int(centre[a]) - p // 2 + int(self.rng.integers(-p // 4, p // 4 + 1))
            starts.append(min(max(s, 0), hi))
        sl = tuple(slice(s, s + p) for s, p in zip(starts, self.patch, strict=True))
        x = hu[sl] * np.float32(self.rng.uniform(0.93, 1.07)) + np.float32(self.rng.uniform(-15, 15))
        noise_hu = self.rng.uniform(0, 12)
        if noise_hu > 1:
            x = x + self.rng.normal(0, noise_hu, x.shape).astype(np.float32)
        return grid.channels(x), soft[(slice(None), *sl)].astype(np.float32)

    def batch(self, size: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        xs, ys = [], []
        for _ in range(size):
            case = int(self.rng.integers(len(self.cases)))
            where = self.cases[case][2]
            centre = None
            if where and self.rng.random() < 2 / 3:
                organ = list(where)[int(self.rng.integers(len(where)))]
                centre = where[organ][int(self.rng.integers(len(where[organ])))]
            x, y = self.patch_at(case, centre)
            xs.append(x)
            ys.append(y)
        # TensorFlow's CPU convolutions are channels-last: (N, X, Y, Z, C).
        return np.moveaxis(np.stack(xs), 1, -1), np.moveaxis(np.stack(ys), 1, -1)


# --- the network ---------------------------------------------------------------------------------
def layer_shapes() -> dict[str, tuple[int, int, int]]:
    """name -> (kernel side, input channels, output channels) of every convolution, in order."""
    shapes: dict[str, tuple[int, int, int]] = {}
    c_in = N_IN
    for level, c in enumerate(CHANNELS):
        shapes[f"enc{level}a"] = (3, c_in, c)
        shapes[f"enc{level}b"] = (3, c, c)
        c_in = c
    for level in range(len(CHANNELS) - 2, -1, -1):
        c = CHANNELS[level]
        shapes[f"up{level}"] = (1, CHANNELS[level + 1], c)  # channel reduction before the upsampling
        shapes[f"dec{level}a"] = (3, 2 * c, c)
        shapes[f"dec{level}b"] = (3, c, c)
    shapes["head"] = (1, CHANNELS[0], N_CLASSES)
    return shapes


def init_weights(rng: np.random.Generator) -> dict[str, tf.Variable]:
    """He-normal kernels (k, k, k, in, out) and zero biases, as TensorFlow variables."""
    weights = {}
    for name, (k, c_in, c_out) in layer_shapes().items():
        std = np.sqrt(2.0 / (k ** 3 * c_in)) if name != "head" else np.sqrt(1.0 / c_in)
        weights[f"{name}/w"] = tf.Variable(rng.normal(0, std, (k, k, k, c_in, c_out)).astype(np.float32), name=f"{name}_w")
        weights[f"{name}/b"] = tf.Variable(np.zeros(c_out, np.float32), name=f"{name}_b")
    return weights


def forward(weights: dict[str, tf.Variable], x: tf.Tensor) -> tf.Tensor:
    """Logits (N, X, Y, Z, N_CLASSES) of channels-last input (N, X, Y, Z, N_IN)."""

    def conv(name: str, t: tf.Tensor, relu: bool = True) -> tf.Tensor:
        t = tf.nn.conv3d(t, weights[f"{name}/w"], strides=[1] * 5, padding="SAME") + weights[f"{name}/b"]
        return tf.nn.relu(t) if relu else t

    skips = []
    for level in range(len(CHANNELS)):
        if level:
            pool = (1, *POOLS[level - 1], 1)
            x = tf.nn.max_pool3d(x, ksize=pool, strides=pool, padding="VALID")
        x = conv(f"enc{level}b", conv(f"enc{level}a", x))
        skips.append(x)
    for level in range(len(CHANNELS) - 2, -1, -1):
        x = conv(f"up{level}", x, relu=False)
        for axis, factor in enumerate(POOLS[level], start=1):
            if factor > 1:
                x = tf.repeat(x, factor, axis=axis)
        x = tf.concat([x, skips[level]], axis=-1)
        x = conv(f"dec{level}b", conv(f"dec{level}a", x))
    return conv("head", x, relu=False)


def loss_fn(logits: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(soft-label cross-entropy, 1 - mean soft Dice of the 13 organs over the batch)."""
    ce = tf.reduce_mean(-tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1))
    p = tf.nn.softmax(logits, axis=-1)[..., 1:]
    t = target[..., 1:]
    inter = tf.reduce_sum(p * t, axis=(0, 1, 2, 3))
    denom = tf.reduce_sum(p, axis=(0, 1, 2, 3)) + tf.reduce_sum(t, axis=(0, 1, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return ce, 1 - tf.reduce_mean(dice)


class Adam:
    """Plain Adam on a dict of variables (a few lines, no dependence on a Keras version)."""

    def __init__(self, weights: dict[str, tf.Variable], *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> None:
        self.vars = list(weights.values())
        self.m = [tf.Variable(tf.zeros_like(v)) for v in self.vars]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in self.vars]
        self.t = tf.Variable(0.0)
        self.b1, self.b2, self.eps = b1, b2, eps

    def apply(self, grads: list[tf.Tensor], lr: tf.Tensor) -> None:
        self.t.assign_add(1.0)
        scale = lr * tf.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for var, g, m, v in zip(self.vars, grads, self.m, self.v, strict=True):
            m.assign(self.b1 * m + (1 - self.b1) * g)
            v.assign(self.b2 * v + (1 - self.b2) * g * g)
            var.assign_sub(scale * m / (tf.sqrt(v) + self.eps))


# --- ONNX ----------------------------------------------------------------------------------------
def to_onnx(weights: dict[str, tf.Variable]) -> onnx.ModelProto:
    """The same network as `forward` as an ONNX graph, channels-first: image (N, 2, X, Y, Z) float32
    -> probabilities (N, 14, X, Y, Z) softmax over axis 1. X, Y must be multiples of 8 and Z of 4."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    shapes = layer_shapes()

    def conv(name: str, t: str, relu: bool = True) -> str:
        k = shapes[name][0]
        w = np.transpose(weights[f"{name}/w"].numpy(), (4, 3, 0, 1, 2))  # (k,k,k,in,out) -> (out,in,k,k,k)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np.float32), f"{name}.w"))
        inits.append(numpy_helper.from_array(weights[f"{name}/b"].numpy().astype(np.float32), f"{name}.b"))
        nodes.append(helper.make_node("Conv", [t, f"{name}.w", f"{name}.b"], [f"{name}.conv"], name=f"{name}.conv",
                                      kernel_shape=[k] * 3, pads=[k // 2] * 6, strides=[1, 1, 1]))
        if not relu:
            return f"{name}.conv"
        nodes.append(helper.make_node("Relu", [f"{name}.conv"], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    x = "image"
    skips = []
    for level in range(len(CHANNELS)):
        if level:
            pool = list(POOLS[level - 1])
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{level}"], name=f"pool{level}", kernel_shape=pool, strides=pool))
            x = f"pool{level}"
        x = conv(f"enc{level}b", conv(f"enc{level}a", x))
        skips.append(x)
    for level in range(len(CHANNELS) - 2, -1, -1):
        x = conv(f"up{level}", x, relu=False)
        inits.append(numpy_helper.from_array(np.array([1, 1, *POOLS[level]], np.float32), f"up{level}.scales"))
        nodes.append(helper.make_node("Resize", [x, "", f"up{level}.scales"], [f"up{level}.resize"], name=f"up{level}.resize",
                                      mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        nodes.append(helper.make_node("Concat", [f"up{level}.resize", skips[level]], [f"cat{level}"], name=f"cat{level}", axis=1))
        x = conv(f"dec{level}b", conv(f"dec{level}a", f"cat{level}"))
    logits = conv("head", x, relu=False)
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, "cnn_unet3d",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", N_IN, "x", "y", "z"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", N_CLASSES, "x", "y", "z"])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="harness-cnn-train")
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model


# --- the held-out check --------------------------------------------------------------------------
def dice_scores(session: ort.InferenceSession, seed: int, index: int) -> NDArray[np.float64]:
    """Per-organ DSC of the ONNX model on one small phantom, on its own grid (as predict.py does it)."""
    case = generate_case(seed=seed, index=index, size="small")
    shape = grid.working_shape(case.image_hu.shape, case.spacing_mm)
    x = grid.channels(grid.resample(case.image_hu.astype(np.float32), shape))
    probs = grid.sliding_window(x, lambda p: session.run(None, {"image": p})[0], patch=grid.window_shape(shape))
    label = grid.resample(probs, case.image_hu.shape, antialias=False).argmax(axis=0)
    out = np.full(N_CLASSES - 1, np.nan)
    for c in range(1, N_CLASSES):
        a, b = case.label == c, label == c
        if a.any() or b.any():
            out[c - 1] = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2000, help="phantom data set seed (not 0: that is the evaluation set); also seeds training")
    ap.add_argument("--cases", type=int, default=12, help="small phantoms to train on (indices 0 .. cases-1)")
    ap.add_argument("--full-cases", type=int, default=2, help="full-size phantoms to train on too (finer grid, less noise)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--steps-per-epoch", type=int, default=25, help="an epoch is this many batches of random patches")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patch", type=int, nargs=3, default=(64, 64, 32), metavar=("X", "Y", "Z"), help="training patch, working voxels")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay to 1/30 of it)")
    ap.add_argument("--out", type=Path, required=True, help="where to write the ONNX model")
    args = ap.parse_args(argv)
    patch = tuple(args.patch)
    if any(p % m for p, m in zip(patch, grid.PATCH_MULTIPLE, strict=True)):
        ap.error(f"--patch {patch}: each side must be a multiple of {grid.PATCH_MULTIPLE}")
    if args.seed == 0:
        ap.error("--seed 0 is the default evaluation set; train on another seed")

    t0 = time.perf_counter()
    tf.random.set_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng([args.seed, 7])
    cases = [working_case(args.seed, i, "small") for i in range(args.cases)]
    cases += [working_case(args.seed, FULL_FIRST + i, "full") for i in range(args.full_cases)]
    sampler = Sampler(cases, patch, rng)  # type: ignore[arg-type]
    print(f"data: {args.cases} small + {args.full_cases} full phantoms of seed {args.seed} on the "
          f"{'x'.join(map(str, grid.WORK_SPACING_MM))} mm working grid ({time.perf_counter() - t0:.1f} s)", flush=True)

    weights = init_weights(rng)
    n_params = sum(int(np.prod(v.shape)) for v in weights.values())
    print(f"network: 3D U-Net, channels {CHANNELS}, pools {POOLS}, {n_params} parameters", flush=True)
    adam = Adam(weights)
    variables = list(weights.values())

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor, lr: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            ce, dice = loss_fn(forward(weights, x), y)
            loss = ce + dice
        adam.apply(tape.gradient(loss, variables), lr)
        return ce, dice

    total = args.epochs * args.steps_per_epoch
    step = 0
    t_train = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        ces, dices = [], []
        for _ in range(args.steps_per_epoch):
            warm = min(1.0, (step + 1) / 50)  # short warm-up: no normalisation layers in this network
            lr = args.lr * warm * (1 / 30 + (1 - 1 / 30) * 0.5 * (1 + np.cos(np.pi * step / total)))
            x, y = sampler.batch(args.batch)
            ce, dice = train_step(tf.constant(x), tf.constant(y), tf.constant(lr, tf.float32))
            ces.append(float(ce))
            dices.append(float(dice))
            step += 1
        print(f"epoch {epoch:3d}/{args.epochs}: loss {np.mean(ces) + np.mean(dices):.4f} (cross-entropy {np.mean(ces):.4f}, "
              f"1-dice {np.mean(dices):.4f}), lr {lr:.2e}, {time.perf_counter() - t_train:.0f} s", flush=True)

    model = to_onnx(weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x, _ = sampler.batch(1)
    ref = tf.nn.softmax(forward(weights, tf.constant(x)), axis=-1).numpy()
    got = session.run(None, {"image": np.ascontiguousarray(np.moveaxis(x, -1, 1))})[0]
    diff = float(np.abs(np.moveaxis(got, 1, -1) - ref).max())
    if diff > 1e-4:
        print(f"error: the ONNX graph differs from TensorFlow by {diff:.2e}; not writing {args.out}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB; ONNX vs TensorFlow max |dp| {diff:.1e})", flush=True)

    organs = list(organ_labels())
    scores = np.stack([dice_scores(session, args.seed, i) for i in HELD_OUT])
    print(f"held-out DSC (seed {args.seed}, indices {HELD_OUT}): " + ", ".join(
        f"{o} {s:.3f}" for o, s in zip(organs, np.nanmean(scores, axis=0), strict=True)), flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s (training {time.perf_counter() - t_train:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
