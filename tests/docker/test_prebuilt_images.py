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
from tests.docker.conftest import behave_algorithms


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
    with gzip.open(submissions / "saved" / "team.tar.gz", "wb") as out:
        for chunk in docker_client.images.get(name).save(named=True):
            out.write(chunk)
    shutil.copytree(algorithms / "native", submissions / "native")
    shutil.copytree(tmp_path / "dockerfiles", submissions.parent / "dockerfiles")
    settings = RunSettings(algorithms_dir=submissions, data_dir=phantom_data, results_dir=tmp_path / "results",
                           runner="docker", base=base_image, cache_dir=tmp_path / "cache", repo_root=submissions.parent)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    status = runs.groupby(level=0).status.first().to_dict()
    assert status == {"gone": "build_failed", "native": "ok", "pinned": "ok", "repinned": "build_failed", "saved": "ok"}
    assert summary.failed == 2 * 3
    assert "not the pinned sha256:00000000" in runs.loc["repinned"].message.iloc[0]
    assert "archive" in runs.loc["gone"].message.iloc[0] and "is missing" in runs.loc["gone"].message.iloc[0]
    for twin in ("pinned", "saved"):
        assert scores.loc[twin].dsc.equals(scores.loc["native"].dsc) and scores.loc[twin].nsd.equals(scores.loc["native"].nsd)
        assert (runs.loc[twin].image_digest == built.image_id).all()  # the loaded / pinned image is what ran
