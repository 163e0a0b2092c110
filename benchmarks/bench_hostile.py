"""What hostile outputs cost the harness, beside a well-formed output measured in the same run.

1. Peak RSS of a fresh process that checks one output exactly as `harness run` does
   (`harness.acceptance.validate_outputs`), for a well-formed label map of a full-size phantom
   case and for each bomb on the same grid: a header claiming 2048x2048x768 voxels (100 bytes), a
   lying header over 768 MB of compressed zeros, a header extension "to the end", and a 512 MB
   extension that is really there. Goal (issue 14): within 1.2x of the well-formed file.
2. The time the output checks and keeping add to a normal run: the classical segmenter run by the
   local runner on the same case, its elapsed time beside the time of `check_outputs` +
   `kept_files` on its outputs. Goal: under 5 % of the run.

    python benchmarks/bench_hostile.py
"""

from __future__ import annotations

import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from harness.casework import RunTask, check_outputs, kept_files, run_case  # noqa: E402
from harness.challenge import load_challenge  # noqa: E402
from harness.data.dataset import discover  # noqa: E402
from harness.data.synth import write_dataset  # noqa: E402
from harness.models import RunnerKind  # noqa: E402
from harness.runner.local_runner import LocalRunner  # noqa: E402
from harness.spec import discover_algorithms  # noqa: E402

_PEAK = """
import resource, sys
from pathlib import Path
from harness.profiles import load_profile
from harness.acceptance import InvalidOutput, validate_outputs
verdict = "imports only, nothing checked"
try:
    if sys.argv[3] != "-":
        validate_outputs(Path(sys.argv[2]), case_id=sys.argv[3], image=Path(sys.argv[1]), profile=load_profile("flare22"),
                         probabilities=False)
        verdict = "accepted"
except InvalidOutput as exc:
    verdict = "refused: " + str(exc)[:70]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, verdict)
"""


def header(shape: tuple[int, ...], *, extension: bytes = b"\0\0\0\0") -> bytes:
    h = nib.Nifti1Header()
    h.set_data_shape(shape)
    h.set_data_dtype(np.uint8)
    h["vox_offset"] = 352
    return h.binaryblock + extension


def gzip_zeros(path: Path, head: bytes, zeros: int) -> None:
    chunk = bytes(16 * 1024**2)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(head)
        for _ in range(zeros // len(chunk)):
            out.write(chunk)


def peak(image: Path, output: Path, case_id: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", _PEAK, str(image), str(output), case_id], capture_output=True, text=True,
                          check=True, cwd=REPO)
    kib, verdict = done.stdout.strip().split(" ", 1)
    return int(kib), verdict


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp_name:
        tmp = Path(tmp_name)
        write_dataset(tmp / "data", cases=1, seed=3, size="full")
        case = discover(tmp / "data")[0].cases[0]
        assert case.image is not None and case.label is not None
        shape = tuple(int(n) for n in nib.load(case.image).shape)  # type: ignore[attr-defined]
        output = tmp / "output"
        output.mkdir()
        target = output / f"{case.case_id}.nii.gz"

        def well_formed() -> None:
            target.write_bytes(case.label.read_bytes())  # type: ignore[union-attr]

        files = {
            "well-formed label map": well_formed,
            "header bomb (2048x2048x768, 100 B)": lambda: target.write_bytes(gzip.compress(header((2048, 2048, 768)))),
            "zip bomb (lying header, 768 MB)": lambda: gzip_zeros(target, header((1024, 1024, 768)), 768 * 1024**2),
            "extension bomb (size 'to the end')": lambda: target.write_bytes(gzip.compress(
                header(shape, extension=b"\1\0\0\0") + (2**31 - 8).to_bytes(4, "little") + bytes(4))),
            "extension zip bomb (512 MB)": lambda: gzip_zeros(target, header(shape, extension=b"\1\0\0\0")
                                                              + (512 * 1024**2 + 8).to_bytes(4, "little") + bytes(4),
                                                              512 * 1024**2),
        }
        print(f"output checks of one {'x'.join(map(str, shape))} case, peak RSS of a fresh checking process")
        base_kib, _ = peak(case.image, output, "-")
        print(f"  {'(the process before any check)':<38}{base_kib / 1024:8.1f} MB")
        reference = None
        for name, write in files.items():
            write()
            kib, verdict = peak(case.image, output, case.case_id)
            reference = reference or kib
            print(f"  {name:<38}{kib / 1024:8.1f} MB  {kib / reference:5.2f}x  {verdict}")
        target.unlink()

        specs, _ = discover_algorithms(REPO / "algorithms", repo_root=REPO)
        spec = load_challenge().admit(next(s for s in specs if s.name == "classical"))
        task = RunTask(spec, case, None, RunnerKind.LOCAL, load_challenge().profile)
        result = run_case(task, runner=LocalRunner(), work_dir=tmp)
        assert result.outcome.status == "ok", result.outcome.message
        for rel, content in result.files.items():
            (output / rel).parent.mkdir(parents=True, exist_ok=True)
            (output / rel).write_bytes(content)
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            check_outputs(task, output)
            kept_files(task, output)
            timings.append(time.perf_counter() - start)
        checks = statistics.median(timings)
        run_s = result.outcome.elapsed_s
        print(f"\nclassical segmenter (local runner) on {case.case_id}: run {run_s:.2f} s; output checks + keeping "
              f"{checks * 1000:.0f} ms (median of 5) = {100 * checks / run_s:.1f} % of the run (goal < 5 %)")


if __name__ == "__main__":
    main()
