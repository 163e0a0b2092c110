"""The static HTML leaderboard: one self-contained, deterministic file from a results folder.

Reads the results store (and the runs' monitor series and annotator tables), gets every ranking it
shows from `harness.ranking` (`rank_challenge`, organ tasks included) and lays it out; never ranks
or runs anything itself. `build_report(results_dir, out)` writes the page;
`render_report(inputs)` returns it; the figure and table functions are pure.

The names below are imported on first use (PEP 562), so that importing one light submodule
(`harness.report.drawing`, `harness.report.axes`) does not import matplotlib, pandas and jinja.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.report.builder import DEFAULT_NAME, build_report, rank_inputs, render_report, report_context
    from harness.report.inputs import ReportInputs, load_report_inputs

_HOMES = {"DEFAULT_NAME": "builder", "build_report": "builder", "rank_inputs": "builder", "render_report": "builder",
          "report_context": "builder", "ReportInputs": "inputs", "load_report_inputs": "inputs"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"harness.report.{home}"), name)
    globals()[name] = value
    return value


__all__ = ["DEFAULT_NAME", "ReportInputs", "build_report", "load_report_inputs", "rank_inputs", "render_report", "report_context"]
