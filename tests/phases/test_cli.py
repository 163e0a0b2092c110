"""`harness challenge evaluate / intake / pages / record` and `harness verify` as a user runs them:
through `harness.cli.main` in this process (its exit status, stdout and stderr), and from a shell
where the process's own exit status is the point."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.phases.conftest import World

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_process(harness_cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`harness <args>` in this process (tests/conftest.py harness_cli), with this test's cache."""
    return functools.partial(harness_cli, cache=tmp_path / "cache")


def _shell(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(world.root.parent / "cache")}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300, env=env)


def test_the_commands_from_a_shell(tmp_path: Path, in_process) -> None:
    world = World(tmp_path / "challenge", validation_cases=1)
    where = ["--challenge", str(world.challenge), "--phase", "validation"]
    world.upload("validation", "zulu", "z1", drop=0.0, token="tokcz1")
    code, out, err = in_process("challenge", "intake", *where, "--settle", "0")
    assert code == 0 and out.startswith("unregistered zulu/z1: team 'zulu' is not registered"), (out, err)
    world.upload("validation", "alpha", "a1", drop=0.3, token="tokca1")
    code, out, err = in_process("challenge", "evaluate", *where, "--runner", "local", "--settle", "0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "1 accepted, 0 refused; 1 submissions evaluated (1 runs, 0 reused, 0 failed)"
    assert lines[1].split()[:3] == ["1", "alpha", "#1"]
    code, out, err = in_process("challenge", "evaluate", *where, "--runner", "local", "--settle", "0")
    assert out.splitlines()[0] == "0 accepted, 0 refused; 0 submissions evaluated (0 runs, 0 reused, 0 failed)"
    code, out, err = in_process("challenge", "pages", *where)
    assert code == 0 and out.startswith("13 files written")  # 3 public, 2 for each of the 5 teams
    code, out, err = in_process("challenge", "record", *where)
    record = Path(out.split("record: ")[1].strip())
    assert record == world.root / "phases" / "validation" / "record.json"
    code, out, err = in_process("verify", "--json", str(record))
    assert code == 0 and json.loads(out) == {"identical": True, "differences": []}
    copy = shutil.copytree(world.root, tmp_path / "elsewhere")  # anyone with the files, in another place
    code, out, err = in_process("verify", str(copy / "phases" / "validation" / "record.json"), "--challenge",
                             str(copy / "challenge.toml"), "--root", str(copy))
    assert code == 0 and out.strip() == "identical", out + err
    (world.root / "data" / "validation" / "labelsTr" / "case_00.nii.gz").write_bytes(b"not a label any more")
    done = _shell(world, "verify", str(record))  # the process's exit status, from a shell
    assert done.returncode == 3 and "case_00.nii.gz: the ground-truth label changed since the record" in done.stdout


def test_an_unknown_phase_is_one_line_with_the_known_ones(tmp_path: Path, in_process) -> None:
    world = World(tmp_path / "challenge", validation_cases=1)
    code, out, err = in_process("challenge", "evaluate", "--challenge", str(world.challenge), "--phase", "test")
    assert code == 5
    assert err.strip().endswith("no phase 'test'; its phases: validation, final") and len(err.strip().splitlines()) == 1
