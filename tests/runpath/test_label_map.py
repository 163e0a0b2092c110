"""`map_labels = true`: a segmenter numbered in another label system, mapped by organ name.

The challenge scores the toy's four organs (liver 1, right_kidney 2, spleen 3, aorta 5); this
segmenter numbers them as its own profile does (liver 2, right_kidney 1, gallbladder 4, ...), as a
model trained on another data set would. Declared, its outputs are mapped before any check, and
score exactly as the toy numbered natively; undeclared, the manifest is refused and never runs.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from harness.layout import ResultsLayout
from harness.pipeline import run_all
from harness.store import Store
from tests.runpath.conftest import Toy

OTHER_PROFILE = """\
name = "other-numbering"
description = "the toy's organs numbered otherwise, and one more"
organs = [
  { label = 1, name = "right_kidney", tolerance_mm = 3 },
  { label = 2, name = "liver",        tolerance_mm = 5 },
  { label = 3, name = "spleen",       tolerance_mm = 3 },
  { label = 4, name = "gallbladder",  tolerance_mm = 2 },
  { label = 5, name = "aorta",        tolerance_mm = 2 },
]
"""

SCRIPT = '''\
import sys
from pathlib import Path
import nibabel as nib
import numpy as np

inp, out = Path(sys.argv[1]), Path(sys.argv[2])
image = next(inp.glob("*_0000.nii.gz"))
case = image.name[: -len("_0000.nii.gz")]
img = nib.load(image)
toy = np.rint(np.asarray(img.dataobj) / 40.0).astype(np.uint8)  # the toy numbering
own = np.array([0, 2, 1, 3, 0, 5], np.uint8)[toy]  # liver 1 -> 2, right_kidney 2 -> 1
own[0, 0, :2] = 4  # a gallbladder the challenge does not score
nib.save(nib.Nifti1Image(own, img.affine), out / f"{case}.nii.gz")
(out / "probabilities").mkdir()
for value, organ in ((2, "liver"), (1, "right_kidney"), (3, "spleen"), (4, "gallbladder"), (5, "aorta")):
    nib.save(nib.Nifti1Image(((own == value) * 255).astype(np.uint8), img.affine), out / "probabilities" / f"{organ}.nii.gz")
'''


def _segmenter(toy: Toy, *, declared: bool) -> None:
    folder = toy.algorithms / "renumbered"
    folder.mkdir(parents=True)
    (folder / "other.toml").write_text(OTHER_PROFILE)
    (folder / "seg.py").write_text(SCRIPT)
    (folder / "algorithm.toml").write_text(
        'name = "renumbered"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/toy.Dockerfile"\n'
        f'profile = "other.toml"\n{"map_labels = true" if declared else ""}\nwrites_probabilities = true\n'
        'gpu = "none"\n\n[local]\ncommand = ["{python}", "seg.py", "{input}", "{output}"]\n')


def test_a_declared_label_mapping_scores_as_the_native_numbering(toy: Toy) -> None:
    toy.write_data(3)
    toy.segmenter("native", probabilities=True)
    _segmenter(toy, declared=True)
    summary = run_all(toy.settings(), say=lambda m: None, on_result=lambda e: None)
    with Store.open(toy.results, lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    assert summary.failed == 0 and set(runs.status) == {"ok"}, runs.message.tolist()
    assert scores.loc["renumbered"].dsc.equals(scores.loc["native"].dsc)
    assert scores.loc["renumbered"].nsd.equals(scores.loc["native"].nsd)
    assert (scores.loc["native"].dsc == 1).all()
    layout = ResultsLayout.of(toy.results)
    for case_id in ("case_00", "case_01", "case_02"):
        kept = np.asarray(nib.load(layout.label_map("renumbered", case_id)).dataobj)
        assert np.array_equal(kept, np.asarray(nib.load(layout.label_map("native", case_id)).dataobj))
        for organ in ("liver", "right_kidney", "spleen", "aorta"):  # named in the challenge's terms
            mapped = np.asarray(nib.load(layout.probabilities_dir("renumbered", case_id) / f"{organ}.nii.gz").dataobj)
            native = np.asarray(nib.load(layout.probabilities_dir("native", case_id) / f"{organ}.nii.gz").dataobj)
            assert np.array_equal(mapped, native), organ
        assert not (layout.probabilities_dir("renumbered", case_id) / "gallbladder.nii.gz").exists()
    details = runs.loc[("renumbered", "case_00"), "details"]
    assert "other-numbering -> toy: 4 organs mapped by name; not the challenge's (background): gallbladder" in details
    assert "not_kept" not in details  # its own outputs, gallbladder's map included, were read: not extras


def test_an_undeclared_other_numbering_never_runs(toy: Toy) -> None:
    toy.write_data(1)
    _segmenter(toy, declared=False)
    with pytest.raises(Exception, match="no valid segmenter manifest"):
        run_all(toy.settings(), say=lambda m: None, on_result=lambda e: None)
    assert toy.starts() == []
