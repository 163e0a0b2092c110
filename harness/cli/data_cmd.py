"""`harness data` (being written)."""

import click


@click.group() if "data" == "data" else click.command()
def data() -> None:
    """(being written)"""
