"""Synthetic abdominal CT phantoms in the FLARE22 layout: the harness's built-in default data.

Each case is one made-up patient drawn from `np.random.default_rng([seed, index])`: skin, fat,
abdominal wall, spine and ribs, lung bases and heart above the diaphragm, bowel, the main abdominal
vessels and the 13 FLARE22 organs at their usual places with the FLARE22 development set's median
volumes (+-15 % per case), each smoothly deformed, imaged in one of four contrast phases with CT-like
noise and blur. The anatomy does not depend on `size`: `small` and `full` show the same patient on
a coarser or a finer grid.

A share of the cases (`pathology`, 0 by default) also has one finding that the healthy phantoms the
example segmenters were trained on lack, drawn from its own stream `[seed, index, 100]` so the rest
of the patient is the same as without it (`PATHOLOGIES`): hypodense liver lesions, a renal cyst
that may bulge out of its kidney, an atrophic kidney, a kidney displaced downwards, or an enlarged
spleen. Lesions and cysts are labelled as their organ, as FLARE22's labels include them.

Coordinates are RAS+ millimetres (nibabel's convention) with the origin at the centre of the
vertebral bodies: +x is the patient's *right*, +y anterior, +z superior. The affine is a positive
diagonal, so `aff2axcodes` gives ('R', 'A', 'S') and the patient's right (liver) lies at HIGH x
index, anterior at high y index, superior at high z index. Anatomy below is written as
(x, y, depth) with depth = mm below the top of the right diaphragm dome.

Only `write_dataset` and `save_nifti_gz` touch the disk; everything else is pure.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from harness.errors import DataError, SpecError
from harness.profiles import load_profile

SIZES = ("small", "full")
SPLITS = ("Tr", "Ts")
PHASES = ("plain", "arterial", "portal", "delay")
GENERATOR_VERSION = 1  # bump when the same (seed, index) would give different pixels
CASE_PREFIX = "phantom_"

# Medians of the FLARE22 development set (cm^3) that the generator aims at; per-case scale +-15 %.
TARGET_VOLUME_CM3: dict[str, float] = {
    "liver": 1600.0,
    "right_kidney": 165.0,
    "spleen": 225.0,
    "pancreas": 75.0,
    "right_adrenal_gland": 4.5,
    "left_adrenal_gland": 4.5,
    "gallbladder": 32.0,
    "stomach": 350.0,
    "duodenum": 80.0,
    "left_kidney": 165.0,
}


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """One generated case: int16 HU image and uint8 label map on the same RAS grid."""

    case_id: str
    image_hu: NDArray[np.int16]
    label: NDArray[np.uint8]
    spacing_mm: tuple[float, float, float]
    affine: NDArray[np.float64]  # 4x4, positive diagonal of spacing_mm (RAS+)
    phase: str  # one of PHASES
    noise_hu: float = 0.0  # standard deviation of the final image noise
    pathology: dict[str, Any] | None = None  # the finding (`Pathology.record()`), None when healthy

    def nifti_images(self) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
        """The (image, label) pair as NIfTI-1 images with sform and qform set to `affine`."""
        return _nifti(self.image_hu, self.affine), _nifti(self.label, self.affine)


# --- tissues ---------------------------------------------------------------------------------
# name: (organ label name or None, HU in the plain, arterial, portal and delay phases)
_TISSUES: dict[str, tuple[str | None, tuple[float, float, float, float]]] = {
    "air": (None, (-1000, -1000, -1000, -1000)),
    "subcutaneous_fat": (None, (-105, -105, -102, -102)),
    "muscle": (None, (48, 52, 60, 57)),
    "visceral_fat": (None, (-95, -95, -92, -92)),
    "mediastinal_fat": (None, (-90, -90, -88, -88)),
    "cortical_bone": (None, (780, 780, 780, 780)),
    "cancellous_bone": (None, (230, 235, 240, 240)),
    "rib": (None, (480, 480, 485, 485)),
    "disc": (None, (85, 90, 95, 95)),
    "csf": (None, (10, 10, 12, 12)),
    "lung": (None, (-860, -860, -860, -860)),
    "blood_pool": (None, (42, 280, 165, 118)),
    "artery": (None, (42, 300, 165, 118)),
    "vein": (None, (42, 110, 170, 118)),
    "bowel_wall": (None, (38, 85, 95, 75)),
    "bowel_fluid": (None, (14, 14, 16, 16)),
    "bowel_gas": (None, (-920, -920, -920, -920)),
    "feces": (None, (-120, -120, -118, -118)),
    "liver": ("liver", (58, 75, 112, 95)),
    "liver_vessel": ("liver", (40, 105, 175, 112)),
    "right_kidney": ("right_kidney", (32, 190, 178, 142)),
    "right_kidney_medulla": ("right_kidney", (30, 75, 155, 150)),
    "right_kidney_pelvis": ("right_kidney", (12, 12, 20, 600)),
    "left_kidney": ("left_kidney", (32, 190, 178, 142)),
    "left_kidney_medulla": ("left_kidney", (30, 75, 155, 150)),
    "left_kidney_pelvis": ("left_kidney", (12, 12, 20, 600)),
    "spleen": ("spleen", (46, 125, 122, 95)),
    "pancreas": ("pancreas", (42, 120, 100, 78)),
    "aorta": ("aorta", (45, 305, 168, 118)),
    "inferior_vena_cava": ("inferior_vena_cava", (43, 80, 148, 115)),
    "right_adrenal_gland": ("right_adrenal_gland", (28, 68, 75, 58)),
    "left_adrenal_gland": ("left_adrenal_gland", (28, 68, 75, 58)),
    "gallbladder": ("gallbladder", (12, 12, 14, 14)),
    "esophagus": ("esophagus", (42, 68, 78, 66)),
    "stomach": ("stomach", (42, 95, 92, 72)),
    "stomach_content": ("stomach", (20, 20, 22, 22)),
    "stomach_gas": ("stomach", (-910, -910, -910, -910)),
    "duodenum": ("duodenum", (42, 95, 92, 72)),
    "duodenum_content": ("duodenum", (18, 18, 20, 20)),
    # Pathology (after the healthy tissues: a healthy case's classes and HU jitter stay the same).
    "liver_lesion": ("liver", (25, 30, 40, 38)),  # hypodense, like a metastasis in the portal phase
    "right_renal_cyst": ("right_kidney", (8, 8, 9, 9)),  # water, no enhancement
    "left_renal_cyst": ("left_kidney", (8, 8, 9, 9)),
}
_HEALTHY_TISSUES = len(_TISSUES) - 3  # tissues whose HU jitter the anatomy's stream draws
_TISSUE_NAMES = tuple(_TISSUES)
_CLASS = {name: i for i, name in enumerate(_TISSUE_NAMES)}  # tissue name -> class value


LESION_ORGAN = "lesion"  # a profile's organ of this name gets the phantoms' lesions (flare23: 14, autopet: 1)
LESION_TISSUES = ("liver_lesion",)  # what is a lesion: the liver's hypodense metastasis-like findings


@cache
def _label_lut(profile: str = "flare22") -> NDArray[np.uint8]:
    """Tissue class -> label value, with the label values taken from `profile` (a built-in name or a
    profile file) by organ name: a lesion gets the profile's `lesion` organ where it has one (else its
    host organ, as FLARE22 labels it); an organ the profile lacks is background."""
    by_name = {o.name: o.label for o in load_profile(profile).organs}
    lut = np.zeros(len(_TISSUES), np.uint8)
    for i, (name, (organ, _)) in enumerate(_TISSUES.items()):
        if name in LESION_TISSUES and LESION_ORGAN in by_name:
            lut[i] = by_name[LESION_ORGAN]
        elif organ is not None:
            lut[i] = by_name.get(organ, 0)
    return lut


def organ_labels(profile: str = "flare22") -> dict[str, int]:
    """The organs a phantom's label map holds under `profile`, name -> label value, in label order
    (flare22: its 13 organs; flare23 adds its lesion label; autopet has the lesion label only)."""
    lut = _label_lut(profile)
    return {o.name: o.label for o in sorted(load_profile(profile).organs, key=lambda o: o.label) if o.label in lut}


def _check_profile(profile: str) -> None:
    """A phantom can be written under `profile` when it shares an organ with the phantoms (or has a
    lesion label); BraTS' or KiTS' label systems describe other anatomy."""
    try:
        has = organ_labels(profile)
    except SpecError as exc:
        raise SpecError(f"--profile {profile!r}: {exc}") from None
    if not has:
        raise SpecError(f"--profile {profile!r}: no organ of the phantoms (abdominal CT: liver, kidneys, ...) and no "
                        f"'{LESION_ORGAN}' organ; use flare22, flare23, autopet or another abdominal label system")


def lesion_profile(profile: str) -> bool:
    """Whether `profile` labels the phantoms' lesions apart (has an organ named `lesion`)."""
    return LESION_ORGAN in {o.name for o in load_profile(profile).organs}


# --- shapes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ellipsoid:
    center: NDArray[np.float64]  # mm
    radii: NDArray[np.float64]  # mm, along the columns of `rotation`
    rotation: NDArray[np.float64]  # 3x3, columns = local axes in world coordinates

    def box(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        half = np.sqrt(((self.rotation * self.radii) ** 2).sum(axis=1))
        return self.center - half, self.center + half


@dataclass(frozen=True)
class _Tube:
    points: NDArray[np.float64]  # (n, 3) mm, the centre line
    radii: NDArray[np.float64]  # (n,) mm, interpolated linearly along each segment

    def box(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        r = self.radii.max()
        return self.points.min(axis=0) - r, self.points.max(axis=0) + r


@dataclass(frozen=True)
class _Warp:
    """A smooth displacement: component c (mm) depends on the two other axes only.

    Its Jacobian has a zero diagonal, so it bends shapes without changing their volume much, and
    it is cheap: three 2D sums of sines broadcast over the sub-box.
    """

    amplitude: NDArray[np.float64]  # (3, k) mm
    frequency: NDArray[np.float64]  # (3, k, 2) rad/mm along the two other axes
    phase: NDArray[np.float64]  # (3, k)

    @property
    def max_mm(self) -> float:
        return float(np.abs(self.amplitude).sum(axis=1).max())


@dataclass(frozen=True)
class _Part:
    """A structure painted into the tissue map, only onto voxels of the `allowed` tissues."""

    tissue: str
    shapes: tuple[_Ellipsoid | _Tube, ...]
    allowed: tuple[str, ...] = ("visceral_fat",)
    warp: _Warp | None = None
    layers: tuple[tuple[float, str], ...] = ()  # (normalised radius, inner tissue), outer first
    gas: tuple[str, str, float] | None = None  # (content tissue, gas tissue, fraction) rises to +y


@dataclass(frozen=True)
class _Anatomy:
    phase: str
    scale_xy: float
    scale_z: float
    cavity_a_mm: float  # half width of the abdominal cavity
    cavity_b_ant_mm: float  # its anterior and posterior half depths around cavity_y_mm
    cavity_b_post_mm: float
    cavity_y_mm: float
    wall_mm: float
    fat_mm: float
    shape_mod: NDArray[np.float64]  # (2, 2): amplitude and phase of the body's change along z
    vertebra_phase_mm: float
    rib_phase_mm: float
    top_margin_mm: float  # field of view above the dome (standard mm)
    coverage_mm: float  # field of view along z (world mm)
    offset_xy_mm: tuple[float, float]
    noise_hu: float
    enhancement: float
    hu_jitter: NDArray[np.float64]
    parts: tuple[_Part, ...] = field(default=())


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]  # world position of voxel (0, 0, 0)

    def axis(self, a: int) -> NDArray[np.float32]:
        return (self.origin_mm[a] + self.spacing_mm[a] * np.arange(self.shape[a])).astype(np.float32)

    def index_range(self, a: int, lo: float, hi: float) -> tuple[int, int]:
        o, s, n = self.origin_mm[a], self.spacing_mm[a], self.shape[a]
        i0 = max(0, math.ceil((lo - o) / s))
        i1 = min(n, math.floor((hi - o) / s) + 1)
        return i0, max(i0, i1)

    @property
    def affine(self) -> NDArray[np.float64]:
        aff = np.diag([*self.spacing_mm, 1.0])
        aff[:3, 3] = self.origin_mm
        return aff


# Grid choices per size: (in-plane matrix, in-plane spacing range in 1/128 mm, slice spacings).
# Spacings and origins are multiples of 1/128 mm so that NIfTI's float32 stores them exactly.
_SIZE_GRID = {
    "small": ((176, 144), (300, 335), (5.0, 6.0)),
    "full": ((512, 512), (90, 115), (2.5, 3.0)),
}


def _q(value: float) -> float:
    """Round to a multiple of 1/128 mm, exact in float32."""
    return round(value * 128) / 128


def _rotation(z_deg: float, y_deg: float, x_deg: float) -> NDArray[np.float64]:
    a, b, c = np.radians([z_deg, y_deg, x_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


# --- anatomy ---------------------------------------------------------------------------------
# Per-organ linear gains, calibrated once (median of 40 cases) so that the labelled volume meets
# TARGET_VOLUME_CM3 after carving by neighbours, vessels, ribs and the diaphragm.
_GAIN = {
    "liver": 1.091,
    "right_kidney": 1.012,
    "left_kidney": 1.018,
    "spleen": 1.062,
    "pancreas": 1.152,
    "right_adrenal_gland": 0.982,
    "left_adrenal_gland": 0.98,
    "gallbladder": 1.048,
    "stomach": 1.075,
    "duodenum": 0.979,
}


class _Builder:
    """Turns the standard anatomy (x, y, depth) into one patient's jittered world shapes."""

    def __init__(self, rng: np.random.Generator, scale_xy: float, scale_z: float) -> None:
        self.rng, self.sxy, self.sz = rng, scale_xy, scale_z

    def point(self, x: float, y: float, depth: float) -> NDArray[np.float64]:
        return np.array([x * self.sxy, y * self.sxy, -depth * self.sz])

    def warp(self, size_mm: float, amplitude_mm: float, terms: int = 3) -> _Warp:
        rng = self.rng
        wavelength = size_mm * rng.uniform(1.2, 2.5, (3, terms))
        angle = rng.uniform(0, 2 * np.pi, (3, terms))
        k = 2 * np.pi / wavelength
        freq = np.stack([k * np.cos(angle), k * np.sin(angle)], axis=-1)
        amp = amplitude_mm * rng.uniform(0.3, 1.0, (3, terms)) / math.sqrt(terms)
        return _Warp(amp, freq, rng.uniform(0, 2 * np.pi, (3, terms)))

    def blob(
        self, center: tuple[float, float, float], radii: tuple[float, float, float],
        angles: tuple[float, float, float] = (0, 0, 0), *, gain: float, jitter_mm: float = 3.0,
    ) -> _Ellipsoid:
        rng = self.rng
        stretch = rng.uniform(0.92, 1.08, 3)
        stretch /= stretch.prod() ** (1 / 3)  # change the shape, keep the volume
        r = np.array(radii) * gain * stretch
        rot = _rotation(*(np.array(angles) + rng.normal(0, 5, 3)))
        c = self.point(*center) + rng.normal(0, jitter_mm, 3)
        return _Ellipsoid(c, r, rot)

    def tube(
        self, points: Sequence[tuple[float, float, float]], radii: Sequence[float] | float, *,
        gain: float = 1.0, jitter_mm: float = 2.0,
    ) -> _Tube:
        pts = np.array([self.point(*p) for p in points])
        pts += self.rng.normal(0, jitter_mm, 3) + self.rng.normal(0, jitter_mm / 2, pts.shape)
        r = np.broadcast_to(np.asarray(radii, float), (len(pts),)) * gain
        return _Tube(pts, r.copy())


def _organ_gain(rng: np.random.Generator, name: str, *, tube: bool = False) -> float:
    """Linear size factor: the organ's volume varies by about +-15 % around the median."""
    volume_factor = rng.uniform(0.85, 1.15)
    return _GAIN.get(name, 1.0) * volume_factor ** (1 / 2 if tube else 1 / 3)


PATHOLOGIES = ("liver_lesion", "renal_cyst", "atrophic_kidney", "displaced_kidney", "splenomegaly")
LESION_FINDINGS = ("liver_lesion",)  # the findings of a data set with a lesion label


@dataclass(frozen=True)
class Pathology:
    """One case's finding: `kind` (one of PATHOLOGIES), the kidney's side where it has one, and
    its size: `scale` (linear, of an atrophic kidney or an enlarged spleen), `shift_mm` (downwards,
    of a displaced kidney), `radii_mm` (of each lesion or the cyst)."""

    kind: str
    side: str = ""
    scale: float = 1.0
    shift_mm: float = 0.0
    radii_mm: tuple[float, ...] = ()
    rng: np.random.Generator | None = field(default=None, compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.side:
            out["side"] = self.side
        if self.kind in ("atrophic_kidney", "splenomegaly"):
            out["volume_factor"] = round(self.scale ** 3, 3)
        if self.shift_mm:
            out["shift_mm"] = round(self.shift_mm, 1)
        if self.radii_mm:
            out["radii_mm"] = [round(r, 1) for r in self.radii_mm]
        return out


def draw_pathology(*, seed: int, index: int, share: float, kinds: tuple[str, ...] = PATHOLOGIES) -> Pathology | None:
    """The finding of case `index` when the data set gives one to `share` of its cases (pure), of one
    of `kinds` (a data set with a lesion label: liver lesions only)."""
    rng = np.random.default_rng([seed, index, 100])
    if not rng.random() < share:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    side = ("right", "left")[int(rng.integers(2))] if "kidney" in kind or kind == "renal_cyst" else ""
    if kind == "liver_lesion":
        return Pathology(kind, radii_mm=tuple(float(r) for r in rng.uniform(9, 22, int(rng.integers(1, 4)))), rng=rng)
    if kind == "renal_cyst":
        return Pathology(kind, side, radii_mm=(float(rng.uniform(12, 22)),), rng=rng)
    if kind == "atrophic_kidney":
        return Pathology(kind, side, scale=float(rng.uniform(0.6, 0.72)), rng=rng)
    if kind == "displaced_kidney":
        return Pathology(kind, side, shift_mm=float(rng.uniform(35, 55)), rng=rng)
    return Pathology(kind, scale=float(rng.uniform(1.3, 1.5)), rng=rng)


def _add_findings(parts: list[_Part], finding: Pathology, b: _Builder) -> None:
    """Paint lesions or a cyst into their organ, after everything else (their own stream)."""
    rng = finding.rng
    assert rng is not None
    organ = "liver" if finding.kind == "liver_lesion" else f"{finding.side}_kidney"
    host = next(p for p in parts if p.tissue == organ).shapes[0]
    assert isinstance(host, _Ellipsoid)
    own = _Builder(rng, b.sxy, b.sz)
    for radius in finding.radii_mm:
        if finding.kind == "liver_lesion":  # in the liver's main lobe, some reaching its surface
            u = rng.normal(size=3)
            u *= rng.uniform(0.3, 0.9) / np.linalg.norm(u)
            tissue = "liver_lesion"
            allowed: tuple[str, ...] = ("liver", "liver_vessel")
        else:  # at the kidney's outer edge: part of the cyst may bulge into the fat around it
            u = np.array([rng.uniform(0.5, 0.9) * (1 if finding.side == "right" else -1), 0, rng.uniform(-0.6, 0.6)])
            tissue = f"{finding.side}_renal_cyst"
            allowed = (organ, f"{organ}_medulla", "visceral_fat")
        center = host.center + host.rotation @ (u * host.radii)
        stretch = rng.uniform(0.85, 1.15, 3)
        lesion = _Ellipsoid(center, radius * stretch, _rotation(*rng.uniform(0, 180, 3)))
        parts.append(_Part(tissue, (lesion,), allowed=allowed, warp=own.warp(2 * radius, 0.12 * radius)))


def _draw_anatomy(rng: np.random.Generator, finding: Pathology | None = None) -> _Anatomy:
    phase = PHASES[int(rng.integers(len(PHASES)))]
    sxy, sz = rng.uniform(0.95, 1.05), rng.uniform(0.95, 1.05)
    b = _Builder(rng, sxy, sz)
    vessels = ("visceral_fat", "mediastinal_fat")
    parts: list[_Part] = []

    def add(tissue: str, *shapes: _Ellipsoid | _Tube, warp_mm: float, size_mm: float, **kw: Any) -> None:
        parts.append(_Part(tissue, shapes, warp=b.warp(size_mm, warp_mm), **kw))

    # Great vessels first: everything else is carved around them.
    g = _organ_gain(rng, "aorta", tube=True)
    add("aorta", b.tube(
        [(-20, 22, -70), (-16, 26, 0), (-12, 30, 60), (-10, 32, 120), (-8, 32, 180), (-5, 34, 215)],
        [12.0, 11.5, 11.0, 10.5, 10.0, 9.5], gain=g), warp_mm=3, size_mm=80, allowed=vessels)
    add("artery", b.tube([(-5, 34, 212), (-32, 30, 280)], 6.0), warp_mm=2, size_mm=60)
    add("artery", b.tube([(-5, 34, 212), (25, 30, 280)], 6.0), warp_mm=2, size_mm=60)
    g = _organ_gain(rng, "inferior_vena_cava", tube=True)
    add("inferior_vena_cava", b.tube(
        [(22, 28, 290), (22, 30, 200), (22, 32, 140), (24, 38, 90), (20, 48, 40), (14, 55, 0),
         (10, 60, -40)], [11.0, 11.0, 11.5, 12.0, 12.0, 12.5, 13.0], gain=g),
        warp_mm=3, size_mm=80, allowed=vessels)
    g = _organ_gain(rng, "esophagus", tube=True)
    add("esophagus", b.tube(
        [(-4, 48, -70), (-6, 50, -10), (-12, 55, 15), (-25, 62, 38), (-40, 68, 52)], 7.5, gain=g),
        warp_mm=2, size_mm=60, allowed=vessels)
    # Portal venous system, mesenteric and renal vessels (unlabelled, but they shape the organs).
    for pts, r in (
        ([(8, 62, 128), (25, 62, 112), (38, 58, 95)], 7.0),  # portal vein
        ([(8, 62, 128), (-20, 50, 118), (-55, 30, 105), (-85, 15, 95)], 4.5),  # splenic vein
        ([(8, 62, 128), (10, 70, 160), (12, 75, 240)], 5.0),  # superior mesenteric vein
        ([(-40, 15, 135), (-15, 48, 132), (22, 32, 135)], 4.5),  # left renal vein
        ([(40, 15, 148), (22, 30, 145)], 4.5),  # right renal vein
    ):
        add("vein", b.tube(pts, r), warp_mm=1.5, size_mm=50)
    for pts, r in (
        ([(-10, 40, 118), (-6, 58, 130), (-2, 68, 160), (0, 72, 240)], 3.5),  # SMA
        ([(-12, 40, 100), (-10, 55, 98), (25, 55, 100)], 3.0),  # celiac, common hepatic
        ([(-10, 55, 98), (-35, 50, 95), (-62, 40, 95)], 2.8),  # splenic artery
        ([(-10, 25, 138), (-40, 10, 138)], 3.0),  # renal arteries
        ([(-10, 25, 140), (38, 12, 148)], 3.0),
    ):
        add("artery", b.tube(pts, r), warp_mm=1.5, size_mm=50)

    # Organs, small before large: a later organ only takes voxels nobody holds yet.
    for name, limbs in (
        ("right_adrenal_gland", (((34, 12, 80), (3.5, 13, 16), (-20, 0, 0)),
                                 ((40, 6, 84), (3.5, 10, 14), (25, 0, 0)))),
        ("left_adrenal_gland", (((-36, 20, 95), (3.5, 13, 16), (20, 0, 0)),
                                ((-42, 14, 98), (3.5, 10, 14), (-25, 0, 0)))),
    ):
        gain = _organ_gain(rng, name)
        add(name, *(b.blob(c, r, a, gain=gain, jitter_mm=1.5) for c, r, a in limbs),
            warp_mm=1.5, size_mm=30)
    for name, side, depth in (("right_kidney", 1, 145.0), ("left_kidney", -1, 130.0)):
        gain = _organ_gain(rng, name)
        if finding is not None and name == f"{finding.side}_kidney":
            gain *= finding.scale
            depth += finding.shift_mm
        add(name, b.blob((62 * side, 3, depth), (23, 30, 55), (-30 * side, -15 * side, 15), gain=gain),
            warp_mm=4, size_mm=90, layers=((0.72, f"{name}_medulla"), (0.38, f"{name}_pelvis")))
    add("gallbladder", b.blob((45, 85, 112), (14, 14, 36), (0, 0, -35),
                              gain=_organ_gain(rng, "gallbladder")), warp_mm=3, size_mm=60)
    gain = _organ_gain(rng, "pancreas")
    add("pancreas",
        b.tube([(30, 50, 135), (10, 65, 125), (-20, 62, 117), (-55, 42, 106), (-82, 24, 98)],
               [16, 12, 11, 10, 7], gain=gain),
        b.blob((24, 48, 148), (14, 12, 18), gain=gain), warp_mm=4, size_mm=60)
    gain = _organ_gain(rng, "duodenum", tube=True)
    add("duodenum", b.tube(
        [(20, 80, 120), (42, 68, 117), (55, 52, 124), (57, 48, 145), (53, 48, 165), (38, 52, 178),
         (10, 56, 182), (-15, 56, 177), (-28, 57, 160), (-30, 60, 142)], 11.5, gain=gain),
        warp_mm=4, size_mm=60, layers=((0.7, "duodenum_content"),))
    gain = _organ_gain(rng, "stomach")
    add("stomach",
        b.blob((-55, 45, 42), (33, 33, 30), gain=gain),
        b.blob((-45, 80, 85), (28, 26, 42), (0, -20, 0), gain=gain),
        b.tube([(-35, 95, 115), (-10, 100, 124), (10, 90, 124), (20, 80, 120)], [18, 15, 12, 10],
               gain=gain),
        warp_mm=6, size_mm=100, layers=((0.82, "stomach_content"),),
        gas=("stomach_content", "stomach_gas", float(rng.uniform(0.0, 0.35))))
    gain = _organ_gain(rng, "spleen")
    spleen_depth = 72.0
    if finding is not None and finding.kind == "splenomegaly":  # it grows downwards, below the ribs
        gain *= finding.scale
        spleen_depth += 48 * (finding.scale - 1)
    add("spleen", b.blob((-98, 8, spleen_depth), (22, 52, 48), (35, 0, 10), gain=gain),
        warp_mm=6, size_mm=100)
    gain = _organ_gain(rng, "liver")
    add("liver",
        b.blob((66, 40, 80), (60, 68, 80), gain=gain),
        b.blob((-12, 78, 52), (52, 30, 36), (0, 15, 0), gain=gain),
        b.blob((20, 30, 55), (18, 18, 30), gain=gain),
        warp_mm=10, size_mm=150)
    liver_only = ("liver",)
    for pts, radii in (
        ([(38, 58, 95), (70, 45, 85), (100, 35, 80)], [5.0, 4.0, 2.5]),  # right portal branch
        ([(38, 58, 95), (10, 75, 75), (-20, 85, 60)], [4.0, 3.0, 2.0]),  # left portal branch
        ([(14, 55, 5), (60, 30, 30), (100, 20, 60)], [5.0, 4.0, 2.5]),  # right hepatic vein
        ([(14, 55, 5), (40, 70, 40), (55, 90, 80)], [4.0, 3.0, 2.0]),  # middle hepatic vein
        ([(14, 55, 5), (-15, 75, 30)], [3.5, 2.0]),  # left hepatic vein
    ):
        add("liver_vessel", b.tube(pts, radii), warp_mm=3, size_mm=60, allowed=liver_only)

    # Colon and small-bowel loops fill what is left of the lower abdomen (unlabelled).
    colon = b.tube(
        [(95, 40, 290), (98, 45, 160), (85, 75, 135), (40, 115, 145), (-30, 115, 150),
         (-90, 60, 110), (-100, 25, 160), (-98, 25, 290)], 20.0, jitter_mm=4)
    content = "bowel_gas" if rng.random() < 0.5 else "feces"
    add("bowel_wall", colon, warp_mm=6, size_mm=80, layers=((0.78, content),))
    for _ in range(int(rng.integers(35, 50))):
        c = (rng.uniform(-85, 85), rng.uniform(35, 130), rng.uniform(140, 280))
        loop = b.blob(c, tuple(rng.uniform(10, 18, 3)), tuple(rng.uniform(-40, 40, 3)), gain=1.0,
                      jitter_mm=0)
        inner = "bowel_gas" if rng.random() < 0.15 else "bowel_fluid"
        add("bowel_wall", loop, warp_mm=3, size_mm=40, layers=((0.72, inner),))
    if finding is not None and finding.radii_mm:
        _add_findings(parts, finding, b)

    return _Anatomy(
        phase=phase, scale_xy=sxy, scale_z=sz,
        cavity_a_mm=125 * sxy, cavity_b_ant_mm=105 * sxy, cavity_b_post_mm=85 * sxy,
        cavity_y_mm=20 * sxy, wall_mm=rng.uniform(9, 14), fat_mm=rng.uniform(10, 35),
        shape_mod=np.array([rng.uniform(0.0, 0.03, 2), rng.uniform(0, 2 * np.pi, 2)]),
        vertebra_phase_mm=rng.uniform(0, 33), rib_phase_mm=rng.uniform(0, 28),
        top_margin_mm=rng.uniform(15, 30), coverage_mm=rng.uniform(235, 265),
        offset_xy_mm=(rng.uniform(-5, 5), rng.uniform(-5, 5)),
        noise_hu=rng.uniform(10, 20), enhancement=rng.uniform(0.8, 1.2),
        hu_jitter=rng.normal(0, 4, _HEALTHY_TISSUES), parts=tuple(parts),
    )


def _fit_fat(an: _Anatomy) -> tuple[float, float, float]:
    """Subcutaneous fat (mm) limited so the whole body fits the smallest field of view of any
    size (360 x 337 mm, with the +-5 mm offset), and the body's (centre y, half depth) in mm."""
    grow = 1 + an.shape_mod[0].sum() + 0.05
    half_w = an.cavity_a_mm * grow + an.wall_mm
    fat = min(an.fat_mm, 170 - half_w)
    front = an.cavity_y_mm + an.cavity_b_ant_mm * grow + an.wall_mm + 1.3 * fat
    back = an.cavity_y_mm - an.cavity_b_post_mm * grow - an.wall_mm - 0.6 * fat
    if front - back > 304:
        fat -= (front - back - 304) / 1.9
        front = an.cavity_y_mm + an.cavity_b_ant_mm * grow + an.wall_mm + 1.3 * fat
        back = an.cavity_y_mm - an.cavity_b_post_mm * grow - an.wall_mm - 0.6 * fat
    return fat, (front + back) / 2, (front - back) / 2


def _draw_grid(rng: np.random.Generator, size: str, an: _Anatomy) -> _Grid:
    (nx, ny), (lo, hi), slices = _SIZE_GRID[size]
    s_xy = int(rng.integers(lo, hi + 1)) / 128
    s_z = float(slices[int(rng.integers(len(slices)))])
    nz = max(8, round(an.coverage_mm / s_z))
    _, center_y, _ = _fit_fat(an)
    z_top = an.top_margin_mm * an.scale_z
    origin = (
        _q(an.offset_xy_mm[0] - (nx - 1) / 2 * s_xy),
        _q(center_y + an.offset_xy_mm[1] - (ny - 1) / 2 * s_xy),
        _q(z_top - (nz - 1) * s_z),
    )
    return _Grid((nx, ny, nz), (s_xy, s_xy, s_z), origin)


# --- painting --------------------------------------------------------------------------------
def _superellipse(u: NDArray[np.floating[Any]], v: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """A level <= 1 inside a shape between an ellipse and a rounded box (abdomens are boxy);
    u and v are the squared normalised coordinates."""
    return 0.5 * (u + v) + 0.5 * np.sqrt(u * u + v * v)


def _body(grid: _Grid, an: _Anatomy) -> NDArray[np.uint8]:
    """Tissue classes of skin-to-spine anatomy: fat, wall, cavity, spine, ribs, lungs, heart."""
    nx, ny, nz = grid.shape
    tissue = np.zeros(grid.shape, np.uint8)  # air
    xs, ys, zs = grid.axis(0), grid.axis(1), grid.axis(2)
    s, sz = an.scale_xy, an.scale_z
    fat, _, _ = _fit_fat(an)
    xa, ya = xs[:, None] / np.float32(s), ys[None, :] / np.float32(s)  # standard in-plane mm

    # The spine, back muscles and psoas live in a small box around the vertebrae.
    sx0, sx1 = grid.index_range(0, -62 * s, 62 * s)
    sy0, sy1 = grid.index_range(1, -66 * s, 44 * s)
    bx, by = xa[sx0:sx1], ya[:, sy0:sy1]
    vb = (bx / 21) ** 2 + (by / 16) ** 2 <= 1
    vb_inner = (bx / 18.5) ** 2 + (by / 13.5) ** 2 <= 1
    canal = bx**2 + (by + 24) ** 2 <= 9**2
    arch = (bx**2 + (by + 24) ** 2 <= 14.5**2) & (by < -17) & ~canal
    posterior = arch | ((np.abs(bx) < 4) & (by > -58) & (by <= -36))  # + spinous process
    posterior |= (np.abs(bx) > 7) & (np.abs(bx) < 13) & (by > -24) & (by < -10)  # pedicles
    transverse = (np.abs(bx) > 12) & (np.abs(bx) < 42) & (by > -27) & (by < -19)
    erector = ((np.abs(bx) - 30) / 22) ** 2 + ((by + 38) / 19) ** 2 <= 1
    # Lungs fill the cavity above the two diaphragm domes, deepest at the back.
    mediastinum = ((xa + 5) / 32) ** 2 + ((ya - 35) / 62) ** 2 <= 1
    dome_r = 25 * ((xa - 60) / 60) ** 2 + 20 * ((ya - 45) / 70) ** 2
    dome_l = 10 + 25 * ((xa + 60) / 60) ** 2 + 20 * ((ya - 45) / 70) ** 2
    dome = np.minimum(np.minimum(dome_r, dome_l) + 0.45 * np.maximum(0, 20 - ya), 95.0)

    amp, ph = an.shape_mod
    X, Y = xs[:, None, None], ys[None, :, None] - np.float32(an.cavity_y_mm)
    front = Y > 0
    w = an.wall_mm
    chunk = max(1, 2_000_000 // (nx * ny))
    for k0 in range(0, nz, chunk):
        k1 = min(nz, k0 + chunk)
        depth = (-zs[k0:k1] / sz).astype(np.float64)  # standard mm below the dome, per slice
        mod = (1 + amp[0] * np.sin(2 * np.pi * depth / 170 + ph[0])
               + 0.05 * np.clip((40 - depth) / 80, 0, 1))
        mod_b = 1 + amp[1] * np.sin(2 * np.pi * depth / 210 + ph[1])

        def level(grow_a: float, grow_front: float, grow_back: float,
                  mod: NDArray[np.float64] = mod, mod_b: NDArray[np.float64] = mod_b,
                  ) -> NDArray[np.floating[Any]]:
            a = (an.cavity_a_mm * mod + grow_a).astype(np.float32)[None, None, :]
            b_front = (an.cavity_b_ant_mm * mod_b + grow_front).astype(np.float32)[None, None, :]
            b_back = (an.cavity_b_post_mm * mod_b + grow_back).astype(np.float32)[None, None, :]
            return _superellipse((X / a) ** 2, (Y / np.where(front, b_front, b_back)) ** 2)

        t = tissue[:, :, k0:k1]
        t[level(w + fat, w + 1.3 * fat, w + 0.6 * fat) <= 1] = _CLASS["subcutaneous_fat"]
        t[level(w, w, w) <= 1] = _CLASS["muscle"]
        cav_level = level(0, 0, 0)
        cavity = cav_level <= 1
        t[cavity] = _CLASS["visceral_fat"]

        d3 = depth.astype(np.float32)[None, None, :]
        if depth.min() < dome.max():
            above = cavity & (d3 < dome[:, :, None])
            heart = ((xa[:, :, None] + 25) / 65) ** 2 + ((ya[:, :, None] - 85) / 50) ** 2 \
                + ((d3 + 40) / 45) ** 2 <= 1
            t[above & ~mediastinum[:, :, None] & ~heart] = _CLASS["lung"]
            t[above & mediastinum[:, :, None] & ~heart] = _CLASS["mediastinal_fat"]
            t[above & heart] = _CLASS["blood_pool"]

        # Ribs: oblique bands around the inner wall, descending anteriorly, above the costal margin.
        rib_slices = np.nonzero(depth < 130)[0]
        if len(rib_slices):
            r0, r1 = rib_slices[0], rib_slices[-1] + 1
            ix, iy, iz = np.nonzero((cav_level[:, :, r0:r1] > 0.92) & (cav_level[:, :, r0:r1] < 1.07))
            theta = np.abs(np.arctan2(xs[ix], -(ys[iy] - an.cavity_y_mm))) / np.pi  # 0 back, 1 front
            dz = depth[r0 + iz]
            phase_pos = np.mod((dz - 100 * theta - an.rib_phase_mm) / 28.0, 1.0)
            rib = (theta > 0.12) & (theta < 0.8) & (dz < 130 - 85 * theta) & (phase_pos < 10 / 28)
            t[ix[rib], iy[rib], r0 + iz[rib]] = _CLASS["rib"]

        spine = t[sx0:sx1, sy0:sy1]
        spine[erector[:, :, None] & (spine != _CLASS["air"])] = _CLASS["muscle"]
        psoas_r = (22 * np.clip((depth - 95) / 140, 0, 1)).astype(np.float32)[None, None, :] + 1e-3
        psoas = ((np.abs(bx[:, :, None]) - 16 - 0.9 * psoas_r) / (0.85 * psoas_r)) ** 2 \
            + ((by[:, :, None] - 4) / psoas_r) ** 2 <= 1
        spine[psoas & cavity[sx0:sx1, sy0:sy1]] = _CLASS["muscle"]
        cycle = np.mod((depth - an.vertebra_phase_mm) / 33.0, 1.0)
        for k in range(k1 - k0):
            sl = spine[:, :, k]
            if cycle[k] < 7 / 33:  # intervertebral disc
                sl[vb] = _CLASS["disc"]
            else:
                sl[vb] = _CLASS["cancellous_bone"]
                sl[vb & ~vb_inner] = _CLASS["cortical_bone"]
            sl[posterior] = _CLASS["cortical_bone"]
            if abs(cycle[k] - 0.6) < 0.15 and depth[k] > 90:  # lumbar transverse processes
                sl[transverse & (sl != _CLASS["air"])] = _CLASS["cortical_bone"]
            sl[canal] = _CLASS["csf"]
    return tissue


def _warped_coords(
    xs: NDArray[np.float32], ys: NDArray[np.float32], zs: NDArray[np.float32], warp: _Warp | None
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    X, Y, Z = xs[:, None, None], ys[None, :, None], zs[None, None, :]
    if warp is None:
        shape = (len(xs), len(ys), len(zs))
        return (np.broadcast_to(X, shape), np.broadcast_to(Y, shape), np.broadcast_to(Z, shape))
    axes = (X, Y, Z)
    out = []
    for c in range(3):
        u, v = (axes[a] for a in range(3) if a != c)
        d = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
        for amp, (fu, fv), ph in zip(warp.amplitude[c], warp.frequency[c], warp.phase[c], strict=True):
            d += (amp * np.sin(fu * u + fv * v + ph)).astype(np.float32)
        out.append((axes[c] + d).astype(np.float32))
    shape = (len(xs), len(ys), len(zs))
    return tuple(np.broadcast_to(o, shape) for o in out)  # type: ignore[return-value]


def _shape_field(shape: _Ellipsoid | _Tube, X: NDArray[np.float32], Y: NDArray[np.float32],
                 Z: NDArray[np.float32], out: NDArray[np.float32]) -> None:
    """Lower `out` to the squared normalised distance (< 1 inside) of `shape` where it is lower."""
    if isinstance(shape, _Ellipsoid):
        d = (X - np.float32(shape.center[0]), Y - np.float32(shape.center[1]), Z - np.float32(shape.center[2]))
        f = np.zeros(out.shape, np.float32)
        for k in range(3):
            rot = shape.rotation[:, k] / shape.radii[k]
            q = rot[0].astype(np.float32) * d[0] + np.float32(rot[1]) * d[1] + np.float32(rot[2]) * d[2]
            f += q * q
        np.minimum(out, f, out=out)
        return
    for p0, p1, r0, r1 in zip(shape.points[:-1], shape.points[1:], shape.radii[:-1], shape.radii[1:], strict=True):
        seg = (p1 - p0).astype(np.float32)
        length2 = float(seg @ seg) or 1e-6
        d = (X - np.float32(p0[0]), Y - np.float32(p0[1]), Z - np.float32(p0[2]))
        t = np.clip((d[0] * seg[0] + d[1] * seg[1] + d[2] * seg[2]) / np.float32(length2), 0, 1)
        dist2 = sum((d[i] - t * seg[i]) ** 2 for i in range(3))
        radius = np.float32(r0) + t * np.float32(r1 - r0)
        np.minimum(out, dist2 / (radius * radius), out=out)


def _paint(tissue: NDArray[np.uint8], grid: _Grid, part: _Part) -> None:
    """Paint `part` into `tissue` in place, on its allowed tissues only, inside its own sub-box."""
    margin = (part.warp.max_mm if part.warp else 0.0) + 1.0
    boxes = [s.box() for s in part.shapes]
    lo = np.min([b[0] for b in boxes], axis=0) - margin
    hi = np.max([b[1] for b in boxes], axis=0) + margin
    ranges = [grid.index_range(a, lo[a], hi[a]) for a in range(3)]
    if any(i0 >= i1 for i0, i1 in ranges):
        return
    (x0, x1), (y0, y1), (z0, z1) = ranges
    X, Y, Z = _warped_coords(grid.axis(0)[x0:x1], grid.axis(1)[y0:y1], grid.axis(2)[z0:z1], part.warp)
    f2 = np.full(X.shape, np.inf, np.float32)
    for shape in part.shapes:
        pieces: list[_Ellipsoid | _Tube]
        if isinstance(shape, _Tube) and len(shape.points) > 2:
            # Evaluate each segment in its own box: long tubes would waste time on empty space.
            pieces = [_Tube(shape.points[i:i + 2], shape.radii[i:i + 2]) for i in range(len(shape.points) - 1)]
        else:
            pieces = [shape]
        for piece in pieces:
            blo, bhi = piece.box()
            sub = []
            for a, (i0, _) in enumerate(ranges):
                j0, j1 = grid.index_range(a, blo[a] - margin, bhi[a] + margin)
                sub.append(slice(max(j0 - i0, 0), max(min(j1 - i0, f2.shape[a]), 0)))
            sl = tuple(sub)
            if any(s_.start >= s_.stop for s_ in sl):
                continue
            _shape_field(piece, X[sl], Y[sl], Z[sl], f2[sl])
    box = tissue[x0:x1, y0:y1, z0:z1]
    allowed = np.zeros(len(_TISSUES), bool)
    allowed[[_CLASS[name] for name in part.allowed]] = True
    inside = (f2 <= 1) & allowed[box]
    box[inside] = _CLASS[part.tissue]
    for radius, inner in part.layers:
        box[inside & (f2 < radius * radius)] = _CLASS[inner]
    if part.gas is not None:
        content, gas, fraction = part.gas
        held = box == _CLASS[content]
        if fraction > 0 and held.any():
            y = np.broadcast_to(Y, box.shape)[held]
            level = np.quantile(y, 1 - fraction)
            box[held & (Y > level)] = _CLASS[gas]


def _hu_lut(an: _Anatomy) -> NDArray[np.float32]:
    """HU of each tissue in this case's phase, with this patient's enhancement and offsets."""
    p = PHASES.index(an.phase)
    lut = np.empty(len(_TISSUES), np.float32)
    for i, (name, (_, hu)) in enumerate(_TISSUES.items()):
        value = hu[0] + an.enhancement * (hu[p] - hu[0])
        fixed = name in ("air", "lung", "bowel_gas", "stomach_gas")
        jitter = an.hu_jitter[i] if i < len(an.hu_jitter) else 0.0
        lut[i] = value if fixed else value + jitter
    return lut


# Blur applied after the noise (voxels): partial volume plus CT's correlated noise texture.
_BLUR_VOXELS = (0.6, 0.6, 0.35)


@cache
def _blur_noise_gain() -> float:
    """Factor by which the blur lowers the standard deviation of white noise."""
    gain = 1.0
    for sigma in _BLUR_VOXELS:
        impulse = np.zeros(33)
        impulse[16] = 1
        gain *= float(np.sqrt((ndimage.gaussian_filter1d(impulse, sigma) ** 2).sum()))
    return gain


def _image(tissue: NDArray[np.uint8], an: _Anatomy, rng: np.random.Generator) -> NDArray[np.int16]:
    image = _hu_lut(an)[tissue]
    noise = rng.standard_normal(tissue.shape, dtype=np.float32)
    image += noise * np.float32(an.noise_hu / _blur_noise_gain())
    del noise
    image = ndimage.gaussian_filter(image, _BLUR_VOXELS, mode="nearest", truncate=3.0)
    np.rint(image, out=image)
    np.clip(image, -1024, 3071, out=image)
    return image.astype(np.int16)


# --- public API ------------------------------------------------------------------------------
def case_id(index: int) -> str:
    return f"{CASE_PREFIX}{index:04d}"


def _check_args(*, seed: int, index: int | None = None, size: str, cases: int | None = None,
                split: str | None = None, pathology: float = 0.0) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"--seed {seed!r}: must be an integer >= 0; e.g. --seed 0")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise SpecError(f"case index {index!r}: must be an integer >= 0")
    if size not in SIZES:
        raise SpecError(f"--size {size!r}: unknown size; use one of {', '.join(SIZES)}")
    if cases is not None and (isinstance(cases, bool) or not isinstance(cases, int) or cases < 1):
        raise SpecError(f"--cases {cases!r}: must be an integer >= 1; e.g. --cases 5")
    if split is not None and split not in SPLITS:
        raise SpecError(f"--split {split!r}: unknown split; use one of {', '.join(SPLITS)}")
    if isinstance(pathology, bool) or not isinstance(pathology, int | float) or not 0 <= pathology <= 1:
        raise SpecError(f"--pathology {pathology!r}: the share of cases with a finding; use a number from 0 to 1, e.g. 0.5")


def generate_case(*, seed: int, index: int, size: str = "small", pathology: float = 0.0,
                  profile: str = "flare22") -> PhantomCase:
    """Generate case `index` of the phantom data set `seed` on the `size` grid (pure).

    The patient and its contrast phase depend on (seed, index) only; the grid, spacing and noise
    also on `size`; whether it has a finding (`draw_pathology`) on (seed, index, pathology), where
    `pathology` is the data set's share of cases with one. The label map is in `profile`'s label
    system (`organ_labels`); under a profile with a lesion label (flare23, autopet) every finding is
    liver lesions, labelled as lesions. Same arguments, same arrays.
    """
    _check_args(seed=seed, index=index, size=size, pathology=pathology)
    if profile != "flare22":
        _check_profile(profile)
    kinds = LESION_FINDINGS if profile != "flare22" and lesion_profile(profile) else PATHOLOGIES
    finding = draw_pathology(seed=seed, index=index, share=pathology, kinds=kinds) if pathology else None
    anatomy = _draw_anatomy(np.random.default_rng([seed, index]), finding)
    grid = _draw_grid(np.random.default_rng([seed, index, 1 + SIZES.index(size)]), size, anatomy)
    tissue = _body(grid, anatomy)
    for part in anatomy.parts:
        _paint(tissue, grid, part)
    label = _label_lut(profile)[tissue]
    image = _image(tissue, anatomy, np.random.default_rng([seed, index, 10 + SIZES.index(size)]))
    return PhantomCase(
        case_id=case_id(index), image_hu=image, label=label, spacing_mm=grid.spacing_mm,
        affine=grid.affine, phase=anatomy.phase, noise_hu=round(float(anatomy.noise_hu), 2),
        pathology=finding.record() if finding is not None else None,
    )


def _nifti(data: NDArray[Any], affine: NDArray[np.float64]) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(data.dtype)
    return img


def nifti_gz_bytes(img: nib.Nifti1Image, *, compresslevel: int = 1) -> bytes:
    """The .nii.gz bytes of `img`, identical on every run (gzip's header time is set to 0).

    Level 1 like nibabel: on noisy CT, level 6 saves under 2 % for five times the time.
    """
    return gzip.compress(img.to_bytes(), compresslevel=compresslevel, mtime=0)


def save_nifti_gz(img: nib.Nifti1Image, path: Path) -> Path:
    """Write `img` to `path` deterministically and atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(nifti_gz_bytes(img))
    os.replace(tmp, path)
    return path


_PHANTOM_FILE = re.compile(rf"^{CASE_PREFIX}\d{{4,}}(_0000)?\.nii\.gz$")


def case_metadata(case: PhantomCase) -> dict[str, Any]:
    """What dataset.json records of one case (under "phantom" / "cases")."""
    return {
        "phase": case.phase,
        "spacing_mm": [float(v) for v in case.spacing_mm],
        "shape": [int(v) for v in case.label.shape],
        "noise_hu": case.noise_hu,
        "pathology": case.pathology,
    }


def dataset_json(*, cases: dict[str, dict[str, Any]], seed: int, size: str, split: str,
                 pathology: float = 0.0, profile: str = "flare22") -> dict[str, Any]:
    """The nnU-Net v2 style dataset.json of a phantom data set; `cases` maps case id to
    `case_metadata`, kept under the extra key "phantom" (with the profile, when not flare22)."""
    n = len(cases)
    described = ("the 13 FLARE22 organs" if profile == "flare22" else
                 f"the labels of profile {load_profile(profile).name}: {', '.join(organ_labels(profile))}")
    return {
        "name": "harness-phantom",
        "description": f"Synthetic abdominal CT phantoms with {described} (harness data synth)",
        "reference": "harness.data.synth",
        "licence": "CC0-1.0",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **organ_labels(profile)},
        "numTraining": n if split == "Tr" else 0,
        **({"numTest": n} if split == "Ts" else {}),
        "file_ending": ".nii.gz",
        "phantom": {
            "generator": "harness.data.synth",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "size": size,
            "split": split,
            "pathology": pathology,
            **({"profile": profile} if profile != "flare22" else {}),
            "cases": cases,
        },
    }


def write_dataset(
    out_dir: Path, *, cases: int, seed: int, size: str = "small", split: str = "Tr", pathology: float = 0.0,
    profile: str = "flare22", progress: Callable[[int, int, PhantomCase], None] | None = None,
) -> list[Path]:
    """Write `cases` phantom cases in the FLARE / nnU-Net layout under `out_dir`.

    Files: images<split>/phantom_NNNN_0000.nii.gz (int16 HU), labels<split>/phantom_NNNN.nii.gz
    (uint8) and dataset.json. `pathology`: the share of cases with a finding (`generate_case`).
    Byte-identical on every run. Re-running into the same folder replaces
    the phantom files (and removes phantom cases beyond `cases`); any other file is left alone, and
    a dataset.json that is not a phantom's is refused. `progress(done, total, case)` is called after
    each case. `profile`: the label system of the labels (`generate_case`). Returns the paths written.
    """
    _check_args(seed=seed, size=size, cases=cases, split=split, pathology=pathology)
    if profile != "flare22":
        _check_profile(profile)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir}: is a file, not a folder; choose a folder path")
    meta_path = out_dir / "dataset.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict) or "phantom" not in old:
            raise DataError(
                f"{meta_path}: exists and is not a phantom data set's; choose an empty --out folder"
            )
    images, labels = out_dir / f"images{split}", out_dir / f"labels{split}"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    done: dict[str, dict[str, Any]] = {}
    for index in range(cases):
        case = generate_case(seed=seed, index=index, size=size, pathology=pathology, profile=profile)
        image_nii, label_nii = case.nifti_images()
        written.append(save_nifti_gz(image_nii, images / f"{case.case_id}_0000.nii.gz"))
        written.append(save_nifti_gz(label_nii, labels / f"{case.case_id}.nii.gz"))
        done[case.case_id] = case_metadata(case)
        if progress is not None:
            progress(index + 1, cases, case)
    keep = {p.name for p in written}
    for folder in (images, labels):
        for stale in folder.iterdir():
            if _PHANTOM_FILE.match(stale.name) and stale.name not in keep:
                stale.unlink()
    meta = dataset_json(cases=done, seed=seed, size=size, split=split, pathology=pathology, profile=profile)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    written.append(meta_path)
    return written
