"""harness: challenge-style evaluation of 3D medical image segmentation."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "medseg-harness"  # the name on the package index (`harness` there is another project)

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
