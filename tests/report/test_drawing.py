"""Figures and pages drawn by forked workers: the same bytes as drawn in one process, errors
reach the caller, and no fork while another thread runs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from harness.report import load_report_inputs
from harness.report.builder import render_report_files
from harness.report.drawing import WORKERS_ENV, Drawer, available_workers
from tests.report.conftest import copy_fixture


def _boom(text: str) -> str:
    raise ValueError(f"cannot draw {text}")


def _pid(_: int) -> int:
    return os.getpid()


def test_workers_give_the_same_files_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = load_report_inputs(copy_fixture(tmp_path / "results"))
    monkeypatch.setenv(WORKERS_ENV, "1")
    serial = render_report_files(inputs, draws=50)
    monkeypatch.setenv(WORKERS_ENV, "3")
    with Drawer() as drawer:
        assert drawer.parallel  # else this compares one process with itself
    parallel = render_report_files(inputs, draws=50)
    assert sorted(parallel) == sorted(serial) and len(serial) > 2  # the main page, the pages beside it
    assert [name for name in serial if serial[name] != parallel[name]] == []


def test_a_workers_error_reaches_the_caller() -> None:
    with Drawer(workers=2) as drawer:
        assert drawer.parallel
        pids = {drawer.draw(_pid, k).result() for k in range(4)}
        failed = drawer.draw(_boom, "the map")
        with pytest.raises(ValueError, match="cannot draw the map"):
            failed.result()
    assert os.getpid() not in pids  # drawn elsewhere


def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with Drawer(workers=4) as drawer:
            assert not drawer.parallel
            assert drawer.draw(_pid, 0).result() == os.getpid()
            with pytest.raises(ValueError, match="cannot draw x"):
                drawer.draw(_boom, "x").result()
    finally:
        stop.set()
        other.join()


def test_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "1")
    assert available_workers() == 1 and not Drawer().parallel
    monkeypatch.setenv(WORKERS_ENV, "zero")  # malformed: the default
    assert 1 <= available_workers() <= min(4, len(os.sched_getaffinity(0)))
