"""The challenge configuration: the organiser's rules of one evaluation, resolved once into a value.

    # challenge.toml (every key optional; relative profile paths are read from this file's folder)
    name = "my-challenge"
    profile = "flare22"              # scores every segmenter; a built-in name or a profile TOML file
    annotation_profile = "atlas8"    # scores the annotator's pseudo label

The built-in default is FLARE22's scoring with AbdomenAtlas-8K's organs for the annotator. The
challenge, not a submission, decides how outputs are scored: a manifest's `profile` only declares
the label system its outputs use, and a manifest whose label system differs from the challenge's is
rejected before anything runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import SpecError
from harness.models import Kind, Profile
from harness.profiles import load_profile

if TYPE_CHECKING:
    from harness.store import FolderIdentity

DEFAULT_NAME = "flare22"
DEFAULT_PROFILE = "flare22"
DEFAULT_ANNOTATION_PROFILE = "atlas8"
_KEYS = {"name", "profile", "annotation_profile"}


@dataclass(frozen=True)
class Challenge:
    """The rules of one evaluation: a name and the resolved profile of each kind of algorithm."""

    name: str
    profile: Profile
    annotation_profile: Profile
    source: str = "built-in"

    def profile_for(self, kind: Kind) -> Profile:
        return self.annotation_profile if kind is Kind.ANNOTATOR else self.profile

    def accepts(self, kind: Kind, declared: Profile) -> str | None:
        """None when a manifest declaring `declared` outputs fits this challenge, else the reason."""
        wanted = self.profile_for(kind)
        if declared.label_system == wanted.label_system:
            return None
        return (f"its outputs use the label system of profile {declared.name}, but challenge {self.name} scores "
                f"{kind}s under {wanted.name}; write labels as {wanted.name} does and set profile = \"{wanted.source}\"")


def load_challenge(path: Path | None = None, *, profile: str | None = None) -> Challenge:
    """The challenge of `path` (or the built-in default); `profile` replaces its segmenters' profile."""
    raw: dict[str, object] = {}
    base: Path | None = None
    source = "built-in"
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the challenge file ({exc.strerror}); check the path") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: not valid TOML ({' '.join(str(exc).split())}); fix the syntax") from None
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise SpecError(f"{path}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(_KEYS))}")
        for key, value in raw.items():
            if not isinstance(value, str) or not value.strip():
                raise SpecError(f"{path}: key '{key}' = {value!r}; expected a non-empty string")
        base = Path(path).resolve().parent
        source = str(Path(path).resolve())
    name = str(raw.get("name", DEFAULT_NAME if path is None else Path(path).stem))
    segmenters = load_profile(profile) if profile is not None else load_profile(
        str(raw.get("profile", DEFAULT_PROFILE)), relative_to=base)
    annotator = load_profile(str(raw.get("annotation_profile", DEFAULT_ANNOTATION_PROFILE)), relative_to=base)
    return Challenge(name=name, profile=segmenters, annotation_profile=annotator, source=source)


def challenge_of(identity: FolderIdentity, *, profile: str | None = None) -> Challenge:
    """The challenge a results folder recorded, its profiles read again from their sources (so that a
    profile file edited since is read as it is now); `profile` replaces the segmenters' profile."""
    return Challenge(name=identity.challenge, profile=load_profile(profile if profile is not None else identity.profile),
                     annotation_profile=load_profile(identity.annotation_profile), source="recorded")
