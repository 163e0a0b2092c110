"""`--json`: one JSON document on stdout for scripts and CI; everything for people goes to stderr.

`json_mode(True)` sends the command's human output (click.echo to stdout) to stderr while it runs
and gives back `emit(document)`, which writes the document to the real stdout: a caller reads
stdout with `json.load` and never parses text or opens the SQLite store. NaN and infinities
become null, numpy scalars plain numbers, paths strings.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

JSON_OPTION = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document on stdout (human output goes to stderr).")


def plain(value: Any) -> Any:
    """`value` as JSON-safe Python: NaN/inf -> None, numpy scalars -> numbers, paths -> str."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows as JSON-safe dicts."""
    return [plain(row) for row in frame.to_dict(orient="records")]


@contextlib.contextmanager
def json_mode(enabled: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    real = sys.stdout

    def emit(document: dict[str, Any]) -> None:
        if enabled:
            real.write(json.dumps(plain(document), allow_nan=False, sort_keys=False) + "\n")
            real.flush()

    if not enabled:
        yield emit
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield emit
