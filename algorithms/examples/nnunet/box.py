"""The examples' trivial model (stdlib only): label 1 (liver) in a box in the middle of the case's
grid, written as a NIfTI-1 uint8 label map with the case's own header (so its geometry matches)."""

import gzip
import struct
from pathlib import Path


def box_label(image: Path) -> bytes:
    """The label map of the case `image` (a .nii.gz), as .nii.gz bytes."""
    raw = gzip.decompress(image.read_bytes())
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    header = bytearray(raw[:348])
    nx, ny, nz = struct.unpack_from(endian + "3h", header, 42)
    struct.pack_into(endian + "4h", header, 40, 3, nx, ny, nz)
    struct.pack_into(endian + "hh", header, 70, 2, 8)  # datatype uint8, 8 bits
    struct.pack_into(endian + "fff", header, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    return gzip.compress(bytes(header) + b"\0\0\0\0" + box(nx, ny, nz), mtime=0)


def box(nx: int, ny: int, nz: int) -> bytes:
    """x fastest, then y, then z (NIfTI's and MetaImage's order)."""
    data = bytearray(nx * ny * nz)
    for z in range(nz // 3, 2 * nz // 3):
        for y in range(ny // 3, 2 * ny // 3):
            start = (z * ny + y) * nx + nx // 3
            data[start : start + nx // 3] = b"\1" * (nx // 3)
    return bytes(data)
