"""The static HTML leaderboard: one self-contained, deterministic file from a results folder.

Reads the results store (and the runs' monitor series and annotator tables), gets every ranking it
shows from `harness.ranking` (`rank_challenge`, organ tasks included) and lays it out; never ranks
or runs anything itself. `build_report(results_dir, out)` writes the page;
`render_report(inputs)` returns it; the figure and table functions are pure.
"""

from harness.report.builder import DEFAULT_NAME, build_report, rank_inputs, render_report, report_context
from harness.report.inputs import ReportInputs, load_report_inputs

__all__ = ["DEFAULT_NAME", "ReportInputs", "build_report", "load_report_inputs", "rank_inputs", "render_report", "report_context"]
