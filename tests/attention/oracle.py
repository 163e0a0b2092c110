"""An independent, straightforward oracle of the attention map: whole volume, float64, scipy's
binary erosion and dilation; written from the definition (shared/reference/attention.md), not
from the annotator's code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

CUBE = np.ones((3, 3, 3), bool)


def as_p64(values: NDArray) -> NDArray[np.float64]:
    return values / 255.0 if values.dtype == np.uint8 else values.astype(np.float64)


def oracle_clean(mask: NDArray[np.bool_], erosions: int = 2, dilations: int = 2) -> NDArray[np.bool_]:
    out = mask.copy()
    for _ in range(erosions):  # one at a time: scipy's iterations=0 means "until stable"
        out = ndimage.binary_erosion(out, structure=CUBE, border_value=0)
    for _ in range(dilations):
        out = ndimage.binary_dilation(out, structure=CUBE, border_value=0)
    return out


def oracle_annotate(probabilities: Mapping[str, Sequence[NDArray]], labels: Mapping[str, int], *, std_threshold: float = 0.1,
                    entropy_threshold: float = 0.05, erosions: int = 2, dilations: int = 2, pseudo_threshold: float = 0.5,
                    support_dilations: int = 1) -> dict[str, dict[str, NDArray]]:
    """organ -> {inconsistency, uncertainty, overlap, attention, heat}, plus '__label__' -> {label}."""

    def own_support(p: NDArray[np.float64]) -> NDArray[np.float64]:  # zero outside the dilated hard mask
        if support_dilations < 0:
            return p
        keep = p > 0.5
        for _ in range(support_dilations):
            keep = ndimage.binary_dilation(keep, structure=CUBE, border_value=0)
        return np.where(keep, p, 0.0)

    stacks = {organ: np.stack([own_support(as_p64(a)) for a in arrays]) for organ, arrays in probabilities.items()}
    means = {organ: s.mean(axis=0) for organ, s in stacks.items()}
    pseudo = {organ: m > pseudo_threshold for organ, m in means.items()}
    claims = sum(p.astype(int) for p in pseudo.values())
    out: dict[str, dict[str, NDArray]] = {}
    for organ, p in stacks.items():
        std = p.std(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, -p * np.log(p), 0.0)
        ent = terms.mean(axis=0)
        overlap = pseudo[organ] & (claims >= 2)
        inc = oracle_clean(std > std_threshold, erosions, dilations)
        unc = oracle_clean(ent > entropy_threshold, erosions, dilations)
        total = std + ent + overlap
        heat = total / total.max() if total.max() > 0 else np.zeros_like(total)
        out[organ] = {"inconsistency": inc, "uncertainty": unc, "overlap": overlap, "attention": inc | unc | overlap, "heat": heat}
    organs = list(stacks)
    mean_stack = np.stack([means[o] for o in organs])
    winner = np.argmax(mean_stack, axis=0)  # ties: the organ listed first
    label = np.zeros(mean_stack.shape[1:], np.uint8)
    anything = mean_stack.max(axis=0) > pseudo_threshold
    values = np.array([labels[o] for o in organs], np.uint8)
    label[anything] = values[winner[anything]]
    out["__label__"] = {"label": label}
    return out
