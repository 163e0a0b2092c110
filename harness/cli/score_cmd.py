"""`harness score` (being written)."""

import click


@click.group() if "score" == "data" else click.command()
def score() -> None:
    """(being written)"""
