"""A test algorithm whose behaviour is chosen by the file `mode` beside it (stdlib only).

Well-behaved: ok (writes an all-background label map), slow (the same after 1.5 s), late (the
same after 4.5 s), burn1 / burn2 (one / two cores busy for 3 s, idle 1 s, then the output, and
its own getrusage CPU time, output included, as a JSON line; burn1@B,I: busy B s, idle I s),
probe (also prints what the sandbox allows, as JSON), remember (fails when /output is not empty
at the start, else leaves memo.txt beside the output).
Hostile or broken: sleep/hang, crash, oom, forkbomb, fill_output, fill_tmp, no_output,
wrong_shape, wrong_affine, wrong_dtype, bad_labels, nan_probs, range_probs, symlink, log_flood,
network, write_input, header_bomb, extension_bomb, many_files, unlinked_flood, sparse, nested,
bad_names.
box<N>: a box of label 1 shifted by N voxels (real, varied scores).
"""

import gzip
import json
import os
import resource
import socket
import struct
import sys
import time
from pathlib import Path


def nifti_like(image: Path, *, datatype: int = 2, bitpix: int = 8, fill: bytes = b"\0", shape_delta: int = 0,
               shift_mm: float = 0.0) -> bytes:
    """A NIfTI-1 file on the image's grid (its header, retyped), every voxel `fill`; optionally one
    voxel shorter along x, or moved by `shift_mm` along x."""
    raw = gzip.decompress(image.read_bytes())
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    header = bytearray(raw[:348])
    dims = list(struct.unpack(endian + "8h", header[40:56]))
    dims[1] += shape_delta
    struct.pack_into(endian + "8h", header, 40, *dims)
    voxels = 1
    for n in dims[1 : 1 + dims[0]]:
        voxels *= n
    struct.pack_into(endian + "hh", header, 70, datatype, bitpix)
    struct.pack_into(endian + "fff", header, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    if shift_mm:
        qx = struct.unpack_from(endian + "f", header, 268)[0]
        struct.pack_into(endian + "f", header, 268, qx + shift_mm)
        sx = struct.unpack_from(endian + "f", header, 292)[0]
        struct.pack_into(endian + "f", header, 292, sx + shift_mm)
    return gzip.compress(bytes(header) + b"\0\0\0\0" + fill * voxels, mtime=0)


def header_claiming(image: Path, shape: tuple[int, int, int]) -> bytes:
    """A NIfTI-1 header (from the image's) claiming `shape`, and no voxels."""
    raw = bytearray(gzip.decompress(nifti_like(image))[:352])
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    struct.pack_into(endian + "4h", raw, 40, 3, *shape)
    return gzip.compress(bytes(raw), mtime=0)


def box_label(image: Path, *, offset: int) -> bytes:
    """A uint8 label map on the image's grid: 0 everywhere but a box of label 1 in the middle."""
    raw = gzip.decompress(image.read_bytes())
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    nx, ny, nz = struct.unpack(endian + "3h", raw[42:48])
    data = bytearray(nx * ny * nz)
    for z in range(nz // 3, 2 * nz // 3):
        for y in range(ny // 3, 2 * ny // 3):
            start = (z * ny + y) * nx + nx // 3 + offset
            data[start : start + nx // 4] = b"\1" * (nx // 4)
    empty = gzip.decompress(nifti_like(image))
    return gzip.compress(empty[:352] + bytes(data), mtime=0)


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


def say(**facts: object) -> None:
    print(json.dumps(facts), flush=True)


def main() -> int:
    mode = (Path(__file__).parent / "mode").read_text().strip()
    input_dir, output_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images = sorted(input_dir.glob("*_0000.nii.gz"))
    print(f"behave: mode {mode}, inputs {[p.name for p in images]}", file=sys.stderr)
    image = images[0]
    case = image.name[: -len("_0000.nii.gz")]
    label = output_dir / f"{case}.nii.gz"

    if mode in ("sleep", "hang"):
        time.sleep(3600)
    if mode == "remember":  # /output must be empty: anything there came from an earlier run
        found = sorted(p.name for p in output_dir.iterdir())
        if found:
            print(f"behave: /output already holds {found}", file=sys.stderr)
            return 4
        (output_dir / "memo.txt").write_text(case)
    if mode == "crash":
        print("behave: crashing on purpose", file=sys.stderr)
        return 3
    if mode == "slow":
        time.sleep(1.5)
    if mode == "late":
        time.sleep(4.5)
    if mode.partition("@")[0] in ("burn1", "burn2"):
        burners = 1 if mode.startswith("burn1") else 2
        busy_s, idle_s = (float(x) for x in (mode.partition("@")[2] or "3,1").split(","))
        children = [pid for pid in (os.fork() for _ in range(burners - 1)) if pid]  # parent keeps the pids
        if len(children) == burners - 1:
            burn(busy_s)
            for child in children:
                os.waitpid(child, 0)
            time.sleep(idle_s)
        else:  # a child: burn, then leave at once
            burn(busy_s)
            os._exit(0)
    if mode == "probe":
        say(**probe())
    if mode == "oom":
        hog = []
        while True:
            hog.append(bytearray(32 * 1024 * 1024))
            hog[-1][::4096] = b"x" * len(hog[-1][::4096])  # touch every page
    if mode == "forkbomb":
        forks, failures = 0, 0
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(3600)
                    os._exit(0)
                forks += 1
            except OSError:
                failures += 1
                if failures == 1:
                    say(forks_before_first_failure=forks)
    if mode == "fill_output":
        with open(output_dir / "huge.bin", "wb") as huge:
            block = b"\1" * (16 * 1024 * 1024)
            for _ in range(256):  # 4 GiB if nobody stops it
                huge.write(block)
                huge.flush()
    if mode == "fill_tmp":
        with open("/tmp/huge.bin", "wb") as huge:
            block = b"\1" * (16 * 1024 * 1024)
            for _ in range(256):
                huge.write(block)
                huge.flush()
    if mode == "no_output":
        return 0
    if mode == "log_flood":
        line = "x" * 1023 + "\n"
        for _ in range(20 * 1024):  # 20 MiB on stdout
            sys.stdout.write(line)
        sys.stdout.flush()
    if mode == "network":
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=2)  # TEST-NET-1: never routed
            say(network="reached")
        except OSError as exc:
            say(network="unreachable", error=exc.strerror)
    if mode == "write_input":
        try:
            (input_dir / "mine.txt").write_text("x")
            say(input_write="succeeded")
        except OSError as exc:
            say(input_write="failed", error=exc.strerror)

    if mode == "symlink":
        label.symlink_to("/etc/passwd")
        return 0
    if mode == "header_bomb":  # 100 bytes whose header claims 2048x2048x768 voxels
        label.write_bytes(header_claiming(image, (2048, 2048, 768)))
        return 0
    if mode == "extension_bomb":  # the right grid, an extension "to the end"
        raw = bytearray(gzip.decompress(nifti_like(image)))
        raw[348:352] = b"\1\0\0\0"
        label.write_bytes(gzip.compress(bytes(raw[:352]) + struct.pack("<ii", 2**31 - 8, 0) + bytes(raw[352:]), mtime=0))
        return 0
    if mode == "many_files":  # a flood of empty files
        for i in range(100_000):
            (output_dir / f"f{i}").touch()
    if mode == "unlinked_flood":  # write as fast as possible into a file deleted at once, keep it open
        hidden = open(output_dir / "hidden.bin", "wb")
        os.unlink(output_dir / "hidden.bin")
        block, written = b"\1" * (16 * 1024 * 1024), 0
        try:
            while written < 1024**3:
                hidden.write(block)
                hidden.flush()
                written += len(block)
            say(unlinked_written_mb=written / 2**20, error="none")
        except OSError as exc:
            say(unlinked_written_mb=written / 2**20, error=exc.strerror)
        try:
            hidden.close()
        except OSError:
            pass
    if mode == "sparse":  # 1 TiB that uses no blocks
        with open(output_dir / "sparse.bin", "wb") as f:
            f.truncate(1024**4)
    if mode == "nested":  # 1500 levels, then a path past PATH_MAX
        os.chdir(output_dir)
        for level in range(2500):
            os.mkdir("d" if level < 1500 else "xx")
            os.chdir("d" if level < 1500 else "xx")
        os.chdir("/")
    if mode == "bad_names":
        open(os.fsencode(output_dir) + b"/bad-\xff\xfe-\x1b[31mred\x1b[0m\n", "wb").close()
        (output_dir / "notes.txt").write_text("extra")
        (output_dir / "probabilities").mkdir()
        (output_dir / "probabilities" / "liver.nii.gz").write_bytes(nifti_like(image))  # undeclared
        print("\x1b[2J\x1b[31mcleared your terminal\x1b[0m")
    if mode == "wrong_shape":
        label.write_bytes(nifti_like(image, shape_delta=-1))
    elif mode == "wrong_affine":
        label.write_bytes(nifti_like(image, shift_mm=7.5))
    elif mode == "wrong_dtype":
        label.write_bytes(nifti_like(image, datatype=16, bitpix=32, fill=struct.pack("<f", 0.5)))
    elif mode.startswith("box"):  # a liver-labelled box whose place depends on the mode's digit
        label.write_bytes(box_label(image, offset=int(mode[3:] or 0)))
    elif mode == "bad_labels":
        label.write_bytes(nifti_like(image, fill=b"\x2a"))
    else:
        label.write_bytes(nifti_like(image))
    if mode in ("nan_probs", "range_probs"):
        value = struct.pack("<f", float("nan") if mode == "nan_probs" else 1.5)
        (output_dir / "probabilities").mkdir()
        for organ in ORGANS:
            (output_dir / "probabilities" / f"{organ}.nii.gz").write_bytes(
                nifti_like(image, datatype=16, bitpix=32, fill=value))
    if mode.startswith("burn"):  # after the output is written: the CPU time of all but the exit
        used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        say(cpu_s=sum(u.ru_utime + u.ru_stime for u in used))  # the truth, for the tests
    return 0


ORGANS = ("liver", "right_kidney", "spleen", "pancreas", "aorta", "inferior_vena_cava", "right_adrenal_gland",
          "left_adrenal_gland", "gallbladder", "esophagus", "stomach", "duodenum", "left_kidney")

if __name__ == "__main__":
    sys.exit(main())
