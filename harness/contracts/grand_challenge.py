"""grand-challenge: /input/<relative_path>/<uuid>.mha (images/ct for the default ct-image socket) and
/input/inputs.json (read-only) -> exactly one image under /output/images/<slug>/; the model, when
given (a folder, or the platform's `model.tar.gz`, extracted by harness through intake), at
/opt/ml/model (read-only); the image's own non-root USER, with HOME its home, as the platform runs it."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from harness.contracts.base import Collected, Contract, Launch, Mount, allowed_keys, beside, text_value
from harness.errors import InvalidOutput

if TYPE_CHECKING:
    from harness.acceptance import OutputNames
    from harness.data.nifti import Grid
    from harness.models import Case, Profile

IMAGE_SUFFIXES_GC = (".mha", ".tif", ".tiff")  # what grand-challenge accepts for an image output

# grand-challenge's own sockets whose relative_path is not images/<slug>: its "CT Image" socket is
# ct-image with files under /input/images/ct/ (its documentation's "choose input and output
# interfaces" and FAQ; the forge's templates read INPUT_PATH / socket.relative_path).
PLATFORM_PATHS = {"ct-image": "images/ct"}


TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")  # a model given as the platform's tarball (model.tar.gz)
_model_root: list[Path] = []  # this process's private folder of extracted model tarballs
_extract_lock = threading.Lock()


def extracted_model(tarball: Path) -> Path:
    """The model tarball extracted, once per content and process (`harness.intake.extracted_once`:
    regular files and folders only, nothing outside, size-capped), into a private temporary folder
    that the container's user can read; removed when harness exits."""
    from harness.intake import MODEL_TARBALL, extracted_once

    with _extract_lock:
        if not _model_root:
            work = Path(tempfile.mkdtemp(prefix="harness-model-"))
            atexit.register(shutil.rmtree, work, True)
            work.chmod(0o711)  # traversed by the daemon's bind mount, listed by nobody
            _model_root.append(work)
        return extracted_once(tarball, _model_root[0], use=MODEL_TARBALL)


class RunAs(NamedTuple):
    """How grand-challenge's container process starts for an image's USER, as harness runs it."""

    user: str | None  # Docker's --user: the image's USER; None: harness's own unprivileged user
    home: str | None  # HOME for that user; None: harness's own (/tmp)
    note: str = ""  # what an author should know (`harness check` shows it as a warning)
    failure: str = ""  # why the platform's job would fail before the algorithm starts ("" when it starts)


PASSWD_BYTES = 1024 * 1024  # the most of an image's /etc/passwd that is read


def refused_at_upload(user: str) -> bool:
    """grand-challenge's own test of an uploaded image's USER (its container image validation):
    unset, `root` or `0`, with or without a group, in any case, means the image runs as root and is
    refused."""
    lowered = user.lower()
    return lowered in ("", "root", "0") or lowered.startswith(("0:", "root:"))


def passwd_home(passwd: str, user: str) -> tuple[int, str] | None:
    """(uid, home folder) of `user` in the text of an /etc/passwd: looked up by name first, then,
    for a number, by uid (the first matching line, as getpwnam and getpwuid read it); None when
    neither matches. Malformed lines are skipped."""
    entries = []
    for line in passwd[:PASSWD_BYTES].splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[2].isdigit():
            entries.append((fields[0], int(fields[2]), fields[5]))
    for name, uid, home in entries:
        if name == user:
            return uid, home
    if user.isdigit():
        for _, uid, home in entries:
            if uid == int(user):
                return uid, home
    return None


def platform_user(user: str, *, passwd: str | None, env_home: str | None) -> RunAs:
    """The user and HOME of an image's process as grand-challenge runs it, made safe where the
    platform would run root.

    The platform refuses an image whose USER is root at upload (`refused_at_upload`); harness runs
    such an image as its own unprivileged user with HOME=/tmp, and says so. Otherwise the platform's
    shim (DIAGNijmegen/rse-sagemaker-shim, its process user) runs the USER and sets HOME from the
    image's /etc/passwd, over any HOME the image's ENV sets; for a numeric USER that /etc/passwd does
    not know it leaves HOME as the environment has it (the image's ENV HOME, else root's /root, as the
    shim itself runs as root); a named USER that /etc/passwd does not know fails the job. A USER the
    upload test lets through that is still root (`:0`, `00`, a name with uid 0) would run as root
    there; harness runs it as its own user instead."""
    declared = user.strip()
    shown = declared or "unset"
    own = "harness ran it as its own unprivileged user with HOME=/tmp (never as root)"
    if refused_at_upload(declared):
        return RunAs(None, None, note=f"the image's USER is {shown} (root): grand-challenge refuses such an image at "
                                      f"upload; {own}; add a non-root user and a USER line to the Dockerfile")
    name = declared.partition(":")[0]
    found = passwd_home(passwd, name) if passwd is not None and name else None
    uid = found[0] if found is not None else int(name) if name.isdigit() else None
    if not name or uid == 0:
        return RunAs(None, None, note=f"the image's USER {declared} is root (uid 0) or names no user: grand-challenge "
                                      f"would run it as root; {own}; add a user and a USER line naming it")
    if found is not None:
        return RunAs(declared, found[1])
    if name.isdigit():
        return RunAs(declared, env_home or "/root")
    return RunAs(declared, None, failure=f"the image's USER {declared} is not in its /etc/passwd: grand-challenge's "
                                         "job fails before it starts (the user does not exist); create the user in "
                                         "the Dockerfile (useradd) or give a numeric uid")


def socket_path(slug: str) -> str:
    """A socket's relative_path as grand-challenge defines it: its own where it has one, else images/<slug>."""
    return PLATFORM_PATHS.get(slug, f"images/{slug}")


@dataclass(frozen=True)
class GrandChallengeOptions:
    input_slug: str = "ct-image"
    input_path: str = "images/ct"  # the input socket's relative_path under /input (grand-challenge's CT socket)
    output_slug: str = "abdominal-organ-segmentation"
    output_path: str = "images/abdominal-organ-segmentation"  # under /output: exactly one image here
    model: Path | None = None  # a folder mounted read-only at /opt/ml/model (a tarball's extracted copy)
    model_tarball: Path | None = None  # the platform's model.tar.gz as given, when the model is one


class GrandChallenge(Contract):
    name = "grand-challenge"
    annotators = False
    table = "grand-challenge"

    def parse_options(self, table: dict[str, Any], manifest: Path) -> GrandChallengeOptions:
        where = "grand-challenge"
        allowed_keys(table, {"input_slug", "input_path", "output_slug", "output_path", "model"}, where, manifest)
        base = GrandChallengeOptions()
        in_slug = text_value(table, "input_slug", base.input_slug, where, manifest, pattern="slug")
        out_slug = text_value(table, "output_slug", base.output_slug, where, manifest, pattern="slug")
        model = tarball = None
        if "model" in table:
            value = table["model"]
            if isinstance(value, str) and value.lower().endswith(TARBALL_SUFFIXES):
                tarball = beside(manifest, value, f"{where}.model", folder=False)
                model = extracted_model(tarball)
            else:
                model = beside(manifest, value, f"{where}.model", folder=True)
        return GrandChallengeOptions(
            input_slug=in_slug,
            input_path=text_value(table, "input_path", socket_path(in_slug), where, manifest, pattern="relpath"),
            output_slug=out_slug,
            output_path=text_value(table, "output_path", f"images/{out_slug}", where, manifest, pattern="relpath"),
            model=model,
            model_tarball=tarball,
        )

    def option_files(self, options: GrandChallengeOptions) -> list[Path]:
        return [options.model_tarball] if options.model_tarball is not None else []

    def launch(self, options: GrandChallengeOptions, *, probabilities: bool) -> Launch:
        mounts = (Mount(options.model, "/opt/ml/model"),) if options.model is not None else ()
        return Launch("/input", "/output", mounts=mounts, declared_user=True)

    def stage_input(self, options: GrandChallengeOptions, case_id: str, image_file: Path, input_dir: Path) -> None:
        """An .mha under images/<slug>/ named by a fresh UUID, and inputs.json."""
        from harness.data.nifti import read_volume, write_itk

        data, grid = read_volume(image_file)  # the organiser's staged copy
        name = f"{uuid.uuid4()}.mha"
        folder = input_dir / options.input_path
        folder.mkdir(parents=True)
        write_itk(folder / name, np.asarray(data), grid)
        image_file.unlink()
        sockets = [{"pk": 1, "interface": {"title": options.input_slug.replace("-", " ").capitalize(),
                                           "slug": options.input_slug, "kind": "Image", "super_kind": "Image",
                                           "relative_path": options.input_path},
                    "value": None, "file": None, "image": {"pk": name[:-4], "name": name}}]
        (input_dir / "inputs.json").write_text(json.dumps(sockets, indent=2) + "\n", encoding="utf-8")

    def keep(self, options: GrandChallengeOptions, case_id: str, native: list[str], *, probabilities: bool) -> list[str]:
        return [f"{options.output_path}/*"]

    def collect(self, options: GrandChallengeOptions, *, case: Case, profile: Profile, output_dir: Path,
                native_dir: Path, probabilities: bool, names: OutputNames | None = None) -> Collected:
        import nibabel as nib

        from harness.acceptance import HARNESS_NAMES, read_metaimage_label
        from harness.data.nifti import read_grid
        from harness.safetext import safe_text

        names = names or HARNESS_NAMES
        shown_dir = f"{names.of(options.output_path)}/"
        folder = output_dir / options.output_path
        if folder.is_symlink():
            raise InvalidOutput(f"{shown_dir}: symbolic link (never followed); write into the folder itself")
        found = sorted(os.fsdecode(n) for n in os.listdir(os.fsencode(folder))) if folder.is_dir() else []
        images = [n for n in found if n.lower().endswith(IMAGE_SUFFIXES_GC)]
        if not images:
            present = [safe_text(n, limit=80) for n in found[:5]] or _top_level(output_dir)
            raise InvalidOutput(f"no image in {shown_dir} (found: {names.found(present)}); write exactly one "
                                f".mha there (the output socket '{options.output_slug}')")
        if len(images) > 1:
            raise InvalidOutput(f"{shown_dir} holds {len(images)} images "
                                f"({', '.join(safe_text(n, limit=60) for n in images[:4])}); write exactly one")
        name = images[0]
        written, shown = folder / name, f"{shown_dir}{safe_text(name, limit=120)}"
        image_grid = read_grid(case.image) if case.image is not None else None  # the organiser's image
        data, grid = read_metaimage_label(written, shown, image_grid.shape if image_grid is not None else None)
        if image_grid is not None and written_without_geometry(grid):
            grid = image_grid  # the input's shape, ITK's defaults for the rest: placed on the input's grid
        native_dir.mkdir(exist_ok=True)
        out = nib.Nifti1Image(np.asarray(data), grid.affine)
        out.header.set_zooms(grid.spacing_mm[:3])
        nib.save(out, native_dir / f"{case.case_id}.nii.gz")
        return Collected(native_dir, {f"/output/{case.case_id}.nii.gz": shown},
                         frozenset({f"{options.output_path}/{name}"}), output_dir)


# What an image written without geometry reads as (`SimpleITK.GetImageFromArray`: spacing 1, origin
# 0, identity direction), in nibabel's RAS terms.
_ITK_DEFAULT_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def written_without_geometry(grid: Grid) -> bool:
    """Whether an output image carries ITK's default geometry, i.e. none of its own. grand-challenge
    stores such an output as it is, and a challenge's evaluation reads its voxels in the input's
    order; here it is placed on the input's grid (its shape was already checked to be the input's).
    An output with a geometry of its own must be the input's (else `invalid_output`, as for NIfTI)."""
    return grid.affine.shape == (4, 4) and bool(np.array_equal(grid.affine, _ITK_DEFAULT_AFFINE))


def _top_level(output_dir: Path) -> list[str]:
    from harness.safetext import safe_text

    try:
        return [safe_text(os.fsdecode(n), limit=80) for n in sorted(os.listdir(os.fsencode(output_dir)))[:5]]
    except OSError:
        return []
