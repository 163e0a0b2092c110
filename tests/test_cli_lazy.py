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


def test_score_imports_neither_pandas_nor_matplotlib_nor_docker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # pandas alone is 0.4 s of start-up; `harness score` writes its CSV without it.
    import shutil

    from harness.data.synth import write_dataset

    write_dataset(tmp_path / "data", cases=1, seed=3, size="small")
    labels = tmp_path / "data" / "labelsTr"
    pred = shutil.copytree(labels, tmp_path / "pred")
    probe = ("import sys\nfrom harness.cli import main\ntry:\n"
             f"    main(['score', '--pred', {str(pred)!r}, '--labels', {str(labels)!r}, '--out', "
             f"{str(tmp_path / 'scores.csv')!r}])\nexcept SystemExit as exc:\n    print('EXIT', exc.code, file=sys.stderr)\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('matplotlib', 'pandas', 'docker')})\n"
             "print('HEAVY', heavy, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "EXIT 0" in done.stderr and "HEAVY []" in done.stderr, done.stderr[-800:]
    assert (tmp_path / "scores.csv").read_text().startswith("case,organ,label,dsc,nsd,hd95_mm,status,message\n")
