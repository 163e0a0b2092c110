"""The `harness` command line: one group, commands registered explicitly below.

Errors from the `HarnessError` hierarchy are caught here, once, and printed as one line with the
exit status of their class; a traceback is shown only with `--debug`.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click

from harness import __version__
from harness.errors import ExitStatus, HarnessError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show a full traceback on errors.")
@click.version_option(__version__, prog_name="harness")
def cli(debug: bool) -> None:
    """Challenge-style evaluation of 3D medical image segmentation.

    \b
    Exit status: 0 ok; 1 internal error; 2 bad command line; 3 partial (some cases
    failed and were recorded); 4 unusable input data; 5 invalid profile/manifest/config;
    130 interrupted.
    """


def _register() -> None:
    # Explicit registration: importing a module never adds a command by side effect.
    from harness.cli.data_cmd import data
    from harness.cli.rank_cmd import rank
    from harness.cli.report_cmd import report
    from harness.cli.run_cmd import annotate, assemble, build, forget, images, rescore, run
    from harness.cli.score_cmd import score

    for command in (data, score, images, build, run, rescore, forget, annotate, assemble, rank, report):
        cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with an `ExitStatus`."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        status = cli.main(args=args, prog_name="harness", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("harness: interrupted", err=True)
        sys.exit(ExitStatus.INTERRUPTED)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitStatus.USAGE if exc.exit_code == 2 else exc.exit_code)
    except HarnessError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"harness: error: {exc}", err=True)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        click.echo("harness: interrupted", err=True)
        sys.exit(ExitStatus.INTERRUPTED)
    except Exception as exc:  # a bug: one line, the traceback on request
        if debug:
            traceback.print_exc()
        click.echo(
            f"harness: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
            err=True,
        )
        sys.exit(ExitStatus.ERROR)
    sys.exit(int(status) if isinstance(status, int) else ExitStatus.OK)
