"""The challenge file's [teams] and [phases.<name>]: resolved into values, every mistake one line
naming the key; `harness run --challenge` reads the same file and ignores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.challenge import load_challenge
from harness.errors import SpecError
from harness.phases.config import Policy, load_challenge_config

BASE = """name = "weeks"
profile = "flare22"
[limits]
time_limit_s = 900
cpus = 4
[teams]
names = ["alpha", "bravo"]
[phases.validation]
data = "data/v"
policy = "latest"
quota_total = 4
quota_per_day = 2
[phases.final]
data = "data/t"
[phases.final.limits]
time_limit_s = 300
"""


def test_phases_resolve_into_values(tmp_path: Path) -> None:
    path = tmp_path / "challenge.toml"
    path.write_text(BASE)
    config = load_challenge_config(path)
    assert config.teams == ("alpha", "bravo")
    assert [p.name for p in config.phases] == ["validation", "final"]
    validation, final = config.phases
    assert validation.policy is Policy.LATEST and (validation.quota_total, validation.quota_per_day) == (4, 2)
    assert final.policy is Policy.BEST and final.quota_total == 1_000_000
    assert validation.data_dir == tmp_path / "data" / "v"
    assert validation.challenge.limits.time_limit_s == 900 and final.challenge.limits.time_limit_s == 300
    assert final.challenge.limits.cpus == 4  # the challenge's other caps still hold in the phase
    assert validation.ranking.name == "flare22" and validation.ranking_source == "built-in"
    assert load_challenge(path).limits.time_limit_s == 900  # `harness run --challenge` reads it as before


@pytest.mark.parametrize(("change", "message"), [
    (('policy = "latest"', 'policy = "newest"'), "phase 'validation': key 'policy' = 'newest'; use one of best, latest, all"),
    (("quota_total = 4", "quota_total = 0"), "key 'quota_total' = 0; use a whole number >= 1"),
    (('names = ["alpha", "bravo"]', 'names = ["alpha", "alpha-2"]'), "'alpha' is part of 'alpha-2'"),
    (('names = ["alpha", "bravo"]', 'names = ["Alpha"]'), "key 'teams.names' holds 'Alpha'"),
    (("quota_per_day = 2", "quota_per_day = 2\nopens = 1"), "unknown key 'opens'"),
    (('[phases.final.limits]\ntime_limit_s = 300', '[phases.final.limits]\nmemory = "lots"'), "limits.memory"),
])
def test_each_mistake_is_one_line_naming_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "challenge.toml"
    path.write_text(BASE.replace(*change))
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_challenge_config(path)


def test_a_file_without_phases_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "challenge.toml"
    path.write_text('name = "x"\n[teams]\nnames = ["alpha"]\n')
    with pytest.raises(SpecError, match=r"no \[phases.<name>\] table"):
        load_challenge_config(path)
