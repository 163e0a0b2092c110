"""Fixtures of the ranking tests: challengeR's golden outputs and small synthetic tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# challengeR's outputs, committed (origin: tests/fixtures/README.md), so a fresh clone tests against them.
GOLDEN_DIR = REPO_ROOT / "tests" / "fixtures" / "challenger-golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    assert GOLDEN_DIR.is_dir(), f"{GOLDEN_DIR} is missing: it is committed with the tests"
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden_input(golden_dir: Path) -> pd.DataFrame:
    """input_long.csv in the harness's tidy column names (metric DSC or Time)."""
    raw = pd.read_csv(golden_dir / "input_long.csv")
    return raw.rename(columns={"alg": "algorithm", "task": "metric"})[
        ["algorithm", "case", "metric", "value"]
    ]


@pytest.fixture(scope="session")
def golden_dsc(golden_input: pd.DataFrame) -> pd.DataFrame:
    return golden_input[golden_input["metric"] == "DSC"].reset_index(drop=True)


@pytest.fixture()
def make_flare_table():
    """Factory of synthetic wide tables: make_flare_table(n_algorithms, n_cases, seed=...)."""
    return synthetic_flare_table


def synthetic_flare_table(
    n_algorithms: int = 5, n_cases: int = 8, *, seed: int = 0
) -> pd.DataFrame:
    """A wide FLARE-like table (dsc, nsd, time_s, auc_gpu_mb_s, auc_cpu_pct_s, status)."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_algorithms):
        skill = rng.uniform(0.6, 0.9)
        for c in range(n_cases):
            rows.append(
                {
                    "algorithm": f"alg{a}",
                    "case": f"case{c:02d}",
                    "dsc": round(float(np.clip(skill + rng.normal(0, 0.05), 0, 1)), 4),
                    "nsd": round(float(np.clip(skill + rng.normal(0, 0.05), 0, 1)), 4),
                    "time_s": round(float(rng.uniform(10, 60)), 1),
                    "auc_gpu_mb_s": round(float(rng.uniform(1e4, 1e5)), 0),
                    "auc_cpu_pct_s": round(float(rng.uniform(500, 5000)), 0),
                    "status": "ok",
                }
            )
    return pd.DataFrame(rows)
