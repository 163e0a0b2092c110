"""Stands in for nnU-Net v2's `nnUNetv2_predict` (stdlib only): -i IN -o OUT -d D -c C [-f F ...]
[-tr T] [-p P] [-chk C] [--disable_tta] [-device D] [--save_probabilities]; each CASE_0000.nii.gz in
IN -> CASE.nii.gz in OUT (no probabilities here: writes_probabilities is false)."""

import argparse
from pathlib import Path

from box import box_label

parser = argparse.ArgumentParser()
for option, default in (("-i", None), ("-o", None), ("-d", None), ("-c", None), ("-tr", "nnUNetTrainer"),
                        ("-p", "nnUNetPlans"), ("-chk", "checkpoint_final.pth"), ("-device", "cuda")):
    parser.add_argument(option, required=default is None, default=default)
parser.add_argument("-f", nargs="+", default=["0", "1", "2", "3", "4"])
parser.add_argument("--disable_tta", action="store_true")
parser.add_argument("--save_probabilities", action="store_true")
args = parser.parse_args()
print(f"model {args.d}/{args.tr}__{args.p}__{args.c}, folds {args.f}, {args.chk}, device {args.device}")
for image in sorted(Path(args.i).glob("*_0000.nii.gz")):
    (Path(args.o) / image.name.replace("_0000.nii.gz", ".nii.gz")).write_bytes(box_label(image))
