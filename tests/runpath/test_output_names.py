"""A refusal names the output as the container saw it, from the one naming value the checks are
given (`harness.acceptance.OutputNames`): the contract's output folder under Docker (FLARE's
/workspace/outputs) and what the runner did not copy out; no later rewrite of the message."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.casework import RunTask, run_case
from harness.data.dataset import discover
from harness.models import RunnerKind, RunStatus
from harness.runner.base import RunOutcome, RunRequest
from harness.spec import load_manifest
from tests.runpath.conftest import Toy


class _WroteElsewhere:
    """A runner whose container wrote only outside the contract: nothing was copied out."""

    gpu_ids: tuple[str, ...] = ()

    def run(self, request: RunRequest, monitor: Any) -> RunOutcome:
        return RunOutcome(RunStatus.OK, 0, 1.0, 1.0, 0.0, 1.0, details={"not_kept": ["prediction.nii.gz", "notes.txt"]})


@pytest.mark.parametrize(("runner", "root"), [(RunnerKind.DOCKER, "/workspace/outputs"), (RunnerKind.LOCAL, "/output")])
def test_a_missing_label_map_is_named_in_the_containers_folder_with_what_it_wrote(
        toy: Toy, tmp_path: Path, runner: RunnerKind, root: str) -> None:
    spec = replace(load_manifest(toy.segmenter("flare-like") / "algorithm.toml", repo_root=toy.root), contract="flare")
    dataset, _ = discover(toy.write_data(1))
    task = RunTask(spec, dataset.cases[0], "sha256:0", runner, toy.settings().challenge.profile)
    result = run_case(task, runner=_WroteElsewhere(), work_dir=tmp_path)
    case_id = task.case.case_id
    assert result.outcome.status is RunStatus.INVALID_OUTPUT
    assert result.outcome.message == (f"no label map {root}/{case_id}.nii.gz (found: prediction.nii.gz, notes.txt); "
                                      "write it")
