"""Final labels by priority: original, then revised, then pseudo; each organ's source recorded."""

from __future__ import annotations

import numpy as np
import pytest

from harness.attention import assemble_case, masks_from_label_map, sources_table

SHAPE = (6, 6, 4)
LABELS = {"liver": 1, "right_kidney": 2, "spleen": 3, "gallbladder": 9}


def mask(*cells: tuple[int, int, int]) -> np.ndarray:
    out = np.zeros(SHAPE, bool)
    for cell in cells:
        out[cell] = True
    return out


def test_priority_original_then_revised_then_pseudo() -> None:
    original = {"liver": mask((0, 0, 0)), "spleen": None}
    revised = {"liver": mask((1, 1, 1)), "spleen": mask((2, 2, 2))}
    pseudo = {"liver": mask((3, 3, 3)), "spleen": mask((4, 4, 0)), "right_kidney": mask((5, 5, 0))}
    label, sources = assemble_case(original, revised, pseudo, labels=LABELS)
    assert sources == {"liver": "original", "right_kidney": "pseudo", "spleen": "revised"}
    expected = np.zeros(SHAPE, np.uint8)
    expected[0, 0, 0], expected[2, 2, 2], expected[5, 5, 0] = 1, 3, 2
    np.testing.assert_array_equal(label, expected)
    assert label.dtype == np.uint8


def test_conflicts_go_to_the_higher_priority_source_then_the_lower_label() -> None:
    shared = mask((1, 1, 1), (2, 2, 2))
    label, _ = assemble_case({"spleen": mask((1, 1, 1))}, {}, {"liver": shared}, labels=LABELS)
    assert label[1, 1, 1] == 3 and label[2, 2, 2] == 1  # the original spleen beats the pseudo liver
    label, _ = assemble_case({}, {}, {"spleen": shared, "liver": shared}, labels=LABELS)
    assert label[1, 1, 1] == 1  # same source: the lower label, as an argmax would


def test_an_organ_without_any_mask_is_recorded_as_none() -> None:
    label, sources = assemble_case({"gallbladder": None}, {"gallbladder": None}, {"liver": mask((0, 0, 0))}, labels=LABELS)
    assert sources["gallbladder"] == "none"
    assert not (label == 9).any()


def test_shapes_are_checked_and_an_empty_case_needs_a_shape() -> None:
    with pytest.raises(ValueError, match=r"pseudo mask of spleen has shape \(2, 2, 2\); expected \(6, 6, 4\)"):
        assemble_case({"liver": mask()}, {}, {"spleen": np.zeros((2, 2, 2), bool)}, labels=LABELS)
    with pytest.raises(ValueError, match="pass shape="):
        assemble_case({}, {}, {}, labels=LABELS)
    label, sources = assemble_case({}, {}, {"liver": None}, labels=LABELS, shape=SHAPE)
    assert label.shape == SHAPE and not label.any() and sources == {"liver": "none"}
    with pytest.raises(ValueError, match="organ 'kidney' has no label value"):
        assemble_case({"kidney": mask()}, {}, {}, labels=LABELS)


def test_the_label_values_come_from_the_profile_given() -> None:
    from harness.profiles import load_profile

    labels = {o.name: o.label for o in load_profile("flare22").organs}
    label, _ = assemble_case({}, {}, {"left_kidney": mask((0, 0, 0)), "stomach": mask((1, 0, 0))}, labels=labels)
    assert label[0, 0, 0] == 13 and label[1, 0, 0] == 11
    with pytest.raises(TypeError):  # no silent default numbering
        assemble_case({}, {}, {"liver": mask()})  # type: ignore[call-arg]


def test_masks_from_a_label_map_and_the_sources_table() -> None:
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, 0] = 3
    masks = masks_from_label_map(label, ["spleen", "liver"], labels=LABELS)
    assert masks["spleen"].sum() == 1 and not masks["liver"].any()
    table = sources_table({"c1": {"liver": "original", "spleen": "pseudo"}, "c2": {"liver": "revised"}})
    assert table.to_dict("records") == [{"case": "c1", "organ": "liver", "source": "original"},
                                        {"case": "c1", "organ": "spleen", "source": "pseudo"},
                                        {"case": "c2", "organ": "liver", "source": "revised"}]
