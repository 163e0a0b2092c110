"""`harness challenge ...` (a challenge's phases, teams and submissions) and `harness verify RECORD`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.errors import ExitStatus
from harness.models import RunnerKind
from harness.safetext import safe_text

_RUNNERS = click.Choice([k.value for k in RunnerKind])


def _say(message: str) -> None:
    from harness.cli import verbosity

    if verbosity.LEVEL >= 0:
        click.echo(f"harness: {safe_text(message)}", err=True)


def _event(event: Any) -> None:
    from harness.cli import verbosity

    if verbosity.LEVEL >= 0 or event.status != "ok":
        elapsed = f" {event.elapsed_s:.1f} s" if event.elapsed_s is not None else ""
        click.echo(safe_text(f"  {event.algorithm} {event.case_id}: {event.status}{elapsed} {event.message}"[:300]), err=True)


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--challenge", "challenge_file", type=click.Path(path_type=Path, dir_okay=False), required=True,
                     help="The challenge file: its [teams] and [phases.<name>] (README, 'A challenge over weeks')."),
        click.option("--phase", required=True, help="The phase, as named in the challenge file."),
        click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="The challenge's folder (default: the challenge file's folder)."),
        click.option("--drop", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Where teams upload: <drop>/<phase>/<team>/<upload> (default: <root>/drop)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--runner", type=_RUNNERS, default=RunnerKind.DOCKER.value, show_default=True,
                     help="docker (sandboxed) or local (the manifest's [local] command; trusted test algorithms only)."),
        click.option("--settle", "settle_s", type=click.FloatRange(min=0), default=2.0, show_default=True,
                     help="Seconds an upload must stay unchanged before it is taken (else: partial, looked at later)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load(challenge_file: Path, phase_name: str, root: Path | None, drop: Path | None):  # type: ignore[no-untyped-def]
    from harness.phases.config import load_challenge_config
    from harness.phases.layout import ChallengeLayout

    config = load_challenge_config(challenge_file)
    phase = config.phase(phase_name)
    layout = ChallengeLayout.of(root if root is not None else config.source.parent, drop)
    return config, phase, layout


def _options(runner: str, settle_s: float):  # type: ignore[no-untyped-def]
    from harness.layout import default_cache_dir
    from harness.phases.cycle import PassOptions

    return PassOptions(runner=RunnerKind(runner), cache_dir=default_cache_dir(), settle_s=settle_s)


def _finish(result: Any, layout: Any, phase: Any) -> int:
    summary = result.summary
    for problem in summary.problems:
        click.echo(f"harness: error: {safe_text(problem)}", err=True)
    refused = [d for d in result.decisions if d.decision not in ("accepted", "duplicate")]
    click.echo(f"{sum(d.decision == 'accepted' for d in result.decisions)} accepted, {len(refused)} refused; "
               f"{len(result.evaluated)} submissions evaluated ({summary.executed} runs, {summary.reused} reused, "
               f"{summary.failed} failed)")
    if result.board is not None:
        for entry in result.board.entries:
            click.echo(f"{entry.rank:>3}  {entry.team:<24} #{entry.number:<3} {entry.score:.4f}  "
                       f"mean {result.board.metric} {entry.headline:.4f}")
        click.echo(f"pages: {layout.public(phase.name)} (public), {layout.teams_dir(phase.name)}/<team> (each team's own)")
    return ExitStatus.PARTIAL if summary.failed or summary.problems else ExitStatus.OK


@click.group()
def challenge() -> None:
    """A challenge over weeks: phases, teams, submissions, feedback, a verifiable record.

    \b
    Teams upload to <drop>/<phase>/<team>/<upload> (a folder holding one
    <name>/algorithm.toml, or a .tar/.tar.gz of it). Each upload is accepted as
    submission n of its team (submissions/<phase>/<team>/<n>/) or refused with
    its reason (unregistered team, partial upload, invalid manifest, over quota),
    logged in submissions/<phase>/intake.jsonl and never run.
    """


@challenge.command("intake")
@_common
@click.option("--settle", "settle_s", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds an upload must stay unchanged before it is taken (else: partial, looked at later).")
def intake_cmd(challenge_file: Path, phase: str, root: Path | None, drop: Path | None, settle_s: float) -> int:
    """Take the drop folder's uploads: accept each, or refuse it with its reason (nothing runs)."""
    from harness.phases.arrivals import intake

    config, phase_, layout = _load(challenge_file, phase, root, drop)
    decisions = intake(config, phase_, layout, settle_s=settle_s, say=_say)
    for d in decisions:
        click.echo(f"{d.decision:<12} {d.team}/{d.upload}" + (f" -> {d.submission}" if d.submission else "")
                   + (f": {d.reason}" if d.reason else ""))
    return ExitStatus.OK


@challenge.command("evaluate")
@_common
@_run_options
@click.option("--full", is_flag=True, help="Plan every submission again (after a profile or label change), not only new ones.")
def evaluate_cmd(challenge_file: Path, phase: str, root: Path | None, drop: Path | None, runner: str, settle_s: float,
                 full: bool) -> int:
    """Take new uploads, evaluate what has no result yet (reusing the rest), rewrite the pages."""
    from harness.phases.cycle import one_pass

    config, phase_, layout = _load(challenge_file, phase, root, drop)
    result = one_pass(config, phase_, layout, _options(runner, settle_s), say=_say, on_result=_event, full=full)
    return _finish(result, layout, phase_)


@challenge.command("watch")
@_common
@_run_options
@click.option("--poll", "poll_s", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between looks at the drop folder when nothing is waiting.")
@click.option("--until-idle", is_flag=True, help="Stop once a look finds nothing new (scripts, tests).")
def watch_cmd(challenge_file: Path, phase: str, root: Path | None, drop: Path | None, runner: str, settle_s: float,
              poll_s: float, until_idle: bool) -> int:
    """Evaluate arrivals one at a time until stopped; safe to stop at any moment and start again."""
    from harness.phases.cycle import watch

    config, phase_, layout = _load(challenge_file, phase, root, drop)
    count = watch(config, phase_, layout, _options(runner, settle_s), say=_say, on_result=_event, poll_s=poll_s,
                  until_idle=until_idle)
    click.echo(f"{count} submissions evaluated")
    return ExitStatus.OK


@challenge.command("pages")
@_common
def pages_cmd(challenge_file: Path, phase: str, root: Path | None, drop: Path | None) -> int:
    """Rewrite the phase's public leaderboard and every team's feedback from the store."""
    from harness.phases.arrivals import submissions
    from harness.phases.pages import write_pages

    config, phase_, layout = _load(challenge_file, phase, root, drop)
    _, written = write_pages(phase_, layout, submissions(layout, phase_.name), config.teams, force=True)
    click.echo(f"{len(written)} files written under {layout.phase_dir(phase_.name)}")
    return ExitStatus.OK


@challenge.command("record")
@_common
def record_cmd(challenge_file: Path, phase: str, root: Path | None, drop: Path | None) -> int:
    """Write the phase's verifiable record (record.json): data, configuration, submissions, ranking."""
    from harness.phases.record import write_record

    config, phase_, layout = _load(challenge_file, phase, root, drop)
    click.echo(f"record: {write_record(config, phase_, layout)}")
    return ExitStatus.OK


@click.command()
@click.argument("record", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--challenge", "challenge_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="The challenge file where it is now (default: where the record says it was).")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="The challenge's folder where it is now (default: where the record says it was).")
@click.option("--json", "as_json", is_flag=True, help="Print {identical, differences} as JSON.")
def verify(record: Path, challenge_file: Path | None, root: Path | None, as_json: bool) -> int:
    """Check a phase's record: "identical", or each difference (exit 3).

    \b
    Every hash the record names is compared (data set, profile, challenge file,
    ranking configuration, kept outputs, store rows); every kept output is scored
    again against the ground truth and the leaderboard ranked again from those scores.
    """
    from harness.phases.record import verify as check

    differences = check(record, challenge_file=challenge_file, root=root)
    if as_json:
        click.echo(json.dumps({"identical": not differences, "differences": differences}))
    elif differences:
        for line in differences:
            click.echo(f"differs: {safe_text(line)}")
    else:
        click.echo("identical")
    return ExitStatus.PARTIAL if differences else ExitStatus.OK

