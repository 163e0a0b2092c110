"""Surface metrics: normalized surface Dice (NSD) and HD95, with DeepMind surface-distance semantics.

Definitions (identical to `surface_distance.compute_surface_distances` and friends):
- Surface elements ("surfels") live on the grid of 2x2 (2D) or 2x2x2 (3D) cells between voxel
  centres, i.e. shifted by half a voxel. A cell whose corners are neither all outside nor all inside
  the mask holds a surfel; its area is that of the marching-squares/-cubes surface inside the cell
  under the voxel spacing.
- The distance of a surfel to the other surface is the Euclidean distance, in mm, to the nearest
  surfel cell of the other mask, computed in float64 exactly as `scipy.ndimage.distance_transform_edt`
  computes it from the integer offset: `sqrt((d0*s0)**2 + (d1*s1)**2 [+ (d2*s2)**2])`.
- NSD at tolerance t: (area of gt surfels with distance <= t + area of pred surfels with distance
  <= t) / (total gt area + total pred area).
- HD95: DeepMind's "robust Hausdorff" at 95 %: in each direction the distance at which the
  cumulative surfel area (sorted by distance) first reaches 95 % of the total, then the larger
  of the two directions. Infinite when one surface is empty.

Instead of two full distance transforms per organ, each surfel's nearest surfel of the other
surface is found (1) in its own cell (distance 0), (2) among the grid offsets of the next cells,
tried by increasing distance, (3) for the rest, with a KD-tree on the surfel coordinates, and only
as far as a metric needs them: NSD up to its tolerance, HD95 up to a little beyond its percentile
(the surfels beyond sort after it), a bounded search on a tree of only the target surfels within
its bound first.
Distances are recomputed from the integer offsets with scipy's float64 formula, and surfels whose
distance lies within rounding error of the tolerance are re-checked against every candidate, so
`<=` at the tolerance matches the reference bit for bit.

Both masks are embedded in one zero-padded grid whose margin holds the offsets of step (2): a
surfel is then a flat index into that grid, shared by both surfaces, and an offset is one integer
added to it; coordinates are computed only for the surfels left to the KD-tree.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from harness.metrics._surfel_table import TRIANGLES_EIGHTHS

if TYPE_CHECKING:
    from scipy.spatial import cKDTree  # loaded when a tree is built, without scipy.spatial's package: see kd_tree_class

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Relative band around the tolerance inside which a KD-tree distance is re-checked exactly.
_TIE_BAND = 1e-9


@dataclass(frozen=True)
class Surface:
    """Surfels of one mask on a cell grid with `margin` cells of room around the mask's own cells:
    flat indices into that grid (C order, so in the mask's own C order) and areas in mm^2 (mm in 2D)."""

    flat: IntArray  # the surfels' flat indices into `border`
    areas_mm2: FloatArray
    border: NDArray[np.bool_]  # 1D, over the whole cell grid: the cells holding a surfel
    area_rank: NDArray[np.uint8]  # each surfel's area as its rank among the table's distinct areas
    shape: tuple[int, ...]  # the cell grid's shape, margins included
    margin: tuple[int, ...]  # cells before the mask's own cell grid on each axis

    @property
    def empty(self) -> bool:
        return self.flat.size == 0

    @cached_property
    def coords(self) -> IntArray:
        """Integer cell coordinates (n, ndim) on the mask's own cell grid (cell i spans voxels i-1 and i)."""
        return self.coords_of(self.flat)

    def coords_of(self, flat: IntArray) -> IntArray:
        return np.stack(np.unravel_index(flat, self.shape), axis=1) - np.asarray(self.margin, dtype=np.intp)


@dataclass(frozen=True)
class SurfaceDistances:
    """Each surfel's distance to the other surface (inf where that surface is empty)."""

    gt_to_pred_mm: FloatArray
    pred_to_gt_mm: FloatArray
    gt_areas_mm2: FloatArray
    pred_areas_mm2: FloatArray
    # The areas as ranks among the distinct `area_values_mm2` (ascending): HD95 orders by them.
    gt_area_rank: NDArray[np.uint8] | None = None
    pred_area_rank: NDArray[np.uint8] | None = None
    area_values_mm2: FloatArray | None = None


def _cell_codes(voxels: NDArray[np.bool_] | NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Neighbour code of every cell between the voxels of `voxels` (one shorter per axis)."""
    code: NDArray[np.uint8] = voxels.view(np.uint8)  # a bool is a byte: the same bits either way
    shift = 1
    for axis in reversed(range(code.ndim)):
        low = tuple(slice(None, -1) if a == axis else slice(None) for a in range(code.ndim))
        high = tuple(slice(1, None) if a == axis else slice(None) for a in range(code.ndim))
        code = (code[low] << np.uint8(shift)) | code[high]
        shift *= 2
    return code


def _border_bits(mask: NDArray[np.uint8], shape: tuple[int, ...]) -> NDArray[np.uint8]:
    """The cells of a flat C-ordered mask of `shape` that hold a surfel, as bits packed
    little-endian: cell `i` has the corners `i + _corner_steps(shape)` (the cells of
    `_cell_codes` on a grid of the mask's own shape, corners past the end outside) and holds a
    surfel where the OR of its corners differs from their AND. Both are built one axis at a time,
    as the codes are, on the mask packed 64 voxels to a word: an axis's neighbour is one shift of
    the bit stream by the axis's stride, 1/8 of a byte's work per voxel."""
    packed = np.packbits(mask, bitorder="little")
    words = np.concatenate((packed, np.zeros(-packed.size % 8, dtype=np.uint8))).view("<u8")
    any_inside, all_inside = words, words
    stride = 1
    for size in reversed(shape):
        any_inside = any_inside | _bits_from(any_inside, stride)
        all_inside = all_inside & _bits_from(all_inside, stride)
        stride *= size
    return (any_inside ^ all_inside).astype("<u8", copy=False).view(np.uint8)


def _bits_from(words: NDArray[np.uint64], step: int) -> NDArray[np.uint64]:
    """The bit stream of `words` (little-endian) moved `step` bits down: bit `i` of the result is
    bit `i + step`, zero past the end."""
    skip, shift = divmod(step, 64)
    moved = np.zeros_like(words)
    kept = max(words.size - skip, 0)
    np.right_shift(words[skip:], np.uint64(shift), out=moved[:kept])
    if shift and kept > 1:
        moved[:kept - 1] |= words[skip + 1:] << np.uint64(64 - shift)
    return moved


def _set_bits(bits: NDArray[np.uint8]) -> IntArray:
    """Indices of the set bits of a little-endian packed bit stream, ascending; only the nonzero
    bytes are unpacked."""
    nonzero = np.flatnonzero(bits != 0)
    within = np.flatnonzero(np.unpackbits(bits[nonzero], bitorder="little").view(np.bool_))
    return nonzero[within >> 3] * 8 + (within & 7)


def _codes_at(mask: NDArray[np.uint8], shape: tuple[int, ...], flat: IntArray) -> NDArray[np.uint8]:
    """The neighbour codes (bits as in `neighbour_codes`) of the cells `flat` of a flat C-ordered
    0/1 mask of `shape`, one gather per corner; every corner of these cells must lie in the mask."""
    steps = _corner_steps(shape)
    codes = np.zeros(flat.size, dtype=np.uint8)
    for bit, step in zip(range(len(steps) - 1, -1, -1), steps, strict=True):
        corner = mask[step:][flat]
        corner <<= np.uint8(bit)
        codes |= corner
    return codes


def _corner_steps(shape: tuple[int, ...]) -> list[int]:
    """Flat offsets of a cell's corners in a C-ordered array of `shape`, corner (a, b[, c]) at
    index 4a + 2b + c (2D: 2a + b)."""
    strides = [math.prod(shape[axis + 1:]) for axis in range(len(shape))]
    return [sum(s for s, on in zip(strides, corner, strict=True) if on)
            for corner in itertools.product((0, 1), repeat=len(shape))]


def neighbour_codes(mask: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Neighbour code of every cell of a zero-padded 2D or 3D mask.

    Cell `i` spans voxels `i-1` and `i` on each axis (so the array is one longer per axis than
    the mask). Bits, 3D: corner (a, b, c) has bit `128 >> (4a + 2b + c)`; 2D: `8 >> (2a + b)`.
    Built one axis at a time (last axis first): each step shifts the codes so far by the bits of
    the axes already combined and ORs in the neighbour along the new axis.
    """
    return _cell_codes(np.pad(mask.astype(np.uint8, copy=False), 1))


@functools.lru_cache(maxsize=64)
def surfel_area_table(spacing_mm: tuple[float, ...]) -> FloatArray:
    """Area (mm^2; contour length in mm for 2D) of the surface in a cell, for each neighbour code."""
    if len(spacing_mm) == 3:
        s0, s1, s2 = spacing_mm
        table = np.zeros(256)
        for code, triangles in enumerate(TRIANGLES_EIGHTHS):
            area = 0.0
            for x, y, z in triangles:
                # Same operation order as the reference, so the table agrees to the last bit.
                n0 = (x / 8.0) * s1 * s2
                n1 = (y / 8.0) * s0 * s2
                n2 = (z / 8.0) * s0 * s1
                area += math.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
            table[code] = area
        return table
    if len(spacing_mm) == 2:
        return _contour_length_table(spacing_mm[0], spacing_mm[1])
    raise ValueError(f"spacing_mm must have 2 or 3 elements, got {spacing_mm!r}")


def _contour_length_table(s0: float, s1: float) -> FloatArray:
    """Marching squares: segments join the midpoints of the cell edges whose corners differ."""
    half_diagonal = 0.5 * math.sqrt(s0**2 + s1**2)
    table = np.zeros(16)
    for code in range(1, 15):
        tl, tr, bl, br = ((code >> bit) & 1 for bit in (3, 2, 1, 0))
        if tl + tr + bl + br != 2:  # one corner differs from the other three: a cut corner
            table[code] = half_diagonal
        elif tl == br:  # saddle (diagonal corners inside): two cut corners
            table[code] = 2 * half_diagonal
        elif tl == tr:  # top row inside or bottom row inside: one segment across the cell
            table[code] = s1
        else:  # left or right column inside
            table[code] = s0
    return table


@functools.lru_cache(maxsize=64)
def near_radii(spacing_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Cells searched on the grid around each surfel, per axis, before the KD-tree: two of the finest
    axis, and as many as reach past the next slice of a coarse one (a surfel whose nearest neighbour
    lies one 2.5 mm slice away would otherwise go to the tree, built for it alone), within six of
    the finest (the offsets tried grow as the cube of the reach)."""
    finest = min(spacing_mm)
    reach_mm = min(max(3 * finest, 1.5 * max(spacing_mm)), 6 * finest)
    return tuple(max(1, math.ceil(reach_mm / s) - 1) for s in spacing_mm)


def embedding_margin(spacing_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Zero voxels to put around a mask on each side for `surface_distances_embedded`."""
    return tuple(r + 1 for r in near_radii(tuple(float(s) for s in spacing_mm)))


def _surface_of_embedded(voxels: NDArray[np.bool_], margin: tuple[int, ...], spacing_mm: tuple[float, ...]) -> Surface:
    """Surfels of a C-ordered mask embedded in `margin` + 1 zero voxels on each side. The zeros
    keep every corner of a surfel's cell inside the array and every cell whose corners a flat
    shift carries across the end of a row free of surfels (their corners are all zeros). Only
    the surfels' cells (2-3 % of a structure's box) get their neighbour codes."""
    mask = np.ascontiguousarray(voxels).reshape(-1).view(np.uint8)
    bits = _border_bits(mask, voxels.shape)
    flat = _set_bits(bits)
    cell_codes = _codes_at(mask, voxels.shape, flat)
    border = np.unpackbits(bits, count=mask.size, bitorder="little").view(np.bool_)
    return Surface(flat=flat, areas_mm2=surfel_area_table(spacing_mm)[cell_codes], border=border,
                   area_rank=_area_ranks(spacing_mm)[1][cell_codes], shape=voxels.shape, margin=margin)


@functools.lru_cache(maxsize=64)
def _area_ranks(spacing_mm: tuple[float, ...]) -> tuple[FloatArray, NDArray[np.uint8]]:
    """The distinct areas of the table, ascending, and each neighbour code's rank among them."""
    values, rank = np.unique(surfel_area_table(spacing_mm), return_inverse=True)
    return values, rank.astype(np.uint8)


def surface(mask: NDArray[np.bool_], spacing_mm: tuple[float, ...]) -> Surface:
    """Surfels of a boolean mask (2D or 3D) and their areas under `spacing_mm` (no margin)."""
    return _surface_of_embedded(np.pad(mask.astype(bool, copy=False), 1), (0,) * mask.ndim,
                                tuple(float(s) for s in spacing_mm))


def _scipy_distance(offsets: IntArray, spacing_mm: FloatArray) -> FloatArray:
    """Euclidean length of integer offsets, in the exact float64 order scipy's EDT uses."""
    total: FloatArray | None = None
    for axis in range(offsets.shape[1]):
        d = offsets[:, axis].astype(np.float64) * spacing_mm[axis]
        d = d * d
        total = d if total is None else total + d
    assert total is not None
    return np.sqrt(total)


@functools.lru_cache(maxsize=64)
def _near_offsets(spacing_mm: tuple[float, ...], radii: tuple[int, ...]) -> tuple[IntArray, FloatArray]:
    """Grid offsets within `radii` cells, by increasing distance, that are certainly nearer than
    anything outside that box: distance < the smallest (radius + 1) * spacing over the axes."""
    ndim = len(spacing_mm)
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in radii], indexing="ij"), axis=-1).reshape(-1, ndim)
    grid = grid[np.any(grid != 0, axis=1)]
    dist = _scipy_distance(grid, np.asarray(spacing_mm))
    keep = dist < min((r + 1) * s for r, s in zip(radii, spacing_mm, strict=True))
    order = np.argsort(dist[keep], kind="stable")
    return grid[keep][order], dist[keep][order]


_GROUP = 8  # offsets whose hits are packed into one byte per surfel
_MAX_GROUPS = 8  # bytes tried together at most, once few surfels find their first hit
# Each byte's lowest set bit: the first of its 8 offsets that hits (0 for none: never looked up).
_LOWEST_BIT = np.array([(b & -b).bit_length() - 1 if b else 0 for b in range(256)], dtype=np.intp)
_BIT_SHIFTS = np.arange(_GROUP, dtype=np.uint64)[:, None]
# Surfels x offsets below which one gather of all of them costs less than a call per offset.
_GATHER_AT_ONCE = 1 << 16


def _first_hits(todo: IntArray, base: IntArray, border: NDArray[np.bool_], steps: IntArray, offset_mm: FloatArray,
                dist: FloatArray) -> IntArray:
    """Give `dist[todo]`, the surfels at flat indices `base`, the distance of their first offset
    (`steps`, by increasing float64 distance `offset_mm`) landing on a `border` cell, the smallest
    candidate distance, as the tie rule below requires; return the `todo` left without one. Every
    `base` cell itself must be off the border, and every offset must stay inside `border`."""
    low = min(int(steps.min(initial=0)), 0)
    # The gathers below clip their indices (the fast form of `take` into a buffer): an offset
    # leaving the grid would read a wrong cell rather than fail, so the margin is checked here.
    if base.size and (int(base.min()) + low < 0 or int(base.max()) + int(steps.max(initial=0)) >= border.size):
        raise ValueError("an offset leaves the grid: the masks need their embedding margin")
    # Offset 0, the surfel's own cell, pads the offsets to whole bytes of hits: it never hits.
    pad = -steps.size % _GROUP
    # Offset i reads `border[starts[i]:]` at the indices `cells`, `base` moved back by the lowest
    # step: one index array serves every offset, without an array of sums per offset.
    starts = np.concatenate((steps, np.zeros(pad, dtype=steps.dtype))) - low
    offset_mm = np.concatenate((offset_mm, np.full(pad, np.inf)))
    cells = base + low
    start = 0
    if todo.size * starts.size > _GATHER_AT_ONCE:
        todo, cells, start = _first_hits_in_steps(todo, cells, border, starts, offset_mm, dist)
    if todo.size and start < starts.size:
        # Few surfels left (far ones, mostly): all their remaining offsets in one gather.
        taken = border.take(np.add.outer(starts[start:], cells), mode="clip")
        hit = taken.any(axis=0)
        found = np.flatnonzero(hit)
        dist[todo[found]] = offset_mm[start + taken[:, found].argmax(axis=0)]
        todo = todo[~hit]
    return todo


def _first_hits_in_steps(todo: IntArray, cells: IntArray, border: NDArray[np.bool_], starts: IntArray,
                         offset_mm: FloatArray, dist: FloatArray) -> tuple[IntArray, IntArray, int]:
    """`_first_hits` while many surfels x offsets are left, offsets 8 to 64 at a time, one gather
    (`border[starts[i]:]` at `cells`) per offset; returns the surfels left, their cells and the
    first offset not tried. Each 8 hits of a surfel are packed into one byte whose lowest set bit
    is their first hit."""
    starts_list = starts.tolist()
    # Per byte of 8 offsets, the distance of the first hit for each of the 256 values of the byte.
    first_mm = offset_mm[np.arange(0, offset_mm.size, _GROUP)[:, None] + _LOWEST_BIT]
    # One row of hits per offset, whole 8-byte words long: 8 surfels' hits (a byte each, 0 or 1)
    # are shifted into their bit positions at once, none crossing into the next byte.
    words = -(-todo.size // 8)
    hits = np.empty((_MAX_GROUPS * _GROUP, words * 8), dtype=np.bool_)
    rows = list(hits)
    words_of_hits = hits.view(np.uint64).reshape(_MAX_GROUPS, _GROUP, words)
    groups = 1
    start = 0
    while todo.size * (len(starts_list) - start) > _GATHER_AT_ONCE:
        n = todo.size
        tried = starts_list[start:start + groups * _GROUP]
        for row, at in zip(rows, tried, strict=False):
            border[at:].take(cells, out=row[:n], mode="clip")
        byte = start // _GROUP
        packed = np.bitwise_or.reduce(words_of_hits[:len(tried) // _GROUP, :, :-(-n // 8)] << _BIT_SHIFTS, axis=1)
        # The surfels with and without a hit as index arrays: gathering the rest by index costs a
        # fifth of selecting it with a mask.
        if len(tried) == _GROUP:
            first = packed.view(np.uint8)[0, :n]
            found = first.nonzero()[0]
            distances = first_mm[byte].take(first[found])
            left = (first == 0).nonzero()[0]
        else:
            firsts = packed.view(np.uint8)[:, :n]
            hit = firsts != 0
            anywhere = hit.any(axis=0)
            found = anywhere.nonzero()[0]
            left = (~anywhere).nonzero()[0]
            group = hit[:, found].argmax(axis=0)
            distances = first_mm[byte + group, firsts[group, found]]
        start += len(tried)
        if found.size:
            dist[todo[found]] = distances
            todo, cells = todo[left], cells[left]
        # Where few surfels find their first hit, try more offsets at once: fewer, larger steps.
        if found.size * 8 < n:
            groups = min(2 * groups, _MAX_GROUPS)
    return todo, cells, start


def _strides(shape: tuple[int, ...]) -> IntArray:
    return np.array([int(np.prod(shape[a + 1:])) for a in range(len(shape))])


def _assign_near_offsets(source: Surface, todo: IntArray, target: Surface, spacing_mm: FloatArray,
                         dist: FloatArray) -> IntArray:
    """Give `dist[todo]` their exact distance where a target surfel is among the near offsets
    (those the grid's margin holds); return the indices still without one."""
    offsets, offset_mm = _near_offsets(tuple(float(s) for s in spacing_mm), source.margin)
    return _first_hits(todo, source.flat[todo], target.border, offsets @ _strides(source.shape), offset_mm, dist)


# A few surfels a little beyond the near offsets are looked up on the grid out to twice their reach
# rather than in a KD-tree built for them alone, while the lookups (offsets x surfels) stay under
# this many per target surfel (a tree costs about as much as 4 of them per surfel to build).
_WIDER_LOOKUPS_PER_TARGET_SURFEL = 4


def _wider_radii(radii: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(2 * r + 1 for r in radii)


def _reach_mm(spacing_mm: tuple[float, ...], radii: tuple[int, ...]) -> float:
    """Every offset nearer than this lies inside the box of `radii` (see `_near_offsets`)."""
    return min((r + 1) * s for r, s in zip(radii, spacing_mm, strict=True))


def _assign_wider_offsets(source: Surface, todo: IntArray, target: Surface, spacing_mm: FloatArray,
                          dist: FloatArray) -> tuple[IntArray, bool]:
    """`_assign_near_offsets` out to about twice the reach, for few surfels, on a copy of the
    part of the target's grid they can reach, widened with empty cells to hold all their offsets;
    returns the indices still without a distance, and whether the wider offsets were tried."""
    spacing_key = tuple(float(s) for s in spacing_mm)
    near = _near_offsets(spacing_key, source.margin)[1]
    radii = _wider_radii(source.margin)
    offsets, offset_mm = _near_offsets(spacing_key, radii)
    tried = near.size  # the nearer offsets, already tried, come first in both sorted lists
    if todo.size * (offset_mm.size - tried) > _WIDER_LOOKUPS_PER_TARGET_SURFEL * target.flat.size:
        return todo, False
    cells = np.stack(np.unravel_index(source.flat[todo], source.shape), axis=1)
    # The box of cells the offsets reach from these surfels (often a corner of the grid: a copy of
    # it costs less than one of the whole grid), with the cells outside the grid empty.
    low = cells.min(axis=0) - np.asarray(radii)
    high = cells.max(axis=0) + np.asarray(radii) + 1
    border = np.zeros(tuple(high - low), dtype=np.bool_)
    inside = tuple(slice(max(lo, 0), min(hi, n)) for lo, hi, n in zip(low, high, source.shape, strict=True))
    border[tuple(slice(part.start - lo, part.stop - lo) for part, lo in zip(inside, low, strict=True))] = \
        target.border.reshape(target.shape)[inside]
    base = np.ravel_multi_index(tuple((cells - low).T), border.shape)
    left = _first_hits(todo, base, border.reshape(-1), offsets[tried:] @ _strides(border.shape), offset_mm[tried:],
                       dist)
    return left, True


def _min_candidate_distance(
    tree: cKDTree, target: IntArray, points: IntArray, spacing_mm: FloatArray, *, radius_mm: float, workers: int
) -> FloatArray:
    """Smallest scipy-formula distance from each point to any target surfel within `radius_mm`."""
    best = np.full(points.shape[0], np.inf)
    k = 16
    pending = np.arange(points.shape[0])
    while pending.size:
        _, idx = tree.query(points[pending] * spacing_mm, k=k, distance_upper_bound=radius_mm, workers=workers)
        found = idx < target.shape[0]
        safe = np.where(found, idx, 0)
        cand = _scipy_distance((target[safe] - points[pending][:, None, :]).reshape(-1, points.shape[1]), spacing_mm)
        cand = np.where(found, cand.reshape(idx.shape), np.inf)
        best[pending] = np.minimum(best[pending], cand.min(axis=1))
        pending = pending[found[:, -1]]  # all k within the radius: there may be more, look wider
        if k >= target.shape[0]:
            break
        k *= 4
    return best


def _grid_distances(source: Surface, target: Surface, spacing_mm: FloatArray) -> tuple[FloatArray, IntArray, float]:
    """Each source surfel's distance to the target surface where the grid search finds it; the
    others (returned, with inf in their place) are all at least the returned reach away."""
    n = source.flat.size
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.intp), math.inf
    if target.empty:
        return np.full(n, np.inf), np.zeros(0, dtype=np.intp), math.inf
    dist = np.zeros(n)
    spacing_key = tuple(float(s) for s in spacing_mm)
    reach = math.inf
    # Surfels in a cell that also holds a target surfel are at distance 0, and most of the rest of
    # a good prediction's surface is a cell or two away: look those up on the target's surfel grid,
    # nearest offsets first, and leave only the remainder to the KD-tree.
    todo = np.flatnonzero(~target.border[source.flat])
    if todo.size:
        todo = _assign_near_offsets(source, todo, target, spacing_mm, dist)
        reach = _reach_mm(spacing_key, source.margin)
    if todo.size:
        todo, wider = _assign_wider_offsets(source, todo, target, spacing_mm, dist)
        if wider:
            reach = _reach_mm(spacing_key, _wider_radii(source.margin))
    dist[todo] = np.inf
    return dist, todo, reach


def _tree_distances(source: Surface, target: Surface, target_tree: Callable[[], cKDTree], spacing_mm: FloatArray,
                    tolerances_mm: tuple[float, ...], workers: int, dist: FloatArray, todo: IntArray,
                    *, upper_bound_mm: float = math.inf) -> None:
    """Give `dist[todo]` their distance to the nearest target surfel with the KD-tree; with an
    `upper_bound_mm`, only to those nearer than it (the tree prunes the rest early), the others
    left at inf."""
    coords = source.coords_of(source.flat[todo])
    scaled = coords * spacing_mm
    tree = target_tree()
    if math.isinf(upper_bound_mm):
        _, nearest = tree.query(scaled, k=1, workers=workers)
        dist[todo] = _scipy_distance(target.coords[nearest] - coords, spacing_mm)
    else:
        _, nearest = tree.query(scaled, k=1, distance_upper_bound=upper_bound_mm, workers=workers)
        within = nearest < target.flat.size
        todo, coords = todo[within], coords[within]
        dist[todo] = _scipy_distance(target.coords[nearest[within]] - coords, spacing_mm)
    _recheck_tolerances(tree, target, spacing_mm, tolerances_mm, workers, dist, todo, coords)


def _recheck_tolerances(tree: cKDTree, target: Surface, spacing_mm: FloatArray, tolerances_mm: tuple[float, ...],
                        workers: int, dist: FloatArray, todo: IntArray, coords: IntArray) -> None:
    for tol in tolerances_mm:
        # The tree may pick a different one of several equidistant surfels, whose float64
        # distance differs in the last bit; at the tolerance that decides `<=`, so look at all.
        band = _TIE_BAND * max(1.0, tol)
        near_tol = np.flatnonzero(np.abs(dist[todo] - tol) <= band)
        if near_tol.size:
            dist[todo[near_tol]] = _min_candidate_distance(
                tree, target.coords, coords[near_tol], spacing_mm, radius_mm=tol + 2 * band, workers=workers)


# Tree distances (from coordinates in mm) and the scipy formula (from integer offsets) round
# differently, by far less than this relative amount.
_TREE_ROUNDING = 1e-9


# The target surfels searched around the far surfels reach this much (relative) beyond a bound:
# the ties at a distance just below the bound, and those at the tolerance, are among them.
_BOX_SLACK = 1e-6
# Equidistant nearest surfels compared per surfel; where there may be more, the unbounded search is asked.
_TIE_CANDIDATES = 8


def _tree_distances_below(source: Surface, target: Surface, target_tree: Callable[[], cKDTree], near: Surface,
                          near_tree: cKDTree, spacing_mm: FloatArray, tolerances_mm: tuple[float, ...], workers: int,
                          dist: FloatArray, todo: IntArray, *, bound_mm: float) -> IntArray:
    """Give `dist[todo]` their distance where a target surfel lies nearer than `bound_mm`, the very
    value `_tree_distances` gives them without a bound; return the indices left, all at least
    `bound_mm * (1 - _TREE_ROUNDING)` away. `near_tree` holds the target surfels `near`: all (or at
    least all within `bound_mm * (1 + _BOX_SLACK)` of the `todo` surfels).

    The bounded search finds the unbounded one's nearest surfel unless another lies within rounding
    of it: the two nearest tell. Of such equidistant surfels the unbounded search may take any; where
    their float64 distances agree, it does not matter which; elsewhere (not once on the bench's
    FLARE-like masks) it is asked."""
    coords = source.coords_of(source.flat[todo])
    scaled = coords * spacing_mm
    tree_mm, nearest = near_tree.query(scaled, k=2, distance_upper_bound=bound_mm, workers=workers)
    within = nearest[:, 0] < near.flat.size
    found, coords, scaled, tree_mm = todo[within], coords[within], scaled[within], tree_mm[within]
    dist[found] = _scipy_distance(near.coords[nearest[within, 0]] - coords, spacing_mm)
    tied = np.flatnonzero(~(np.minimum(tree_mm[:, 1], bound_mm) > tree_mm[:, 0] * (1.0 + _TREE_ROUNDING)))
    if tied.size:
        cand_mm, cand = near_tree.query(scaled[tied], k=_TIE_CANDIDATES, distance_upper_bound=bound_mm * (1.0 + _BOX_SLACK),
                                        workers=workers)
        equal = cand_mm <= cand_mm[:, :1] * (1.0 + _TREE_ROUNDING)  # never an absent one (inf)
        offsets = near.coords[np.where(equal, cand, 0)] - coords[tied][:, None, :]
        values = _scipy_distance(offsets.reshape(-1, coords.shape[1]), spacing_mm).reshape(cand.shape)
        differ = np.where(equal, values, np.inf).min(axis=1) != np.where(equal, values, -np.inf).max(axis=1)
        ask = tied[differ | equal[:, -1]]  # or perhaps more of them than were looked at
        if ask.size:
            _, canonical = target_tree().query(scaled[ask], k=1, workers=workers)
            dist[found[ask]] = _scipy_distance(target.coords[canonical] - coords[ask], spacing_mm)
    _recheck_tolerances(near_tree, near, spacing_mm, tolerances_mm, workers, dist, found, coords)
    return todo[~within]


def _directed_distances(
    source: Surface,
    target: Surface,
    target_tree: Callable[[], cKDTree],
    spacing_mm: FloatArray,
    tolerances_mm: tuple[float, ...],
    workers: int = 1,
) -> FloatArray:
    """Distance from each source surfel to the nearest target surfel (inf if target is empty)."""
    dist, todo, _ = _grid_distances(source, target, spacing_mm)
    if todo.size:
        _tree_distances(source, target, target_tree, spacing_mm, tolerances_mm, workers, dist, todo)
    return dist


def surface_distances(
    mask_gt: NDArray[np.bool_],
    mask_pred: NDArray[np.bool_],
    spacing_mm: tuple[float, ...],
    *,
    tolerances_mm: tuple[float, ...] = (),
    workers: int = 1,
) -> SurfaceDistances:
    """Distances between the two surfaces (argument order: ground truth, prediction).

    `tolerances_mm` lists the tolerances that will be applied to the result, so that distances
    lying exactly on one of them are resolved like the reference's distance transform. `workers`
    threads share the nearest-surfel search.
    """
    if mask_gt.shape != mask_pred.shape:
        raise ValueError(f"mask shapes differ: {mask_gt.shape} vs {mask_pred.shape}")
    if len(spacing_mm) != mask_gt.ndim:
        raise ValueError(f"spacing_mm {spacing_mm!r} does not match a {mask_gt.ndim}D mask")
    margin = embedding_margin(spacing_mm)
    return surface_distances_embedded(
        np.pad(mask_gt.astype(bool, copy=False), [(m, m) for m in margin]),
        np.pad(mask_pred.astype(bool, copy=False), [(m, m) for m in margin]),
        spacing_mm, tolerances_mm=tolerances_mm, workers=workers)


def surface_distances_embedded(
    voxels_gt: NDArray[np.bool_],
    voxels_pred: NDArray[np.bool_],
    spacing_mm: tuple[float, ...],
    *,
    tolerances_mm: tuple[float, ...] = (),
    workers: int = 1,
) -> SurfaceDistances:
    """`surface_distances` of two C-ordered masks that their caller has already surrounded with
    `embedding_margin(spacing_mm)` zero voxels on each side (the same for both: one copy, not two)."""
    if voxels_gt.shape != voxels_pred.shape:
        raise ValueError(f"mask shapes differ: {voxels_gt.shape} vs {voxels_pred.shape}")
    spacing_key = tuple(float(s) for s in spacing_mm)
    margin = tuple(m - 1 for m in embedding_margin(spacing_key))
    spacing = np.asarray(spacing_key, dtype=np.float64)
    gt = _surface_of_embedded(voxels_gt, margin, spacing_key)
    pred = _surface_of_embedded(voxels_pred, margin, spacing_key)
    # Trees are built only if some surfel is farther than the near offsets from the other surface.
    gt_tree = functools.cache(lambda: _tree(gt.coords * spacing))
    pred_tree = functools.cache(lambda: _tree(pred.coords * spacing))
    return SurfaceDistances(
        gt_to_pred_mm=_directed_distances(gt, pred, pred_tree, spacing, tolerances_mm, workers),
        pred_to_gt_mm=_directed_distances(pred, gt, gt_tree, spacing, tolerances_mm, workers),
        gt_areas_mm2=gt.areas_mm2,
        pred_areas_mm2=pred.areas_mm2,
        gt_area_rank=gt.area_rank,
        pred_area_rank=pred.area_rank,
        area_values_mm2=_area_ranks(spacing_key)[0],
    )


# A surfel left beyond the grid search is at least its reach away, up to the rounding of the
# distance's last bit: a value this much below the reach is certainly nearer.
_BELOW_REACH = 1.0 - 1e-12


def surface_dice_and_hausdorff(
    voxels_gt: NDArray[np.bool_],
    voxels_pred: NDArray[np.bool_],
    spacing_mm: tuple[float, ...],
    *,
    tolerance_mm: float,
    nsd: bool = True,
    percent: float = 95.0,
    workers: int = 1,
) -> tuple[float, float]:
    """`surface_dice(d, tolerance_mm)` (NaN when `nsd` is false) and `robust_hausdorff(d, percent)`
    of `d = surface_distances_embedded(voxels_gt, voxels_pred, spacing_mm, tolerances_mm=(tolerance_mm,))`,
    the same values, without the KD-tree where neither needs the surfels beyond the grid search:
    NSD does not when the tolerance lies within the search's reach (those surfels are all farther),
    HD does not when the percentile is reached among the surfels the search found (those come
    first in the distance order; the sum of the areas up to the percentile is the same). Where HD
    does, the tree resolves the far surfels only out to a little beyond the percentile (see
    `far_percentile`), by the same argument."""
    if voxels_gt.shape != voxels_pred.shape:
        raise ValueError(f"mask shapes differ: {voxels_gt.shape} vs {voxels_pred.shape}")
    spacing_key = tuple(float(s) for s in spacing_mm)
    margin = tuple(m - 1 for m in embedding_margin(spacing_key))
    spacing = np.asarray(spacing_key, dtype=np.float64)
    gt = _surface_of_embedded(voxels_gt, margin, spacing_key)
    pred = _surface_of_embedded(voxels_pred, margin, spacing_key)
    trees = {id(gt): functools.cache(lambda: _tree(gt.coords * spacing)),
             id(pred): functools.cache(lambda: _tree(pred.coords * spacing))}
    values = _area_ranks(spacing_key)[0]
    directions: list[list[Any]] = []  # [source, target, distances, far surfels, reach], per direction
    for source, target in ((gt, pred), (pred, gt)):
        dist, far, reach = _grid_distances(source, target, spacing)
        directions.append([source, target, dist, far, reach])

    def resolve(direction: list, upper_bound_mm: float = math.inf) -> None:  # type: ignore[type-arg]
        source, target, dist, far, _ = direction
        if far.size:
            tree = trees[id(target)]
            if math.isfinite(upper_bound_mm):
                # Only this search uses the target's tree: built on the surfels it can find, at most
                # ceil(bound / spacing) cells from a far surfel on each axis. The tie re-check at the
                # tolerance finds all its candidates there too.
                cells = np.ceil(upper_bound_mm / spacing).astype(np.intp)
                target = _surfels_near(target, source.coords_of(source.flat[far]), cells)
                tree = functools.cache(lambda: _tree(target.coords * spacing))
            _tree_distances(source, target, tree, spacing, (tolerance_mm,), workers, dist, far,
                            upper_bound_mm=upper_bound_mm)
            direction[3] = far[:0]

    def near_percentile(direction: list) -> float | None:  # type: ignore[type-arg]
        """The direction's HD if the grid search's distances decide it, else None."""
        source, _, dist, far, reach = direction
        if far.size and source.areas_mm2[far].sum() > (1.0 - percent / 100.0) * 1.000001 * source.areas_mm2.sum():
            return None  # the far surfels alone hold more area than lies beyond the percentile
        value = _percentile_distance(dist, source.areas_mm2, percent, source.area_rank, values)
        return value if not far.size or value < reach * _BELOW_REACH else None

    def far_percentile(direction: list, least_bound_mm: float = 0.0) -> float:  # type: ignore[type-arg]
        """The direction's HD, with the far surfels' distances only as far as it needs (and out to
        `least_bound_mm`): a sample of them guesses where the percentile lies; searches bounded by
        growing guesses resolve the surfels nearer than each, until the percentile lies among them
        (the others sort after it: their exact distances do not matter). The first search needs a
        tree only of the target surfels within its bound of the far surfels."""
        source, target, dist, far, _ = direction
        if far.size <= 2 * _SAMPLE:
            resolve(direction)
            return near_percentile(direction)  # type: ignore[return-value]
        coords = source.coords_of(source.flat[far])
        sample = np.arange(0, far.size, far.size // _SAMPLE)
        # Distances to every few target surfels: above the sample's own, a guess that errs upwards.
        guess_mm, _ = _tree(target.coords[::_THIN] * spacing).query(coords[sample] * spacing, workers=workers)
        bounds = _far_bounds(guess_mm, source.areas_mm2, far[sample], far, percent, least_bound_mm)
        for i, bound in enumerate(bounds):
            if math.isinf(bound):
                break
            if bound <= direction[4]:
                continue
            if i == 0:
                cells = np.ceil(bound * (1.0 + _BOX_SLACK) / spacing).astype(np.intp) + 1
                near = _surfels_near(target, coords, cells)
                near_tree = _tree(near.coords * spacing)
            else:
                near, near_tree = target, trees[id(target)]()
            direction[3] = _tree_distances_below(source, target, trees[id(target)], near, near_tree, spacing,
                                                 (tolerance_mm,), workers, dist, direction[3], bound_mm=bound)
            direction[4] = bound * (1.0 - _TREE_ROUNDING)
            value = near_percentile(direction)
            if value is not None:
                return value
        resolve(direction)
        return near_percentile(direction)  # type: ignore[return-value]

    hausdorff: list[float | None] = [None, None]
    nsd_value = math.nan
    if nsd:
        for i, direction in enumerate(directions):
            if not tolerance_mm < direction[4] * _BELOW_REACH and direction[3].size:
                # NSD needs the surfels beyond the search only up to the tolerance; if the HD is
                # already decided, the tree looks no farther (the rest stay inf: beyond the tolerance).
                hausdorff[i] = near_percentile(direction)
                band = _TIE_BAND * max(1.0, tolerance_mm)
                if hausdorff[i] is not None:
                    resolve(direction, tolerance_mm + 4 * band)
                else:
                    hausdorff[i] = far_percentile(direction, tolerance_mm + 4 * band)
        nsd_value = surface_dice(SurfaceDistances(directions[0][2], directions[1][2], gt.areas_mm2, pred.areas_mm2),
                                 tolerance_mm)
    for i, direction in enumerate(directions):
        if hausdorff[i] is None:
            hausdorff[i] = near_percentile(direction)
        if hausdorff[i] is None:
            hausdorff[i] = far_percentile(direction)
    return nsd_value, max(h for h in hausdorff if h is not None)


def _surfels_near(surface: Surface, coords: IntArray, cells: IntArray) -> Surface:
    """Those surfels of `surface` at most `cells` cells away, on each axis, from some of `coords`, and
    perhaps a few more: the ones in the blocks of `cells` cells that hold one of `coords` and in the
    blocks next to those (its `border` still the whole surface's: only a KD-tree is built from this one)."""
    low = coords.min(axis=0) - cells  # a block below theirs: the blocks next to them count from 0
    blocks = (coords - low) // cells
    held = np.zeros(tuple(blocks.max(axis=0) + 2), dtype=bool)
    held[tuple(blocks.T)] = True
    near = held.copy()
    for shift in np.ndindex(*(3,) * coords.shape[1]):  # the blocks next to them, diagonals included
        src = tuple(slice(max(0, d - 1), n + min(0, d - 1)) for d, n in zip(shift, held.shape, strict=True))
        dst = tuple(slice(max(0, 1 - d), n + min(0, 1 - d)) for d, n in zip(shift, held.shape, strict=True))
        near[dst] |= held[src]
    at = (surface.coords - low) // cells
    inside = np.all((at >= 0) & (at < np.asarray(held.shape)), axis=1)
    inside[inside] = near[tuple(at[inside].T)]
    return replace(surface, flat=surface.flat[inside], areas_mm2=surface.areas_mm2[inside],
                   area_rank=surface.area_rank[inside])


# Far surfels whose distances guess where the percentile lies among them: the guess of the area
# share below it is off by about 0.05 (its standard deviation at this size).
_SAMPLE = 96
# The guess looks up every this many target surfels, in a tree as many times smaller.
_THIN = 16


def _far_bounds(sample_mm: FloatArray, areas_mm2: FloatArray, sample: IntArray, far: IntArray, percent: float,
                least_mm: float) -> list[float]:
    """Bounds for the searches of `far_percentile`, increasing, the last one inf: where the sample's
    area reaches a little more, then much more, than the share of the far surfels' area that lies
    within the percentile, and at least `least_mm`."""
    sample_areas = areas_mm2[sample]
    far_area = areas_mm2[far].sum()
    share = 1.0 - areas_mm2.sum() * (1.0 - percent / 100.0) / far_area
    order = np.argsort(sample_mm, kind="stable")
    cumulative = np.cumsum(sample_areas[order]) / sample_areas.sum()
    bounds = []
    for margin in (0.1, 0.3):
        i = int(np.searchsorted(cumulative, share + margin))
        # Just beyond the sample's distance there, so that surfels at the same distance are resolved.
        bounds.append(max(least_mm, float(sample_mm[order[i]]) * 1.01) if i < sample.size else math.inf)
    return [*bounds, math.inf]


def _tree(points: FloatArray) -> cKDTree:
    # Sliding-midpoint splits build about twice as fast as median splits and query as fast here;
    # leaves of 64 points (scipy: 16) build faster than 32 and answer the far surfels' queries as
    # fast: 9 % less tree time on perturbed cases (32 took 6 % off 16's).
    return kd_tree_class()(points, leafsize=64, balanced_tree=False, compact_nodes=False)


@functools.cache
def kd_tree_class() -> type[cKDTree]:
    """scipy's `cKDTree`, from its extension module alone: `import scipy.spatial` runs the package's
    `__init__`, which also imports Delaunay's qhull (with scipy.linalg), scipy.special and the
    rotations, 0.2 s of CPU that the tree does not use (the module itself needs only numpy and
    scipy.sparse). The module is registered under its own name, so a later `import scipy.spatial`
    finds and uses it. Any surprise (another scipy layout) falls back to the plain import."""
    import sys

    name = "scipy.spatial._ckdtree"
    if name not in sys.modules and "scipy.spatial" not in sys.modules:
        import importlib.machinery
        import importlib.util
        from pathlib import Path

        import scipy

        try:
            found = importlib.machinery.PathFinder.find_spec("_ckdtree", [str(Path(scipy.__file__).parent / "spatial")])
            spec = importlib.util.spec_from_file_location(name, found.origin) if found and found.origin else None
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        except ImportError:
            pass
    loaded = sys.modules.get(name)
    if loaded is not None and hasattr(loaded, "cKDTree"):
        return loaded.cKDTree  # type: ignore[no-any-return]
    from scipy.spatial import cKDTree as plain

    return plain


def surface_dice(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """NSD at `tolerance_mm` (distance `<=` tolerance counts). NaN when both surfaces are empty."""
    total = distances.gt_areas_mm2.sum() + distances.pred_areas_mm2.sum()
    if total == 0:
        return math.nan
    overlap = (
        distances.gt_areas_mm2[distances.gt_to_pred_mm <= tolerance_mm].sum()
        + distances.pred_areas_mm2[distances.pred_to_gt_mm <= tolerance_mm].sum()
    )
    return float(overlap / total)


def _percentile_distance(dist_mm: FloatArray, areas: FloatArray, percent: float,
                         rank: NDArray[np.uint8] | None = None, values: FloatArray | None = None) -> float:
    if dist_mm.size == 0:
        return math.inf
    ranks: NDArray[np.integer]
    if rank is None or values is None:
        values, inverse = np.unique(areas, return_inverse=True)
        ranks = inverse.reshape(-1)
    else:
        ranks = rank
    # Sorted by (distance, area) like the reference, the area by its rank among the few distinct
    # areas (the same order), as one int64 key per surfel that numpy's vectorised sort orders in
    # place (with an index sort by the two keys this function took twice as long on the bench
    # cases): non-negative floats order as their bits, so the key is the distance's bits counted
    # from the smallest non-zero distance's, then the rank's bits. Zero distances key -1 (first, by
    # area); distances more than 2**(11 - rank bits) binades above the smallest (64 for 17 to 32
    # distinct areas; inf among them) share the top key. Equal keys are equal (distance, area)
    # pairs, whose order changes no sum.
    rank_bits = (values.size - 1).bit_length()
    top = (1 << (63 - rank_bits)) - 1
    key = np.add(dist_mm, 0.0, dtype=np.float64).view(np.int64)  # + 0.0: -0.0 is 0.0's bits
    key -= 1
    smallest = int(key.view(np.uint64).min())  # zero distances wrapped round to the largest
    if smallest >> 63:
        return 0.0  # every distance is zero
    key -= smallest
    np.clip(key, -1, top, out=key)
    key <<= rank_bits
    key |= ranks
    key.sort()
    cumulative = values.take(key & ((1 << rank_bits) - 1))  # the areas (values[rank]) in that order
    np.cumsum(cumulative, out=cumulative)
    total = areas.sum()
    # The reference's searchsorted(cumulative / total, percent / 100): the quotients are as
    # monotonic, so a bisection that divides only where it looks finds the same index.
    idx = min(bisect.bisect_left(cumulative, percent / 100.0, key=lambda c: c / total), dist_mm.size - 1)
    step = int(key[idx]) >> rank_bits
    if step == top:  # among the shared top keys, out of the reference's order: its own sort
        order = np.lexsort((ranks, dist_mm))
        fractions = np.cumsum(areas[order]) / total
        return float(dist_mm[order[min(int(np.searchsorted(fractions, percent / 100.0)), dist_mm.size - 1)]])
    return 0.0 if step < 0 else float(np.int64(step + smallest + 1).view(np.float64))


def robust_hausdorff(distances: SurfaceDistances, percent: float = 95.0) -> float:
    """HD at `percent` (HD95 by default), in mm; inf when either surface is empty."""
    return max(
        _percentile_distance(distances.gt_to_pred_mm, distances.gt_areas_mm2, percent,
                             distances.gt_area_rank, distances.area_values_mm2),
        _percentile_distance(distances.pred_to_gt_mm, distances.pred_areas_mm2, percent,
                             distances.pred_area_rank, distances.area_values_mm2),
    )
