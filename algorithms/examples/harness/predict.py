"""The harness contract: /input/<case>_0000.nii.gz (read-only) -> /output/<case>.nii.gz."""

import sys
from pathlib import Path

from box import box_label

for image in sorted(Path(sys.argv[1]).glob("*_0000.nii.gz")):
    (Path(sys.argv[2]) / image.name.replace("_0000.nii.gz", ".nii.gz")).write_bytes(box_label(image))
