"""`infer --data_path=DIR --parameters_file=FILE --checkpoint_path=FILE --output_path=DIR` (MLCube's
legacy runner passes them so): one folder per case in data_path, <case>.nii.gz written to
output_path. A parameters file or checkpoint that does not exist (FeTS's "null") means the ones in
the image, as FeTS's template does."""

import sys
from pathlib import Path

from box import box_label

task, *options = sys.argv[1:]
if task != "infer":
    sys.exit(f"unknown task {task!r}")
args = dict(option[2:].split("=", 1) for option in options)
checkpoint = Path(args["checkpoint_path"])
if not checkpoint.exists():
    checkpoint = Path(__file__).parent / "model_ckpts"
print(f"model: {sorted(p.name for p in checkpoint.iterdir())}")
for case in sorted(Path(args["data_path"]).iterdir()):
    if case.is_dir():
        (image,) = case.glob("*.nii.gz")
        (Path(args["output_path"]) / f"{case.name}.nii.gz").write_bytes(box_label(image))
