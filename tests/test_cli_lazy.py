"""The command line imports a command only when it runs: the listed one-line helps must be each
command's own, every command must be reachable, and `--help` must not import the heavy modules."""

from __future__ import annotations

import subprocess
import sys

import click

from harness.cli import COMMANDS, cli


def test_every_listed_command_exists_with_the_help_it_lists() -> None:
    ctx = click.Context(cli)
    for name, (_, _, short) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert command.get_short_help_str(limit=10**6) == short, name


def test_help_imports_no_command_module_matplotlib_pandas_or_docker() -> None:
    probe = ("import sys\nfrom harness.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'pandas', 'docker', 'scipy') "
             "or m.startswith('harness.cli.') or m.startswith('harness.report'))\nprint('HEAVY', heavy, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in done.stderr, done.stderr[-800:]
    assert "Commands:" in done.stdout and "check" in done.stdout
