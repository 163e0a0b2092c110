"""The run path without Docker: tiny algorithms written into tmp_path and run by the local runner.

Each toy segmenter is a short script (`toy.py`) that derives its label map from the case's image
(the toy data's image is `label * 40`), so its output is known exactly. Its behaviour on a case is
read at run time from the algorithm folder's `mode` file ("ok", "shift", "crash", "noisy_crash", "empty",
"wrong_grid", "slow:<case>"; the last four also as "<mode>:<case>") and every start appends
"<algorithm> <case>" to the test's `counter/starts.log` (outside the algorithm folder, so counting
does not change the algorithm's digest):
"no container started" is asserted by that file, not by a mock.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.challenge import load_challenge
from harness.models import RunnerKind
from harness.pipeline import RunSettings
from harness.profiles import load_profile
from tests.conftest import toy_labels, write_nifti

REPO = Path(__file__).resolve().parents[2]

TOY_SCRIPT = '''\
import os, sys, time
from pathlib import Path
import nibabel as nib
import numpy as np

inp, out = Path(sys.argv[1]), Path(sys.argv[2])
here = Path(__file__).resolve().parent
image = next(inp.glob("*_0000.nii.gz"))
case = image.name[: -len("_0000.nii.gz")]
starts = Path("{starts}")
with open(starts, "a") as log:
    log.write(f"{here.name} {case}\\n")
mode = (here / "mode").read_text().strip() if (here / "mode").exists() else "ok"
if mode == "crash" or mode == f"crash:{case}":
    sys.exit("toy: crashing on purpose")
if mode == "noisy_crash":  # a long log, markup and colour in it, the reason last
    for i in range(300):
        print(f"toy: step {i} <script>alert(1)</script> \x1b[31mred\x1b[0m", flush=True)
    print("x" * 5000, flush=True)
    sys.exit("ValueError: toy weights do not fit the input")
if mode == f"slow:{case}" and not (starts.parent / "slow-started").exists():  # slow the first time only
    (starts.parent / "slow-started").write_text(str(os.getpid()))
    time.sleep(60)
if mode == "nap":  # a run long enough for the progress heartbeat
    time.sleep(2.5)
if mode == "attack_input":  # try to damage the organiser's data through the staged copy, then stop
    os.chmod(image, 0o666)
    with open(image, "r+b") as f:
        f.write(b"overwritten by the algorithm")  # the test checks the original's bytes are unchanged
    sys.exit(0)
img = nib.load(image)
label = np.rint(np.asarray(img.dataobj) / 40.0).astype(np.uint8)
if mode == "shift":
    label = np.roll(label, 1, axis=0)
target = out / f"{case}.nii.gz"
if mode == "empty" or mode == f"empty:{case}":
    target.write_bytes(b"")
elif mode == "wrong_grid" or mode == f"wrong_grid:{case}":
    nib.save(nib.Nifti1Image(label[:-1], img.affine), target)
else:
    nib.save(nib.Nifti1Image(label, img.affine), target)
if "{probabilities}" == "true":
    (out / "probabilities").mkdir()
    for value, organ in {organs}:  # every organ of its profile (absent ones as zeros)
        p = (label == value).astype(np.float32)
        nib.save(nib.Nifti1Image(np.rint(255 * p).astype(np.uint8), img.affine), out / "probabilities" / f"{{organ}}.nii.gz")
if mode == "junk":  # everything the contract does not ask for
    here_dir = os.getcwd()
    os.chdir(out)
    for level in range(2500):  # 1500 levels, then a path longer than PATH_MAX
        name = "d" if level < 1500 else "xx"
        os.mkdir(name)
        os.chdir(name)
    os.chdir(here_dir)
    bad = os.fsencode(out) + b"/bad-\\xff\\xfe-\\x1b[31mred\\x1b[0m\\n"
    open(bad, "wb").write(b"x")
    (out / "notes.txt").write_text("extra")
    (out / "probabilities").mkdir(exist_ok=True)
    (out / "probabilities" / "liver.nii.gz").write_bytes(b"undeclared")
print(f"toy: {{case}} done ({{mode}}) \\x1b[31mcoloured\\x1b[0m")
'''

# The toy data's organs (tests.conftest.toy_labels): a profile of just these four, FLARE22's rules.
TOY_PROFILE = """\
name = "toy"
description = "the four organs of the toy data, FLARE22's rules"
both_empty = 1.0
nsd_min_dsc = 0.2
zrange_drop_last_slice = true
zrange_axis = 2
round_decimals = 4
organs = [
  {{ label = 1, name = "liver",        tolerance_mm = {liver} }},
  {{ label = 2, name = "right_kidney", tolerance_mm = {kidney} }},
  {{ label = 3, name = "spleen",       tolerance_mm = {spleen} }},
  {{ label = 5, name = "aorta",        tolerance_mm = {aorta}, zrange_only = true }},
]
"""
TOY_ORGANS = ((1, "liver"), (2, "right_kidney"), (3, "spleen"), (5, "aorta"))


class Toy:
    """A sandbox of one test: data, algorithms, results, and the start counter."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.algorithms = root / "algorithms"
        self.results = root / "results"
        self.starts_file = root / "counter" / "starts.log"
        self.starts_file.parent.mkdir(parents=True)
        self.profile_file = root / "toy.toml"
        self.challenge_file = root / "challenge.toml"
        self.write_profile()
        self.challenge_file.write_text('name = "toy-challenge"\nprofile = "toy.toml"\n')
        (root / "dockerfiles").mkdir()
        (root / "dockerfiles" / "toy.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY . /opt/algorithm\n")

    def annotator(self) -> Path:
        """The real attention-annotator, copied in (its Dockerfile too), run by the local runner."""
        target = self.algorithms / "attention-annotator"
        shutil.copytree(REPO / "algorithms" / "attention-annotator", target, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "dockerfiles" / "attention-annotator.Dockerfile", self.root / "dockerfiles")
        return target

    def write_profile(self, *, liver: float = 5, kidney: float = 3, spleen: float = 3, aorta: float = 2) -> None:
        self.profile_file.write_text(TOY_PROFILE.format(liver=liver, kidney=kidney, spleen=spleen, aorta=aorta))

    def write_data(self, cases: int = 4, *, root: Path | None = None, seed: int = 0) -> Path:
        root = root or self.data
        for i in range(cases):
            label = toy_labels(seed + i)
            write_nifti(root / "labelsTr" / f"case_{i:02d}.nii.gz", label)
            write_nifti(root / "imagesTr" / f"case_{i:02d}_0000.nii.gz", (label * 40).astype(np.int16))
        return root

    def segmenter(self, name: str, mode: str = "ok", *, probabilities: bool = False, profile: str = "../../toy.toml") -> Path:
        folder = self.algorithms / name
        folder.mkdir(parents=True, exist_ok=True)
        organs = TOY_ORGANS if profile.endswith("toy.toml") else tuple((o.label, o.name) for o in load_profile(profile).organs)
        script = TOY_SCRIPT.replace("{probabilities}", "true" if probabilities else "false")
        script = script.replace("{organs}", repr(organs)).replace("{starts}", str(self.starts_file))
        (folder / "toy.py").write_text(script.replace("{{", "{").replace("}}", "}"))
        (folder / "mode").write_text(mode + "\n")
        (folder / "algorithm.toml").write_text(
            f'name = "{name}"\nversion = "0.0.1"\nkind = "segmenter"\ndockerfile = "dockerfiles/toy.Dockerfile"\n'
            f'profile = "{profile}"\nwrites_probabilities = {"true" if probabilities else "false"}\ngpu = "none"\n\n'
            '[resources]\ntime_limit_s = 120\n\n[local]\ncommand = ["{python}", "toy.py", "{input}", "{output}"]\n')
        return folder

    def set_mode(self, name: str, mode: str) -> None:
        (self.algorithms / name / "mode").write_text(mode + "\n")

    def starts(self) -> list[str]:
        """'<algorithm> <case>' for every start so far."""
        return self.starts_file.read_text().split("\n")[:-1] if self.starts_file.exists() else []

    def settings(self, **changes: object) -> RunSettings:
        values: dict[str, object] = dict(algorithms_dir=self.algorithms, data_dir=self.data, results_dir=self.results,
                                         runner=RunnerKind.LOCAL, cache_dir=self.root / "cache", repo_root=self.root,
                                         challenge=load_challenge(self.challenge_file))
        values.update(changes)
        return RunSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Toy:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return Toy(tmp_path)
