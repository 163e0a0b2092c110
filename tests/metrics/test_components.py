"""Component labelling per cluster of occupied blocks equals one `scipy.ndimage.label` of the
whole volume, numbering included (C order, or Fortran order for a Fortran-ordered mask)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from harness.metrics.components import Connectivity, label_components
from tests.metrics.lesion_cases import random_lesion_masks, tumour_phantom


def _scipy_labels(mask: np.ndarray, connectivity: Connectivity, *, fortran: bool) -> np.ndarray:
    structure = connectivity.structure(mask.ndim)
    if fortran:
        return ndimage.label(np.ascontiguousarray(mask.T), structure=structure)[0].T
    return ndimage.label(mask, structure=structure)[0]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("connectivity", list(Connectivity))
@pytest.mark.parametrize("fortran", [False, True])
def test_equals_one_labelling(seed: int, connectivity: Connectivity, fortran: bool) -> None:
    rng = np.random.default_rng([41, seed])
    if seed % 2:
        mask = tumour_phantom(rng, (150, 140, 70), n_lesions=14) > 0  # many block clusters
    else:
        mask = random_lesion_masks(rng, (70, 60, 50), fill=0.01)  # scattered small components
    if fortran:
        mask = np.asfortranarray(mask)
    components = label_components(mask, connectivity=connectivity)
    expected = _scipy_labels(mask, connectivity, fortran=fortran)
    full = np.zeros(mask.shape, dtype=np.int32)
    assert components.box is not None
    full[components.box] = components.labels
    np.testing.assert_array_equal(full, expected)
    assert components.count == expected.max()
    sizes = np.bincount(expected.reshape(-1), minlength=components.count + 1)
    sizes[0] = 0
    np.testing.assert_array_equal(components.sizes_voxels, sizes)


def test_empty_mask() -> None:
    components = label_components(np.zeros((5, 6, 7), dtype=bool), connectivity=Connectivity.FULL)
    assert (components.box, components.count) == (None, 0)
