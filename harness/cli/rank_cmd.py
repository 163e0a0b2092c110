"""`harness rank` (being written)."""

import click


@click.group() if "rank" == "data" else click.command()
def rank() -> None:
    """(being written)"""
