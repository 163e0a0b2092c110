"""`harness check`: a submission's checklist before it is sent (harness.check)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.challenge import load_challenge
from harness.cli.jsonout import JSON_OPTION, json_mode
from harness.errors import ExitStatus
from harness.models import RunnerKind


@click.command()
@click.argument("algorithm", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data set to run it on (any layout `harness run` reads). Default: the synthetic phantom cases.")
@click.option("--cases", type=click.IntRange(min=1), default=2, show_default=True, help="How many cases to run (the first N).")
@click.option("--challenge", "challenge_file", type=click.Path(path_type=Path), default=None,
              help="The challenge's file ([limits] caps, profile): check under the rules it will be run under.")
@click.option("--runner", type=click.Choice([k.value for k in RunnerKind]), default=RunnerKind.DOCKER.value,
              show_default=True, help="docker: its image in the sandbox; local: the manifest's [local] command.")
@click.option("--base", default=None, help="Base image for a build (default: the local debootstrap image).")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=None,
              help="Keep the check's results folder here (default: a temporary folder, removed afterwards).")
@JSON_OPTION
def check(algorithm: Path, data_dir: Path | None, cases: int, challenge_file: Path | None, runner: str,
          base: str | None, results_dir: Path | None, as_json: bool) -> int:
    """Check one algorithm (its folder or algorithm.toml) as a challenge would run it.

    \b
    Builds or loads its image, runs it on the first --cases cases exactly as `harness run`
    does (sandbox, contract, limits, output checks, scoring), and prints a checklist: what
    passed, what failed with the fix, time and peak memory per case against the limits,
    files written outside the contract. Exit status 0 only when it would be accepted;
    3 when a case fails; 5 when the manifest (or challenge file) is invalid.
    """
    from harness.check import check_algorithm
    from harness.cli.run_cmd import _say
    from harness.pipeline import default_cache_dir, ensure_default_data

    cache = default_cache_dir()
    challenge = load_challenge(challenge_file)
    with json_mode(as_json) as emit:
        if data_dir is None:
            data_dir = ensure_default_data(cache, say=_say)
        checklist = check_algorithm(algorithm, data_dir=data_dir, cases=cases, challenge=challenge,
                                    runner=RunnerKind(runner), base=base, cache_dir=cache, results_dir=results_dir, say=_say)
        click.echo(checklist.render())
        status = (ExitStatus.OK if checklist.accepted else
                  ExitStatus.SPEC_ERROR if checklist.manifest_failed else ExitStatus.PARTIAL)
        emit({"command": "check", "target": checklist.target, "accepted": checklist.accepted, "exit_status": int(status),
              "items": [{"passed": i.passed, "subject": i.subject, "detail": i.detail, "fix": i.fix}
                        for i in checklist.items]})
    return status
