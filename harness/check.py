"""`harness check`: an author's look at a submission before sending it, through `harness run` itself.

The algorithm is built or loaded and run on one or two cases by `pipeline.run_all` (the same
staging, sandbox, contract, checks, scoring and store as an evaluation, in a results folder of its
own), and the store is then read back as a checklist: what passed, what failed with the exact fix,
and each case's time and peak memory against its limits. A submission is accepted only when every
case ran to `ok`.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.challenge import Challenge
from harness.errors import HarnessError, SpecError
from harness.models import Kind, RunnerKind, RunStatus
from harness.safetext import safe_text

# What to do about each failed run status (the message already names the file and the problem).
FIXES = {
    RunStatus.TIMEOUT: "finish within the time limit on this hardware, or ask for more in [resources] time_limit_s "
                       "(up to the challenge's cap)",
    RunStatus.CRASHED: "it exited non-zero: read its log (its last lines are shown); run the image by hand on this case",
    RunStatus.OOM: "use less memory, or ask for more in [resources] memory (up to the challenge's cap)",
    RunStatus.OUTPUT_TOO_LARGE: "write only the contract's files, within [resources] output / output_files",
    RunStatus.BUILD_FAILED: "fix the image as the message says; nothing ran",
    RunStatus.RUNNER_ERROR: "the harness or Docker failed, not the algorithm: run the check again",
    RunStatus.LOST: "the worker died: run the check again",
    RunStatus.NO_GPU: 'run the check on a host with a GPU, or set gpu = "optional" if the image also runs on the CPU',
}


@dataclass(frozen=True)
class Item:
    """One line of the checklist: passed (True), failed (False) or a warning (None)."""

    passed: bool | None
    subject: str
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        mark = {True: "[ok]  ", False: "[FAIL]", None: "[warn]"}[self.passed]
        out = [f"{mark} {self.subject}: {self.detail}"]
        if self.fix:
            out.append(f"       fix: {self.fix}")
        return out


@dataclass
class Checklist:
    target: str
    items: list[Item] = field(default_factory=list)

    @property
    def manifest_failed(self) -> bool:
        return any(i.passed is False and i.subject == "manifest" for i in self.items)

    @property
    def accepted(self) -> bool:
        return bool(self.items) and all(i.passed is not False for i in self.items) and any(
            i.passed and i.subject.startswith("case ") for i in self.items)

    def render(self) -> str:
        lines = [f"harness check {self.target}"]
        for item in self.items:
            lines.extend("  " + line for line in item.lines())
        failed = sum(1 for i in self.items if i.passed is False)
        lines.append("accepted: it would be accepted as submitted" if self.accepted else
                     f"NOT accepted: {failed} problem{'s' if failed != 1 else ''} above")
        return "\n".join(lines)


def manifest_of(target: Path) -> Path:
    return target if target.suffix == ".toml" else target / "algorithm.toml"


def check_algorithm(target: Path, *, data_dir: Path, cases: int, challenge: Challenge, runner: RunnerKind,
                    base: str | None, cache_dir: Path, results_dir: Path | None = None,
                    say=lambda message: None) -> Checklist:  # type: ignore[no-untyped-def]
    """Build or load, run on the first `cases` cases, and read the outcome back as a checklist."""
    from harness.contracts import contract_of
    from harness.pipeline import RunSettings, run_all
    from harness.spec import load_manifest

    checklist = Checklist(str(target))
    manifest = manifest_of(target)
    if not manifest.is_file():
        checklist.items.append(Item(False, "manifest", f"no {manifest}", "write algorithm.toml (algorithms/README.md)"))
        return checklist
    repo_root = manifest.resolve().parents[2]
    try:
        spec = challenge.admit(load_manifest(manifest, repo_root=repo_root))
    except SpecError as exc:
        checklist.items.append(Item(False, "manifest", safe_text(str(exc), limit=600)))
        return checklist
    if spec.kind is not Kind.SEGMENTER:
        checklist.items.append(Item(False, "manifest", f"kind = {spec.kind.value}; `harness check` runs segmenters",
                                    "check an annotator with `harness annotate` on a results folder"))
        return checklist
    source = (f"dockerfile {spec.dockerfile.relative_to(repo_root)}" if spec.dockerfile is not None
              else f"image {spec.image}" if spec.image else f"archive {spec.archive.name if spec.archive else ''}")
    checklist.items.append(Item(True, "manifest", f"{spec.name} {spec.version}, contract {spec.contract}, profile "
                                f"{spec.profile.name}, {source}"))
    for note in contract_of(spec.contract).notes(spec.options):
        checklist.items.append(Item(None, "manifest", safe_text(note, limit=600)))
    with tempfile.TemporaryDirectory(prefix="harness-check-") as scratch:
        results = results_dir if results_dir is not None else Path(scratch) / "results"
        settings = RunSettings(algorithms_dir=manifest.parent.parent, data_dir=data_dir, results_dir=results,
                               runner=runner, base=base, cache_dir=cache_dir, repo_root=repo_root,
                               challenge=challenge, manifests=(manifest,), case_limit=cases, rerun=True)
        try:
            summary = run_all(settings, say=say, on_result=lambda event: None)
        except HarnessError as exc:
            checklist.items.append(Item(False, "run", safe_text(str(exc), limit=600)))
            return checklist
        for problem in summary.problems:
            checklist.items.append(Item(False, "run", safe_text(problem, limit=600)))
        _read_back(checklist, results, spec)
    return checklist


def _read_back(checklist: Checklist, results: Path, spec) -> None:  # type: ignore[no-untyped-def]
    from harness.store import Store

    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs()
        scores = store.scores()
        figures = store.measurements()
    runs = runs[runs.algorithm == spec.name]
    if runs.empty:
        checklist.items.append(Item(False, "run", "no case ran", "see the problems above"))
        return
    digest = str(runs.image_digest.iloc[0])
    if set(runs.status) == {RunStatus.BUILD_FAILED}:
        row = runs.iloc[0]
        checklist.items.append(Item(False, "image", safe_text(str(row.message), limit=600), FIXES[RunStatus.BUILD_FAILED]))
        return
    if str(runs.runner.iloc[0]) == RunnerKind.LOCAL:
        checklist.items.append(Item(None, "runner", "local: its [local] command ran without the sandbox or the contract's "
                                    "mounts", "check the image with --runner docker before submitting"))
    else:
        checklist.items.append(Item(True, "image", f"{'built' if spec.dockerfile is not None else 'loaded'}, "
                                    f"{digest[:19]}"))
    notes = {str(note) for d in runs.details if d and (note := json.loads(d).get("image_user"))}
    for note in sorted(notes):  # how the image's USER was run, where it is not as the platform runs it
        checklist.items.append(Item(None, "image", safe_text(note, limit=600)))
    res = spec.resources
    for row in runs.itertuples():
        case = f"case {row.case_id}"
        mine = figures[(figures.algorithm == spec.name) & (figures.case_id == row.case_id)]
        values = dict(zip(mine.name, mine.value, strict=True))
        peak = values.get("peak_rss_mb")
        timing = (f"{row.elapsed_s:.1f} s of {res.time_limit_s:g} s" if row.elapsed_s is not None and not math.isnan(row.elapsed_s)
                  else "no time")
        memory = (f"peak memory {peak:.0f} MiB of {res.memory_bytes / 2**20:.0f} MiB"
                  if peak is not None and not math.isnan(peak) else "peak memory not measured")
        status = RunStatus(row.status)
        if status is RunStatus.OK:
            organs = scores[(scores.algorithm == spec.name) & (scores.case_id == row.case_id)]
            dsc = organs.dsc.mean()
            checklist.items.append(Item(True, case, f"exit 0 in {timing}, {memory}; outputs follow the {spec.contract} "
                                        f"contract; mean DSC {dsc:.3f} over {len(organs)} organs"))
            if peak is not None and peak > 0.8 * res.memory_bytes / 2**20:
                checklist.items.append(Item(None, case, "peak memory above 80 % of its limit",
                                            "a larger case may be killed: lower it or ask for more memory"))
            if row.elapsed_s is not None and row.elapsed_s > 0.5 * res.time_limit_s:
                checklist.items.append(Item(None, case, "ran longer than half its time limit",
                                            "a larger case may time out"))
        else:
            detail = f"{status.value}: {row.message}" if row.message else status.value
            fix = "" if status is RunStatus.INVALID_OUTPUT else FIXES.get(status, "")
            last = [line for line in str(row.log_tail).splitlines() if line.strip()][-3:]
            if last and status is not RunStatus.BUILD_FAILED:  # why it failed, in its own words (invalid_output too)
                detail += " | log: " + " / ".join(last)
            checklist.items.append(Item(False, case, safe_text(detail, limit=600), fix))
        details = json.loads(row.details) if row.details else {}
        extra = details.get("not_kept")
        if extra:
            checklist.items.append(Item(None, case, f"wrote files outside the contract (not kept): "
                                        f"{safe_text(', '.join(map(str, extra[:5])), limit=300)}",
                                        "write only the contract's outputs"))
