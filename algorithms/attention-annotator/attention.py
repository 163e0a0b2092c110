"""The AbdomenAtlas-8K attention map of one case: pure functions on arrays (no disk, no harness).

For each organ c and voxel i, with p_m the probability of segmenter m (N >= 2 of them):

- first, as the authors prepared their models' soft predictions, each p_m is zeroed outside
  `support_dilations` (1) binary dilations (3x3x3 cube) of that segmenter's own hard mask p_m > 0.5
  (-1 keeps every probability);

- inconsistency: the population standard deviation (ddof 0) of p_m over the N segmenters, kept
  where > `std_threshold` (0.1);
- uncertainty: the mean over segmenters of the single entropy term -p ln p (at most 1/e; 0 ln 0 = 0;
  not the binary entropy), kept where > `entropy_threshold` (0.05, roughly 0.011 < p < 0.949);
- each kept mask is cleaned by `erosions` (2) binary erosions, then `dilations` (2) binary
  dilations, with the 3x3x3 cube structure; voxels outside the volume count as background;
- overlap: the averaged pseudo label of c (mean p > `pseudo_threshold`, 0.5) is also set for
  another organ at that voxel (not cleaned);
- binary attention map: inconsistency OR uncertainty OR overlap;
- heat map: (std + entropy + overlap) / its maximum over the volume, with std and entropy the raw
  (unthresholded, uncleaned) values and overlap 0 or 1; an organ whose sum is 0 everywhere
  (no support) gets a heat map of 0 (the 0/0 guard).

The averaged pseudo label map gives each voxel the organ whose mean probability is
> `pseudo_threshold`, the highest mean where several are (ties: the organ listed first).

Memory: every criterion is 0 where all N probabilities are 0, so each organ is computed on the
box holding the support of its N probabilities (its crop), in float32, and only one full-size
input volume is held at a time. `k` iterations of a 3x3x3 cube erosion (dilation) equal one
(2k+1)-cube minimum (maximum) filter with a background border, which is separable; a cleaned mask
never leaves the box of the raw mask, so cropping changes nothing. Decisions that float32 could
get wrong (values within 1e-5 of a threshold, the argmax where organs overlap, 255 * heat near a
half) are re-evaluated in float64 at those few voxels, so the binary maps, the label map and the
uint8 heat map equal a float64 evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

Box = tuple[slice, ...]
BoolArray = NDArray[np.bool_]
Float32Array = NDArray[np.float32]

# Float32 values of std, entropy and mean (all <= 1, N small) are within about 1e-6 of float64;
# voxels this close to a threshold are decided again in float64.
_REFINE_BAND = 1e-5


@dataclass(frozen=True)
class Settings:
    """The map's parameters; the defaults are the AbdomenAtlas-8K reference's."""

    std_threshold: float = 0.1
    entropy_threshold: float = 0.05
    erosions: int = 2
    dilations: int = 2
    pseudo_threshold: float = 0.5
    support_dilations: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.std_threshold < 0.5:
            raise ValueError(f"std_threshold = {self.std_threshold}; use 0 <= t < 0.5 (the std of values in [0, 1] is <= 0.5)")
        if not 0 <= self.entropy_threshold < 1 / math.e:
            raise ValueError(f"entropy_threshold = {self.entropy_threshold}; use 0 <= t < 1/e (the maximum of -p ln p)")
        for name in ("erosions", "dilations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
                raise ValueError(f"{name} = {value!r}; use an integer 0..20")
        if not 0 <= self.pseudo_threshold < 1:
            raise ValueError(f"pseudo_threshold = {self.pseudo_threshold}; use 0 <= t < 1")
        value = self.support_dilations
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 20:
            raise ValueError(f"support_dilations = {value!r}; use an integer 0..20, or -1 to keep every probability")

    def as_dict(self) -> dict[str, Any]:
        return {
            "std_threshold": self.std_threshold,
            "entropy_threshold": self.entropy_threshold,
            "erosions": self.erosions,
            "dilations": self.dilations,
            "structure": "3x3x3 cube",
            "pseudo_threshold": self.pseudo_threshold,
            "support_dilations": self.support_dilations,
        }


# --- the criteria, on probabilities stacked along axis 0 (one row per segmenter) -------------
def to_probability(values: NDArray[Any]) -> Float32Array:
    """Probabilities in [0, 1] as float32: uint8 is read as round(255 p), floats are p."""
    if values.dtype == np.uint8:
        return _P32[values]
    return np.asarray(values, dtype=np.float32)


def to_probability64(values: NDArray[Any]) -> NDArray[np.float64]:
    """As `to_probability`, in float64."""
    if values.dtype == np.uint8:
        return values / 255.0
    return np.asarray(values, dtype=np.float64)


def entropy_term(p: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """-p ln p elementwise, 0 where p = 0, in the dtype of `p`."""
    out = np.zeros_like(p)
    positive = p > 0
    q = p[positive]
    out[positive] = -q * np.log(q)
    return out


def inconsistency(p: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """Standard deviation over axis 0 (the segmenters), population form (ddof 0)."""
    mean = p.mean(axis=0)
    var = np.zeros_like(mean)
    for row in p:
        dev = row - mean
        dev *= dev
        var += dev
    var /= p.shape[0]
    return np.sqrt(var, out=var)


def uncertainty(p: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """Mean over axis 0 (the segmenters) of the single entropy term -p ln p."""
    return np.asarray(entropy_term(p).mean(axis=0))


def clean(mask: BoolArray, *, erosions: int = 2, dilations: int = 2) -> BoolArray:
    """`erosions` binary erosions, then `dilations` binary dilations, with the 3x3x3 cube.

    Outside the array counts as background (scipy's `border_value=0`): k erosions equal one
    (2k+1)-cube minimum filter with a zero border, k dilations one (2k+1)-cube maximum filter.
    Computed on the mask's box, grown by how far the dilations can reach past the erosions.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, bool)
    box = support_box(mask)
    if box is None:
        return out
    grow = max(0, dilations - erosions)
    box = tuple(slice(max(s.start - grow, 0), min(s.stop + grow, n)) for s, n in zip(box, mask.shape, strict=True))
    sub = np.ascontiguousarray(mask[box]).view(np.uint8)
    if erosions:
        sub = ndimage.minimum_filter(sub, size=2 * erosions + 1, mode="constant", cval=0)
    if dilations:
        sub = ndimage.maximum_filter(sub, size=2 * dilations + 1, mode="constant", cval=0)
    out[box] = sub.view(bool)
    return out


def heat_map(std: NDArray[np.floating[Any]], entropy: NDArray[np.floating[Any]], overlap: BoolArray) -> Float32Array:
    """(std + entropy + overlap) / its maximum, in float32; all zeros where the maximum is 0."""
    total = np.asarray(std, np.float32) + np.asarray(entropy, np.float32)
    total += overlap
    peak = float(total.max()) if total.size else 0.0
    if peak > 0:
        total /= np.float32(peak)
    else:
        total[...] = 0
    return total


def pseudo_mask(p: NDArray[np.floating[Any]], *, threshold: float = 0.5) -> BoolArray:
    """The averaged pseudo label: mean over axis 0 (the segmenters) > `threshold`."""
    return np.asarray(p.mean(axis=0) > threshold)


def support_box(array: NDArray[Any]) -> Box | None:
    """The smallest box (slices) holding every nonzero voxel, or None where there is none."""
    nonzero = array if array.dtype == bool else array != 0
    box = []
    for axis in range(array.ndim):
        other = tuple(a for a in range(array.ndim) if a != axis)
        hits = np.flatnonzero(nonzero.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


# --- one case ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class OrganMaps:
    """One organ's maps on its crop `box` of the case's grid (zero outside it)."""

    box: Box
    inconsistency: BoolArray  # cleaned
    uncertainty: BoolArray  # cleaned
    overlap: BoolArray
    attention: BoolArray
    heat: Float32Array  # in [0, 1]
    heat_uint8: NDArray[np.uint8]  # round(255 * heat), rounded as the float64 heat would be

    def stats(self) -> dict[str, Any]:
        return {
            "attention_voxels": int(np.count_nonzero(self.attention)),
            "heat_sum": float(self.heat.sum(dtype=np.float64)),
            "inconsistency_voxels": int(np.count_nonzero(self.inconsistency)),
            "uncertainty_voxels": int(np.count_nonzero(self.uncertainty)),
            "overlap_voxels": int(np.count_nonzero(self.overlap)),
        }

    def full(self, crop: NDArray[Any], shape: tuple[int, ...], dtype: Any = None) -> NDArray[Any]:
        """`crop` (one of the maps above, or a function of one) pasted on a zero volume of `shape`."""
        out = np.zeros(shape, dtype if dtype is not None else crop.dtype)
        out[self.box] = crop
        return out


@dataclass(frozen=True, eq=False)
class CaseMaps:
    """The annotator's result for one case."""

    shape: tuple[int, ...]
    pseudo_label: NDArray[np.uint8]  # full size, the organs' label values, 0 elsewhere
    organs: dict[str, OrganMaps] = field(default_factory=dict)
    models: int = 0

    def stats(self) -> dict[str, dict[str, Any]]:
        return {organ: maps.stats() for organ, maps in self.organs.items()}


@dataclass(eq=False)
class _Stack:
    """One organ's N probabilities on its crop, in the inputs' dtype (uint8) or float32."""

    box: Box | None
    raw: NDArray[Any]  # (N, *crop)

    def p32(self) -> Float32Array:
        return to_probability(self.raw)

    def p64_at(self, index: tuple[NDArray[np.intp], ...]) -> NDArray[np.float64]:
        """The N float64 probabilities at crop voxels `index`: shape (N, k)."""
        return to_probability64(np.stack([row[index] for row in self.raw]))

    def mean64_at(self, index: tuple[NDArray[np.intp], ...]) -> NDArray[np.float64]:
        return np.asarray(self.p64_at(index).mean(axis=0))

    def std64_at(self, index: tuple[NDArray[np.intp], ...]) -> NDArray[np.float64]:
        return np.asarray(np.std(self.p64_at(index), axis=0))

    def entropy64_at(self, index: tuple[NDArray[np.intp], ...]) -> NDArray[np.float64]:
        return np.asarray(entropy_term(self.p64_at(index)).mean(axis=0))


def _above(values: Float32Array, threshold: float, exact: Callable[[tuple[NDArray[np.intp], ...]], NDArray[np.float64]]) -> BoolArray:
    """values > threshold, with voxels within `_REFINE_BAND` of it decided by `exact` (float64)."""
    above = values > threshold
    near = np.nonzero(np.abs(values - np.float32(threshold)) <= _REFINE_BAND)
    if near[0].size:
        above[near] = exact(near) > threshold
    return above


def _support_crop(array: NDArray[Any], dilations: int) -> tuple[Box, NDArray[Any]] | None:
    """(box, crop) of the probabilities on the box of their support; None where nothing is. With
    `dilations` >= 0 they are first zeroed outside that many 3x3x3 dilations of the hard mask
    p > 0.5: k dilations of the cube are one (2k+1)-cube maximum filter, which never reaches past
    the mask's box grown by k."""
    if dilations < 0:
        whole = support_box(array)
        return None if whole is None else (whole, np.array(array[whole]))
    hard = array >= 128 if array.dtype == np.uint8 else array > 0.5
    box = support_box(hard)
    if box is None:
        return None
    box = tuple(slice(max(b.start - dilations, 0), min(b.stop + dilations, n)) for b, n in zip(box, array.shape, strict=True))
    keep = hard[box].view(np.uint8)
    if dilations:
        keep = ndimage.maximum_filter(keep, size=2 * dilations + 1, mode="constant", cval=0)
    crop = np.where(keep.view(bool), array[box], 0).astype(array.dtype, copy=False)
    inner = support_box(crop)
    assert inner is not None  # the hard mask itself is kept
    return tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner, strict=True)), crop[inner]


def _stack_organ(arrays: Iterable[NDArray[Any]], shape: tuple[int, ...], organ: str, support_dilations: int = -1) -> _Stack:
    """Crop each full-size array to its support as it arrives (after zeroing it outside its own
    mask's dilation when `support_dilations` >= 0); stack them on the union box."""
    crops: list[tuple[int, Box, NDArray[Any]]] = []
    count = 0
    for array in arrays:
        if array.shape != shape:
            raise ValueError(f"{organ}: probabilities of segmenter {count + 1} have shape {array.shape}; expected {shape}")
        found = _support_crop(array, support_dilations)
        if found is not None:
            crops.append((count, *found))
        count += 1
        del array
    if count < 2:
        raise ValueError(f"{organ}: {count} segmenter(s) gave probabilities; the attention map needs N >= 2")
    if not crops:
        return _Stack(None, np.zeros((count, *(0,) * len(shape)), np.uint8))
    union = tuple(slice(min(b[a].start for _, b, _ in crops), max(b[a].stop for _, b, _ in crops)) for a in range(len(shape)))
    all_uint8 = all(c.dtype == np.uint8 for _, _, c in crops)
    raw = np.zeros((count, *(s.stop - s.start for s in union)), np.uint8 if all_uint8 else np.float32)
    for row, box, crop in crops:  # a segmenter with no support keeps its row of zeros
        inner = tuple(slice(b.start - u.start, b.stop - u.start) for b, u in zip(box, union, strict=True))
        raw[row][inner] = crop if all_uint8 else to_probability(crop)
    return _Stack(union, raw)


def annotate(load: Callable[[str], Iterable[NDArray[Any]]], organs: Sequence[tuple[str, int]], shape: tuple[int, ...],
             settings: Settings = Settings()) -> CaseMaps:
    """The attention maps and averaged pseudo label of one case.

    `load(organ)` yields the N segmenters' full-size probability volumes of that organ, one at a
    time, in the same segmenter order for every organ (uint8 = round(255 p), or float in [0, 1]);
    `organs` lists (name, label value) pairs. Only one full-size input is held at a time.
    """
    shape = tuple(int(n) for n in shape)
    # Pass 1: crops, pseudo labels, and how many organs claim each voxel.
    stacks: dict[str, _Stack] = {}
    claims = np.zeros(shape, np.uint8)
    pseudo: dict[str, BoolArray] = {}
    models = 0
    for organ, _ in organs:
        stack = _stack_organ(load(organ), shape, organ, settings.support_dilations)
        if models and stack.raw.shape[0] != models:
            raise ValueError(f"{organ}: {stack.raw.shape[0]} segmenters gave probabilities; the other organs had {models}")
        models = stack.raw.shape[0]
        stacks[organ] = stack
        if stack.box is None:
            continue
        mean = stack.p32().mean(axis=0)
        mask = _above(mean, settings.pseudo_threshold, stack.mean64_at)
        pseudo[organ] = mask
        claims[stack.box] += mask
    # Voxels claimed by several organs: the highest float64 mean wins, decided per voxel.
    contested = np.flatnonzero(claims >= 2)
    best_mean = np.full(contested.size, -1.0)
    best_label = np.zeros(contested.size, np.uint8)

    label_map = np.zeros(shape, np.uint8)
    results: dict[str, OrganMaps] = {}
    for organ, value in organs:
        stack = stacks.pop(organ)
        if stack.box is None:
            empty = np.zeros((0,) * len(shape), bool)
            results[organ] = OrganMaps((slice(0, 0),) * len(shape), empty, empty, empty, empty, np.zeros(empty.shape, np.float32),
                                       np.zeros(empty.shape, np.uint8))
            continue
        box = stack.box
        mask = pseudo.pop(organ)
        crowd = claims[box]
        overlap = mask & (crowd >= 2)
        label_map[box][mask & (crowd == 1)] = value
        if overlap.any():
            local = np.nonzero(overlap)
            flat = np.ravel_multi_index(tuple(i + s.start for i, s in zip(local, box, strict=True)), shape)
            slots = np.searchsorted(contested, flat)
            means = stack.mean64_at(local)
            wins = means > best_mean[slots]
            best_mean[slots[wins]] = means[wins]
            best_label[slots[wins]] = value

        p = stack.p32()
        std = inconsistency(p)
        ent = _entropy_mean32(stack)
        del p
        kept_std = _above(std, settings.std_threshold, stack.std64_at)
        kept_ent = _above(ent, settings.entropy_threshold, stack.entropy64_at)
        inc = clean(kept_std, erosions=settings.erosions, dilations=settings.dilations)
        unc = clean(kept_ent, erosions=settings.erosions, dilations=settings.dilations)
        heat = heat_map(std, ent, overlap)
        results[organ] = OrganMaps(box, inc, unc, overlap, inc | unc | overlap, heat, _heat_uint8(heat, stack, overlap))
    label_map.flat[contested] = best_label
    return CaseMaps(shape, label_map, results, models)


def _heat_uint8(heat: Float32Array, stack: _Stack, overlap: BoolArray) -> NDArray[np.uint8]:
    """round(255 * heat); where float32 leaves 255 * heat within 1e-3 of a half, the float64
    heat decides (the maximum too is then taken in float64, among the voxels that can hold it)."""
    scaled = heat * np.float32(255)
    out = np.rint(scaled).astype(np.uint8)
    near = np.nonzero(np.abs(scaled - np.floor(scaled) - np.float32(0.5)) < 1e-3)
    if near[0].size == 0:
        return out

    def total64(index: tuple[NDArray[np.intp], ...]) -> NDArray[np.float64]:
        return stack.std64_at(index) + stack.entropy64_at(index) + overlap[index]

    peak = float(total64(np.nonzero(heat >= np.float32(1 - 1e-5))).max())
    out[near] = np.rint(total64(near) / peak * 255).astype(np.uint8)
    return out


_P32 = (np.arange(256) / 255.0).astype(np.float32)
_H32 = entropy_term(np.arange(256) / 255.0).astype(np.float32)


def _entropy_mean32(stack: _Stack) -> Float32Array:
    """Mean entropy term over the segmenters, float32 (a table lookup for uint8 inputs)."""
    if stack.raw.dtype == np.uint8:
        total = np.zeros(stack.raw.shape[1:], np.float32)
        for row in stack.raw:
            total += _H32[row]
        total /= np.float32(stack.raw.shape[0])
        return total
    return np.asarray(uncertainty(stack.p32()), np.float32)
