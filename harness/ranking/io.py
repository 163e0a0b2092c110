"""Reading a scores table and writing the ranking tables: the ranking's only disk access.

`load_scores(path)` returns the tidy table from the results store (a results folder holding
`store.sqlite`, or that file), from a CSV or parquet file, or from a folder holding
`scores.parquet` or `scores.csv`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.errors import DataError
from harness.layout import STORE_FILE, ResultsLayout
from harness.ranking.challenge import ChallengeRanking
from harness.ranking.config import RankingConfig
from harness.ranking.table import to_tidy
from harness.store import read_store_organ_scores, read_store_scores

Reader = Callable[[Path], pd.DataFrame]

_TEXT_COLUMNS = {"algorithm": str, "case": str, "metric": str, "status": str}


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=_TEXT_COLUMNS, keep_default_na=True)  # type: ignore[arg-type]


def _read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def _read_store(path: Path) -> pd.DataFrame:
    # The store keeps what was measured; failed runs keep their status, so the worst values are
    # applied by the ranking, as for any other table.
    return read_store_scores(path.parent)


_READERS: dict[str, Reader] = {".csv": _read_csv, ".parquet": _read_parquet, ".pq": _read_parquet, ".sqlite": _read_store}
# Looked for, in this order, when the path is a folder.
_DIRECTORY_NAMES: list[str] = [STORE_FILE, "scores.parquet", "scores.csv"]


def resolve_scores_path(path: str | Path) -> Path:
    """The scores file for `path`: the file itself, or the first known file in a folder."""
    path = Path(path)
    if path.is_dir():
        for name in _DIRECTORY_NAMES:
            candidate = path / name
            if candidate.is_file():
                return candidate
        raise DataError(
            f"{path}: no {' or '.join(_DIRECTORY_NAMES)} in this folder; pass the scores file "
            "itself with --results"
        )
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; check the --results path")
    return path


def load_scores(path: str | Path, config: RankingConfig | None = None) -> pd.DataFrame:
    """The tidy scores table (algorithm, case, metric, value, status) read from `path` under the
    ranking configuration `config` (`to_tidy`: its `ok_status` for rows without a status, its
    metrics kept of a per-organ table's extra columns)."""
    file = resolve_scores_path(path)
    reader = _READERS.get(file.suffix.lower())
    if reader is None:
        raise DataError(
            f"{file}: unknown scores format {file.suffix!r}; use one of "
            f"{', '.join(sorted(_READERS))}"
        )
    try:
        raw = reader(file)
    except pd.errors.EmptyDataError:
        raise DataError(f"{file}: the file is empty; score some cases first") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{file}: cannot read the scores ({first_line}); re-export it") from None
    return to_tidy(raw, config, source=str(file))


def load_organ_scores(path: str | Path) -> pd.DataFrame | None:
    """The tidy per-organ table (algorithm, case, organ, metric, value, status) that ranks each organ
    as a task, from a results store; None for a scores file (it holds no organs the ranking reads)."""
    file = resolve_scores_path(path)
    if file.name != STORE_FILE:
        return None
    return read_store_organ_scores(file.parent)


def default_out_dir(results: str | Path) -> Path:
    """`ranking/` beside the scores file, or inside the scores folder."""
    results = Path(results)
    return ResultsLayout(results if results.is_dir() else results.parent).ranking_dir


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_ranking_tables(result: ChallengeRanking, out_dir: str | Path) -> list[Path]:
    """Write the ranking tables as CSV into `out_dir` (created); returns the paths written.

    leaderboard.csv, bootstrap_ranks.csv, tau.csv, tau_summary.csv, per_case_ranks.csv,
    method_ranks.csv, one significance_<metric>.csv per metric, and with organs ranked as tasks
    task_ranks.csv and task_stability.csv.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out}: cannot create the output folder ({exc.strerror}); "
                        "choose another --out") from None
    boot = result.bootstrap
    tables: dict[str, pd.DataFrame] = {
        "leaderboard.csv": result.leaderboard,
        "bootstrap_ranks.csv": boot.to_frame(),
        "tau.csv": pd.DataFrame({"draw": range(1, boot.n_draws + 1), "tau": boot.tau}),
        "tau_summary.csv": pd.DataFrame(
            [{"variant": boot.variant, "seed": boot.seed, **boot.tau_summary().to_dict()}]
        ),
        "per_case_ranks.csv": result.per_case_ranks(),
    }
    if result.method_ranks is not None:
        tables["method_ranks.csv"] = result.method_ranks.reset_index()
    if result.tasks is not None:
        tables["task_ranks.csv"] = result.tasks.ranking.to_frame()
        tables["task_stability.csv"] = result.tasks.stability_frame()
    for name, matrix in result.significance.items():
        tables[f"significance_{_safe(name)}.csv"] = matrix
    written = []
    for filename, frame in tables.items():
        target = out / filename
        index = filename.startswith("significance_")
        try:
            frame.to_csv(target, index=index)
        except OSError as exc:
            raise DataError(
                f"{target}: cannot write ({exc.strerror}); choose another --out"
            ) from None
        written.append(target)
    return written


__all__ = [
    "default_out_dir",
    "load_organ_scores",
    "load_scores",
    "resolve_scores_path",
    "write_ranking_tables",
]
