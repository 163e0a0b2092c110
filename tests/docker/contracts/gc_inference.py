"""A grand-challenge algorithm, written from the platform's documentation (stdlib only).

It reads /input/inputs.json (a list of socket values: interface slug, kind, relative_path), finds
its CT image under /input/<relative_path>/ (one .mha), and writes exactly one .mha under
/output/images/<OUTPUT_SLUG>/: a box of label 1 on the input's grid (the header's geometry
copied), shifted by the number in /opt/ml/model/offset.txt. The file `mode` beside it may say
`two` (a second output image: a contract violation) or `stdin` (a header that names /dev/stdin).
"""

import json
import os
import sys
import zlib
from pathlib import Path

OUTPUT_SLUG = "abdominal-organ-segmentation"
HERE = Path(__file__).parent


def read_mha(path: Path) -> tuple[list[tuple[str, str]], bytes]:
    raw = path.read_bytes()
    header: list[tuple[str, str]] = []
    pos = 0
    while True:
        end = raw.index(b"\n", pos)
        key, _, value = raw[pos:end].decode().partition("=")
        header.append((key.strip(), value.strip()))
        pos = end + 1
        if key.strip() == "ElementDataFile":
            break
    fields = dict(header)
    body = raw[pos:]
    if fields.get("CompressedData") == "True":
        body = zlib.decompress(body)
    return header, body


def box(nx: int, ny: int, nz: int, offset: int) -> bytes:
    data = bytearray(nx * ny * nz)
    for z in range(nz // 3, 2 * nz // 3):
        for y in range(ny // 3, 2 * ny // 3):
            start = (z * ny + y) * nx + nx // 3 + offset
            data[start : start + nx // 4] = b"\1" * (nx // 4)
    return bytes(data)


def main() -> int:
    sockets = json.loads(Path("/input/inputs.json").read_text())
    image_socket = next(s for s in sockets if s["interface"]["kind"] == "Image")
    folder = Path("/input") / image_socket["interface"]["relative_path"]
    (image,) = sorted(folder.glob("*.mha"))
    try:
        (Path("/input") / "probe").write_text("x")
        print("/input is writable", file=sys.stderr)
        return 3
    except OSError:
        pass
    header, _ = read_mha(image)
    fields = dict(header)
    nx, ny, nz = (int(v) for v in fields["DimSize"].split())
    offset = int((Path("/opt/ml/model") / "offset.txt").read_text())
    keep = ("ObjectType", "NDims", "BinaryData", "BinaryDataByteOrderMSB", "TransformMatrix", "Offset",
            "CenterOfRotation", "AnatomicalOrientation", "ElementSpacing", "DimSize")
    lines = [f"{k} = {v}" for k, v in header if k in keep]
    if (HERE / "mode").read_text().strip() == "stdin":  # ITK's MetaIO reads ':' as '=': a host file, then LOCAL
        lines += ["ElementDataFile:= /dev/stdin"]
    lines += ["CompressedData = False", "ElementType = MET_UCHAR", "ElementDataFile = LOCAL"]
    out = Path("/output/images") / OUTPUT_SLUG
    out.mkdir(parents=True)
    payload = ("\n".join(lines) + "\n").encode() + box(nx, ny, nz, offset)
    (out / "output.mha").write_bytes(payload)
    if (HERE / "mode").read_text().strip() == "two":
        (out / "second.mha").write_bytes(payload)
    print(f"wrote {out / 'output.mha'} ({nx}x{ny}x{nz}); uid {os.getuid()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
