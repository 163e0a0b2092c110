"""Fixtures for tests that build real images and run real containers through the Docker engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]


@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker engine reachable ({type(exc).__name__}); these tests need a running Docker daemon")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The local debootstrap base image (made once per daemon, then reused by content hash). Under
    xdist every worker asks for it: a lock in the session's shared temporary folder (the parent of
    each worker's own) lets the first make it and the others find it made."""
    from harness.build import ensure_base_image
    from tests.conftest import file_lock

    with file_lock(tmp_path_factory.getbasetemp().parent / "harness-base-image.lock"):
        return ensure_base_image(docker_client)


def behave_algorithms(root: Path, algorithms: dict[str, tuple[str, dict[str, object]]]) -> Path:
    """Write root/algorithms/<name>/ for each name -> (mode, [resources] overrides), all built
    from tests/docker/behave.Dockerfile; returns root/algorithms."""
    (root / "dockerfiles").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "behave.Dockerfile", root / "dockerfiles" / "behave.Dockerfile")
    for name, (mode, resources) in algorithms.items():
        folder = root / "algorithms" / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "behave" / "behave.py", folder / "behave.py")
        (folder / "mode").write_text(mode + "\n")
        limits: dict[str, object] = {"memory": "256m", "time_limit_s": 20, **resources}
        lines = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in limits.items())
        (folder / "algorithm.toml").write_text(
            f'name = "{name}"\nversion = "0.0.1"\nkind = "segmenter"\ndockerfile = "dockerfiles/behave.Dockerfile"\n'
            f'profile = "flare22"\nwrites_probabilities = {"true" if mode.endswith("_probs") else "false"}\n'
            f'gpu = "none"\n\n[resources]\n{lines}\n'
            '[local]\ncommand = ["{python}", "behave.py", "{input}", "{output}"]\n'
        )
    return root / "algorithms"


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory) -> Path:
    from harness.data.synth import write_dataset

    root = tmp_path_factory.mktemp("phantoms") / "data"
    write_dataset(root, cases=3, seed=5, size="small")
    return root


def retagged_archive(raw: bytes, tags: list[str]) -> bytes:
    """A `docker save` archive with its manifest's tags replaced (what a hostile team can write)."""
    import io
    import json
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw)) as source, tarfile.open(fileobj=out, mode="w") as copy:
        for member in source:
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "manifest.json":
                manifest = json.loads(data)  # type: ignore[arg-type]
                manifest[0]["RepoTags"] = tags
                data = json.dumps(manifest).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def first_cases(phantom_data: Path, data: Path, count: int) -> Path:
    """The first `count` cases of `phantom_data` copied as a data set of their own at `data` (for tests
    where each case costs a container per algorithm and the number of cases is not the point)."""
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
    for label in sorted((phantom_data / "labelsTr").glob("*.nii.gz"))[:count]:
        case = label.name[: -len(".nii.gz")]
        shutil.copy(label, data / "labelsTr" / label.name)
        shutil.copy(phantom_data / "imagesTr" / f"{case}_0000.nii.gz", data / "imagesTr" / f"{case}_0000.nii.gz")
    if (phantom_data / "dataset.json").exists():
        shutil.copy(phantom_data / "dataset.json", data / "dataset.json")
    return data
