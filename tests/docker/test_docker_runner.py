"""Real images, real containers: the sandbox holds, failures are recorded, the run goes on."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.pipeline import RunSettings, run_all
from harness.store import Store
from tests.docker.conftest import behave_algorithms


def _run(tmp_path: Path, algorithms: Path, data: Path, base: str, **kw) -> tuple:
    seen: list[tuple[str, str, str]] = []
    settings = RunSettings(algorithms_dir=algorithms, data_dir=data, results_dir=tmp_path / "results", runner="docker",
                           base=base, cache_dir=tmp_path / "cache", repo_root=algorithms.parent, **kw)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: seen.append((e.algorithm, e.case_id, str(e.status))))
    return summary, seen


def test_sandbox_timeout_crash_and_resume(tmp_path: Path, base_image: str, phantom_data: Path) -> None:
    algorithms = behave_algorithms(tmp_path, {
        "probe": ("probe", {}),
        "sleeper": ("sleep", {"time_limit_s": 1}),  # waited out three times: kept short
        "crasher": ("crash", {}),
    })
    summary, seen = _run(tmp_path, algorithms, phantom_data, base_image)
    statuses = {(a, c): s for a, c, s in seen}
    cases = sorted({c for _, c, _ in seen})
    assert len(cases) == 3 and summary.executed == 9 and summary.failed == 6
    for case in cases:  # every case of every algorithm, in spite of the failures before it
        assert statuses[("probe", case)] == "ok"
        assert statuses[("sleeper", case)] == "timeout"
        assert statuses[("crasher", case)] == "crashed"

    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores()
    sleeper = runs.loc[("sleeper", cases[0])]
    assert sleeper.message == "killed at the time limit of 1 s" and 0.95 < sleeper.elapsed_s < 5
    assert runs.loc[("crasher", cases[0])].exit_code == 3
    assert "crashing on purpose" in runs.loc[("crasher", cases[0])].log_tail
    # The probe's own view of its sandbox, from its log.
    report = json.loads([line for line in runs.loc[("probe", cases[0])].log_tail.splitlines() if line.startswith("{")][0])
    assert report["uid"] != 0 and report["gid"] != 0
    assert report["input_writable"] is False and report["input_writable_error"] == "Read-only file system"
    assert report["root_writable"] is False and report["etc_writable"] is False
    assert report["tmp_writable"] is True
    assert report["interfaces"] == ["lo"] and report["routes"] == 0  # no network at all
    assert report["CapEff"] == "0000000000000000" and report["NoNewPrivs"] == "1"
    # An all-background prediction is scored (DSC 0 for every organ present), provenance kept.
    probe_scores = scores[scores.algorithm == "probe"]
    assert len(probe_scores) == 3 * 13 and probe_scores.dsc.max() == 0.0
    assert runs.loc[("probe", cases[0])].image_digest.startswith("sha256:")
    assert len(runs.loc[("probe", cases[0])].input_sha256) == 64 and len(runs.loc[("probe", cases[0])].label_sha256) == 64

    # A second run reuses every stored result; --rerun does them again.
    again, seen_again = _run(tmp_path, algorithms, phantom_data, base_image)
    assert again.executed == 0 and again.reused == 9 and not seen_again


def _stored_runs(results: Path) -> int:
    """How many runs the store holds, read as another process would while the harness writes."""
    try:
        with Store.open(results, lock=False, create=False) as store:
            return len(store.runs())
    except Exception:  # noqa: BLE001 - no store yet, or it is being created this instant
        return 0


def test_sigkill_at_random_points_then_resume_keeps_every_row_once(tmp_path: Path, base_image: str,
                                                                   phantom_data: Path) -> None:
    # Each kill lands at a random moment of the evaluation itself: once this process has stored a
    # run of its own, within the next run's first 0.8 s (not during Python's start-up or the image
    # check, which prove nothing about the store). "ok" runs take well under a second each, so a
    # kill is as likely to hit the bookkeeping after a container (scoring, keeping the label map,
    # the store's transaction) as the container itself. Three kills leave part of the six runs
    # stored and the rest to the final run.
    algorithms = behave_algorithms(tmp_path, {"quick-a": ("ok", {}), "quick-b": ("ok", {})})
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "harness", "run", str(algorithms), "--data", str(phantom_data), "--results", str(results),
           "--base", base_image, "--scoring-workers", "0"]
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    rng = random.Random(7)
    for attempt in range(3):  # kill -9 at a random moment of the runs, three times over
        before = _stored_runs(results)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while _stored_runs(results) == before:
            assert proc.poll() is None, f"attempt {attempt}: the run ended without storing a run"
            assert time.monotonic() < deadline, f"attempt {attempt}: no run stored within 300 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Store.open(results, lock=False, create=False) as store:
            assert store.integrity_ok(), f"attempt {attempt}"
            _assert_no_half_case(store, results)
    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs()
        assert store.integrity_ok()
        _assert_no_half_case(store, results)
    assert len(runs) == 6 and not runs.duplicated(["algorithm", "case_id"]).any()
    assert set(runs.status) == {"ok"}


def _assert_no_half_case(store: Store, results: Path) -> None:
    """Every stored run is whole: its 13 organ rows, its measurements and its kept label map."""
    runs, scores, measurements = store.runs(), store.scores(), store.measurements()
    for run in runs.itertuples():
        assert len(scores[(scores.algorithm == run.algorithm) & (scores.case_id == run.case_id)]) == 13
        assert len(measurements[(measurements.algorithm == run.algorithm) & (measurements.case_id == run.case_id)]) > 5
        assert (results / "runs" / run.algorithm / run.case_id / f"{run.case_id}.nii.gz").is_file()


def test_a_dockerfile_that_fails_to_build_fails_that_algorithm_only(tmp_path: Path, base_image: str,
                                                                    phantom_data: Path) -> None:
    algorithms = behave_algorithms(tmp_path, {"fine": ("ok", {}), "unbuildable": ("ok", {})})
    (tmp_path / "dockerfiles" / "broken.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN exit 7\n")
    manifest = algorithms / "unbuildable" / "algorithm.toml"
    manifest.write_text(manifest.read_text().replace("behave.Dockerfile", "broken.Dockerfile"))
    summary, seen = _run(tmp_path, algorithms, phantom_data, base_image)
    statuses = {(a, s) for a, _, s in seen}
    assert statuses == {("fine", "ok"), ("unbuildable", "build_failed")}
    assert any("broken.Dockerfile: build of unbuildable failed" in p and "returned a non-zero code: 7" in p
               for p in summary.problems)


def test_a_run_waits_on_the_daemon_without_polling_it(tmp_path: Path, base_image: str, phantom_data: Path,
                                                      monkeypatch) -> None:
    # A poll (an inspect every 50 ms) cost the daemon and the harness about 5 % of a core while the
    # algorithm ran; one blocking wait costs nothing. "slow" runs 1.5 s, on one case.
    import docker.api.client

    inspected: list[str] = []
    original = docker.api.client.APIClient.inspect_container

    def counting(self, container):  # type: ignore[no-untyped-def]
        inspected.append(str(container))
        return original(self, container)

    monkeypatch.setattr(docker.api.client.APIClient, "inspect_container", counting)
    algorithms = behave_algorithms(tmp_path, {"slow": ("slow", {})})
    summary, seen = _run(tmp_path, algorithms, phantom_data, base_image, case_limit=1)
    assert seen == [("slow", "phantom_0000", "ok")]
    # create, start, the monitor's pid, the end state: a handful of inspections, not 1.5 s / 50 ms = 30
    assert 0 < len(inspected) <= 8, inspected


def test_the_blocking_wait_tells_a_running_container_from_a_gone_daemon(base_image: str) -> None:
    import docker
    import pytest
    import requests

    from harness.build import docker_client
    from harness.runner.docker_runner import _wait_for_exit

    client = docker_client()
    container = client.containers.create(base_image, entrypoint=["sh", "-c", "sleep 1.5; exit 3"],
                                        network_mode="none")
    try:
        container.start()
        start = time.monotonic()
        assert _wait_for_exit(container, 0.3) is None  # still running: the read timed out
        assert 0.25 < time.monotonic() - start < 1.4
        done = _wait_for_exit(container, 10)  # returns when it exits, not at the 10 s, with its exit status
        assert done is not None and done["StatusCode"] == 3
        assert time.monotonic() - start < 5
    finally:
        container.remove(force=True)

    gone = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.45")
    ghost = gone.containers.prepare_model({"Id": "0" * 64})
    with pytest.raises(requests.exceptions.ConnectionError):  # not read as "still running"
        _wait_for_exit(ghost, 0.3)
