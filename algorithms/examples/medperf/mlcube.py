"""`infer --data_path=DIR --parameters_file=FILE --output_path=DIR` (MedPerf's run_args.command):
each <case>_0000.nii.gz in data_path -> <case>.nii.gz in output_path."""

import sys
from pathlib import Path

from box import box_label

task, *options = sys.argv[1:]
args = dict(option[2:].split("=", 1) for option in options)
print(Path(args["parameters_file"]).read_text().strip())
for image in sorted(Path(args["data_path"]).glob("*_0000.nii.gz")):
    (Path(args["output_path"]) / image.name.replace("_0000.nii.gz", ".nii.gz")).write_bytes(box_label(image))
