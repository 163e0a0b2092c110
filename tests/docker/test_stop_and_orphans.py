"""A harness stopped by SIGTERM leaves no container, holder or volume behind; a harness only ever
removes the orphans of its own results folder, after taking that folder's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.layout import ResultsLayout
from harness.store import Store
from tests.docker.conftest import behave_algorithms


def _ours(docker_client, owner: str) -> tuple[list, list]:  # type: ignore[type-arg]
    label = {"label": f"harness.results={owner}"}
    return docker_client.containers.list(all=True, filters=label), docker_client.volumes.list(filters=label)


def test_sigterm_removes_the_running_container_and_the_next_run_resumes(tmp_path: Path, base_image: str,
                                                                       phantom_data: Path, docker_client) -> None:
    algorithms = behave_algorithms(tmp_path, {"hangs": ("hang", {"time_limit_s": 120})})
    results = tmp_path / "results"
    owner = ResultsLayout(results).owner_label
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(algorithms), "--data", str(phantom_data),
                             "--results", str(results), "--base", base_image, "--scoring-workers", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        running = [c for c in _ours(docker_client, owner)[0] if c.labels.get("harness.role") != "output-holder"]
        if running and running[0].status == "running":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no container started: {proc.stderr.read() if proc.stderr else ''}")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM; the running container was removed" in err
    containers, volumes = _ours(docker_client, owner)
    assert containers == [] and volumes == []  # the run's container, its output holder and volume
    with Store.open(results, lock=False, create=False) as store:
        assert store.integrity_ok()


def test_only_this_folders_orphans_are_removed(tmp_path: Path, base_image: str, phantom_data: Path,
                                              docker_client) -> None:
    mine, theirs = ResultsLayout(tmp_path / "results").owner_label, ResultsLayout(tmp_path / "other").owner_label
    orphans = [docker_client.containers.create(base_image, ["sleep", "600"], labels={"harness.results": owner})
               for owner in (mine, theirs)]
    orphans[0].start()  # a container a killed harness left running
    try:
        algorithms = behave_algorithms(tmp_path, {"quick": ("ok", {})})
        env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
        done = subprocess.run([sys.executable, "-m", "harness", "run", str(algorithms), "--data", str(phantom_data),
                               "--results", str(tmp_path / "results"), "--base", base_image, "--scoring-workers", "0"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "removed 1 container(s) left by a harness process that was stopped" in done.stderr
        assert _ours(docker_client, mine) == ([], [])
        assert [c.id for c in _ours(docker_client, theirs)[0]] == [orphans[1].id]  # another folder's: untouched
    finally:
        for container in orphans:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
