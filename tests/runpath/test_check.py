"""`harness check`: a checklist through `harness run`'s own path, exit 0 only when it would be accepted.

The local runner runs the toy segmenters (tests/runpath/conftest.py); the Docker contracts' good and
broken images are checked in tests/docker/test_check_images.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main
from tests.runpath.conftest import Toy


@dataclass(frozen=True)
class Checked:
    returncode: int
    stdout: str
    stderr: str


CheckFn = Callable[..., Checked]


@pytest.fixture
def check(capfd: pytest.CaptureFixture[str]) -> CheckFn:
    """`harness check TARGET --runner local ...` on the toy's data, in this process (the toy fixture
    points HARNESS_CACHE into the test's folder): its exit status and what it wrote on fd 1 and 2."""
    def run(toy: Toy, target: Path, *extra: str) -> Checked:
        capfd.readouterr()
        with pytest.raises(SystemExit) as code:
            main(["check", str(target), "--runner", "local", "--data", str(toy.data), "--challenge",
                  str(toy.challenge_file), *extra])
        out, err = capfd.readouterr()
        return Checked(int(code.value.code or 0), out, err)
    return run


def test_a_good_algorithm_is_accepted_and_only_it_runs(toy: Toy, check: CheckFn) -> None:
    toy.write_data(3)
    good = toy.segmenter("good")
    toy.segmenter("other", "crash")  # beside it in the same folder: not run, not reported
    (toy.algorithms / "broken").mkdir()
    (toy.algorithms / "broken" / "algorithm.toml").write_text("not toml [")
    done = check(toy, good, "--cases", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"harness check {good}"
    assert lines[1].startswith("  [ok]   manifest: good 0.0.1, contract harness, profile toy, dockerfile")
    assert [line.split(":")[0] for line in lines if "case case_" in line] == ["  [ok]   case case_00", "  [ok]   case case_01"]
    assert "mean DSC 1.000 over 4 organs" in done.stdout  # the toy's output is the ground truth
    assert "[warn] runner: local" in done.stdout
    assert lines[-1] == "accepted: it would be accepted as submitted"
    assert toy.starts() == ["good case_00", "good case_01"]  # --cases 2, and no other algorithm
    assert "broken" not in done.stdout + done.stderr


def test_a_failing_case_is_a_failed_item_with_its_fix(toy: Toy, check: CheckFn) -> None:
    toy.write_data(2)
    done = check(toy, toy.segmenter("crasher", "crash:case_01"))
    assert done.returncode == 3
    assert "  [ok]   case case_00: exit 0 in" in done.stdout
    assert ("  [FAIL] case case_01: crashed: exited with code 1 | log: toy: crashing on purpose" in done.stdout)
    assert "       fix: it exited non-zero: read its log (its last lines are shown)" in done.stdout
    assert done.stdout.splitlines()[-1] == "NOT accepted: 1 problem above"


def test_an_output_that_breaks_the_contract_names_the_file_and_the_fix(toy: Toy, check: CheckFn) -> None:
    toy.write_data(1)
    done = check(toy, toy.segmenter("gridless", "wrong_grid") / "algorithm.toml")  # the manifest itself works too
    assert done.returncode == 3
    assert ("[FAIL] case case_00: invalid_output: /output/case_00.nii.gz: header grid 23x22x12 differs from the input "
            "image's 24x22x12; write it on the input image's grid | log: toy: case_00 done (wrong_grid)") in done.stdout


def test_a_bad_manifest_is_exit_5_with_its_reason(toy: Toy, check: CheckFn) -> None:
    toy.write_data(1)
    folder = toy.segmenter("typo")
    manifest = folder / "algorithm.toml"
    manifest.write_text(manifest.read_text().replace('gpu = "none"', 'gpu = "none"\nprofil = "toy"'))
    done = check(toy, folder)
    assert done.returncode == 5
    assert "[FAIL] manifest: " in done.stdout and "unknown key 'profil'" in done.stdout
    assert toy.starts() == []
    missing = check(toy, toy.root / "nowhere")
    assert missing.returncode == 5 and f"[FAIL] manifest: no {toy.root / 'nowhere' / 'algorithm.toml'}" in missing.stdout


def test_manifests_that_would_exhaust_a_parser_are_exit_5_as_under_harness_run(toy: Toy, check: CheckFn) -> None:
    """A YAML alias bomb in an MLCube configuration and a deeply nested TOML manifest: `harness check`
    gives the verdict `harness run` gives (the manifest refused, exit 5), not an internal error."""
    toy.write_data(1)
    folder = toy.segmenter("yaml-bomb")
    (folder / "mlcube.yaml").write_text("a: &a [x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n")
    manifest = folder / "algorithm.toml"
    manifest.write_text(manifest.read_text().replace('gpu = "none"', 'gpu = "none"\ncontract = "mlcube"') +
                        '\n[mlcube]\nconfig = "mlcube.yaml"\n')
    done = check(toy, folder)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "[FAIL] manifest: " in done.stdout and "a YAML anchor, alias or tag" in done.stdout
    nested = toy.segmenter("toml-bomb")
    (nested / "algorithm.toml").write_text((nested / "algorithm.toml").read_text() + "x = " + "[" * 30000 + "]" * 30000)
    done = check(toy, nested)
    assert done.returncode == 5 and "nested too deeply to be a manifest" in done.stdout, done.stdout + done.stderr
    assert toy.starts() == []
