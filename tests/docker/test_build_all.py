"""Images built side by side: `build_all` starts the next build while another is still running,
returns every result in the algorithms' order, and one broken Dockerfile fails only its own build."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from harness.build import BuildError, BuiltImage, build_all
from harness.spec import load_manifest
from tests.docker.conftest import HERE

SLEEP_S = 3  # each slow build's own step; the second build must start while the first is in it


def _algorithm(root: Path, name: str, step: str) -> Path:
    folder = root / "algorithms" / name
    folder.mkdir(parents=True)
    (folder / "behave.py").write_bytes((HERE / "behave" / "behave.py").read_bytes())
    (folder / "mode").write_text("ok\n")
    dockerfile = root / "dockerfiles" / f"{name}.Dockerfile"
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    # The step goes last: the layers before it (the same files each time) come from Docker's build
    # cache, so each build starts one container, the step's own.
    dockerfile.write_text((HERE / "behave.Dockerfile").read_text().replace("ENTRYPOINT", f"RUN {step}\nENTRYPOINT"))
    (folder / "algorithm.toml").write_text(
        f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/{name}.Dockerfile"\n'
        'profile = "flare22"\ngpu = "none"\n')
    return folder / "algorithm.toml"


def _build(root: Path, base_image: str, jobs: int) -> tuple[list[tuple[str, BuiltImage | BuildError]], list[float]]:
    nonce = uuid.uuid4().hex[:12]  # a step no earlier build has cached
    manifests = [_algorithm(root, "slow-a", f"sleep {SLEEP_S} && echo {nonce}-a"),
                 _algorithm(root, "slow-b", f"sleep {SLEEP_S} && echo {nonce}-b"),
                 _algorithm(root, "broken", f"echo {nonce} && false")]
    specs = [load_manifest(path, repo_root=root) for path in manifests]
    starts: list[float] = []

    def progress(line: str) -> None:
        if line.startswith("building "):
            starts.append(time.monotonic())

    results = [(spec.name, image) for spec, image in build_all(specs, base=base_image, wheel_cache=root / "wheels",
                                                              progress=progress, jobs=jobs)]
    return results, starts


def test_builds_overlap_and_each_result_keeps_its_place(tmp_path: Path, base_image: str, docker_client) -> None:
    together, starts = _build(tmp_path / "together", base_image, jobs=2)
    assert [name for name, _ in together] == ["slow-a", "slow-b", "broken"]
    assert all(isinstance(image, BuiltImage) and not image.cached for _, image in together[:2])
    assert isinstance(together[2][1], BuildError) and "build of broken failed" in str(together[2][1])
    # the two slow builds started within their own sleep of each other: they ran at the same time
    assert len(starts) == 3 and starts[1] - starts[0] < SLEEP_S - 1

    one_by_one, starts = _build(tmp_path / "one-by-one", base_image, jobs=1)
    assert [name for name, _ in one_by_one] == ["slow-a", "slow-b", "broken"]
    assert starts[1] - starts[0] >= SLEEP_S  # the reference: with one job, the second waits for the first
    for _, image in together[:2] + one_by_one[:2]:
        assert isinstance(image, BuiltImage)
        docker_client.images.remove(image.tag, force=True)
