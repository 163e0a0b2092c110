"""`harness challenge evaluate / intake / pages / record` and `harness verify` as a shell runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.phases.conftest import World

REPO = Path(__file__).resolve().parents[2]


def _harness(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(world.root.parent / "cache")}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300, env=env)


def test_the_commands_from_a_shell(tmp_path: Path) -> None:
    world = World(tmp_path / "challenge", validation_cases=1)
    where = ["--challenge", str(world.challenge), "--phase", "validation"]
    world.upload("validation", "zulu", "z1", drop=0.0, token="tokcz1")
    done = _harness(world, "challenge", "intake", *where, "--settle", "0")
    assert done.returncode == 0 and done.stdout.startswith("unregistered zulu/z1: team 'zulu' is not registered"), done
    world.upload("validation", "alpha", "a1", drop=0.3, token="tokca1")
    done = _harness(world, "challenge", "evaluate", *where, "--runner", "local", "--settle", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1 accepted, 0 refused; 1 submissions evaluated (1 runs, 0 reused, 0 failed)"
    assert lines[1].split()[:3] == ["1", "alpha", "#1"]
    done = _harness(world, "challenge", "evaluate", *where, "--runner", "local", "--settle", "0")
    assert done.stdout.splitlines()[0] == "0 accepted, 0 refused; 0 submissions evaluated (0 runs, 0 reused, 0 failed)"
    done = _harness(world, "challenge", "pages", *where)
    assert done.returncode == 0 and done.stdout.startswith("13 files written")  # 3 public, 2 for each of the 5 teams
    done = _harness(world, "challenge", "record", *where)
    record = Path(done.stdout.split("record: ")[1].strip())
    assert record == world.root / "phases" / "validation" / "record.json"
    done = _harness(world, "verify", "--json", str(record))
    assert done.returncode == 0 and json.loads(done.stdout) == {"identical": True, "differences": []}
    copy = shutil.copytree(world.root, tmp_path / "elsewhere")  # anyone with the files, in another place
    done = _harness(world, "verify", str(copy / "phases" / "validation" / "record.json"), "--challenge",
                    str(copy / "challenge.toml"), "--root", str(copy))
    assert done.returncode == 0 and done.stdout.strip() == "identical", done.stdout + done.stderr
    (world.root / "data" / "validation" / "labelsTr" / "case_00.nii.gz").write_bytes(b"not a label any more")
    done = _harness(world, "verify", str(record))
    assert done.returncode == 3 and "case_00.nii.gz: the ground-truth label changed since the record" in done.stdout


def test_an_unknown_phase_is_one_line_with_the_known_ones(tmp_path: Path) -> None:
    world = World(tmp_path / "challenge", validation_cases=1)
    done = _harness(world, "challenge", "evaluate", "--challenge", str(world.challenge), "--phase", "test")
    assert done.returncode == 5
    assert done.stderr.strip().endswith("no phase 'test'; its phases: validation, final")
