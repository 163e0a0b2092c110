"""A sixth platform, in one file, as a contributor would add it: its manifest table names a model
folder beside the manifest and the output folder; the container writes exactly one NIfTI there,
under any name. Nothing here reads a submission's file or an output itself: `beside` goes through
harness.intake, `link_or_copy` through harness.acceptance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.contracts.base import Collected, Contract, Launch, Mount, allowed_keys, beside, text_value
from harness.errors import InvalidOutput


@dataclass(frozen=True)
class DropOptions:
    result_dir: str = "result"
    model: Path | None = None


class Drop(Contract):
    name = "drop"
    table = "drop"
    annotators = False

    def parse_options(self, table: dict[str, Any], manifest: Path) -> DropOptions:
        allowed_keys(table, {"result_dir", "model"}, "drop", manifest)
        return DropOptions(result_dir=text_value(table, "result_dir", "result", "drop", manifest, pattern="relpath"),
                           model=beside(manifest, table["model"], "drop.model", folder=True) if "model" in table else None)

    def launch(self, options: DropOptions, *, probabilities: bool) -> Launch:
        return Launch("/in", "/out", mounts=(Mount(options.model, "/model"),) if options.model else ())

    def keep(self, options: DropOptions, case_id: str, native: list[str], *, probabilities: bool) -> list[str]:
        return [f"{options.result_dir}/*"]

    def collect(self, options: DropOptions, *, case: Any, profile: Any, output_dir: Path, native_dir: Path,
                probabilities: bool, names: Any) -> Collected:
        from harness.acceptance import link_or_copy

        folder = output_dir / options.result_dir
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
        if len(found) != 1:
            raise InvalidOutput(f"{names.of(options.result_dir)}/ holds {len(found)} files; write exactly one .nii.gz")
        native_dir.mkdir(exist_ok=True)
        link_or_copy(folder / found[0], native_dir / f"{case.case_id}.nii.gz")
        return Collected(native_dir, {f"/output/{case.case_id}.nii.gz": names.of(f"{options.result_dir}/{found[0]}")},
                         frozenset({f"{options.result_dir}/{found[0]}"}), output_dir)
