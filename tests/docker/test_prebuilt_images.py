"""Prebuilt images as algorithms: an image pinned by digest, a `docker save` archive; a digest
that does not match and a missing archive are recorded as build failures, the others run and
score as the same algorithm built from its folder."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from harness.build import build_algorithm
from harness.pipeline import RunSettings, run_all
from harness.spec import load_manifest
from harness.store import Store
from tests.docker.conftest import behave_algorithms, first_cases, retagged_archive

CASES = 2  # two cases tell a twin that scores each case as its own from one that mixes them up



def _manifest(folder: Path, source: str) -> None:
    folder.mkdir(parents=True)
    (folder / "algorithm.toml").write_text(
        f'name = "{folder.name}"\nversion = "1"\nkind = "segmenter"\n{source}\nprofile = "flare22"\ngpu = "none"\n\n'
        '[resources]\nmemory = "256m"\ntime_limit_s = 30\n')


def test_pinned_images_and_archives_run_as_their_built_twin(tmp_path: Path, base_image: str, phantom_data: Path,
                                                            docker_client) -> None:
    algorithms = behave_algorithms(tmp_path, {"native": ("box2", {})})
    spec = load_manifest(algorithms / "native" / "algorithm.toml", repo_root=tmp_path)
    built = build_algorithm(spec, base=base_image, wheel_cache=tmp_path / "wheels", client=docker_client)
    name = built.tag
    submissions = tmp_path / "elsewhere" / "submissions"  # an organiser's folder, outside any repository
    _manifest(submissions / "pinned", f'image = "{name}@{built.image_id}"')
    _manifest(submissions / "repinned", f'image = "{name}@sha256:{"0" * 64}"')
    _manifest(submissions / "saved", 'archive = "team.tar.gz"')
    _manifest(submissions / "gone", 'archive = "team.tar.gz"')
    with gzip.open(submissions / "saved" / "team.tar.gz", "wb", compresslevel=1) as out:  # deflate, at its fastest
        for chunk in docker_client.images.get(name).save(named=True):
            out.write(chunk)
    shutil.copytree(algorithms / "native", submissions / "native")
    shutil.copytree(tmp_path / "dockerfiles", submissions.parent / "dockerfiles")
    settings = RunSettings(algorithms_dir=submissions, data_dir=first_cases(phantom_data, tmp_path / "data", CASES),
                           results_dir=tmp_path / "results",
                           runner="docker", base=base_image, cache_dir=tmp_path / "cache", repo_root=submissions.parent)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    status = runs.groupby(level=0).status.first().to_dict()
    assert status == {"gone": "build_failed", "native": "ok", "pinned": "ok", "repinned": "build_failed", "saved": "ok"}
    assert summary.failed == 2 * CASES
    assert sorted(runs.loc["native"].index) == sorted(runs.loc["saved"].index) and len(runs.loc["native"]) == CASES
    assert "not the pinned sha256:00000000" in runs.loc["repinned"].message.iloc[0]
    assert "archive" in runs.loc["gone"].message.iloc[0] and "is missing" in runs.loc["gone"].message.iloc[0]
    for twin in ("pinned", "saved"):
        assert scores.loc[twin].dsc.equals(scores.loc["native"].dsc) and scores.loc[twin].nsd.equals(scores.loc["native"].nsd)
        assert (runs.loc[twin].image_digest == built.image_id).all()  # the loaded / pinned image is what ran


def test_an_archive_cannot_take_another_images_name(tmp_path: Path, base_image: str, docker_client) -> None:
    """An archive whose manifest tags it as another algorithm's image and as the base image is
    loaded without any tag: the victim's tag and the base still name their own images, the
    harness names the loaded one, and the same archive is recognised by its hash next time."""
    import io

    algorithms = behave_algorithms(tmp_path, {"victim": ("box2", {})})
    victim = build_algorithm(load_manifest(algorithms / "victim" / "algorithm.toml", repo_root=tmp_path),
                             base=base_image, wheel_cache=tmp_path / "wheels", client=docker_client)
    base_id = docker_client.images.get(base_image).id
    evil, _ = docker_client.images.build(fileobj=io.BytesIO(f"FROM {base_image}\nLABEL evil=1\n".encode()),
                                         rm=True, pull=False, network_mode="none")
    raw = b"".join(docker_client.images.get(evil.id).save(named=False))
    docker_client.images.remove(evil.id)
    _manifest(tmp_path / "submissions" / "thief", 'archive = "team.tar"')
    (tmp_path / "submissions" / "thief" / "team.tar").write_bytes(retagged_archive(raw, [victim.tag, base_image]))
    thief = load_manifest(tmp_path / "submissions" / "thief" / "algorithm.toml", repo_root=tmp_path)
    try:
        loaded = build_algorithm(thief, base=base_image, wheel_cache=tmp_path / "wheels", client=docker_client)
        assert loaded.image_id == evil.id and not loaded.cached
        assert docker_client.images.get(victim.tag).id == victim.image_id  # not replaced
        assert docker_client.images.get(base_image).id == base_id
        assert [t.split(":")[0] for t in docker_client.images.get(evil.id).tags] == ["harness-thief"]
        again = build_algorithm(thief, base=base_image, wheel_cache=tmp_path / "wheels", client=docker_client)
        assert again.cached and again.image_id == evil.id
    finally:
        for tag in docker_client.images.get(evil.id).tags if _exists(docker_client, evil.id) else []:
            docker_client.images.remove(tag)


def _exists(client, image_id: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        client.images.get(image_id)
        return True
    except Exception:  # noqa: BLE001
        return False
