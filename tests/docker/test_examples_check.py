"""`harness check` on each folder of algorithms/examples/ as the README shows it: every one is
accepted (exit 0) through Docker, with the path rule the README states (its `dockerfile` read from
`algorithms/`), and the legacy MLCube example's config image name is reported as unused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker.conftest import REPO

EXAMPLES = REPO / "algorithms" / "examples"


@pytest.mark.parametrize("name", ["harness", "flare", "grand-challenge", "mlcube", "medperf", "nnunet"])
def test_harness_check_accepts_each_readme_example(tmp_path: Path, base_image: str, phantom_data: Path, name: str,
                                                   monkeypatch, harness_cli) -> None:
    monkeypatch.chdir(REPO)  # the README's path, relative to the repository
    code, stdout, stderr = harness_cli("check", f"algorithms/examples/{name}", "--data", str(phantom_data), "--cases", "1",
                                       "--base", base_image, cache=tmp_path / "cache", plain_env=True)
    print(stdout)
    assert code == 0, stdout + stderr
    lines = stdout.splitlines()
    assert lines[0] == f"harness check algorithms/examples/{name}"
    assert lines[1].startswith(f"  [ok]   manifest: {name} 1, contract ") and lines[1].endswith(
        f"dockerfile examples/{name}/Dockerfile")
    assert lines[-1] == "accepted: it would be accepted as submitted"
    assert any(line.startswith("  [ok]   case phantom_0000: exit 0 in ") for line in lines)
    warned = [line for line in lines if line.startswith("  [warn]")]
    if name in ("mlcube", "medperf"):
        config = "mlcube.yaml" if name == "mlcube" else "container_config.yaml"
        assert warned == [f"  [warn] manifest: {config} names the image 'example/box-model:0.0.1': not used (a name is "
                          "never looked up: any local image could carry it); the image is the manifest's dockerfile, "
                          "pinned image or archive"]
    else:
        assert warned == []
