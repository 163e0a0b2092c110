"""/output holders kept across runs (harness.runner.output_volumes): one holder serves several
runs, yet every run starts from an empty file system of its own that no later run can see; the
holder cannot write them; it goes when its runs are over, when the host runs low on memory, or when
its process died."""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from harness.pipeline import RunSettings, run_all
from harness.runner.docker_runner import DockerRunner
from harness.runner.output_volumes import VOLUMES_PER_HOLDER, OutputVolumes, keep_holders
from harness.store import ResultsLayout, Store
from tests.docker.conftest import behave_algorithms

OWNER = "test-output-volumes"


def _ours(client, owner: str) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    label = {"label": f"harness.results={owner}"}
    return client.containers.list(all=True, filters=label), client.volumes.list(filters=label)


def _take(pool: OutputVolumes, image: str):  # type: ignore[no-untyped-def]
    return pool.take(image=image, owner=OWNER, uid=1000, gid=1000, mode="0700", size=16 * 1024**2, files=100)


def test_runs_share_one_holder_and_each_starts_from_an_empty_output(tmp_path: Path, base_image: str,
                                                                    phantom_data: Path, docker_client,
                                                                    monkeypatch) -> None:
    made: list[int] = []
    original = OutputVolumes._make

    def counting(self, key, *, volumes):  # type: ignore[no-untyped-def]
        made.append(volumes)
        return original(self, key, volumes=volumes)

    monkeypatch.setattr(OutputVolumes, "_make", counting)
    algorithms = behave_algorithms(tmp_path, {"remember": ("remember", {})})
    results = tmp_path / "results"
    settings = RunSettings(algorithms_dir=algorithms, data_dir=phantom_data, results_dir=results, runner="docker",
                           base=base_image, cache_dir=tmp_path / "cache", repo_root=algorithms.parent)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs()
    # "remember" fails (exit 4) when /output holds anything at its start, and leaves memo.txt there.
    assert list(runs.status) == ["ok"] * 3, list(runs.message)
    assert all("memo.txt" in json.loads(d)["not_kept"] for d in runs.details)
    assert made == [VOLUMES_PER_HOLDER] and summary.failed == 0  # one holder for the three runs
    assert _ours(docker_client, ResultsLayout.of(results).owner_label) == ([], [])  # gone with the run


def test_the_holder_mounts_its_volumes_read_only_and_goes_when_memory_runs_low(base_image: str,
                                                                              docker_client) -> None:
    pool = OutputVolumes(docker_client)
    with keep_holders():
        first = _take(pool, base_image)
        assert not isinstance(first, str), first
        denied = first.holder.exec_run(["touch", f"{first.path}/planted"])
        assert denied.exit_code != 0 and b"Read-only file system" in denied.output
        pool.give_back(first, 0)
        second = _take(pool, base_image)
        assert not isinstance(second, str)
        assert (second.holder.id, second.path, second.volume != first.volume) == (first.holder.id, "/v1", True)
        # The kernel says less memory is available than the run needs twice over: retired at once.
        pool.give_back(second, 0, keep_free=2 * psutil.virtual_memory().total)
        assert _ours(docker_client, OWNER) == ([], [])
        third = _take(pool, base_image)
        assert not isinstance(third, str) and third.holder.id != first.holder.id
        pool.give_back(third, 0)
        assert len(_ours(docker_client, OWNER)[0]) == 1  # kept for the next run...
    assert _ours(docker_client, OWNER) == ([], [])  # ...until keep_holders() retired it


def test_without_keep_holders_each_run_has_its_own_holder(base_image: str, docker_client) -> None:
    pool = OutputVolumes(docker_client)
    lease = _take(pool, base_image)
    assert not isinstance(lease, str), lease
    assert len(_ours(docker_client, OWNER)[1]) == 1  # one volume, not a holder's worth
    pool.give_back(lease, 0)
    assert _ours(docker_client, OWNER) == ([], [])


def test_a_holder_whose_process_died_is_replaced(base_image: str, docker_client) -> None:
    pool = OutputVolumes(docker_client)
    with keep_holders():
        first = _take(pool, base_image)
        assert not isinstance(first, str), first
        pool.give_back(first, 0)
        first.holder.kill()  # its `sleep` gone: its volumes would vanish under the next run
        second = _take(pool, base_image)
        assert not isinstance(second, str) and second.holder.id != first.holder.id and second.path == "/v0"
        pool.give_back(second, 0)
    assert _ours(docker_client, OWNER) == ([], [])


def test_the_runner_retires_its_holder_when_closed(base_image: str, docker_client) -> None:
    runner = DockerRunner(docker_client)
    with keep_holders():
        lease = _take(runner.volumes, base_image)
        assert not isinstance(lease, str), lease
        runner.volumes.give_back(lease, 0)
        assert len(_ours(docker_client, OWNER)[0]) == 1
        runner.close()
        assert _ours(docker_client, OWNER) == ([], [])


def test_a_holder_retired_while_a_run_uses_it_goes_when_that_run_ends(base_image: str, docker_client) -> None:
    pool = OutputVolumes(docker_client)
    with keep_holders():
        busy = _take(pool, base_image)
        done = _take(pool, base_image)
        assert not isinstance(busy, str) and not isinstance(done, str) and busy.holder.id == done.holder.id
        pool.give_back(done, 0, keep_free=2 * psutil.virtual_memory().total)  # retired...
        busy.holder.reload()
        assert busy.holder.status == "running"  # ...but `busy`'s files still need it mounted
        other = _take(pool, base_image)
        assert not isinstance(other, str) and other.holder.id != busy.holder.id
        pool.give_back(busy, 0)
        assert [c.id for c in _ours(docker_client, OWNER)[0]] == [other.holder.id]
        pool.give_back(other, 0)
    assert _ours(docker_client, OWNER) == ([], [])
