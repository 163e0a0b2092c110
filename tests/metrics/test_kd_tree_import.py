"""The KD-tree is scipy's own `cKDTree`, loaded without `scipy.spatial`'s package start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_kd_tree_loads_without_scipy_spatial_package_and_is_its_class() -> None:
    out = _run("""
        import sys
        import numpy as np
        from harness.metrics.surface import kd_tree_class
        tree = kd_tree_class()
        loaded_alone = "scipy.spatial" not in sys.modules
        points = np.random.default_rng(0).random((200, 3))
        queries = np.random.default_rng(1).random((50, 3))
        d_ours, i_ours = tree(points, leafsize=32, balanced_tree=False, compact_nodes=False).query(queries, k=1)
        from scipy.spatial import cKDTree
        d_ref, i_ref = cKDTree(points).query(queries, k=1)
        print(loaded_alone, tree is cKDTree, bool((d_ours == d_ref).all() and (i_ours == i_ref).all()))
    """)
    assert out == "True True True"


def test_kd_tree_after_scipy_spatial_is_the_package_class() -> None:
    out = _run("""
        from scipy.spatial import cKDTree
        from harness.metrics.surface import kd_tree_class
        print(kd_tree_class() is cKDTree)
    """)
    assert out == "True"
