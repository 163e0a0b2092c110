"""What a finished run means, judged once for both runners (`harness.runner.base.classify`,
`passed_limit`): pure, tested without Docker; and the local runner holds the output to the
manifest's count of files and folders as the Docker runner holds /output."""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path

import pytest

from harness.models import GpuMode, Kind
from harness.profiles import load_profile
from harness.runner.base import RunRequest, RunStatus, Verdict, classify, passed_limit
from harness.runner.local_runner import LocalRunner
from harness.spec import AlgorithmSpec, Resources

RES = Resources(memory_bytes=512 * 2**20, output_bytes=3_000_000, output_files=10, time_limit_s=2.5)


def test_passed_limit_names_the_first_limit_passed_with_the_runners_one_message() -> None:
    assert passed_limit(RES, elapsed_s=2.5, output_bytes=3_000_000, output_entries=10) is None  # at a limit: within
    assert passed_limit(RES, elapsed_s=2.6, output_bytes=9_000_000, output_entries=99) == Verdict(
        RunStatus.TIMEOUT, "killed at the time limit of 2.5 s")
    assert passed_limit(RES, elapsed_s=1.0, output_bytes=4_200_000, output_entries=99) == Verdict(
        RunStatus.OUTPUT_TOO_LARGE, "/output grew to 4 MB, over the limit of 3 MB; killed")
    assert passed_limit(RES, elapsed_s=1.0, output_bytes=0, output_entries=11) == Verdict(
        RunStatus.OUTPUT_TOO_LARGE, "/output holds more than 10 files and folders, the limit; killed")


@pytest.mark.parametrize("facts, expected", [
    ({"exit_code": 0}, Verdict(RunStatus.OK, "")),
    ({"exit_code": 3}, Verdict(RunStatus.CRASHED, "exited with code 3")),
    ({"exit_code": 137, "oom_killed": True}, Verdict(RunStatus.OOM, "killed by the out-of-memory killer at 512 MiB")),
    ({"exit_code": 137}, Verdict(RunStatus.CRASHED, "exited with code 137")),  # a container's SIGKILL, no OOM flag
    ({"exit_code": -signal.SIGKILL}, Verdict(RunStatus.OOM, "killed by SIGKILL (out of memory, most likely)")),
    ({"exit_code": -signal.SIGSEGV}, Verdict(RunStatus.CRASHED, f"exited with code {-signal.SIGSEGV}")),
    ({"exit_code": 0, "output_entries": 11}, Verdict(RunStatus.OUTPUT_TOO_LARGE,
                                                     "/output holds more than 10 files and folders, the limit")),
    ({"exit_code": 1, "output_bytes": 3_000_001, "oom_killed": True},  # a crash on a full output is the limit's
     Verdict(RunStatus.OUTPUT_TOO_LARGE, "/output grew to 3 MB, over the limit of 3 MB")),
    ({"exit_code": 137, "killed": Verdict(RunStatus.TIMEOUT, "killed at the time limit of 2.5 s"), "output_entries": 99},
     Verdict(RunStatus.TIMEOUT, "killed at the time limit of 2.5 s")),  # what it was killed for stands
])
def test_classify_a_finished_run(facts: dict, expected: Verdict) -> None:
    assert classify(RES, **facts) == expected


SCRIPT = """\
import sys, time
from pathlib import Path
out = Path(sys.argv[2])
for i in range(int(sys.argv[3])):
    (out / f"part_{i:03d}.txt").write_text("x")
time.sleep(float(sys.argv[4]))
"""


def _spec(folder: Path, files: int, sleep_s: float) -> AlgorithmSpec:
    folder.mkdir()
    (folder / "many.py").write_text(SCRIPT)
    return AlgorithmSpec(name="many", version="1", kind=Kind.SEGMENTER, dockerfile=None, directory=folder,
                         manifest=folder / "algorithm.toml", profile=load_profile("flare22"), writes_probabilities=False,
                         gpu=GpuMode.NONE, resources=dataclasses.replace(RES, time_limit_s=20.0),
                         local_command=("{python}", "many.py", "{input}", "{output}", str(files), str(sleep_s)),
                         manifest_sha256="x")


@pytest.mark.parametrize("files, sleep_s, message", [
    (10, 0.0, ""),  # at the limit: ok
    (30, 0.0, "/output holds more than 10 files and folders, the limit"),  # judged once it ended (or seen just before)
    (30, 15.0, "/output holds more than 10 files and folders, the limit; killed"),  # seen while it runs: killed
])
def test_the_local_runner_holds_the_output_to_its_count_of_files(tmp_path: Path, files: int, sleep_s: float,
                                                                  message: str) -> None:
    spec = _spec(tmp_path / "many", files, sleep_s)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    outcome = LocalRunner(python=sys.executable).run(RunRequest(spec, "case_00", tmp_path / "in", tmp_path / "out"))
    assert outcome.message == message or (sleep_s == 0 and outcome.message == f"{message}; killed")
    assert outcome.status is (RunStatus.OUTPUT_TOO_LARGE if message else RunStatus.OK)
    assert outcome.elapsed_s < 10  # the sleeper was killed, not waited for
