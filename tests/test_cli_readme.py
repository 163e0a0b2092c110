"""The README's command table cannot drift from the command line: every command and sub-command
has a row, and every long option of it appears in that row."""

from __future__ import annotations

import re
from pathlib import Path

import click

from harness.cli import COMMANDS, cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows() -> dict[str, str]:
    text = README.read_text()
    table = text[text.index("| command | what it does |"):text.index("### Exit status")]
    rows = {}
    for line in table.splitlines()[2:]:
        match = re.match(r"\| `harness ([a-z]+)(?: ([a-z]+))?", line)
        if match:
            rows[" ".join(filter(None, match.groups()))] = line
    return rows


def _leaves(ctx: click.Context, command: click.Command, path: list[str]):  # type: ignore[no-untyped-def]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _leaves(ctx, sub, [*path, name])
    else:
        yield " ".join(path), command


def test_every_command_and_option_is_in_the_readme_table() -> None:
    rows = _rows()
    ctx = click.Context(cli)
    missing = []
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        for path, leaf in _leaves(ctx, command, [name]):
            row = rows.get(path) or rows.get(path.split()[0], "")
            if not row:
                missing.append(f"harness {path}: no row")
                continue
            missing += [f"harness {path}: {opt}" for p in leaf.params if isinstance(p, click.Option)
                        for opt in p.opts if opt.startswith("--") and opt not in row]
    assert not missing, missing
