"""A grand-challenge algorithm (stdlib only): /input/inputs.json names the CT socket's folder under
/input; its one .mha is read, and exactly one .mha is written to
/output/images/abdominal-organ-segmentation/, on the input's grid (its geometry copied)."""

import json
from pathlib import Path

from box import box

GEOMETRY = ("ObjectType", "NDims", "BinaryData", "BinaryDataByteOrderMSB", "TransformMatrix", "Offset",
            "CenterOfRotation", "AnatomicalOrientation", "ElementSpacing", "DimSize")

sockets = json.loads(Path("/input/inputs.json").read_text())
image_socket = next(s for s in sockets if s["interface"]["kind"] == "Image")
(image,) = sorted((Path("/input") / image_socket["interface"]["relative_path"]).glob("*.mha"))
header = []
with image.open("rb") as handle:
    for line in handle:
        key, _, value = line.decode().partition("=")
        header.append((key.strip(), value.strip()))
        if key.strip() == "ElementDataFile":
            break
nx, ny, nz = (int(v) for v in dict(header)["DimSize"].split())
lines = [f"{k} = {v}" for k, v in header if k in GEOMETRY]
lines += ["CompressedData = False", "ElementType = MET_UCHAR", "ElementDataFile = LOCAL"]
out = Path("/output/images/abdominal-organ-segmentation")
out.mkdir(parents=True)
(out / "output.mha").write_bytes(("\n".join(lines) + "\n").encode() + box(nx, ny, nz))
