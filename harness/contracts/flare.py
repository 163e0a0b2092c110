"""FLARE (FLARE21-24): the organisers' `docker run` of each team's image: /workspace/inputs (a
private writable copy) -> /workspace/outputs, `/bin/bash -c "sh predict.sh"`, the image's own
user; the platform's container file system is writable, so the image's WORKDIR (where predict.sh
keeps scratch files) is a bounded writable copy of itself (algorithms/README.md has the sources)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.contracts.base import Contract, Launch


class Flare(Contract):
    name = "flare"
    annotators = False

    def launch(self, options: Any, *, probabilities: bool) -> Launch:
        return Launch("/workspace/inputs", "/workspace/outputs", input_writable=True, own_user=True,
                      writable_workdir=True, command=("/bin/bash", "-c", "sh predict.sh"))

    def platform_image_name(self, archive: Path) -> str:
        """FLARE's: `teamname.tar.gz` is loaded as `teamname:latest` (docker load of its save)."""
        name = archive.name
        for suffix in (".tar.gz", ".tgz", ".tar"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        return f"{name.lower()}:latest"
