"""Foreign container contracts, run unchanged: a FLARE-style image (inputs and outputs under
/workspace, `sh predict.sh`, its own user, writing into its input folder) scores as the same
algorithm packaged for the harness contract, and the organiser's data is untouched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from harness.pipeline import RunSettings, run_all
from harness.store import Store
from tests.docker.conftest import HERE, behave_algorithms

FLARE_DOCKERFILE = """# A FLARE22-style submission: predict.sh in /workspace, run with /bin/bash -c "sh predict.sh".
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
COPY algorithm/ /workspace/
WORKDIR /workspace
"""

PREDICT_SH = """#!/bin/sh
set -e  # a failed write into inputs/ would crash the run (and fail the test)
# FLARE's organisers saw teams write into inputs/: a private copy lets them.
echo scratch > /workspace/inputs/scratch.txt
python3 /workspace/behave.py /workspace/inputs /workspace/outputs
"""


def test_a_flare_image_runs_unchanged_and_scores_as_its_harness_twin(tmp_path: Path, base_image: str,
                                                                    phantom_data: Path) -> None:
    algorithms = behave_algorithms(tmp_path, {"native": ("box3", {})})
    flare = algorithms / "flare-team"
    flare.mkdir()
    shutil.copy(HERE / "behave" / "behave.py", flare / "behave.py")
    (flare / "mode").write_text("box3\n")
    (flare / "predict.sh").write_text(PREDICT_SH)
    (tmp_path / "dockerfiles" / "flare.Dockerfile").write_text(FLARE_DOCKERFILE)
    (flare / "algorithm.toml").write_text(
        'name = "flare-team"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/flare.Dockerfile"\n'
        'contract = "flare"\nprofile = "flare22"\ngpu = "none"\n\n[resources]\nmemory = "256m"\ntime_limit_s = 30\n')
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(phantom_data.rglob("*")) if p.is_file()}
    settings = RunSettings(algorithms_dir=algorithms, data_dir=phantom_data, results_dir=tmp_path / "results",
                           runner="docker", base=base_image, cache_dir=tmp_path / "cache", repo_root=tmp_path)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    assert summary.failed == 0, runs.log_tail.tolist()
    assert set(runs.status) == {"ok"}
    assert scores.loc["flare-team"].dsc.equals(scores.loc["native"].dsc)
    assert scores.loc["flare-team"].nsd.equals(scores.loc["native"].nsd)
    assert (scores.loc["native"].dsc > 0).any()  # real, varied scores, not all-background
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(phantom_data.rglob("*")) if p.is_file()}
    assert after == before  # it wrote into its input folder: a private copy


def test_flare_contract_violations_are_recorded_with_their_reason(tmp_path: Path, base_image: str,
                                                                  phantom_data: Path) -> None:
    algorithms = behave_algorithms(tmp_path, {"native": ("ok", {})})
    (tmp_path / "dockerfiles" / "flare.Dockerfile").write_text(FLARE_DOCKERFILE)
    broken = {
        "no-predict-sh": None,  # the organisers' command finds nothing to run
        "wrong-name": "#!/bin/sh\nset -e\nmkdir -p /tmp/out\npython3 /workspace/behave.py /workspace/inputs /tmp/out\n"
                      "cp /tmp/out/*.nii.gz /workspace/outputs/segmentation.nii.gz\n",
        # its writable inputs are a volume bounded like /output (here 8 MB, 64 files), not a host folder
        "floods-inputs": "#!/bin/sh\nset -e\nhead -c 64000000 /dev/zero > /workspace/inputs/flood.bin\n",
        "many-inputs": "#!/bin/sh\nset -e\nfor i in $(seq 1 200); do echo x > /workspace/inputs/f$i; done\n",
    }
    for name, script in broken.items():
        folder = algorithms / name
        folder.mkdir()
        shutil.copy(HERE / "behave" / "behave.py", folder / "behave.py")
        (folder / "mode").write_text("ok\n")
        if script is not None:
            (folder / "predict.sh").write_text(script)
        (folder / "algorithm.toml").write_text(
            f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/flare.Dockerfile"\n'
            'contract = "flare"\nprofile = "flare22"\ngpu = "none"\n\n[resources]\nmemory = "256m"\ntime_limit_s = 30\n'
            'output = "8m"\noutput_files = 64\n')
    before = {p: p.stat().st_mtime_ns for p in phantom_data.rglob("*")}
    # One case: each violation is the same on every case (the scores-alike test above runs all three).
    settings = RunSettings(algorithms_dir=algorithms, data_dir=phantom_data, results_dir=tmp_path / "results",
                           runner="docker", base=base_image, cache_dir=tmp_path / "cache", repo_root=tmp_path,
                           case_limit=1)
    run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(tmp_path / "results", lock=False, create=False) as store:
        runs = store.runs().set_index("algorithm")
    assert len(runs) == 5 and set(runs.loc[["native"]].status) == {"ok"}  # the others go on
    missing = runs.loc[["no-predict-sh"]]
    assert set(missing.status) == {"crashed"} and "predict.sh" in missing.log_tail.iloc[0]
    wrong = runs.loc[["wrong-name"]]
    assert set(wrong.status) == {"invalid_output"}
    assert wrong.message.iloc[0].startswith("no label map /workspace/outputs/phantom_")  # in the contract's terms
    assert "(found: segmentation.nii.gz)" in wrong.message.iloc[0]
    for name in ("floods-inputs", "many-inputs"):
        flooded = runs.loc[[name]]
        assert set(flooded.status) == {"output_too_large"}, (name, flooded.message.iloc[0])
        assert "/workspace/inputs filled its writable space" in flooded.message.iloc[0]
    assert {p: p.stat().st_mtime_ns for p in phantom_data.rglob("*")} == before  # nothing of the organiser's changed
