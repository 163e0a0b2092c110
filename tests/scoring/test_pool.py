"""The process pool of `score_many`: the modules a worker needs are loaded once, before the fork,
and the objects loaded by then are frozen out of the garbage collections while the workers run."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

from harness import scoring
from harness.models import CaseStatus
from harness.profiles import load_profile
from harness.scoring import CaseJob, CaseResult, score_many

_LOADED_BEFORE_FORK = ("scipy.spatial._ckdtree", "isal.isal_zlib", "concurrent.futures.process")


def _probe(job: CaseJob, profile: object, *, threads: int, label_map: object) -> CaseResult:
    """Stands in for `score_one` in a worker: says what the worker found there."""
    loaded = ",".join(name for name in _LOADED_BEFORE_FORK if name in sys.modules)
    return CaseResult(job.case_id, (), CaseStatus.OK, f"{os.getpid()} {gc.get_freeze_count()} {loaded}")


def _jobs(n: int) -> list[CaseJob]:
    return [CaseJob(f"case_{i}", Path(f"l{i}.nii.gz"), None, Path(f"p{i}.nii.gz")) for i in range(n)]


def test_workers_find_the_modules_loaded_and_the_objects_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "score_one", _probe)
    frozen_before = gc.get_freeze_count()
    results = list(score_many(_jobs(4), load_profile("flare22"), n_jobs=2))
    assert [r.case_id for r in results] == [f"case_{i}" for i in range(4)]
    for result in results:
        pid, frozen, loaded = result.message.split(" ")
        assert int(pid) != os.getpid()  # scored in a worker
        assert int(frozen) > frozen_before  # the parent's objects: frozen before the fork
        assert loaded.split(",") == list(_LOADED_BEFORE_FORK)  # loaded by the parent, not by each worker
    assert gc.get_freeze_count() == frozen_before  # the parent's collections as they were


def test_stopping_early_unfreezes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "score_one", _probe)
    frozen_before = gc.get_freeze_count()
    results = score_many(_jobs(3), load_profile("flare22"), n_jobs=2)
    next(results)
    assert gc.get_freeze_count() > frozen_before
    results.close()
    assert gc.get_freeze_count() == frozen_before


def test_one_job_at_a_time_needs_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "score_one", _probe)
    frozen_before = gc.get_freeze_count()
    results = list(score_many(_jobs(2), load_profile("flare22"), n_jobs=1))
    assert {int(r.message.split(" ")[0]) for r in results} == {os.getpid()}
    assert int(results[0].message.split(" ")[1]) == frozen_before  # nothing frozen without a fork


def test_scoring_loads_the_pool_only_for_several_jobs() -> None:
    # multiprocessing and its sockets are start-up that `-j 1` need not pay.
    import subprocess

    probe = "import sys, harness.scoring\nprint('concurrent.futures.process' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
