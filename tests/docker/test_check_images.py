"""`harness check` on a good and a broken image of every contract, through Docker.

The images are the test images of tests/docker/test_contracts.py (flare) and
test_foreign_contracts.py (grand-challenge, MLCube, nnU-Net) and a native behave.py segmenter;
each good one must be accepted (exit 0) and each broken one refused (exit 3) with its reason in the
container's own terms.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.docker.conftest import HERE, behave_algorithms
from tests.docker.test_contracts import FLARE_DOCKERFILE, PREDICT_SH
from tests.docker.test_foreign_contracts import foreign_algorithms


def _flare(root: Path, name: str, *, predict_sh: bool) -> None:
    folder = root / "algorithms" / name
    folder.mkdir()
    shutil.copy(HERE / "behave" / "behave.py", folder / "behave.py")
    (folder / "mode").write_text("box3\n")
    if predict_sh:
        (folder / "predict.sh").write_text(PREDICT_SH)
    (root / "dockerfiles" / "flare.Dockerfile").write_text(FLARE_DOCKERFILE)
    (folder / "algorithm.toml").write_text(
        f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/flare.Dockerfile"\n'
        'contract = "flare"\nprofile = "flare22"\ngpu = "none"\n\n[resources]\nmemory = "256m"\ntime_limit_s = 30\n')


def test_check_accepts_each_contracts_good_image_and_refuses_its_broken_twin(tmp_path: Path, base_image: str,
                                                                             phantom_data: Path, harness_cli) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    foreign_algorithms(good, broken=False)
    foreign_algorithms(bad, broken=True)
    behave_algorithms(bad, {"harness-broken": ("wrong_affine", {})})
    _flare(good, "flare", predict_sh=True)
    _flare(bad, "flare-broken", predict_sh=False)
    expected_failures = {
        "harness-broken": "invalid_output: /output/phantom_0000.nii.gz: affine differs from the input image",
        "flare-broken": "crashed: exited with code 2 | log: sh: 0: cannot open predict.sh",
        "gc-broken": "invalid_output: /output/images/abdominal-organ-segmentation/ holds 2 images",
        "mlcube-broken": "invalid_output: no label map /mlcube_io3/phantom_0000.nii.gz (found: prediction.nii.gz)",
        "nnunet-broken": "invalid_output: /output/phantom_0000.npz: 'probabilities' has shape (14, ",
    }
    outputs = {}
    for root, names in ((good, ("native", "flare", "gc", "mlcube", "medperf", "nnunet")), (bad, tuple(expected_failures))):
        for name in names:
            code, stdout, stderr = harness_cli("check", str(root / "algorithms" / name), "--data", str(phantom_data),
                                               "--cases", "1", "--base", base_image, cache=tmp_path / "cache", plain_env=True)
            outputs[name] = stdout
            if root is good:
                assert code == 0, stdout + stderr
                assert stdout.splitlines()[-1] == "accepted: it would be accepted as submitted"
                assert "  [ok]   case phantom_0000: exit 0 in " in stdout
            else:
                assert code == 3, stdout + stderr
                assert f"  [FAIL] case phantom_0000: {expected_failures[name]}" in stdout, stdout
                assert stdout.splitlines()[-1] == "NOT accepted: 1 problem above"
    assert "[warn] case phantom_0000: wrote files outside the contract" not in outputs["nnunet"]  # its side files are by design
