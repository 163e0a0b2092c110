"""`gpu = "required"` on a host where no GPU is visible: refused before anything starts, by the local
runner as by the Docker runner (README, "Resource measurement"), never run and left to crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.casework import RunTask, make_runner, run_case
from harness.data.dataset import discover
from harness.models import RunnerKind, RunStatus
from harness.runner.local_runner import LocalRunner
from harness.spec import load_manifest
from tests.runpath.conftest import Toy

REFUSAL = 'gpu = "required" but this host has no GPU; run it on a GPU host'


def _task(toy: Toy, gpu: str) -> RunTask:
    folder = toy.segmenter("needs-gpu")
    manifest = folder / "algorithm.toml"
    manifest.write_text(manifest.read_text().replace('gpu = "none"', f'gpu = "{gpu}"'))
    spec = load_manifest(manifest, repo_root=toy.root)
    dataset, _ = discover(toy.write_data(1))
    return RunTask(spec, dataset.cases[0], None, RunnerKind.LOCAL, toy.settings().challenge.profile)


@pytest.mark.parametrize("hidden", ["-1", ""])
def test_required_gpu_with_none_visible_is_no_gpu_and_nothing_starts(
        toy: Toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)  # what a host without a GPU looks like to the harness
    task = _task(toy, "required")
    result = run_case(task, runner=make_runner(RunnerKind.LOCAL), work_dir=tmp_path)
    assert result.outcome.status is RunStatus.NO_GPU and result.outcome.status.retried  # a GPU host runs it
    assert result.outcome.message == f"{task.spec.manifest}: {REFUSAL}"
    assert toy.starts() == []  # refused before the process was started


def test_required_gpu_runs_where_a_gpu_is_visible_and_optional_runs_anywhere(toy: Toy, tmp_path: Path) -> None:
    required = _task(toy, "required")
    assert run_case(required, runner=LocalRunner(gpu_ids=("0",)), work_dir=tmp_path).outcome.status is RunStatus.OK
    optional = _task(toy, "optional")
    assert run_case(optional, runner=LocalRunner(gpu_ids=()), work_dir=tmp_path).outcome.status is RunStatus.OK
    assert toy.starts() == ["needs-gpu case_00", "needs-gpu case_00"]
