"""nnUNetv2_predict's command line (option names, defaults and required ones as in nnU-Net v2's
predict_entry_point) over a trivial model: the model folder is found as nnU-Net finds it, each fold's
checkpoint must exist, and the prediction is a box shifted by the number in the first fold's
checkpoint. Outputs as nnU-Net writes them: CASE.nii.gz, plans.json, dataset.json,
predict_from_raw_data_args.json, and with --save_probabilities CASE.npz (`probabilities`, float16,
channels first, spatial axes z, y, x) and CASE.pkl."""

import argparse
import gzip
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

from nnunetv2.inference.box import box_label

LABELS = 14  # background and the 13 FLARE22 organs, as the trained model's dataset.json would say


def _npy(shape, payload):
    header = repr({"descr": "<f2", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def predict_entry_point():
    parser = argparse.ArgumentParser(description="nnUNetv2_predict (stand-in)")
    parser.add_argument("-i", type=str, required=True)
    parser.add_argument("-o", type=str, required=True)
    parser.add_argument("-d", type=str, required=True)
    parser.add_argument("-p", type=str, required=False, default="nnUNetPlans")
    parser.add_argument("-tr", type=str, required=False, default="nnUNetTrainer")
    parser.add_argument("-c", type=str, required=True)
    parser.add_argument("-f", nargs="+", type=str, required=False, default=(0, 1, 2, 3, 4))
    parser.add_argument("-step_size", type=float, required=False, default=0.5)
    parser.add_argument("--disable_tta", action="store_true", required=False, default=False)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--save_probabilities", action="store_true")
    parser.add_argument("--continue_prediction", action="store_true")
    parser.add_argument("-chk", type=str, required=False, default="checkpoint_final.pth")
    parser.add_argument("-npp", type=int, required=False, default=3)
    parser.add_argument("-nps", type=int, required=False, default=3)
    parser.add_argument("-prev_stage_predictions", type=str, required=False, default=None)
    parser.add_argument("-num_parts", type=int, required=False, default=1)
    parser.add_argument("-part_id", type=int, required=False, default=0)
    parser.add_argument("-device", type=str, default="cuda", required=False)
    parser.add_argument("--disable_progress_bar", action="store_true", required=False, default=False)
    parser.add_argument("--not_on_device", action="store_true", required=False, default=False)
    args = parser.parse_args()
    if args.device not in ("cpu", "cuda", "mps"):
        sys.exit(f"-device must be either cpu, mps or cuda. Got: {args.device}.")
    if args.device == "cuda" and not os.path.exists("/dev/nvidia0"):
        sys.exit("RuntimeError: Found no NVIDIA driver on your system.")  # what torch says without a GPU
    model = Path(os.environ["nnUNet_results"]) / args.d / f"{args.tr}__{args.p}__{args.c}"
    folds = [f if f == "all" else int(f) for f in args.f]
    checkpoints = [model / (f"fold_{f}" if f != "all" else "fold_all") / args.chk for f in folds]
    for checkpoint in checkpoints:
        if not checkpoint.is_file():
            sys.exit(f"FileNotFoundError: {checkpoint}")
    offset = int(checkpoints[0].read_text())
    out = Path(args.o)
    out.mkdir(parents=True, exist_ok=True)
    for image in sorted(Path(args.i).glob("*_0000.nii.gz")):
        case = image.name[: -len("_0000.nii.gz")]
        label = box_label(image, offset=offset)
        (out / f"{case}.nii.gz").write_bytes(label)
        for side in ("plans.json", "dataset.json", "predict_from_raw_data_args.json"):
            (out / side).write_text(json.dumps({"model": str(model)}))
        if args.save_probabilities:
            raw = gzip.decompress(label)
            nx, ny, nz = struct.unpack("<3h", raw[42:48])
            voxels = raw[352:]
            one, zero = struct.pack("<e", 1.0), struct.pack("<e", 0.0)
            channels = [b"".join(zero if v else one for v in voxels), b"".join(one if v else zero for v in voxels)]
            channels += [zero * len(voxels)] * (LABELS - 2)
            with zipfile.ZipFile(out / f"{case}.npz", "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("probabilities.npy", _npy((LABELS, nz, ny, nx), b"".join(channels)))
            (out / f"{case}.pkl").write_bytes(pickle.dumps({"spacing": None}))
        print(f"{case}: done")


if __name__ == "__main__":
    predict_entry_point()
