"""The run path without Docker: tiny algorithms written into tmp_path and run by the local runner.

Each toy segmenter is a short script (`toy.py`) that derives its label map from the case's image
(the toy data's image is `label * 40`), so its output is known exactly. Its behaviour on a case is
read at run time from the algorithm folder's `mode` file ("ok", "shift", "crash", "noisy_crash", "empty",
"wrong_grid", "junk", "nap" (1 s), "attack_input", "slow:<case>"; crash, empty, wrong_grid and junk also as
"<mode>:<case>") and every start appends
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

# The toy's reading and writing of NIfTI-1 with the standard library alone: a start without NumPy and
# nibabel (most of its start-up time). `write_plain` takes the data sets the tests write (a 3D integer
# image, no scaling, an affine that is its sform with a positive diagonal) and writes the bytes that
# `write_with_nibabel` (the reference, used for anything else) writes; test_run_path checks they agree.
TOY_NIFTI = '''\
import gzip, io, math, struct, sys
from array import array
from pathlib import Path

_INTEGER_CODES = {2: "B", 4: "h", 8: "i", 256: "b", 512: "H", 768: "I"}  # NIfTI datatype -> array typecode
_INTEGER_SIZES = {"B": 1, "h": 2, "i": 4, "b": 1, "H": 2, "I": 4}


def read_plain(image):
    # (shape, sform rows, the label map's bytes in file order) of a little-endian 3D integer NIfTI-1
    # without scaling whose sform is a positive diagonal, with every label 0..255; else None
    try:
        raw = gzip.decompress(Path(image).read_bytes())
        if len(raw) < 352 or struct.unpack_from("<i", raw, 0)[0] != 348 or raw[344:348] != b"n+1\\0":
            return None
        dim = struct.unpack_from("<8h", raw, 40)
        code = _INTEGER_CODES.get(struct.unpack_from("<h", raw, 70)[0])
        vox_offset, slope, inter = struct.unpack_from("<3f", raw, 108)
        srow = struct.unpack_from("<12f", raw, 280)
        if dim[0] != 3 or min(dim[1:4]) < 2 or code is None or struct.unpack_from("<h", raw, 254)[0] == 0:
            return None
        if not (slope == 0 or not math.isfinite(slope) or (slope == 1 and inter == 0)):  # nibabel: unscaled
            return None
        if not all(math.isfinite(v) for v in srow) or any(srow[i] for i in (1, 2, 4, 6, 8, 9)):
            return None
        if not (srow[0] > 0 and srow[5] > 0 and srow[10] > 0):
            return None
        offset, count = int(vox_offset), dim[1] * dim[2] * dim[3]
        values = array(code)
        if offset != vox_offset or offset < 352 or values.itemsize != _INTEGER_SIZES[code] or sys.byteorder != "little":
            return None
        size = count * values.itemsize
        if len(raw) < offset + size:
            return None
        values.frombytes(raw[offset:offset + size])
        table = {}
        for v in set(values):
            label = round(v / 40.0)  # half to even, as np.rint
            if not 0 <= label <= 255:
                return None
            table[v] = label
        return dim[1:4], srow, bytes(map(table.__getitem__, values))
    except Exception:
        return None


def plain_nifti(shape, srow, data):
    # what nibabel writes for Nifti1Image(uint8 data, the diagonal affine of srow): sform 'aligned',
    # qform 'unknown' (identity rotation), no scaling, gzip level 1 with mtime 0
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *shape, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 2, 8)
    struct.pack_into("<8f", header, 76, 1.0, srow[0], srow[5], srow[10], 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<3f", header, 108, 352.0, 1.0, 0.0)
    struct.pack_into("<h", header, 254, 2)
    struct.pack_into("<3f", header, 268, srow[3], srow[7], srow[11])
    struct.pack_into("<12f", header, 280, *srow)
    header[344:348] = b"n+1\\0"
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=buffer, mtime=0) as stream:  # as nibabel's
        stream.write(bytes(header) + data)
    return buffer.getvalue()


def write_plain(image, out, case, mode, organs, probabilities):
    # the toy's outputs, without nibabel; False (nothing written) where read_plain cannot read the image
    plain = read_plain(image)
    if plain is None:
        return False
    shape, srow, label = plain
    nx = shape[0]
    if mode == "shift":  # np.roll(label, 1, axis=0): x varies fastest on disk
        label = b"".join(label[i + nx - 1:i + nx] + label[i:i + nx - 1] for i in range(0, len(label), nx))
    target = out / f"{case}.nii.gz"
    if mode == "empty" or mode == f"empty:{case}":
        target.write_bytes(b"")
    elif mode == "wrong_grid" or mode == f"wrong_grid:{case}":  # label[:-1]
        cut = b"".join(label[i:i + nx - 1] for i in range(0, len(label), nx))
        target.write_bytes(plain_nifti((nx - 1, *shape[1:]), srow, cut))
    else:
        target.write_bytes(plain_nifti(shape, srow, label))
    if probabilities:
        (out / "probabilities").mkdir()
        for value, organ in organs:  # every organ of its profile (absent ones as zeros)
            mask = bytes(255 if v == value else 0 for v in range(256))
            (out / "probabilities" / f"{organ}.nii.gz").write_bytes(plain_nifti(shape, srow, label.translate(mask)))
    return True


def write_with_nibabel(image, out, case, mode, organs, probabilities):
    import nibabel as nib
    import numpy as np

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
    if probabilities:
        (out / "probabilities").mkdir()
        for value, organ in organs:  # every organ of its profile (absent ones as zeros)
            p = (label == value).astype(np.float32)
            nib.save(nib.Nifti1Image(np.rint(255 * p).astype(np.uint8), img.affine), out / "probabilities" / f"{organ}.nii.gz")
'''

TOY_SCRIPT = TOY_NIFTI + '''
import os, sys, time
from pathlib import Path

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
    time.sleep(1.0)
if mode == "attack_input":  # try to damage the organiser's data through the staged copy, then stop
    os.chmod(image, 0o666)
    with open(image, "r+b") as f:
        f.write(b"overwritten by the algorithm")  # the test checks the original's bytes are unchanged
    sys.exit(0)
organs = {organs}  # every organ of its profile
if not write_plain(image, out, case, mode, organs, "{probabilities}" == "true"):
    write_with_nibabel(image, out, case, mode, organs, "{probabilities}" == "true")
if mode == "junk" or mode == f"junk:{case}":  # everything the contract does not ask for
    here_dir = os.getcwd()
    os.chdir(out)
    for level in range(1512):  # 1500 levels, then 12 names of 250 bytes: a path of about 6000, over PATH_MAX
        name = "d" if level < 1500 else "x" * 250
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
