"""How `build_all` schedules builds (no Docker: `build_algorithm` is replaced by one that records
when each build ran): different requirements build side by side, the same requirements one after
the other (the later reuse the first's layers), results keep the algorithms' order, a failure stays
in its own place, and `jobs=1` builds one at a time."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

import harness.build as build
from harness.spec import load_manifest


def _specs(root: Path) -> list:
    (root / "dockerfiles").mkdir(parents=True)
    (root / "dockerfiles" / "x.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    requirements = {"a": "numpy==2.2.6\n", "b": "onnxruntime==1.32.0\n", "c": "numpy==2.2.6\n", "d": None,
                    "broken": "scipy==1.15.3\n"}
    specs = []
    for name, text in requirements.items():
        folder = root / "algorithms" / name
        folder.mkdir(parents=True)
        if text is not None:
            (folder / "requirements.txt").write_text(text)
        (folder / "algorithm.toml").write_text(
            f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/x.Dockerfile"\n'
            'profile = "flare22"\ngpu = "none"\n')
        specs.append(load_manifest(folder / "algorithm.toml", repo_root=root))
    return specs


# The builds that must run side by side wait here for each other (up to 5 s, then the test fails); the
# others take a moment, so that two of them run at once shows as overlapping spans.
TOGETHER: dict[str, threading.Barrier] = {}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()

    def fake(spec, **kwargs):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        if spec.name in TOGETHER:
            TOGETHER[spec.name].wait(timeout=5)  # BrokenBarrierError: they did not all run at once
        else:
            time.sleep(0.02)
        with lock:
            spans[spec.name] = (start, time.monotonic())
        if spec.name == "broken":
            raise build.BuildError(f"build of {spec.name} failed")
        return build.BuiltImage(spec.name, f"harness-{spec.name}:x", f"sha256:{spec.name}", cached=False)

    monkeypatch.setattr(build, "build_algorithm", fake)
    monkeypatch.setattr(build, "docker_client", lambda: None)
    monkeypatch.setattr(sys.modules[__name__], "TOGETHER", {})
    return spans


def _overlap(spans: dict[str, tuple[float, float]], one: str, other: str) -> bool:
    return spans[one][0] < spans[other][1] and spans[other][0] < spans[one][1]


def test_same_requirements_one_after_the_other_the_rest_side_by_side(tmp_path: Path, recorded) -> None:
    specs = _specs(tmp_path)
    side_by_side = threading.Barrier(4)  # a, b, d and broken: different requirements, four jobs
    TOGETHER.update(dict.fromkeys(("a", "b", "d", "broken"), side_by_side))
    results = build.build_all(specs, base="base", wheel_cache=tmp_path / "wheels", jobs=4)
    assert [spec.name for spec, _ in results] == ["a", "b", "c", "d", "broken"]
    assert [getattr(image, "tag", None) for _, image in results] == [
        "harness-a:x", "harness-b:x", "harness-c:x", "harness-d:x", None]
    assert isinstance(results[4][1], build.BuildError) and "build of broken failed" in str(results[4][1])
    assert not _overlap(recorded, "a", "c") and recorded["a"][1] <= recorded["c"][0]  # a first: c reuses its layers
    assert _overlap(recorded, "a", "b") and _overlap(recorded, "b", "d") and _overlap(recorded, "a", "broken")


def test_one_job_builds_one_at_a_time(tmp_path: Path, recorded) -> None:
    specs = _specs(tmp_path)
    build.build_all(specs, base="base", wheel_cache=tmp_path / "wheels", jobs=1)
    names = sorted(recorded, key=lambda name: recorded[name][0])
    assert all(recorded[first][1] <= recorded[second][0] for first, second in zip(names, names[1:], strict=False))


def test_wheels_are_fetched_in_the_background_and_one_failure_stops_no_other(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _specs(tmp_path)
    fetched: list[tuple[str, str]] = []
    release = threading.Event()

    def fake(requirements, cache_dir: Path, *, progress=None) -> Path:  # type: ignore[no-untyped-def]
        release.wait(5)
        fetched.append((requirements.source.parent.name, threading.current_thread().name))
        if requirements.source.parent.name == "a":
            raise build.BuildError("pip download failed")
        return cache_dir

    monkeypatch.setattr(build, "ensure_wheelhouse", fake)
    thread = build.fetch_wheels(specs, tmp_path / "wheels")
    assert fetched == []  # returned at once: the downloads go on beside the caller
    release.set()
    thread.join(5)
    assert [name for name, _ in fetched] == ["a", "b", "c", "broken"]  # d has no requirements
    assert {where for _, where in fetched} == {"fetch-wheels"}
