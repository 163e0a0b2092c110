"""nnU-Net: the image's entry point (`nnUNetv2_predict`) with `-i /input -o /output`, the manifest's
model fields (`dataset` -d, `configuration` -c, `trainer` -tr, `plans` -p, `folds` -f, `checkpoint`
-chk, `disable_tta` --disable_tta: given only when set, so nnU-Net's own defaults apply otherwise),
its `arguments`, `-device cuda` or `-device cpu` (the GPU the run gets) and `--save_probabilities`;
`<case>.nii.gz`, and `<case>.npz` (`probabilities`, channels first) turned into per-organ maps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.contracts.base import Collected, Contract, Launch, allowed_keys
from harness.errors import SpecError
from harness.models import GpuMode

if TYPE_CHECKING:
    from harness.acceptance import OutputNames
    from harness.models import Case, Profile

NNUNET_SIDE_FILES = ("plans.json", "dataset.json", "predict_from_raw_data_args.json")  # nnU-Net writes them to -o


# nnUNetv2_predict's options that a manifest may give as fields (nnunetv2/inference/predict_from_raw_data.py,
# predict_entry_point): field -> (option, nnU-Net's default when the field is absent; None: required there)
MODEL_FIELDS = {"dataset": ("-d", None), "configuration": ("-c", None), "trainer": ("-tr", "nnUNetTrainer"),
                "plans": ("-p", "nnUNetPlans"), "folds": ("-f", "0 1 2 3 4"), "checkpoint": ("-chk", "checkpoint_final.pth")}

_EXAMPLES = {"dataset": "Dataset001_Abdomen", "configuration": "3d_fullres", "trainer": "nnUNetTrainer",
             "plans": "nnUNetPlans", "checkpoint": "checkpoint_final.pth"}


@dataclass(frozen=True)
class NnUNetOptions:
    arguments: tuple[str, ...] = ()  # after -i IN -o OUT: the model fields as options, then `arguments`
    entrypoint: tuple[str, ...] | None = None  # default: the image's own (e.g. nnUNetv2_predict)
    probability_axes: str = "zyx"  # the npz's spatial axis order: nnU-Net's readers give z, y, x
    device: str = ""  # nnUNetv2_predict's -device for this run ("cuda" or "cpu"); "" = the arguments' own


class NnUNet(Contract):
    name = "nnunet"
    annotators = False
    table = "nnunet"
    default_gpu = GpuMode.OPTIONAL  # nnUNetv2_predict uses the GPU by default (-device cuda): give it one where there is one

    def parse_options(self, table: dict[str, Any], manifest: Path) -> NnUNetOptions:
        allowed_keys(table, {"arguments", "entrypoint", "probability_axes", "disable_tta", *MODEL_FIELDS}, "nnunet",
                     manifest)
        arguments = table.get("arguments", [])
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise SpecError.of(manifest, f"key 'nnunet.arguments' = {arguments!r}; use an array of strings such as "
                            '["-step_size", "0.5"]')
        if any(a in ("-i", "-o") for a in arguments):
            raise SpecError.of(manifest, "key 'nnunet.arguments' gives -i or -o; the harness passes -i /input -o /output")
        arguments = [*_model_options(table, arguments, manifest), *arguments]
        entry = table.get("entrypoint")
        if entry is not None and (not isinstance(entry, list) or not entry or not all(isinstance(a, str) for a in entry)):
            raise SpecError.of(manifest, f"key 'nnunet.entrypoint' = {entry!r}; use an array such as [\"nnUNetv2_predict\"]")
        axes = table.get("probability_axes", "zyx")
        if axes not in ("zyx", "xyz"):
            raise SpecError.of(manifest, f"key 'nnunet.probability_axes' = {axes!r}; use \"zyx\" (nnU-Net's readers) or "
                            "\"xyz\"")
        return NnUNetOptions(arguments=tuple(arguments), entrypoint=tuple(entry) if entry else None, probability_axes=axes)

    def for_device(self, options: NnUNetOptions, *, gpu: bool) -> NnUNetOptions:
        """-device cuda when the run gets a GPU, -device cpu when not (nnUNetv2_predict defaults to
        cuda and stops without a driver); a -device the manifest's arguments give is kept as given."""
        if any(a == "-device" or a.startswith("-device=") for a in options.arguments):
            return replace(options, device="")
        return replace(options, device="cuda" if gpu else "cpu")

    def launch(self, options: NnUNetOptions, *, probabilities: bool) -> Launch:
        device = ("-device", options.device) if options.device else ()
        command = ("-i", "/input", "-o", "/output", *options.arguments, *device,
                   *(("--save_probabilities",) if probabilities else ()))
        return Launch("/input", "/output", command=command, entrypoint=options.entrypoint)

    def keep(self, options: NnUNetOptions, case_id: str, native: list[str], *, probabilities: bool) -> list[str]:
        return [f"{case_id}.nii.gz", *((f"{case_id}.npz",) if probabilities else ())]

    def collect(self, options: NnUNetOptions, *, case: Case, profile: Profile, output_dir: Path, native_dir: Path,
                probabilities: bool, names: OutputNames | None = None) -> Collected:
        import nibabel as nib

        from harness.acceptance import HARNESS_NAMES, check_probability_channel, link_or_copy, read_npz_probabilities, regular
        from harness.data.nifti import read_grid
        from harness.layout import PROBABILITY_DIR

        names = names or HARNESS_NAMES
        label = f"{case.case_id}.nii.gz"
        native_dir.mkdir(exist_ok=True)
        consumed = {label}
        if regular(output_dir / label, names.of(label)):
            link_or_copy(output_dir / label, native_dir / label)
        if not probabilities:
            return Collected(native_dir, {}, frozenset(consumed), output_dir)
        npz, shown = output_dir / f"{case.case_id}.npz", names.of(f"{case.case_id}.npz")
        assert case.image is not None
        grid = read_grid(case.image)  # the organiser's image
        spatial = tuple(reversed(grid.shape)) if options.probability_axes == "zyx" else tuple(grid.shape)
        needed = max(o.label for o in profile.organs) + 1
        array = read_npz_probabilities(npz, shown, channels=needed, spatial=spatial, axes=options.probability_axes)
        consumed.add(npz.name)
        folder = native_dir / PROBABILITY_DIR
        folder.mkdir(exist_ok=True)
        for organ in profile.organs:
            channel = array[organ.label]
            if options.probability_axes == "zyx":
                channel = channel.transpose(2, 1, 0)
            check_probability_channel(channel, shown, organ.label, organ.name)
            quantised = np.rint(channel.astype(np.float64) * 255).astype(np.uint8)
            nib.save(nib.Nifti1Image(quantised, grid.affine), folder / f"{organ.name}.nii.gz")
        return Collected(native_dir, {}, frozenset(consumed), output_dir)

    def ignored_extras(self, options: NnUNetOptions, case_id: str) -> frozenset[str]:
        return frozenset({*NNUNET_SIDE_FILES, f"{case_id}.pkl"})


def _model_options(table: dict[str, Any], arguments: list[str], manifest: Path) -> list[str]:
    """The manifest's model fields as nnUNetv2_predict's options, in its own order; a field also
    spelled in `arguments` is an error (nnU-Net would take the last one silently)."""
    options: list[str] = []
    for field, (flag, _) in MODEL_FIELDS.items():
        if field not in table:
            continue
        if flag in arguments:
            raise SpecError.of(manifest, f"key 'nnunet.{field}' and {flag} in 'nnunet.arguments'; give it once")
        value = table[field]
        if field == "folds":
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                value = [value]
            if (not isinstance(value, list) or not value
                    or not all((isinstance(v, int) and not isinstance(v, bool) and v >= 0) or v == "all" for v in value)):
                raise SpecError.of(manifest, f"key 'nnunet.folds' = {table[field]!r}; use fold numbers such as [0, 1, 2, 3, 4] "
                                'or "all"')
            options += [flag, *(str(v) for v in value)]
            continue
        if field == "dataset" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)  # nnU-Net takes the id or the name
        if not isinstance(value, str) or not value.strip() or value.startswith("-") or any(c.isspace() for c in value):
            raise SpecError.of(manifest, f"key 'nnunet.{field}' = {value!r}; give a name such as \"{_EXAMPLES[field]}\"")
        options += [flag, value]
    tta = table.get("disable_tta", False)
    if not isinstance(tta, bool):
        raise SpecError.of(manifest, f"key 'nnunet.disable_tta' = {tta!r}; use true or false")
    if tta:
        if "--disable_tta" in arguments:
            raise SpecError.of(manifest, "key 'nnunet.disable_tta' and --disable_tta in 'nnunet.arguments'; give it once")
        options.append("--disable_tta")
    return options
