"""harness: challenge-style evaluation of 3D medical image segmentation."""

from __future__ import annotations

DISTRIBUTION = "medseg-harness"  # the name on the package index (`harness` there is another project)


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed distribution when first asked for: importlib.metadata
    and the scan of the installed packages cost `harness score` 0.03 s of CPU it does not need."""
    if name != "__version__":
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
