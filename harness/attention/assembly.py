"""Final labels after review, assembled by priority, with the source of every organ (pure).

Per organ, the first of: the source data set's original annotation, the reviewer's revision,
the annotator's pseudo label (AbdomenAtlas-8K's order). Where masks of several organs claim a
voxel, the organ taken from the higher-priority source keeps it; within one source, the organ of
lower label value (as an argmax would).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

SOURCES = ("original", "revised", "pseudo")
NO_SOURCE = "none"

Masks = Mapping[str, NDArray[Any] | None]


def masks_from_label_map(label_map: NDArray[np.integer], organs: Iterable[str], *, labels: Mapping[str, int]
                         ) -> dict[str, NDArray[np.bool_]]:
    """Organ -> boolean mask of `label_map == label` for each of `organs` (`labels`: the profile's values)."""
    data = np.asarray(label_map)
    out = {}
    for organ in organs:
        if organ not in labels:
            raise ValueError(f"organ {organ!r} has no label value; known: {', '.join(labels)}")
        out[organ] = data == labels[organ]
    return out


def assemble_case(original: Masks, revised: Masks, pseudo: Masks, *, labels: Mapping[str, int],
                  shape: tuple[int, ...] | None = None) -> tuple[NDArray[np.uint8], dict[str, str]]:
    """The case's final label map (uint8) and organ -> source ('original', 'revised', 'pseudo', 'none').

    Each argument maps organ names to a boolean mask, or to None (no such annotation); organs
    missing from a mapping count as None. `labels` gives the label values (the profile's, never assumed);
    `shape` is needed only when no mask is given at all.
    """
    tiers = dict(zip(SOURCES, (original, revised, pseudo), strict=True))
    organs = sorted({o for masks in tiers.values() for o in masks}, key=lambda o: (labels.get(o, 256), o))
    unknown = [o for o in organs if o not in labels]
    if unknown:
        raise ValueError(f"organ {unknown[0]!r} has no label value; known: {', '.join(labels)}")
    chosen: dict[str, tuple[str, NDArray[np.bool_]]] = {}
    sources: dict[str, str] = {}
    for organ in organs:
        sources[organ] = NO_SOURCE
        for source, masks in tiers.items():
            mask = masks.get(organ)
            if mask is not None:
                mask = np.asarray(mask)
                if shape is None:
                    shape = mask.shape
                elif mask.shape != tuple(shape):
                    raise ValueError(f"{source} mask of {organ} has shape {mask.shape}; expected {tuple(shape)} like the others")
                chosen[organ] = (source, mask.astype(bool, copy=False))
                sources[organ] = source
                break
    if shape is None:
        raise ValueError("no mask given for any organ; pass shape= for an empty label map")
    label_map = np.zeros(shape, np.uint8)
    # Paint the lowest priority first and each tier's highest label first: later paint wins.
    for source in reversed(SOURCES):
        for organ in reversed(organs):
            if organ in chosen and chosen[organ][0] == source:
                label_map[chosen[organ][1]] = labels[organ]
    return label_map, sources


def sources_table(sources: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """case -> (organ -> source) as a table: case, organ, source."""
    rows = [{"case": case, "organ": organ, "source": source} for case, per_organ in sources.items() for organ, source in per_organ.items()]
    return pd.DataFrame(rows, columns=["case", "organ", "source"])
