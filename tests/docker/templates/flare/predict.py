"""A FLARE team's predict.py: every /workspace/inputs/<case>_0000.nii.gz -> /workspace/outputs/<case>.nii.gz,
label 1 where the CT is above its mean. Like many teams' scripts it first writes a preprocessed copy of
the case (float32, .npy) into a scratch folder of its working directory and reads it back."""

import argparse
from pathlib import Path

import numpy
import SimpleITK


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-i", required=True)
    parser.add_argument("-o", required=True)
    parser.add_argument("--scratch", required=True)
    args = parser.parse_args()
    scratch = Path(args.scratch)
    for path in sorted(Path(args.i).glob("*_0000.nii.gz")):
        case = path.name[: -len("_0000.nii.gz")]
        image = SimpleITK.ReadImage(str(path))
        preprocessed = scratch / f"{case}.npy"
        numpy.save(preprocessed, SimpleITK.GetArrayFromImage(image).astype(numpy.float32))
        array = numpy.load(preprocessed)
        label = SimpleITK.GetImageFromArray((array > array.mean()).astype(numpy.uint8))
        label.CopyInformation(image)
        SimpleITK.WriteImage(label, str(Path(args.o) / f"{case}.nii.gz"), useCompression=True)
        preprocessed.unlink()
        print(f"{case}: done")


if __name__ == "__main__":
    main()
