"""A grand-challenge algorithm in the shape of the forge's example algorithm, written for harness's
tests from the platform's documented runtime contract (no code taken from the forge).

The platform starts the container's entry point (`python inference.py`, working directory
/opt/app, the image's own user) once per job:

- /input/inputs.json lists the job's socket values; the sorted tuple of their slugs names the
  interface, and each interface has a function of its own below.
- an image socket's file is /input/<relative_path>/<something>.mha (or .tif/.tiff); the CT
  socket `ct-image` keeps it under images/ct.
- the uploaded model tarball is extracted, read-only, at /opt/ml/model; files shipped inside the
  image would be read relative to the working directory.
- the one output image goes to /output/images/<output slug>/, as a single .mha.

The prediction is the trivial model of the tests: label 1 where the CT is brighter than its mean.
It is written with `SimpleITK.GetImageFromArray`, i.e. without the input's spacing, origin or
direction, as the template writes it.
"""

import json
from glob import glob
from pathlib import Path

import numpy
import SimpleITK
import torch

INPUTS = Path("/input")
OUTPUTS = Path("/output")
MODEL = Path("/opt/ml/model")
IMAGE_PATTERNS = ("*.tif", "*.tiff", "*.mha")


def socket_values() -> list[dict]:
    """The job's socket values, as the platform describes them in inputs.json."""
    return json.loads((INPUTS / "inputs.json").read_text())


def interface_of(values: list[dict]) -> tuple[str, ...]:
    """The interface a job uses: the slugs of its input sockets, sorted."""
    return tuple(sorted(value["interface"]["slug"] for value in values))


def first_image(folder: Path) -> numpy.ndarray:
    """The voxels of the first image file in a socket's folder (axes z, y, x, as SimpleITK gives them)."""
    candidates = [name for pattern in IMAGE_PATTERNS for name in glob(str(folder / pattern))]
    return SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(candidates[0]))


def save_image(folder: Path, voxels: numpy.ndarray) -> None:
    """`voxels` as <folder>/output.mha, compressed; no geometry is given to the image."""
    folder.mkdir(parents=True, exist_ok=True)
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(voxels), folder / "output.mha", useCompression=True)


def report_accelerator() -> str:
    """Say what torch sees, and pick the GPU when there is one."""
    found = torch.cuda.is_available()
    print("-" * 30)
    print(f"torch sees a CUDA device: {found}")
    if found:
        which = torch.cuda.current_device()
        print(f"  devices: {torch.cuda.device_count()}, using {which}: {torch.cuda.get_device_properties(which)}")
    print("-" * 30)
    return "cuda" if found else "cpu"


def segment_ct() -> int:
    """The interface with one input socket, ct-image, and one output, abdominal-organ-segmentation."""
    ct = first_image(INPUTS / "images" / "ct")

    device = torch.device(report_accelerator())
    print(f"Using device: {device}")
    layer = torch.nn.Linear(10, 1).to(device)
    layer(torch.randn(1, 10).to(device))  # a forward pass on the chosen device

    # The model as the platform delivers it: the tarball's contents under /opt/ml/model.
    print((MODEL / "a_tarball_subdirectory" / "some_tarball_resource.txt").read_text())

    labels = (ct > ct.mean()).astype(numpy.uint8)  # the participant's model goes here
    save_image(OUTPUTS / "images" / "abdominal-organ-segmentation", labels)
    return 0


HANDLERS = {("ct-image",): segment_ct}


def main() -> int:
    return HANDLERS[interface_of(socket_values())]()


if __name__ == "__main__":
    raise SystemExit(main())
