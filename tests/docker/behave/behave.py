"""A test algorithm whose behaviour is chosen by the file `mode` beside it (stdlib only).

Modes: ok (writes an all-background label map), slow (the same after 1.5 s), burn1 / burn2
(one / two cores busy for 3 s, then idle for 1 s, then the same output), probe (also prints what the sandbox allows, as one
JSON line), sleep (never finishes), crash (exits 3).
"""

import gzip
import json
import os
import resource
import struct
import sys
import time
from pathlib import Path


def write_background(image: Path, out: Path) -> None:
    """A uint8 label map of zeros on the image's grid: the image's NIfTI-1 header, retyped."""
    raw = gzip.decompress(image.read_bytes())
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    header = bytearray(raw[:348])
    dims = struct.unpack(endian + "8h", header[40:56])
    voxels = 1
    for n in dims[1 : 1 + dims[0]]:
        voxels *= n
    struct.pack_into(endian + "hh", header, 70, 2, 8)  # datatype uint8, bitpix 8
    struct.pack_into(endian + "fff", header, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    out.write_bytes(gzip.compress(bytes(header) + b"\0\0\0\0" + bytes(voxels), mtime=0))


def burn(seconds: float) -> None:
    """Keep one core busy for `seconds` of wall time."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def probe() -> dict:
    report = {"uid": os.getuid(), "gid": os.getgid()}
    report["interfaces"] = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
    with open("/proc/net/route") as routes:
        report["routes"] = len(routes.read().splitlines()) - 1
    for name, path in (("input_writable", "/input/probe.txt"), ("root_writable", "/opt/probe.txt"),
                       ("etc_writable", "/etc/probe.txt"), ("tmp_writable", "/tmp/probe.txt")):
        try:
            Path(path).write_text("x")
            report[name] = True
        except OSError as exc:
            report[name] = False
            report[name + "_error"] = exc.strerror
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("CapEff", "NoNewPrivs")):
                key, value = line.split(":")
                report[key] = value.strip()
    return report


def main() -> int:
    mode = (Path(__file__).parent / "mode").read_text().strip()
    input_dir, output_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images = sorted(input_dir.glob("*_0000.nii.gz"))
    print(f"behave: mode {mode}, inputs {[p.name for p in images]}", file=sys.stderr)
    if mode == "sleep":
        time.sleep(3600)
    if mode == "slow":
        time.sleep(1.5)
    if mode in ("burn1", "burn2"):
        burners = 1 if mode == "burn1" else 2
        children = [pid for pid in (os.fork() for _ in range(burners - 1)) if pid]  # parent keeps the pids
        if len(children) == burners - 1:
            burn(3.0)
            for child in children:
                os.waitpid(child, 0)
            time.sleep(1.0)
            used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            print(json.dumps({"cpu_s": sum(u.ru_utime + u.ru_stime for u in used)}))  # the truth, for the tests
        else:  # a child: burn, then leave at once
            burn(3.0)
            os._exit(0)
    if mode == "crash":
        print("behave: crashing on purpose", file=sys.stderr)
        return 3
    if mode == "probe":
        print(json.dumps(probe()))
    case = images[0].name[: -len("_0000.nii.gz")]
    write_background(images[0], output_dir / f"{case}.nii.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
