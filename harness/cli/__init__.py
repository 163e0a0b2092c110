"""The `harness` command line: one group, commands registered explicitly below.

Errors from the `HarnessError` hierarchy are caught here, once, and printed as one line with the
exit status of their class; a traceback is shown only with `--debug`.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sqlite3
import sys
import threading
import traceback
from collections.abc import Sequence

import click

from harness.errors import ExitStatus, HarnessError
from harness.safetext import safe_text

# name -> (module, attribute, one-line help). Commands are imported only when run (or when their
# own --help is asked for): `harness --help` and a small `harness score` start without the report's
# matplotlib, pandas' full import or the Docker SDK. The one-line helps equal each command's own
# (tests/test_cli_lazy.py), in the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("harness.cli.data_cmd", "data",
             "Data sets: check one before an evaluation; make demo data (CT phantoms, predictions)."),
    "score": ("harness.cli.score_cmd", "score", "Score predictions against ground truth: one row per (case, organ)."),
    "images": ("harness.cli.run_cmd", "images", "Base images for algorithm builds, made locally (no registry needed)."),
    "build": ("harness.cli.run_cmd", "build", "Build every algorithm's image, reusing unchanged ones (tagged by content hash)."),
    "run": ("harness.cli.run_cmd", "run", "Build, run every segmenter on every case, score, store, summarise."),
    "check": ("harness.cli.check_cmd", "check",
              "Check one algorithm (its folder or algorithm.toml) as a challenge would run it."),
    "rescore": ("harness.cli.run_cmd", "rescore",
                "Score every kept output of a results folder again; no container is started."),
    "forget": ("harness.cli.run_cmd", "forget", "Remove ALGORITHMS' runs, scores and kept outputs from a results folder."),
    "annotate": ("harness.cli.run_cmd", "annotate",
                 "Run the attention-map annotator on every case, then prioritise cases for review."),
    "assemble": ("harness.cli.run_cmd", "assemble",
                 "Assemble each case's final labels: original annotation, then revision, then pseudo label."),
    "rank": ("harness.cli.rank_cmd", "rank",
             "Rank algorithms (FLARE's score, or another method), with bootstrap intervals and tests."),
    "report": ("harness.cli.report_cmd", "report", "Write the leaderboard of a results folder as self-contained HTML."),
    "challenge": ("harness.cli.challenge_cmd", "challenge",
                  "A challenge over weeks: phases, teams, submissions, feedback, a verifiable record."),
    "verify": ("harness.cli.challenge_cmd", "verify", 'Check a phase\'s record: "identical", or each difference (exit 3).'),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when used, listed from `COMMANDS` without importing them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _ = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.Command(name, help=short).get_short_help_str(limit)) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`--version`, as click's `version_option` prints it; the version is looked up only here."""
    if not value or ctx.resilient_parsing:
        return
    from harness import __version__

    click.echo(f"harness, version {__version__}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show a full traceback on errors.")
@click.option("-q", "--quiet", is_flag=True,
              help="Only errors, failed runs and the final summary (no progress, notes or ok runs).")
@click.option("-v", "--verbose", is_flag=True, help="Also every run's last log line, ok runs included.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and exit.")
def cli(debug: bool, quiet: bool, verbose: bool) -> None:
    """Challenge-style evaluation of 3D medical image segmentation.

    \b
    Exit status: 0 ok; 1 internal error; 2 bad command line; 3 partial (some cases
    failed and were recorded); 4 unusable input data or results folder; 5 invalid
    profile/manifest/challenge; 6 disk full; 7 Docker, scheduler or base image not
    available here; 129 SIGHUP; 130 interrupted (Ctrl-C); 141 output pipe closed;
    143 SIGTERM. Stopped by a signal, it removes the running container first.
    """
    from harness.cli import verbosity

    verbosity.LEVEL = -1 if quiet else 1 if verbose else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, so that it unwinds as Ctrl-C does: the
    running container is stopped and removed, temp folders go, the store stays consistent."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _stopped(exc: BaseException) -> int:
    """Say why the command stopped early; the exit status of the signal."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, Terminated):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, Terminated):
        name = signal.Signals(cause.signum).name
        click.echo(f"harness: stopped by {name}; the running container was removed and every finished case is stored; "
                   "run the same command again to resume", err=True)
        return ExitStatus.HANGUP if cause.signum == signal.SIGHUP else ExitStatus.TERMINATED
    click.echo("harness: interrupted; every finished case is stored; run the same command again to resume", err=True)
    return ExitStatus.INTERRUPTED


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with an `ExitStatus`."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_terminated)
    try:
        _main(args, debug)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(args: list[str], debug: bool) -> None:
    try:
        status = cli.main(args=args, prog_name="harness", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        sys.exit(_stopped(exc))
    except BrokenPipeError:  # `harness rank ... | head -1`: the reader has what it wanted
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        except OSError:
            pass
        sys.exit(ExitStatus.BROKEN_PIPE)
    except SystemExit as exc:  # click turns EPIPE into exit 1 and pacifies the streams: it is still SIGPIPE's case
        if exc.code == 1 and type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
            sys.exit(ExitStatus.BROKEN_PIPE)
        raise
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitStatus.USAGE if exc.exit_code == 2 else exc.exit_code)
    except HarnessError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"harness: error: {safe_text(str(exc))}", err=True)
        sys.exit(exc.exit_status)
    except Exception as exc:  # a bug: one line, the traceback on request
        if _disk_full(exc):
            click.echo(f"harness: error: no space left on the device ({safe_text(str(exc), limit=200)}); every finished "
                       "case is stored: free space, then run the same command again to resume", err=True)
            sys.exit(ExitStatus.DISK_FULL)
        if debug:
            traceback.print_exc()
        click.echo(
            f"harness: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
            err=True,
        )
        sys.exit(ExitStatus.ERROR)
    sys.exit(int(status) if isinstance(status, int) else ExitStatus.OK)
