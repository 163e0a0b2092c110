"""Where a challenge keeps things: the one owner of its folder's layout (a phase's results folder
inside it is an ordinary results folder, laid out by `harness.layout`).

    <root>/                                the challenge file's folder (or --root)
      drop/<phase>/<team>/<upload>          what teams upload: a folder, or a .tar/.tar.gz of one
      submissions/<phase>/intake.jsonl      the intake log: one JSON line per decision, accepted or refused
      submissions/<phase>/<team>/<n>/       accepted submission n (1, 2, ...) of a team in a phase
          submission.json                   its arrival time (the harness's clock), upload name and sha256
          upload/                           the checked copy of the upload: <name>/algorithm.toml and its files
      refused/<phase>/<team>/<stamp>-<upload>   a refused upload, moved aside with the reason beside it
      phases/<phase>/results/               the phase's results folder (store, kept outputs, logs)
      phases/<phase>/public/                the public leaderboard: index.html, history.svg, leaderboard.csv
      phases/<phase>/teams/<team>/          one team's own feedback pages, nothing of any other team
      phases/<phase>/pages.json             what each team's pages were last written from (a hash per team)
      phases/<phase>/record.json            the verifiable record of the phase (`harness challenge record`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBMISSION_FILE = "submission.json"
UPLOAD_DIR = "upload"
INTAKE_LOG = "intake.jsonl"


@dataclass(frozen=True)
class ChallengeLayout:
    root: Path
    drop_root: Path

    @classmethod
    def of(cls, root: Path, drop: Path | None = None) -> ChallengeLayout:
        root = Path(root).resolve()
        return cls(root, Path(drop).resolve() if drop is not None else root / "drop")

    def drop(self, phase: str) -> Path:
        return self.drop_root / phase

    def submissions(self, phase: str) -> Path:
        return self.root / "submissions" / phase

    def intake_log(self, phase: str) -> Path:
        return self.submissions(phase) / INTAKE_LOG

    def team_submissions(self, phase: str, team: str) -> Path:
        return self.submissions(phase) / team

    def submission(self, phase: str, team: str, number: int) -> Path:
        return self.team_submissions(phase, team) / str(number)

    def refused(self, phase: str, team: str) -> Path:
        return self.root / "refused" / phase / team

    def phase_dir(self, phase: str) -> Path:
        return self.root / "phases" / phase

    def results(self, phase: str) -> Path:
        return self.phase_dir(phase) / "results"

    def public(self, phase: str) -> Path:
        return self.phase_dir(phase) / "public"

    def team_pages(self, phase: str, team: str) -> Path:
        return self.phase_dir(phase) / "teams" / team

    def teams_dir(self, phase: str) -> Path:
        return self.phase_dir(phase) / "teams"

    def pages_state(self, phase: str) -> Path:
        """What each team's pages were last written from (a hash per team)."""
        return self.phase_dir(phase) / "pages.json"

    def record(self, phase: str) -> Path:
        return self.phase_dir(phase) / "record.json"
