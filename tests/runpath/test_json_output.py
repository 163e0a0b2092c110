"""`--json`: run, score, rank, check and data check each print exactly one JSON document on stdout
(people's text goes to stderr), with the keys and types a CI script relies on.

`harness run` is checked once as a CI script sees it, a process of its own; the other calls run the
command line in this process, their file descriptors 1 and 2 captured (what the algorithms' processes
might write included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from tests.runpath.conftest import REPO, Toy


def _json_process(toy: Toy, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "harness", *args, "--json"], capture_output=True, text=True, timeout=300,
                          env={"HARNESS_CACHE": str(toy.root / "cache"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
                          cwd=toy.root)  # this checkout's harness, whatever the interpreter has installed
    document = json.loads(done.stdout)  # the whole of stdout is one document
    return done.returncode, document, done.stderr


@pytest.fixture(autouse=True)
def _in_the_toys_folder(toy: Toy, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the toy's folder, as the process of `_json_process` is: nothing written beside the tests."""
    monkeypatch.chdir(toy.root)


def _json(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    capfd.readouterr()
    with pytest.raises(SystemExit) as code:
        main([*args, "--json"])
    out, err = capfd.readouterr()
    document = json.loads(out)  # the whole of stdout is one document
    return int(code.value.code or 0), document, err


def _typed(document: dict, schema: dict[str, type | tuple[type, ...]]) -> None:
    for key, kind in schema.items():
        assert key in document, key
        assert isinstance(document[key], kind), (key, document[key])


def test_run_rank_and_check_print_one_json_document(toy: Toy, capfd: pytest.CaptureFixture[str]) -> None:
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("crasher", "crash:case_01")
    code, run, err = _json_process(toy, "run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results",
                           str(toy.results), "--challenge", str(toy.challenge_file), "--scoring-workers", "0")
    assert code == 3 == run["exit_status"]
    _typed(run, {"command": str, "results": str, "executed": int, "failed": int, "refused": int, "problems": list,
                 "runs": list, "report": (str, type(None))})
    assert run["executed"] == 4 and run["failed"] == 1
    # where the time went, a phase each, in the order they ran (the data was given: none synthesised)
    assert list(run["phases_s"]) == ["data", "images", "runs", "report"]
    assert all(isinstance(v, float) and v >= 0 for v in run["phases_s"].values()) and run["phases_s"]["runs"] > 0
    rows = {(r["algorithm"], r["case_id"]): r for r in run["runs"]}
    assert rows[("crasher", "case_01")]["status"] == "crashed" and rows[("crasher", "case_01")]["dsc_mean"] is None
    assert rows[("alpha", "case_00")]["status"] == "ok" and rows[("alpha", "case_00")]["dsc_mean"] == 1.0
    assert "[4/4]" in err  # the progress lines went to stderr

    code, ranked, _ = _json(capfd, "rank", "--results", str(toy.results), "--draws", "20")
    assert code == 0 == ranked["exit_status"]
    _typed(ranked, {"leaderboard": list, "metrics": list, "out": str, "files": list})
    assert [row["algorithm"] for row in ranked["leaderboard"]] == ["alpha", "crasher"]
    assert isinstance(ranked["leaderboard"][0]["rank"], (int, float))

    code, checked, _ = _json(capfd, "check", str(toy.algorithms / "crasher"), "--runner", "local", "--data",
                             str(toy.data), "--challenge", str(toy.challenge_file))
    assert code == 3 == checked["exit_status"] and checked["accepted"] is False
    assert {"passed": False, "subject": "case case_01"}.items() <= next(
        i for i in checked["items"] if i["subject"] == "case case_01").items()


def test_score_and_data_check_print_one_json_document(toy: Toy, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    toy.write_data(2)
    pred = tmp_path / "pred"
    pred.mkdir()
    for label in sorted((toy.data / "labelsTr").glob("*.nii.gz")):
        (pred / label.name).write_bytes(label.read_bytes())
    code, scored, _ = _json(capfd, "score", "--pred", str(pred), "--labels", str(toy.data), "--profile",
                            str(toy.profile_file), "--out", str(tmp_path / "s.csv"))
    assert code == 0 == scored["exit_status"]
    _typed(scored, {"cases_scored": int, "cases_failed": int, "summary": list, "out": str, "profile": str})
    assert scored["cases_scored"] == 2 and {row["organ"] for row in scored["summary"]} == {
        "liver", "right_kidney", "spleen", "aorta"}
    assert all(row["dsc_mean"] == 1.0 for row in scored["summary"])

    code, checked, _ = _json(capfd, "data", "check", str(toy.data), "--profile", str(toy.profile_file))
    assert code == 0 == checked["exit_status"] and checked["evaluable"] is True
    _typed(checked, {"layout": str, "cases": list, "problems": list, "errors": int, "warnings": int})
    assert len(checked["cases"]) == 2


def test_run_options_from_a_config_file_and_the_command_line_wins(toy: Toy, capfd: pytest.CaptureFixture[str]) -> None:
    toy.write_data(1)
    toy.segmenter("alpha")
    (toy.root / "run.toml").write_text('algorithms = "algorithms"\ndata = "data"\nresults = "from-config"\n'
                                       'challenge = "challenge.toml"\nrunner = "local"\n'
                                       'scoring_workers = 0\n')
    code, run, _ = _json(capfd, "run", "--config", str(toy.root / "run.toml"), "--no-report")
    assert code == 0 and run["results"] == str(toy.root / "from-config") and run["executed"] == 1
    code, run, _ = _json(capfd, "run", "--config", str(toy.root / "run.toml"), "--results", str(toy.root / "cli"),
                         "--no-report")
    assert code == 0 and run["results"] == str(toy.root / "cli")
    (toy.root / "bad.toml").write_text('resutls = "x"\n')
    with pytest.raises(SystemExit) as bad:
        main(["run", "--config", str(toy.root / "bad.toml")])
    assert bad.value.code == 2 and "unknown key 'resutls'" in capfd.readouterr().err


def test_a_second_run_counts_the_failures_an_earlier_run_stored(toy: Toy, capfd: pytest.CaptureFixture[str]) -> None:
    """Nothing runs the second time, yet the evaluation still holds a crashed run: exit 3, counted."""
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("crasher", "crash")
    args = ("run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results),
            "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report")
    code, first, _ = _json(capfd, *args)
    assert code == 3 and (first["executed"], first["failed"]) == (4, 2)
    # --no-report: the store only; no report written, none timed, none named
    assert first["report"] is None and "report" not in first["phases_s"] and not (toy.results / "report.html").exists()
    starts = len(toy.starts())
    code, again, err = _json(capfd, *args)
    assert len(toy.starts()) == starts  # nothing ran
    assert (code, again["exit_status"], again["executed"], again["reused"], again["failed"]) == (3, 3, 0, 4, 2)
    assert first["failed_earlier"] == 0 and again["failed_earlier"] == 2
    assert "0 runs executed, 0 rescored, 4 reused from the store, 2 failed (2 stored by an earlier run)" in err
    toy.set_mode("crasher", "ok")  # fixed: it runs again, and the evaluation is whole
    code, fixed, _ = _json(capfd, *args)
    assert code == 0 and (fixed["executed"], fixed["failed"], fixed["failed_earlier"]) == (2, 0, 0)
