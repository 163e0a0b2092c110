"""A toy challenge over (simulated) days: five registered teams, two phases, toy submissions run by
the local runner.

Each toy submission derives its label map from the case's image (the toy data's image is
`label * 40`), then removes the first `drop` share of the liver's voxels (C order): its liver DSC
is 2(n - k) / (2n - k) exactly, every other organ 1, so the test computes every score itself. It
writes its token into its log lines and `starts.log` (outside the submission, so counting does not
change its digest); `crash = 1` exits with an error; with `hold`, every run after the first
`hold_after` runs waits while the file `hold` exists (outside the submission: a test removes it).
It reads and writes NIfTI with the standard library alone, so that each of the many runs starts in
milliseconds.
"""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import toy_labels, write_nifti
from tests.runpath.conftest import TOY_NIFTI, TOY_PROFILE

TEAMS = ("alpha", "bravo", "charlie", "delta", "echo")

# The toy submission: the standard library only (run with -I -S), a start in milliseconds, not nibabel's
# and numpy's; its NIfTI reading and writing are the run-path toy's (tests/runpath/conftest.py TOY_NIFTI).
SCRIPT = TOY_NIFTI + '''
import time

inp, out = Path(sys.argv[1]), Path(sys.argv[2])
here = Path(__file__).resolve().parent
params = dict(line.split("=", 1) for line in (here / "params").read_text().split())
image = next(inp.glob("*_0000.nii.gz"))
case = image.name[: -len("_0000.nii.gz")]
with open(params["starts"], "a") as log:
    log.write(f"{params['token']} {case}\\n")
print(f"log {params['token']} {case} starting", flush=True)
hold = Path(params["hold"]) if params.get("hold") else None
if hold is not None and len(Path(params["starts"]).read_text().splitlines()) > int(params["hold_after"]):
    waited = 0.0
    while hold.exists() and waited < 120:  # the test kills the harness meanwhile
        time.sleep(0.02)
        waited += 0.02
if params.get("crash") == "1":
    sys.exit(f"crash {params['token']} {case}: toy weights do not fit")
plain = read_plain(image)
assert plain is not None, "a plain little-endian NIfTI-1 image (tests.conftest.write_nifti)"
(nx, ny, nz), srow, data = plain
label = bytearray(data)  # the file's order: x fastest
# the first `drop` share of the liver's voxels in C order (z fastest), as numpy's label.flat
idx = [x + nx * (y + ny * z) for x in range(nx) for y in range(ny) for z in range(nz) if label[x + nx * (y + ny * z)] == 1]
for i in idx[: int(float(params["drop"]) * len(idx))]:
    label[i] = 0
(out / f"{case}.nii.gz").write_bytes(plain_nifti((nx, ny, nz), srow, bytes(label)))
print(f"log {params['token']} {case} done", flush=True)
'''

RANKING = """\
name = "toy-dsc"
method = "aggregate_then_rank"
aggregate = "mean"
draws = 20
seed = 7
[metrics.dsc]
larger_is_better = true
worst_value = 0.0
"""


class World:
    """A challenge folder, its data, a clock, and helpers to upload toy submissions."""

    def __init__(self, root: Path, *, validation_cases: int = 3, final_cases: int = 2, hold_after: int | None = None) -> None:
        self.root = root
        self.starts = root / "counter" / "starts.log"
        self.hold = root / "counter" / "hold"  # runs after the first `hold_after` wait while it exists
        self.hold_after = hold_after
        self.starts.parent.mkdir(parents=True)
        (root / "toy.toml").write_text(TOY_PROFILE.format(liver=5, kidney=3, spleen=3, aorta=2))
        (root / "ranking.toml").write_text(RANKING)
        self.labels: dict[str, dict[str, np.ndarray]] = {}
        for phase, cases, seed in (("validation", validation_cases, 0), ("final", final_cases, 20)):
            self.labels[phase] = {}
            for i in range(cases):
                label = toy_labels(seed + i)
                case = f"case_{i:02d}"
                write_nifti(root / "data" / phase / "labelsTr" / f"{case}.nii.gz", label)
                write_nifti(root / "data" / phase / "imagesTr" / f"{case}_0000.nii.gz", (label * 40).astype(np.int16))
                self.labels[phase][case] = label
        self.challenge = root / "challenge.toml"
        self.challenge.write_text(
            'name = "toy-weeks"\nprofile = "toy.toml"\n\n[teams]\nnames = ' + str(list(TEAMS)).replace("'", '"') + "\n\n"
            '[phases.validation]\ndata = "data/validation"\nranking = "ranking.toml"\npolicy = "best"\n'
            "quota_total = 3\nquota_per_day = 1\n\n"
            '[phases.final]\ndata = "data/final"\nranking = "ranking.toml"\npolicy = "latest"\nquota_total = 1\n')
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def clock(self) -> datetime:
        return self.now

    def advance(self, *, days: float = 0, hours: float = 0) -> None:
        self.now += timedelta(days=days, hours=hours)

    def _files(self, name: str, *, drop: float, token: str, crash: bool) -> dict[str, bytes]:
        manifest = (f'name = "{name}"\nversion = "1.0"\nkind = "segmenter"\ndockerfile = "dockerfiles/toy.Dockerfile"\n'
                    'profile = "../toy.toml"\ngpu = "none"\n\n[resources]\ntime_limit_s = 120\n\n'
                    '[local]\ncommand = ["{python}", "-I", "-S", "toy.py", "{input}", "{output}"]\n')
        params = f"drop={drop}\ntoken={token}\ncrash={int(crash)}\nstarts={self.starts}\n"
        if self.hold_after is not None:
            params += f"hold={self.hold}\nhold_after={self.hold_after}\n"
        return {f"{name}/algorithm.toml": manifest.encode(), f"{name}/toy.py": SCRIPT.encode(),
                f"{name}/params": params.encode(), "toy.toml": (self.root / "toy.toml").read_bytes(),
                "dockerfiles/toy.Dockerfile": b"ARG BASE\nFROM ${BASE}\nCOPY . /opt/algorithm\n"}

    def upload(self, phase: str, team: str, upload: str, *, drop: float, token: str, crash: bool = False,
               as_tar: bool = False, cut: bool = False, name: str = "toy") -> Path:
        """Put an upload into the drop folder: a folder, or a tar (cut in half with `cut`)."""
        folder = self.root / "drop" / phase / team
        folder.mkdir(parents=True, exist_ok=True)
        files = self._files(name, drop=drop, token=token, crash=crash)
        if not as_tar:
            for rel, content in files.items():
                (folder / upload / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / upload / rel).write_bytes(content)
            return folder / upload
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for rel, content in files.items():
                info = tarfile.TarInfo(rel)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        raw = buffer.getvalue()
        target = folder / f"{upload}.tar.gz"
        target.write_bytes(raw[: len(raw) // 2] if cut else raw)
        return target

    def starts_list(self) -> list[str]:
        return self.starts.read_text().splitlines() if self.starts.exists() else []


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return World(tmp_path / "challenge")
