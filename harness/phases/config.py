"""A challenge's teams and phases, read from the organiser's challenge file into frozen values.

    [teams]
    names = ["alpha", "beta", "gamma"]   # registered teams: [a-z0-9][a-z0-9-]*, no other team's prefix

    [phases.validation]                  # one table per phase, in the order they run
    data = "data/validation"             # the phase's data set (relative to this file)
    profile = "flare22"                  # optional: the challenge's profile by default
    ranking = "ranking.toml"             # optional: a ranking TOML (`harness rank --config`); FLARE22's by default
    policy = "best"                      # best (by the ranking's own score), latest, or all
    quota_total = 10                     # accepted submissions per team in the phase
    quota_per_day = 2                    # accepted submissions per team per UTC day of arrival
    [phases.validation.limits]           # optional: caps of this phase, over the challenge's [limits]
    time_limit_s = 600

A phase is the challenge's machinery (store, runner, scoring, ranking, report) with these rules on
top: `Phase.challenge` is the ordinary `Challenge` its submissions are admitted and scored under.
"""

from __future__ import annotations

import enum
import hashlib
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from harness.challenge import Challenge, load_challenge, parse_limits
from harness.errors import SpecError
from harness.profiles import load_profile
from harness.ranking import FLARE22_RANKING, RankingConfig, load_ranking_config

TEAM = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_PHASE_KEYS = {"data", "profile", "ranking", "policy", "quota_total", "quota_per_day", "limits"}


class Policy(enum.StrEnum):
    """Which of a team's submissions the leaderboard shows."""

    BEST = "best"  # the one the ranking of all the phase's submissions puts first (earlier on a tie)
    LATEST = "latest"  # the last to arrive, whatever its result
    ALL = "all"  # every submission is an entry of its own


@dataclass(frozen=True)
class Phase:
    """One phase: its data, the challenge its submissions run under, its ranking, quota and policy."""

    name: str
    data_dir: Path
    challenge: Challenge
    ranking: RankingConfig
    ranking_source: str  # "built-in" or the ranking file's absolute path
    policy: Policy
    quota_total: int
    quota_per_day: int


@dataclass(frozen=True)
class ChallengeConfig:
    """The whole challenge: its file, its hash, the registered teams and the phases in order."""

    source: Path
    sha256: str
    challenge: Challenge
    teams: tuple[str, ...]
    phases: tuple[Phase, ...]

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise SpecError(f"{self.source}: no phase {name!r}; its phases: {', '.join(p.name for p in self.phases)}")


def load_challenge_config(path: Path) -> ChallengeConfig:
    """The teams and phases of challenge file `path`; every problem is a SpecError naming the key."""
    path = Path(path).resolve()
    challenge = load_challenge(path)  # the file's own checks first (syntax, keys, [limits])
    raw_bytes = path.read_bytes()
    raw = tomllib.loads(raw_bytes.decode("utf-8"))
    teams_raw = raw.get("teams", {})
    if not isinstance(teams_raw, dict) or set(teams_raw) != {"names"} or not isinstance(teams_raw["names"], list):
        raise SpecError(f"{path}: key 'teams' must be a table with one key, names = [\"team-a\", ...]")
    teams: list[str] = []
    for team in teams_raw["names"]:
        if not isinstance(team, str) or not TEAM.fullmatch(team):
            raise SpecError(f"{path}: key 'teams.names' holds {team!r}; use lower-case letters, digits and '-' (at most 40)")
        if team in teams:
            raise SpecError(f"{path}: key 'teams.names' names {team!r} twice; list each team once")
        teams.append(team)
    for team in teams:  # a team's name inside another's would make "nothing of another team" unprovable
        other = next((t for t in teams if t != team and team in t), None)
        if other is not None:
            raise SpecError(f"{path}: key 'teams.names': {team!r} is part of {other!r}; give teams names that do not "
                            "contain each other")
    phases_raw = raw.get("phases", {})
    if not isinstance(phases_raw, dict) or not phases_raw:
        raise SpecError(f"{path}: no [phases.<name>] table; add one per phase (see README, 'A challenge over weeks')")
    base_limits = raw.get("limits", {})
    phases = tuple(_phase(name, value, path, challenge, base_limits) for name, value in phases_raw.items())
    return ChallengeConfig(source=path, sha256=hashlib.sha256(raw_bytes).hexdigest(), challenge=challenge,
                           teams=tuple(teams), phases=phases)


def _phase(name: str, raw: object, path: Path, challenge: Challenge, base_limits: object) -> Phase:
    where = f"{path}: phase {name!r}"
    if not TEAM.fullmatch(name):
        raise SpecError(f"{where}: use lower-case letters, digits and '-' for a phase's name")
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a table [phases.{name}]")
    unknown = sorted(set(raw) - _PHASE_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key '{unknown[0]}'; allowed: {', '.join(sorted(_PHASE_KEYS))}")
    if not isinstance(raw.get("data"), str):
        raise SpecError(f"{where}: key 'data' missing; give the phase's data folder (relative to {path.name})")
    data_dir = (path.parent / raw["data"]).resolve()
    values = {}
    for key in ("quota_total", "quota_per_day"):
        value = raw.get(key, 1_000_000)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{where}: key '{key}' = {value!r}; use a whole number >= 1")
        values[key] = value
    try:
        policy = Policy(raw.get("policy", "best"))
    except ValueError:
        raise SpecError(f"{where}: key 'policy' = {raw.get('policy')!r}; use one of {', '.join(Policy)}") from None
    ranking, ranking_source = FLARE22_RANKING, "built-in"
    if "ranking" in raw:
        if not isinstance(raw["ranking"], str):
            raise SpecError(f"{where}: key 'ranking' = {raw['ranking']!r}; give a ranking TOML file")
        ranking_file = (path.parent / raw["ranking"]).resolve()
        ranking, ranking_source = load_ranking_config(ranking_file), str(ranking_file)
    phase_challenge = challenge
    if "profile" in raw:
        if not isinstance(raw["profile"], str):
            raise SpecError(f"{where}: key 'profile' = {raw['profile']!r}; a built-in name or a profile TOML file")
        phase_challenge = replace(phase_challenge, profile=load_profile(raw["profile"], relative_to=path.parent))
    if "limits" in raw:
        if not isinstance(raw["limits"], dict) or not isinstance(base_limits, dict):
            raise SpecError(f"{where}: key 'limits' must be a table [phases.{name}.limits]")
        phase_challenge = replace(phase_challenge, limits=parse_limits({**base_limits, **raw["limits"]}, path))
    phase_challenge = replace(phase_challenge, name=f"{challenge.name}/{name}")
    return Phase(name=name, data_dir=data_dir, challenge=phase_challenge, ranking=ranking, ranking_source=ranking_source,
                 policy=policy, quota_total=values["quota_total"], quota_per_day=values["quota_per_day"])
