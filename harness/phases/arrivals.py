"""Arrivals: a team's upload in the drop folder becomes submission n of its team, or is refused with
its reason; every decision is a line of the phase's intake log.

An upload is `drop/<phase>/<team>/<upload>`: a folder holding exactly one `<name>/algorithm.toml`
(the usual manifest: a Dockerfile, a pinned image or an image archive, its files beside it; paths
in it are relative to the upload's top folder), or a .tar/.tar.gz of such a folder. In order:

1. the team must be registered (`[teams] names`), else `unregistered` (moved aside, never run);
2. nobody may be writing it: two snapshots `settle_s` apart must be equal and a tar must read to
   its end, else `partial` (left in place and looked at again on the next pass, never run);
3. its manifest must load and fit the phase's challenge (label system, caps), else `invalid`;
4. the team must be under the phase's quota (total, and per UTC day of arrival), else `over_quota`.

An accepted upload is copied (through `harness.intake`) into a hidden folder, its record
(`submission.json`: arrival time from the harness's clock, never a file's mtime) written, and the
folder renamed into place in one step; only then is the log line written and the upload removed
from the drop folder. A process killed at any moment leaves either no submission or a whole one;
an upload whose copy was already accepted (same team, name and content) is only removed.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import SpecError
from harness.intake import PartialUpload, SubmissionError, shown, unpack_upload, upload_snapshot
from harness.phases.config import ChallengeConfig, Phase
from harness.phases.layout import SUBMISSION_FILE, UPLOAD_DIR, ChallengeLayout
from harness.safetext import safe_text
from harness.spec import AlgorithmSpec, load_manifest

Clock = Callable[[], datetime]
Say = Callable[[str], None]
UPLOAD_BYTES = 8 * 1024**3  # an upload's files (an image archive inside it included)


class Decision(enum.StrEnum):
    ACCEPTED = "accepted"
    UNREGISTERED = "unregistered"
    PARTIAL = "partial"
    INVALID = "invalid"
    OVER_QUOTA = "over_quota"
    DUPLICATE = "duplicate"  # an upload already accepted (an intake stopped before removing it)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Submission:
    """An accepted submission: team, phase, sequence number, arrival, what was uploaded."""

    phase: str
    team: str
    number: int
    arrival: str  # ISO 8601, UTC, from the harness's clock when it was accepted
    upload: str  # the upload's name in the drop folder
    sha256: str  # of its checked copy (names and bytes)
    folder: Path

    @property
    def id(self) -> str:
        """Its name in the phase's store: `<team>-<n>`."""
        return f"{self.team}-{self.number}"

    @property
    def arrived(self) -> datetime:
        return datetime.fromisoformat(self.arrival)

    def manifest(self) -> Path:
        """Its one `<name>/algorithm.toml` (SpecError when there is none or several)."""
        return _manifest_of(self.folder / UPLOAD_DIR)

    def spec(self) -> AlgorithmSpec:
        """Its manifest, loaded, under its store name (`<team>-<n>`)."""
        from dataclasses import replace

        return replace(load_manifest(self.manifest(), repo_root=self.folder / UPLOAD_DIR), name=self.id)


@dataclass(frozen=True)
class IntakeEntry:
    """One line of the intake log."""

    at: str
    phase: str
    team: str
    upload: str
    decision: str
    reason: str = ""
    submission: str = ""  # `<team>-<n>` when accepted
    sha256: str = ""


def _manifest_of(folder: Path) -> Path:
    found = sorted(folder.glob("*/algorithm.toml"))
    if len(found) != 1:
        raise SubmissionError(f"{folder.name}: holds {len(found)} <name>/algorithm.toml; an upload holds exactly one "
                              "algorithm folder with its manifest")
    return found[0]


def submissions(layout: ChallengeLayout, phase: str) -> list[Submission]:
    """Every accepted submission of a phase, by arrival (then team, number)."""
    found = []
    for record in sorted(layout.submissions(phase).glob(f"*/*/{SUBMISSION_FILE}")):
        raw = json.loads(record.read_text(encoding="utf-8"))  # written by the harness itself
        found.append(Submission(phase=phase, team=raw["team"], number=int(raw["number"]), arrival=raw["arrival"],
                                upload=raw["upload"], sha256=raw["sha256"], folder=record.parent))
    return sorted(found, key=lambda s: (s.arrival, s.team, s.number))


def read_log(layout: ChallengeLayout, phase: str) -> list[IntakeEntry]:
    path = layout.intake_log(phase)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(IntakeEntry(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a kill: the decision it was about is taken again
    return entries


def _append(layout: ChallengeLayout, entry: IntakeEntry) -> None:
    path = layout.intake_log(entry.phase)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(asdict(entry)) + "\n")
        log.flush()
        os.fsync(log.fileno())


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "_"


def _uploads(layout: ChallengeLayout, phase: str) -> list[tuple[str, Path]]:
    drop = layout.drop(phase)
    if not drop.is_dir():
        return []
    found = []
    for team_dir in sorted(drop.iterdir()):
        if team_dir.name.startswith(".") or not team_dir.is_dir() or team_dir.is_symlink():
            continue
        found += [(team_dir.name, upload) for upload in sorted(team_dir.iterdir()) if not upload.name.startswith(".")]
    return found


def intake(config: ChallengeConfig, phase: Phase, layout: ChallengeLayout, *, clock: Clock = utc_now,
           settle_s: float = 2.0, sleep: Callable[[float], None] | None = None, say: Say = lambda _m: None
           ) -> list[IntakeEntry]:
    """Take every upload of `phase`'s drop folder once: accept it as a submission or refuse it. Returns
    this pass's decisions (each also a line of the intake log)."""
    import time

    sleep = sleep or time.sleep
    root = layout.submissions(phase.name)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob("*/.*.partial"):  # a copy a killed intake left half-made
        shutil.rmtree(leftover, ignore_errors=True)
    uploads = _uploads(layout, phase.name)
    if not uploads:
        return []
    before = {path: _snapshot(path) for _, path in uploads}
    if settle_s > 0:
        sleep(settle_s)
    decisions = []
    logged = {(e.team, e.upload, e.reason) for e in read_log(layout, phase.name) if e.decision == Decision.PARTIAL}
    for team, path in uploads:
        entry = _take(config, phase, layout, team, path, changed=_snapshot(path) != before[path], clock=clock)
        if entry.decision == Decision.PARTIAL and (team, entry.upload, entry.reason) in logged:
            continue  # said once already; it stays in the drop folder until it is whole
        _append(layout, entry)
        decisions.append(entry)
        say(f"{entry.decision}: {team}/{entry.upload}" + (f" as {entry.submission}" if entry.submission else "")
            + (f" ({entry.reason})" if entry.reason else ""))
    return decisions


def _snapshot(path: Path) -> object:
    try:
        return upload_snapshot(path)
    except (OSError, SubmissionError) as exc:
        return str(exc)


def _take(config: ChallengeConfig, phase: Phase, layout: ChallengeLayout, team: str, path: Path, *, changed: bool,
          clock: Clock) -> IntakeEntry:
    now = clock().astimezone(UTC)
    upload = safe_text(path.name, limit=200)

    def refuse(decision: Decision, reason: str, *, move: bool = True, sha256: str = "") -> IntakeEntry:
        if move:
            aside = layout.refused(phase.name, _safe_name(team))
            aside.mkdir(parents=True, exist_ok=True)
            target = aside / f"{now.strftime('%Y%m%dT%H%M%S')}-{_safe_name(path.name)}"
            os.replace(path, target)
            target.with_name(target.name + ".reason.txt").write_text(f"{decision}: {reason}\n", encoding="utf-8")
        return IntakeEntry(now.isoformat(), phase.name, safe_text(team, limit=100), upload, decision, reason,
                           sha256=sha256)

    if team not in config.teams:
        return refuse(Decision.UNREGISTERED, f"team {safe_text(team, limit=100)!r} is not registered in "
                      f"{config.source.name} ([teams] names); the organiser registers teams")
    if changed:
        return refuse(Decision.PARTIAL, "still being written (its size or time changed while it was looked at); "
                      "taken once it has stopped changing", move=False)
    team_root = layout.team_submissions(phase.name, team)
    team_root.mkdir(parents=True, exist_ok=True)
    taken = [s for s in submissions(layout, phase.name) if s.team == team]
    number = 1 + max((int(p.name) for p in team_root.iterdir() if p.name.isdigit()), default=0)
    staging = team_root / f".{number}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        sha256 = unpack_upload(path, staging / UPLOAD_DIR, max_bytes=min(UPLOAD_BYTES, phase.challenge.limits.image_bytes))
    except PartialUpload as exc:
        shutil.rmtree(staging, ignore_errors=True)
        return refuse(Decision.PARTIAL, _as_sent(exc, path, upload), move=False)
    except (SubmissionError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        return refuse(Decision.INVALID, safe_text(_as_sent(exc, path, upload), limit=500))
    if any(s.upload == upload and s.sha256 == sha256 for s in taken):
        shutil.rmtree(staging, ignore_errors=True)
        _remove(path)
        first = next(s for s in taken if s.upload == upload and s.sha256 == sha256)
        return IntakeEntry(now.isoformat(), phase.name, team, upload, Decision.DUPLICATE,
                           f"already accepted as {first.id}; removed from the drop folder", sha256=sha256)
    today = sum(1 for s in taken if s.arrived.astimezone(UTC).date() == now.date())
    if len(taken) >= phase.quota_total or today >= phase.quota_per_day:
        shutil.rmtree(staging, ignore_errors=True)
        which = (f"{len(taken)} of {phase.quota_total} in the phase" if len(taken) >= phase.quota_total
                 else f"{today} of {phase.quota_per_day} on {now.date().isoformat()} (UTC)")
        return refuse(Decision.OVER_QUOTA, f"over the quota of phase {phase.name}: {which} already accepted",
                      sha256=sha256)
    try:
        manifest = _manifest_of(staging / UPLOAD_DIR)
        phase.challenge.admit(load_manifest(manifest, repo_root=staging / UPLOAD_DIR))
    except SpecError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        return refuse(Decision.INVALID, safe_text(_as_sent(exc, staging / UPLOAD_DIR, upload), limit=500), sha256=sha256)
    record = {"phase": phase.name, "team": team, "number": number, "arrival": now.isoformat(), "upload": upload,
              "sha256": sha256}
    with open(staging / SUBMISSION_FILE, "w", encoding="utf-8") as out:
        out.write(json.dumps(record, indent=1))
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, team_root / str(number))  # the submission exists whole, or not at all
    _remove(path)
    return IntakeEntry(now.isoformat(), phase.name, team, upload, Decision.ACCEPTED, submission=f"{team}-{number}",
                       sha256=sha256)


def _as_sent(exc: SpecError | OSError, root: Path, upload: str) -> str:
    """A refusal naming its file, when that lies in `root` (the upload, or its checked copy), as the team
    sent it: `<upload>[/<path inside it>]`, never a path on this host; else the message as it is."""
    path = exc.path if isinstance(exc, SpecError) else exc.filename
    if not isinstance(path, (str, os.PathLike)):  # about no one file (an OSError may name a descriptor)
        return str(exc)
    for base in (root, root.resolve()):  # a manifest names itself resolved
        if Path(path).is_relative_to(base):
            inside = Path(path).relative_to(base).as_posix()
            name = upload if inside == "." else f"{upload}/{shown(inside)}"
            return exc.about(name) if isinstance(exc, SpecError) else f"{name}: {exc.strerror}"
    return str(exc)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
