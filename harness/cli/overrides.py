"""The command line's overrides of a ranking configuration, applied once, where options are read."""

from __future__ import annotations

import dataclasses

from harness.ranking.config import RankingConfig


def with_overrides(config: RankingConfig, **overrides: object) -> RankingConfig:
    """`config` with the options that were given (None: keep the config's value), by
    `dataclasses.replace`: `seed`, `n_draws` (a count of bootstrap draws), `bootstrap`, `method`,
    `aggregate`. The layers below read the config alone."""
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


__all__ = ["with_overrides"]
