"""Seconds per full-size case (512 x 512 x ~100) for each example segmenter, inside its container
(the Docker runner, sandbox and limits included) versus directly in a local process (the local
runner), measured in the same run on the same case.

    python benchmarks/bench_segmenters.py [--only classical,cnn]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.build import build_algorithm, docker_client, ensure_base_image  # noqa: E402
from harness.casework import RunTask, run_case, score_bytes  # noqa: E402
from harness.challenge import load_challenge  # noqa: E402
from harness.data.dataset import discover  # noqa: E402
from harness.data.synth import write_dataset  # noqa: E402
from harness.models import Kind, OrganScore, RunnerKind  # noqa: E402
from harness.pipeline import default_cache_dir  # noqa: E402
from harness.runner.docker_runner import DockerRunner  # noqa: E402
from harness.runner.local_runner import LocalRunner  # noqa: E402
from harness.spec import discover_algorithms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated segmenter names (default: all)")
    args = parser.parse_args()
    specs, _ = discover_algorithms(REPO / "algorithms", repo_root=REPO)
    wanted = {n for n in args.only.split(",") if n}
    segmenters = [s for s in specs if s.kind is Kind.SEGMENTER and (not wanted or s.name in wanted)]
    client = docker_client()
    base = ensure_base_image(client)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-segmenters-") as tmp_name:
        tmp = Path(tmp_name)
        write_dataset(tmp / "data", cases=1, seed=0, size="full")
        case = discover(tmp / "data")[0].cases[0]
        docker, local = DockerRunner(client), LocalRunner()
        profile = load_challenge().profile
        for spec in segmenters:
            image = build_algorithm(spec, base=base, wheel_cache=default_cache_dir() / "wheelhouse", client=client)
            inside = run_case(RunTask(spec, case, image.tag, RunnerKind.DOCKER, profile), runner=docker, work_dir=tmp)
            direct = run_case(RunTask(spec, case, None, RunnerKind.LOCAL, profile), runner=local, work_dir=tmp)
            for name, result in (("container", inside), ("local", direct)):
                if result.outcome.status != "ok":
                    print(f"{spec.name} ({name}): {result.outcome.status}: {result.outcome.message}")
            rows.append((spec.name, inside.outcome.elapsed_s, direct.outcome.elapsed_s,
                         inside.measurements.get("peak_rss_mb", float("nan")), direct.measurements.get("peak_rss_mb", float("nan")),
                         _dsc(score_bytes(case, inside.label_map, profile).scores if inside.label_map else ())))
    print(f"one full-size phantom case {case.case_id}; seconds from start to exit")
    print(f"{'segmenter':<20}{'container s':>13}{'local s':>10}{'ratio':>8}{'peak RSS MB (c/l)':>20}{'mean DSC':>10}")
    for name, inside_s, local_s, rss_c, rss_l, dsc in rows:
        print(f"{name:<20}{inside_s:>13.1f}{local_s:>10.1f}{inside_s / local_s:>8.2f}{rss_c:>10.0f} /{rss_l:>7.0f}{dsc:>10.3f}")


def _dsc(scores: Sequence[OrganScore]) -> float:
    values = [s.dsc for s in scores if s.dsc == s.dsc]
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    main()
