"""`harness data`: make the built-in default data (synthetic CT phantoms, simulated predictions)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.jsonout import JSON_OPTION, json_mode
from harness.data.perturb import write_predictions
from harness.data.synth import SIZES, SPLITS, PhantomCase, write_dataset


@click.group()
def data() -> None:
    """Data sets: check one before an evaluation; make demo data (CT phantoms, predictions)."""


@data.command("check")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--profile", "profile_name", default="flare22", show_default=True,
              help="The label system and rules the set will be evaluated under (built-in name or TOML file).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None,
              help="Also write the inventory (one row per case) and the problems as CSV: FILE and FILE-problems.csv.")
@JSON_OPTION
def check(data_dir: Path, profile_name: str, csv_path: Path | None, as_json: bool) -> int:
    """Inventory of a data set and every problem found, before an evaluation.

    \b
    Per case: image and label files, shape, spacing, label values, organs present,
    organs labelled on one slice only. Errors: files outside the layout, unreadable or
    non-integer labels, values outside the profile, a label of another shape than its
    image, dataset.json numbering labels differently from the profile. Warnings: image
    headers that differ from the label's beyond rounding, images without labels, organs
    the profile's z-range cut cannot score. Exit 0 only when the set can be evaluated
    (no error, at least one case with image and label), 4 otherwise.
    """
    with json_mode(as_json) as emit:
        status = _check(data_dir, profile_name, csv_path, emit)
    return status


def _check(data_dir: Path, profile_name: str, csv_path: Path | None, emit) -> int:  # type: ignore[no-untyped-def]
    from harness.cli.jsonout import records
    from harness.data.check import check_dataset
    from harness.errors import ExitStatus
    from harness.profiles import load_profile
    from harness.safetext import safe_text

    result = check_dataset(data_dir, load_profile(profile_name))
    shown = result.inventory.drop(columns=["image", "label"])
    shown["organs"] = [len(str(o).split()) for o in shown["organs"]]  # the names are in the CSV
    click.echo(f"{data_dir}: layout {result.layout}, {len(shown)} cases, profile {result.profile}")
    click.echo(shown.to_string(index=False))
    for severity, _, message in result.problems:
        click.echo(f"{severity}: {safe_text(message)}")
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        result.inventory.to_csv(csv_path, index=False)
        problems = csv_path.with_name(csv_path.stem + "-problems.csv")
        import pandas as pd

        pd.DataFrame(result.problems, columns=["severity", "case", "message"]).to_csv(problems, index=False)
        click.echo(f"written: {csv_path}, {problems}")
    verdict = "can be evaluated" if result.evaluable else "cannot be evaluated as it is"
    click.echo(f"{len(result.errors)} error(s), {len(result.problems) - len(result.errors)} warning(s): the set {verdict}")
    status = ExitStatus.OK if result.evaluable else ExitStatus.DATA_ERROR
    emit({"command": "data check", "data": str(data_dir), "layout": result.layout, "profile": result.profile,
          "evaluable": result.evaluable, "exit_status": int(status), "errors": len(result.errors),
          "warnings": len(result.problems) - len(result.errors),
          "problems": [{"severity": sev, "case": case, "message": msg} for sev, case, msg in result.problems],
          "cases": records(result.inventory)})
    return status


@data.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder to write images<split>/, labels<split>/ and dataset.json into.")
@click.option("--cases", type=int, default=5, show_default=True, help="Number of cases.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Data set seed; case i depends only on (seed, i).")
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True,
              help="small: ~176x144x45 at ~2.5x2.5x5 mm (~1.3 MB a case); "
                   "full: 512x512x~100 at ~0.8x0.8x2.5 mm (benchmark size, ~25 MB a case).")
@click.option("--split", type=click.Choice(SPLITS), default="Tr", show_default=True,
              help="Write imagesTr/labelsTr or imagesTs/labelsTs.")
@click.option("--pathology", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of cases with one finding (liver lesions, a renal cyst, an atrophic or "
                   "displaced kidney, an enlarged spleen); recorded in dataset.json.")
@click.option("--profile", "profile", default="flare22", show_default=True,
              help="Label system of the labels, by organ name (built-in name or profile file). A profile with a "
                   "'lesion' organ (flare23: 14, autopet: 1) gets lesion labels: every finding is then liver "
                   "lesions (give --pathology), labelled as lesions; organs it lacks are background.")
def synth(out_dir: Path, cases: int, seed: int, size: str, split: str, pathology: float, profile: str) -> None:
    """Write a FLARE22-layout synthetic abdominal CT data set (13 organs, 4 contrast phases).

    Output is byte-identical for the same options; the first N cases do not depend on --cases.
    Re-running into the same folder replaces its phantom files only. With --profile flare23
    or autopet (and --pathology) the labels hold lesions, for the lesion-wise metrics.
    """

    def progress(done: int, total: int, case: PhantomCase) -> None:
        shape = "x".join(str(n) for n in case.label.shape)
        spacing = "x".join(f"{s:g}" for s in case.spacing_mm)
        finding = f"  {case.pathology['kind']}" if case.pathology else ""
        click.echo(f"[{done}/{total}] {case.case_id}  {case.phase:8s} {shape} @ {spacing} mm{finding}", err=True)

    write_dataset(out_dir, cases=cases, seed=seed, size=size, split=split, pathology=pathology, profile=profile,
                  progress=progress)
    click.echo(f"wrote {cases} phantom cases to {out_dir} (images{split}, labels{split}, dataset.json)")


@data.command("perturb")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Data set folder with labelsTr/ and/or labelsTs/.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder to write <case>.nii.gz predictions into.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed; each case depends only on (seed, case id).")
def perturb(data_dir: Path, out_dir: Path, seed: int) -> None:
    """Write realistic wrong predictions derived from a data set's ground-truth labels.

    Boundary errors of about a voxel, shifts, missed parts, false-positive islands, label swaps
    between neighbours and the odd missed adrenal gland: typical DSC 0.75-0.97 per organ.
    """

    def progress(done: int, total: int, case_id: str) -> None:
        click.echo(f"[{done}/{total}] {case_id}", err=True)

    written = write_predictions(data_dir, out_dir, seed=seed, progress=progress)
    click.echo(f"wrote {len(written)} predictions to {out_dir}")
