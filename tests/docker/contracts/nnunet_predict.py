"""A stand-in for `nnUNetv2_predict`, written from nnU-Net's documentation (stdlib only).

`-i IN -o OUT [-d D -c C -f F] [--save_probabilities]`: for every `CASE_0000.nii.gz` in IN writes
`CASE.nii.gz` (a box of label 1, shifted by the number after -f), nnU-Net's side files
(plans.json, dataset.json, predict_from_raw_data_args.json) and, with --save_probabilities,
`CASE.npz` holding `probabilities` (float16, channels first: one per label 0..13, spatial axes z, y, x as
nnU-Net's readers give them) and `CASE.pkl`. The file `mode` beside it may say `wide` (256 channels, streamed) or `xyz` (the array's
axes in the wrong order: a contract violation).
"""

import gzip
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from behave import box_label  # noqa: E402

HERE = Path(__file__).parent
LABELS = 14  # background and the 13 FLARE22 organs


def npy(shape: tuple[int, ...], payload: bytes) -> bytes:
    header = repr({"descr": "<f2", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def main(argv: list[str]) -> int:
    args: dict[str, str] = {}
    flags = set()
    it = iter(argv)
    for a in it:
        if a.startswith("--"):
            flags.add(a)
        else:
            args[a] = next(it)
    offset = int(args.get("-f", "0"))
    out = Path(args["-o"])
    mode = (HERE / "mode").read_text().strip()
    for image in sorted(Path(args["-i"]).glob("*_0000.nii.gz")):
        case = image.name[: -len("_0000.nii.gz")]
        label = box_label(image, offset=offset)
        (out / f"{case}.nii.gz").write_bytes(label)
        for side in ("plans.json", "dataset.json", "predict_from_raw_data_args.json"):
            (out / side).write_text(json.dumps({"written_by": "stand-in"}))
        if "--save_probabilities" in flags:
            raw = gzip.decompress(label)
            nx, ny, nz = struct.unpack("<3h", raw[42:48])
            voxels = raw[352:]
            one, zero = struct.pack("<e", 1.0), struct.pack("<e", 0.0)
            channels = [b"".join(zero if v else one for v in voxels), b"".join(one if v else zero for v in voxels)]
            channels += [zero * len(voxels)] * (LABELS - 2)
            shape = (LABELS, nx, ny, nz) if mode == "xyz" else (LABELS, nz, ny, nx)
            if mode == "wide":  # 256 channels (a bomb for a reader that inflates them all), streamed
                shape = (256, nz, ny, nx)
                with zipfile.ZipFile(out / f"{case}.npz", "w", zipfile.ZIP_DEFLATED) as archive:
                    with archive.open("probabilities.npy", "w", force_zip64=True) as member:
                        member.write(npy(shape, b""))
                        for channel in channels + [zero * len(voxels)] * (256 - len(channels)):
                            member.write(channel)
            else:
                with zipfile.ZipFile(out / f"{case}.npz", "w", zipfile.ZIP_DEFLATED) as archive:
                    archive.writestr("probabilities.npy", npy(shape, b"".join(channels)))
            (out / f"{case}.pkl").write_bytes(pickle.dumps({"spacing": None}))
        print(f"{case}: wrote {out}/{case}.nii.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
