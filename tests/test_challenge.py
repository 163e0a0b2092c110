"""The challenge owns the rules: its profile scores everyone, its caps bound every manifest."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from harness.challenge import load_challenge
from harness.errors import SpecError
from harness.spec import load_manifest

MANIFEST = """name = "greedy"
version = "1"
kind = "segmenter"
dockerfile = "dockerfiles/x.Dockerfile"
profile = "flare22"
gpu = "none"

[resources]
{resources}
"""


def _spec(tmp_path: Path, resources: str = "", profile: str = "flare22"):
    (tmp_path / "dockerfiles").mkdir(exist_ok=True)
    (tmp_path / "dockerfiles" / "x.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    folder = tmp_path / "algorithms" / "greedy"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "algorithm.toml").write_text(MANIFEST.format(resources=resources).replace('"flare22"', f'"{profile}"'))
    return load_manifest(folder / "algorithm.toml", repo_root=tmp_path)


@pytest.mark.parametrize("resources, message", [
    ('memory = "64g"', r"key 'resources.memory' = 64g is over the challenge's cap of 32g \(flare22, limits.memory\)"),
    ("cpus = 100", r"key 'resources.cpus' = 100 is over the challenge's cap of 8 \(flare22, limits.cpus\)"),
    ("pids = 65536", r"key 'resources.pids' = 65536 is over the challenge's cap of 4096"),
    ("time_limit_s = 86400", r"key 'resources.time_limit_s' = 86400 is over the challenge's cap of 3600"),
    ('output = "1t"', r"key 'resources.output' = 1t is over the challenge's cap of 8g"),
    ("output_files = 1000000", r"key 'resources.output_files' = 1e\+06 is over the challenge's cap of 10000"),
    ('shm = "64g"', r"key 'resources.shm' = 64g is over"),
    ('tmp = "1t"', r"key 'resources.tmp' = 1t is over"),
])
def test_a_manifest_may_not_ask_for_more_than_the_caps(tmp_path: Path, resources: str, message: str) -> None:
    spec = _spec(tmp_path, resources)
    with pytest.raises(SpecError, match=message):
        load_challenge().admit(spec)


def test_unset_resources_are_the_smaller_of_default_and_cap_and_cpus_the_cap(tmp_path: Path) -> None:
    (tmp_path / "challenge.toml").write_text('[limits]\nmemory = "2g"\ncpus = 1.5\ntime_limit_s = 100\n')
    challenge = load_challenge(tmp_path / "challenge.toml")
    admitted = challenge.admit(_spec(tmp_path, "pids = 64"))
    res = admitted.resources
    assert (res.memory_bytes, res.cpus, res.time_limit_s, res.pids) == (2 * 1024**3, 1.5, 100.0, 64)
    assert res.output_bytes == 2 * 1024**3  # the harness default, under the 8g cap
    with pytest.raises(SpecError, match=r"'resources.memory' = 3g is over the challenge's cap of 2g \(challenge"):
        challenge.admit(_spec(tmp_path, 'memory = "3g"'))


def test_a_manifest_of_another_label_system_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"key 'profile': its outputs use the label system of profile atlas8, but "
                                        r"challenge flare22 scores segmenters under flare22"):
        load_challenge().admit(_spec(tmp_path, profile="atlas8"))
    # Another profile with the same labels is accepted, and scored under the challenge's.
    assert load_challenge().admit(_spec(tmp_path, profile="strict")).profile.name == "strict"


@pytest.mark.parametrize("text, message", [
    ("[limits]\nmemroy = \"4g\"\n", r"unknown key 'limits.memroy'"),
    ("[limits]\ncpus = -1\n", r"key 'limits.cpus' = -1; use a number > 0"),
    ("[limits]\nmemory = \"lots\"\n", r"key 'limits.memory' = 'lots'; use a size"),
    ("limits = 3\n", r"key 'limits' must be a table"),
    ("scoring = \"x\"\n", r"unknown key 'scoring'"),
])
def test_bad_challenge_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(SpecError, match=message):
        load_challenge(tmp_path / "c.toml")


def test_every_container_gets_a_cpu_limit(tmp_path: Path) -> None:
    from harness.runner.base import RunRequest
    from harness.runner.docker_runner import DockerRunner

    spec = load_challenge().admit(_spec(tmp_path, "cpus = 0.5"))
    request = RunRequest(spec=spec, case_id="c", input_dir=tmp_path, output_dir=tmp_path, image="x")
    kwargs = DockerRunner(client=object()).container_kwargs(request)
    assert kwargs["nano_cpus"] == 500_000_000
    unset = load_challenge().admit(_spec(tmp_path, ""))
    kwargs = DockerRunner(client=object()).container_kwargs(replace(request, spec=unset))
    assert kwargs["nano_cpus"] == int(min(8, os.cpu_count() or 1) * 1e9)  # the cap, within the host's CPUs

