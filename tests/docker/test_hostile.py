"""Hostile and broken algorithms in real containers: each is recorded with the right status (and
enters the ranking with the worst values), the run goes on, nothing escapes, nothing is lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.pipeline import RunSettings, run_all
from harness.ranking import FLARE22_RANKING
from harness.ranking.io import load_scores
from harness.ranking.table import apply_failure_values
from harness.store import Store
from tests.docker.conftest import behave_algorithms

# name: (mode, [resources] overrides, expected status, text expected in the message or the log)
SUITE: dict[str, tuple[str, dict[str, object], str, str]] = {
    "hangs": ("hang", {"time_limit_s": 2}, "timeout", "killed at the time limit of 2 s"),
    "exits-nonzero": ("crash", {}, "crashed", "exited with code 3"),
    "eats-memory": ("oom", {"memory": "96m"}, "oom", "out-of-memory killer at 96 MiB"),
    "fork-bomb": ("forkbomb", {"pids": 24, "time_limit_s": 3}, "timeout", "forks_before_first_failure"),
    "fills-output": ("fill_output", {"output": "48m"}, "output_too_large", "/output reached the limit of 50 MB"),
    "fills-tmp": ("fill_tmp", {"tmp": "32m"}, "crashed", "No space left on device"),
    "writes-nothing": ("no_output", {}, "invalid_output", "no label map /output/"),
    "wrong-shape": ("wrong_shape", {}, "invalid_output", "differs from the input image"),
    "wrong-affine": ("wrong_affine", {}, "invalid_output", "affine differs from the input image"),
    "wrong-dtype": ("wrong_dtype", {}, "invalid_output", "non-integer values (dtype float32)"),
    # FLARE22's own script counts label values outside its 13 organs as background (the flare22 profile's
    # `outside_labels = "background"`): scored, every organ missed, with the warning kept on the run
    "bad-labels": ("bad_labels", {}, "ok", ""),
    "nan-probabilities": ("nan_probs", {}, "invalid_output", "probabilities contain NaN"),
    "probabilities-over-1": ("range_probs", {}, "invalid_output", "outside [0, 1]"),
    "symlink-out": ("symlink", {}, "invalid_output", "symbolic link in /output (never followed)"),
    "floods-logs": ("log_flood", {}, "ok", "[... log cut ...]"),
    "calls-home": ("network", {}, "ok", '"network": "unreachable"'),
    "writes-input": ("write_input", {}, "ok", '"input_write": "failed", "error": "Read-only file system"'),
    "finishes-late": ("late", {"time_limit_s": 6}, "ok", ""),
    # 1 TiB that uses no blocks: within the file system's limit, yet its archive would stream 1 TiB
    "sparse-terabyte": ("sparse", {"output": "64m"}, "output_too_large", "files read as more than 85 MB"),
}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, base_image: str):
    from harness.data.synth import write_dataset

    root = tmp_path_factory.mktemp("hostile")
    write_dataset(root / "data", cases=1, seed=21, size="small")
    algorithms = behave_algorithms(root, {name: (mode, res) for name, (mode, res, _, _) in SUITE.items()})
    seen: list[str] = []
    settings = RunSettings(algorithms_dir=algorithms, data_dir=root / "data", results_dir=root / "results", runner="docker",
                           base=base_image, cache_dir=root / "cache", repo_root=root)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: seen.append(e.algorithm))
    with Store.open(root / "results", lock=False, create=False) as store:
        runs = store.runs().set_index("algorithm")
        assert store.integrity_ok()
    return root, summary, runs, seen


def test_every_misbehaviour_is_recorded_and_the_run_goes_on(hostile_run) -> None:
    root, summary, runs, seen = hostile_run
    assert sorted(seen) == sorted(SUITE)  # every algorithm ran, whatever the ones before it did
    table = []
    for name, (_, _, expected, text) in SUITE.items():
        row = runs.loc[name]
        table.append((name, expected, row.status))
        assert row.status == expected, f"{name}: {row.status} ({row.message})"
        assert text in row.message or text in row.log_tail, f"{name}: {text!r} not in {row.message!r}"
    print("\n" + "\n".join(f"{n:<22}{e:<18}{o}" for n, e, o in table))
    assert "label values 42 are not in profile flare22; counted as background" in runs.loc["bad-labels"].score_message
    assert summary.failed == sum(1 for *_, status, _ in SUITE.values() if status != "ok")


def test_limits_hold_and_the_host_is_unharmed(hostile_run) -> None:
    root, _, runs, _ = hostile_run
    bomb = json.loads([line for line in runs.loc["fork-bomb"].log_tail.splitlines() if line.startswith("{")][0])
    assert bomb["forks_before_first_failure"] < 24
    # Logs are bounded: 20 MiB printed, 64 KiB kept.
    assert len(runs.loc["floods-logs"].log_tail.encode()) < 70 * 1024
    # The 4 GiB writers were stopped early and nothing of theirs is left on the host.
    used = sum(p.stat().st_size for p in (root / "results").rglob("*") if p.is_file())
    assert used < 20 * 1024 * 1024
    assert not list((root / "results").rglob("huge.bin"))
    # Rejected outputs are not kept: the symlink (to /etc/passwd) was never followed or copied.
    kept = {p.name for p in (root / "results" / "runs" / "symlink-out").rglob("*") if p.is_file() or p.is_symlink()}
    assert kept == {"log.txt", "monitor.parquet"}
    # Finishing just before the limit is accepted, with its real time.
    assert 4.4 < runs.loc["finishes-late"].elapsed_s < 6.0


def test_failed_runs_enter_the_ranking_with_the_worst_values(hostile_run) -> None:
    root, _, runs, _ = hostile_run
    tidy = load_scores(root / "results")
    ranked = apply_failure_values(tidy, FLARE22_RANKING)
    failed = ranked[ranked.status != "ok"]
    worst = {m.name: m.worst_value for m in FLARE22_RANKING.metrics}
    assert {"dsc", "nsd", "time_s"} <= set(failed.metric)
    for metric in set(failed.metric) & set(worst):
        assert (failed[failed.metric == metric].value == worst[metric]).all(), metric
    assert set(failed.algorithm) == {n for n, (_, _, s, _) in SUITE.items() if s != "ok"}
    # The store keeps what was really measured: the time-out's real 2 s, not 3600.
    assert runs.loc["hangs"].elapsed_s == pytest.approx(2.0, abs=1.0)
    assert isinstance(tidy, pd.DataFrame)
