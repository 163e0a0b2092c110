"""Label maps between label systems: a model numbered in one profile's system, scored on data
numbered in another's, mapping by organ name (the profiles share one vocabulary of names).

Organs only one side has are reported, never guessed: the source's extra organs become
background, the target's extra organs are not scored (they stay valid labels of the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from harness.errors import SpecError
from harness.models import Profile
from harness.profiles import load_profile


@dataclass(frozen=True)
class LabelMap:
    source: Profile  # the prediction's numbering
    target: Profile  # the data's numbering and scoring rules

    @property
    def shared(self) -> tuple[str, ...]:
        names = {o.name for o in self.source.organs}
        return tuple(o.name for o in self.target.organs if o.name in names)

    @property
    def only_source(self) -> tuple[str, ...]:
        names = {o.name for o in self.target.organs}
        return tuple(o.name for o in self.source.organs if o.name not in names)

    @property
    def only_target(self) -> tuple[str, ...]:
        names = {o.name for o in self.source.organs}
        return tuple(o.name for o in self.target.organs if o.name not in names)

    def table(self) -> NDArray[np.uint8]:
        """Source label value -> target label value (0 for an organ the target does not have)."""
        lut = np.zeros(256, np.uint8)
        to = {o.name: o.label for o in self.target.organs}
        for organ in self.source.organs:
            lut[organ.label] = to.get(organ.name, 0)
        return lut

    def apply(self, label_map: NDArray[np.integer]) -> NDArray[np.uint8]:
        """Renumbered; a value beyond the table (a profile counting unknown values as background) is 0."""
        values = np.asarray(label_map, dtype=np.intp)
        if values.size and (values.min() < 0 or values.max() > 255):
            values = np.where((values >= 0) & (values <= 255), values, 0)
        return self.table()[values]

    def scored_profile(self) -> Profile:
        """The target's rules over the organs both systems have; the others stay valid, unscored."""
        return self.target.scoring_only(set(self.shared))

    def describe(self) -> str:
        parts = [f"{self.source.name} -> {self.target.name}: {len(self.shared)} organs mapped by name"]
        if self.only_source:
            parts.append(f"only in {self.source.name} (predictions ignored): {', '.join(self.only_source)}")
        if self.only_target:
            parts.append(f"only in {self.target.name} (not scored): {', '.join(self.only_target)}")
        return "; ".join(parts)


def parse_label_map(text: str) -> LabelMap:
    """`FROM:TO` (two profiles) as a LabelMap; raises SpecError with the fix."""
    source, sep, target = text.partition(":")
    if not sep or not source or not target:
        raise SpecError(f"--label-map {text!r}: write it as FROM:TO, e.g. amos22:flare22")
    label_map = LabelMap(load_profile(source), load_profile(target))
    if not label_map.shared:
        raise SpecError(f"--label-map {text!r}: the two label systems share no organ name; check the profiles")
    return label_map
