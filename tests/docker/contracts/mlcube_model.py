"""An MLCube / MedPerf model container, written from their documentation (stdlib only).

`infer --data_path=DIR --parameters_file=FILE --output_path=DIR [--weights=FILE]`: for every
`<case>_0000.nii.gz` in data_path (or in data_path/<case>/, a legacy cube's layout), writes
`<case>.nii.gz` into output_path, a box of label 1 shifted by `offset` from the parameters file
(YAML `offset: N`). The file `mode` beside it may say
`wrong_name` (writes prediction.nii.gz instead: a contract violation).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from behave import box_label  # noqa: E402

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "infer":
        print(f"usage: infer --data_path=... --parameters_file=... --output_path=... (got {argv})", file=sys.stderr)
        return 2
    args = dict(a[2:].split("=", 1) for a in argv[1:])
    params = dict(line.split(":", 1) for line in Path(args["parameters_file"]).read_text().splitlines() if ":" in line)
    offset = int(params["offset"])
    if "weights" in args:
        Path(args["weights"]).read_bytes()  # the workspace's read-only inputs are there
    mode = (HERE / "mode").read_text().strip()
    output = Path(args["output_path"])
    data = Path(args["data_path"])  # the case file itself, or in a folder of its own (MLCube's per-case layout)
    for image in sorted([*data.glob("*_0000.nii.gz"), *data.glob("*/*_0000.nii.gz")]):
        case = image.name[: -len("_0000.nii.gz")]
        name = "prediction.nii.gz" if mode == "wrong_name" else f"{case}.nii.gz"
        (output / name).write_bytes(box_label(image, offset=offset))
        print(f"{case}: wrote {output / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
