"""Classical (no machine learning) segmentation of the 13 FLARE22 organs in abdominal CT.

Pure functions on arrays in RAS+ orientation (x to the patient's right, y anterior, z superior),
on a coarse working grid (about 2.5 x 2.5 x 5 mm):

1. landmarks: the body outline, the spinal canal (the hole in the bony column that is present in
   most slices), the top of the diaphragm (where the lungs' share of the slice halves) and the
   width of the abdominal wall give a frame in mm;
2. the contrast phase from the aorta's HU, which sets the expected HU of each tissue; the large
   organs' HU are then measured in the image where the atlas is sure of them;
3. per voxel, a Bayesian posterior over background and the 13 organs: a Gaussian-mixture
   intensity likelihood times the atlas's position prior (kept inside the abdominal wall), made
   spatially coherent by a few mean-field iterations of a Potts-like smoothness term;
4. per organ, the largest connected component of the p >= 0.5 region; probability far from it is
   damped, so the final label map is exactly "argmax of p where max p >= 0.5".
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from anatomy import ORGAN_TISSUES, ORGANS, PHASES, POSITION_PRIORS, TISSUE_HU
from numpy.typing import NDArray
from scipy import ndimage, special

F32 = NDArray[np.float32]
Mask = NDArray[np.bool_]

WORK_SPACING_MM = (2.5, 2.5, 5.0)
TYPICAL_HALF_WIDTH_MM = 136.5  # outer edge of the abdominal wall, half the left-right width
DOME_BELOW_HALF_LUNG_MM = 21.0  # the dome lies this far above the slice where lung area halves
SPINE_ARCH_TO_BODY_MM = 10.0  # front of the bony arch (in most slices) to the vertebral body's centre
CANAL_TO_BODY_MM = 24.0  # centre of the spinal canal to the centre of the vertebral body

# The atlas's Gaussians are wider than any one organ; a gain > 1 makes them flat-topped. Small
# organs get a sharper prior: their own HU evidence is weak after partial volume.
PRIOR_GAIN_DEFAULT = 1.4
PRIOR_GAIN = {"right_adrenal_gland": 4.0, "left_adrenal_gland": 4.0, "esophagus": 3.0, "inferior_vena_cava": 2.0}
BETA = 3.0  # weight of the neighbours' agreement in the mean-field iterations
MF_ITERATIONS = 4
# numpy's arithmetic and scipy.ndimage's filters release the GIL: the likelihoods, the posterior and
# the component clean-up run on this many threads (the CPUs this process may use, at most 4), with
# the same result as on one.
THREADS = max(1, min(4, len(os.sched_getaffinity(0))))
SMOOTH_MM = 0.6  # Gaussian smoothing of the image the likelihoods see (the mean field does the rest)
LANDMARK_SMOOTH_MM = 2.0  # and of the image the landmarks are found on
PV_WEIGHT = 0.15  # share of an organ's voxels that are partial volume with the surrounding fat
TISSUE_SD_DEFAULT_HU = 12.0  # spread of a tissue's HU beyond the image noise (patients, texture)
TISSUE_SD_HU = {"kidney_cortex": 15.0, "kidney_medulla": 15.0, "kidney_pelvis": 40.0, "gas": 80.0}


@dataclass(frozen=True)
class Frame:
    """Landmarks on the working grid: origin (mm from voxel 0) and the patient's size factor."""

    x0_mm: float  # centre of the spinal column
    y0_mm: float  # centre of the vertebral body
    z0_mm: float  # top of the right diaphragm dome
    scale: float  # left-right size relative to a typical abdomen
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intensities:
    phase: str
    aorta_hu: float
    noise_hu: float
    excreted_cm3: float
    tissue_hu: dict[str, float] = field(default_factory=dict)


# --- working grid ----------------------------------------------------------------------------
def block_factors(spacing_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    """Integer block sizes that bring `spacing_mm` close to WORK_SPACING_MM (1 = keep)."""
    f = [max(1, round(t / s)) for t, s in zip(WORK_SPACING_MM, spacing_mm, strict=True)]
    return f[0], f[1], f[2]


def block_mean(image: NDArray[Any], factors: tuple[int, int, int]) -> F32:
    """Mean over blocks of `factors` voxels; the edges are padded by repetition."""
    if factors == (1, 1, 1):
        return np.asarray(image, np.float32)
    pad = [(0, (-n) % f) for n, f in zip(image.shape, factors, strict=True)]
    if any(p[1] for p in pad):
        image = np.pad(image, pad, mode="edge")
    nx, ny, nz = (n // f for n, f in zip(image.shape, factors, strict=True))
    fx, fy, fz = factors
    out = np.zeros((nx, ny, nz), np.float32)
    # Sum plane by plane along z to keep the peak memory at one extra working-grid volume.
    for k in range(fz):
        sl = np.asarray(image[:, :, k::fz], np.float32)
        out += sl.reshape(nx, fx, ny, fy, nz).sum(axis=(1, 3))
    out /= fx * fy * fz
    return out


def upsample(volume: F32, factors: tuple[int, int, int], shape: tuple[int, int, int]) -> F32:
    """Linear interpolation of a working-grid volume back onto the original grid of `shape`."""
    if factors == (1, 1, 1):
        return volume
    padded = tuple(n * f for n, f in zip(volume.shape, factors, strict=True))
    out = ndimage.zoom(volume, factors, output=np.float32, order=1, mode="nearest", grid_mode=True)
    assert out.shape == padded
    return out[: shape[0], : shape[1], : shape[2]]


# --- landmarks -------------------------------------------------------------------------------
def _largest_component(mask: Mask) -> Mask:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _fill_slices(mask: Mask) -> Mask:
    out = np.empty_like(mask)
    for k in range(mask.shape[2]):
        out[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return out


def _spinal_canal(image: F32, body: Mask, column: Mask, spacing_mm: tuple[float, float, float]) -> tuple[float, float] | None:
    """Centre (mm) of the spinal canal: the hole that the vertebral ring encloses in the
    slice-averaged image, next to the bony column."""
    sx, sy, _ = spacing_mm
    near = ndimage.binary_dilation(column, iterations=max(1, round(25 / sx)))
    mean = np.where(body, image, -1000.0).mean(axis=2)
    bone = (mean > 150) & near
    holes = ndimage.binary_fill_holes(bone) & ~bone
    lab, n = ndimage.label(holes)
    best, best_area = None, 0.0
    for i in range(1, n + 1):
        ix, iy = np.nonzero(lab == i)
        area = len(ix) * sx * sy
        # A canal is 10-25 mm across: 60 to 500 mm^2.
        if 60 <= area <= 500 and area > best_area:
            best, best_area = (float(ix.mean()) * sx, float(iy.mean()) * sy), area
    return best


def find_frame(smooth: F32, image: F32, spacing_mm: tuple[float, float, float]) -> tuple[Frame, Mask, F32]:
    """Landmarks, the body mask and the depth (mm) below the outer edge of the abdominal wall."""
    sx, sy, sz = spacing_mm
    nx, ny, nz = smooth.shape
    notes: list[str] = []
    body = _fill_slices(_largest_component(smooth > -500))
    soft = body & (smooth > -40)
    walled = _fill_slices(soft)  # everything inside the outer edge of the abdominal wall
    depth = np.zeros(smooth.shape, np.float32)
    for k in range(nz):
        if walled[:, :, k].any():
            depth[:, :, k] = ndimage.distance_transform_edt(walled[:, :, k], sampling=(sx, sy))

    # Diaphragm: walking down from the top, the lungs' share of the cavity falls to half its peak.
    area = np.maximum(walled.sum(axis=(0, 1)), 1)
    lung_share = ((smooth < -600) & walled).sum(axis=(0, 1)) / area
    top_down = lung_share[::-1]
    look = max(2, int(round(60 / sz)))
    peak = int(np.argmax(top_down[:look]))
    if top_down[peak] < 0.15:
        z0 = (nz - 1) * sz - 20.0
        notes.append("no lung bases at the top of the image: diaphragm assumed 20 mm below the top")
    else:
        half = top_down[peak] / 2
        j = peak
        while j + 1 < nz and top_down[j + 1] > half:
            j += 1
        if j + 1 < nz:
            t = (top_down[j] - half) / max(top_down[j] - top_down[j + 1], 1e-6)
        else:
            t = 0.0
        z_half = (nz - 1 - j - t) * sz
        z0 = z_half + DOME_BELOW_HALF_LUNG_MM

    # Spine: bone present in most slices, the largest such column near the body's middle.
    column = ((image > 400) & body).mean(axis=2) > 0.6
    body_cols = np.nonzero(body.any(axis=(1, 2)))[0]
    body_rows = np.nonzero(body.any(axis=(0, 2)))[0]
    x_mid = (body_cols[0] + body_cols[-1]) / 2 if len(body_cols) else nx / 2
    lab, n = ndimage.label(column)
    best, best_size = 0, 0
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        size = int((lab[sl] == i).sum())
        centre = (sl[0].start + sl[0].stop - 1) / 2
        if abs(centre - x_mid) * sx < 60 and size > best_size:
            best, best_size = i, size
    if best and best_size * sx * sy > 150:
        ix, iy = np.nonzero(lab == best)
        x0 = float(ix.mean()) * sx
        y0 = float(iy.max()) * sy + SPINE_ARCH_TO_BODY_MM
        canal = _spinal_canal(image, body, lab == best, spacing_mm)
        if canal is not None:
            x0, y0 = canal[0], canal[1] + CANAL_TO_BODY_MM
        else:
            notes.append("no spinal canal found: vertebral body placed from the bony arch")
    else:
        x0 = x_mid * sx
        y0 = (body_rows[0] + 0.3 * (body_rows[-1] - body_rows[0])) * sy if len(body_rows) else ny * sy / 2
        notes.append("no spinal column found: frame centred on the body outline")

    # Size: half the width of the outer abdominal wall over the upper abdomen.
    widths = []
    for k in range(nz):
        zk = k * sz - z0
        if -200 < zk < -20:
            cols = np.nonzero(walled[:, :, k].any(axis=1))[0]
            if len(cols):
                widths.append((cols[-1] - cols[0] + 1) * sx / 2)
    scale = float(np.clip(np.median(widths) / TYPICAL_HALF_WIDTH_MM, 0.8, 1.25)) if widths else 1.0
    return Frame(x0, y0, z0, scale, tuple(notes)), body, depth


def frame_coordinates(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                      frame: Frame) -> tuple[F32, F32, F32]:
    """Per-axis coordinates (mm, x and y divided by the size factor) of the working grid."""
    sx, sy, sz = spacing_mm
    u = ((np.arange(shape[0]) * sx - frame.x0_mm) / frame.scale).astype(np.float32)
    v = ((np.arange(shape[1]) * sy - frame.y0_mm) / frame.scale).astype(np.float32)
    w = (np.arange(shape[2]) * sz - frame.z0_mm).astype(np.float32)
    return u, v, w


def occupancy(organ: str, coords: tuple[F32, F32, F32], *, blur_mm: float = 4.0) -> F32:
    """Expected fraction of each voxel that is `organ` (the atlas prior), in [0, 0.95].

    `blur_mm` widens every component for the landmarks' own error.
    """
    u, v, w = coords
    volume_cm3, comps = POSITION_PRIORS[organ]
    out = np.zeros((len(u), len(v), len(w)), np.float32)
    for weight, centre, cov in comps:
        c = np.asarray(cov, np.float64) + np.eye(3) * blur_mm**2
        inv = np.linalg.inv(c)
        norm = volume_cm3 * 1000 * weight / math.sqrt((2 * math.pi) ** 3 * np.linalg.det(c))
        sd = np.sqrt(np.diag(c))
        sel = [np.nonzero(np.abs(a - m) < 4 * s)[0] for a, m, s in zip(coords, centre, sd, strict=True)]
        if any(len(s) == 0 for s in sel):
            continue
        sl = tuple(slice(s[0], s[-1] + 1) for s in sel)
        d = [(a[s] - np.float32(m)) for a, s, m in zip(coords, sl, centre, strict=True)]
        dx, dy, dz = d[0][:, None, None], d[1][None, :, None], d[2][None, None, :]
        q = (inv[0, 0] * dx * dx + inv[1, 1] * dy * dy + inv[2, 2] * dz * dz
             + 2 * inv[0, 1] * dx * dy + 2 * inv[0, 2] * dx * dz + 2 * inv[1, 2] * dy * dz)
        out[sl] += (norm * np.exp(-0.5 * q)).astype(np.float32)
    out *= np.float32(PRIOR_GAIN.get(organ, PRIOR_GAIN_DEFAULT))
    np.minimum(out, 0.95, out=out)
    return out


# --- intensities -----------------------------------------------------------------------------
def _robust_sd(values: F32) -> float:
    if values.size < 10:
        return 10.0
    med = np.median(values)
    return float(1.4826 * np.median(np.abs(values - med)))


def estimate_intensities(smooth: F32, body: Mask, depth: F32, spacing_mm: tuple[float, float, float],
                         priors: dict[str, F32], *, wall_mm: float) -> Intensities:
    """Contrast phase from the aorta, expected tissue HU, refined where the atlas is sure."""
    fat = body & (smooth < -60) & (smooth > -160)
    # Noise of the smoothed image: the spread inside subcutaneous fat, away from its edges.
    subcutaneous = ndimage.binary_erosion(fat & (depth == 0), structure=np.ones((3, 3, 1), bool), iterations=2)
    noise = float(np.clip(_robust_sd(smooth[subcutaneous]), 2.0, 30.0)) if subcutaneous.any() else 10.0

    core = (priors["aorta"] > 0.5) & (smooth > -20)
    # The upper quartile: the core also catches the aorta's blurred rim.
    aorta_hu = float(np.percentile(smooth[core], 75)) if core.sum() > 5 else 45.0
    # Excreted contrast in the renal pelvis tells the delayed phase from the portal one.
    kidneys = np.maximum(priors["right_kidney"], priors["left_kidney"]) > 0.5
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000
    excreted_cm3 = float(((smooth > 300) & kidneys).sum()) * voxel_cm3
    if excreted_cm3 > 2.0:
        phase = "delay"
    elif aorta_hu < 85:
        phase = "plain"
    elif aorta_hu > 225:
        phase = "arterial"
    elif aorta_hu > 135 or aorta_hu > 115 and excreted_cm3 < 0.2:
        phase = "portal"
    else:
        phase = "delay"
    p = PHASES.index(phase)
    artery = TISSUE_HU["artery"]
    gain = 1.0 if p == 0 else float(np.clip((aorta_hu - artery[0]) / (artery[p] - artery[0]), 0.6, 1.5))
    tissue = {name: hu[0] + gain * (hu[p] - hu[0]) for name, hu in TISSUE_HU.items()}
    tissue["artery"] = float(np.median(smooth[core])) if core.sum() > 5 else tissue["artery"]

    # The large homogeneous organs: median HU where the atlas is near-certain, near the expectation.
    for name, organ, window in (("liver", "liver", 35), ("spleen", "spleen", 30)):
        sure = (priors[organ] > 0.9) & (np.abs(smooth - tissue[name]) < window)
        if sure.sum() > 50:
            tissue[name] = float(np.median(smooth[sure]))
    muscle = body & (depth < 0.8 * wall_mm) & (depth > 2) & (np.abs(smooth - tissue["muscle"]) < 40)
    if muscle.sum() > 50:
        tissue["muscle"] = float(np.median(smooth[muscle]))
    if fat.any():
        tissue["fat"] = float(np.median(smooth[fat]))
    return Intensities(phase, aorta_hu, noise, excreted_cm3, tissue)


def _log_gauss(x: F32, mean: float, sd: float) -> F32:
    z = (x - np.float32(mean)) / np.float32(sd)
    return (-0.5 * z * z - np.float32(math.log(sd * math.sqrt(2 * math.pi)))).astype(np.float32)


def _log_mixture(x: F32, comps: list[tuple[float, float, float]]) -> F32:
    """log sum_i w_i N(x; m_i, s_i), computed stably."""
    logs = [_log_gauss(x, m, s) + np.float32(math.log(w)) for w, m, s in comps]
    top = logs[0].copy()
    for lg in logs[1:]:
        np.maximum(top, lg, out=top)
    acc = np.zeros_like(top)
    for lg in logs:
        acc += np.exp(lg - top)
    return top + np.log(acc)






def _log_pv(x: F32, lo: float, hi: float, sd: float) -> F32:
    """log density of a uniform mixture of two tissues (HU lo..hi) seen through noise `sd`."""
    if hi - lo < 1.0:
        return _log_gauss(x, (lo + hi) / 2, sd)
    a = special.ndtr((x - np.float32(lo)) / np.float32(sd)) - special.ndtr((x - np.float32(hi)) / np.float32(sd))
    return np.log(np.maximum(a, 1e-30) / np.float32(hi - lo)).astype(np.float32)


def log_likelihoods(smooth: F32, it: Intensities, pool: ThreadPoolExecutor | None = None) -> dict[str, F32]:
    """log p(HU | class) for background and each organ (a class per task on `pool`, if given)."""
    def sd(name: str) -> float:
        return math.hypot(it.noise_hu, TISSUE_SD_HU.get(name, TISSUE_SD_DEFAULT_HU))

    fat = it.tissue_hu["fat"]

    def one(name: str) -> F32:
        if name == "background":
            return _log_mixture(smooth, _background(it, sd))
        comps = [(w * (1 - PV_WEIGHT), it.tissue_hu[t], sd(t)) for t, w in ORGAN_TISSUES[name]]
        lg = _log_mixture(smooth, comps)
        if PV_WEIGHT > 0:
            main = it.tissue_hu[ORGAN_TISSUES[name][0][0]]
            pv = _log_pv(smooth, min(fat, main), max(fat, main), it.noise_hu) + np.float32(math.log(PV_WEIGHT))
            lg = np.logaddexp(lg, pv).astype(np.float32)
        return lg

    names = (*ORGANS, "background")
    return dict(zip(names, (pool.map if pool is not None else map)(one, names), strict=True))


def _background(it: Intensities, sd: Callable[[str], float]) -> list[tuple[float, float, float]]:
    """(weight, mean HU, sd HU) of what is not an organ: fat, air, muscle, bowel and vessels
    (broad), fluid, bone."""
    return [
        (0.35, it.tissue_hu["fat"], math.hypot(it.noise_hu, 10.0)),
        (0.15, -900.0, 120.0),
        (0.10, it.tissue_hu["muscle"], sd("muscle")),
        (0.25, 40.0, 50.0),
        (0.10, 15.0, sd("bile")),
        (0.05, 600.0, 400.0),
    ]


# --- posterior -------------------------------------------------------------------------------
def _softmax_into(scores: F32, out: F32, pool: ThreadPoolExecutor) -> F32:
    """out = softmax of `scores` over axis 0, in place and slab by slab (x) on the pool's threads:
    the same operations, in the same order, per voxel as a whole-array softmax."""
    def slab(part: slice) -> None:
        x, o = scores[:, part], out[:, part]
        top = x.max(axis=0, keepdims=True)
        np.subtract(x, top, out=o)
        np.exp(o, out=o)
        o /= o.sum(axis=0, keepdims=True)

    n = scores.shape[1]
    step = max(1, -(-n // (4 * THREADS)))
    list(pool.map(slab, [slice(a, min(n, a + step)) for a in range(0, n, step)]))
    return out


def posterior(log_prior: F32, log_lik: F32, *, beta: float, iterations: int, sigma_vox: tuple[float, float, float],
              pool: ThreadPoolExecutor) -> F32:
    """Mean-field smoothing: p <- softmax(log prior + log lik + beta * neighbourhood average of p)."""
    base = log_prior + log_lik
    p = _softmax_into(base, np.empty_like(base), pool)
    neighbours, scores = np.empty_like(base), np.empty_like(base)

    def smooth(c: int) -> None:
        ndimage.gaussian_filter(p[c], sigma_vox, output=neighbours[c])

    for _ in range(iterations):
        list(pool.map(smooth, range(p.shape[0])))
        np.multiply(neighbours, np.float32(beta), out=neighbours)
        np.add(base, neighbours, out=scores)
        _softmax_into(scores, p, pool)
    return p


def keep_largest(prob: F32, *, sigma_vox: tuple[float, float, float]) -> F32:
    """Damp the probability away from the largest connected component of prob >= 0.5."""
    mask = prob >= 0.5
    if not mask.any():
        return prob
    kept = _largest_component(mask)
    gate = np.clip(2.0 * ndimage.gaussian_filter(kept.astype(np.float32), sigma_vox), 0.0, 1.0)
    return prob * gate


@dataclass
class Result:
    probabilities: dict[str, F32]  # organ -> p on the working grid
    frame: Frame
    intensities: Intensities
    timings_s: dict[str, float]


def _smooth(image: F32, spacing_mm: tuple[float, float, float], sigma_mm: float) -> F32:
    sigma = (sigma_mm / spacing_mm[0], sigma_mm / spacing_mm[1], min(0.6, sigma_mm / spacing_mm[2]))
    return ndimage.gaussian_filter(image, sigma, mode="nearest").astype(np.float32)


def segment(image_hu: F32, spacing_mm: tuple[float, float, float]) -> Result:
    """Organ probabilities on the grid of `image_hu` (RAS+, HU, already at working resolution)."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    coarse = _smooth(image_hu, spacing_mm, LANDMARK_SMOOTH_MM)
    frame, body, depth = find_frame(coarse, image_hu, spacing_mm)
    coords = frame_coordinates(image_hu.shape, spacing_mm, frame)
    # The abdominal wall is as thick as the shallowest fat inside it lies deep.
    wall_mm = 12.0
    fat_in = body & (coarse < -50) & (depth > 0)
    if fat_in.any():
        wall_mm = float(np.clip(np.percentile(depth[fat_in], 1), 5.0, 25.0))
    del coarse, fat_in
    smooth = _smooth(image_hu, spacing_mm, SMOOTH_MM)
    cavity = (1.0 / (1.0 + np.exp(-(depth - wall_mm) / 1.5))).astype(np.float32)
    priors = {organ: occupancy(organ, coords) * cavity for organ in ORGANS}
    timings["landmarks"] = time.perf_counter() - t0

    with ThreadPoolExecutor(THREADS) as pool:
        it = estimate_intensities(smooth, body, depth, spacing_mm, priors, wall_mm=wall_mm)
        lik = log_likelihoods(smooth, it, pool)
        classes = ("background", *ORGANS)
        total = np.zeros(image_hu.shape, np.float32)
        for organ in ORGANS:
            total += priors[organ]
        log_prior = np.empty((len(classes), *image_hu.shape), np.float32)
        log_prior[0] = np.log(np.maximum(1.0 - total, 0.05))
        for c, organ in enumerate(ORGANS, start=1):
            log_prior[c] = np.log(priors[organ] + 1e-6)
        log_lik = np.stack([lik[c] for c in classes])
        del lik, priors
        timings["evidence"] = time.perf_counter() - t0 - sum(timings.values())

        mf_sigma = (1.0, 1.0, 0.5)
        p = posterior(log_prior, log_lik, beta=BETA, iterations=MF_ITERATIONS, sigma_vox=mf_sigma, pool=pool)
        kept = pool.map(lambda c: keep_largest(p[c], sigma_vox=mf_sigma), range(1, len(ORGANS) + 1))
        probs = dict(zip(ORGANS, kept, strict=True))
    timings["posterior"] = time.perf_counter() - t0 - sum(timings.values())
    return Result(probs, frame, it, timings)
