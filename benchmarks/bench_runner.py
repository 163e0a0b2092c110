"""harness's overhead per case over a bare `docker run --rm` of the same image on the same case.

Both run the same small test image (tests/docker/behave, mode "ok": reads the case, writes an
all-background label map) on the same phantom cases, alternating, in one run:
- bare: `docker run --rm --network none -v in:/input:ro -v out:/output IMAGE` (the docker CLI);
- harness: the whole per-case path of `harness run` (stage the input, the sandboxed container with
  its limits and its own tmpfs /output, 10 Hz resource sampling, the wait, logs, removal, output
  checks, scoring, the store write), with the /output holders kept across runs as `harness run`
  keeps them (harness.runner.output_volumes).

Goal (issue 18): overhead under 0.1 s per case (issue 3's was 0.5 s).

With `--contract flare` the same program runs as a FLARE team's image (`WORKDIR /workspace`,
`predict.sh`, its own user): harness adds the writable inputs and the writable WORKDIR (tmpfs
volumes, the WORKDIR seeded with the image's copy, one holder for both) to every run; the bare
run is the organisers' `docker run --rm -v in:/workspace/inputs -v out:/workspace/outputs IMAGE
/bin/bash -c "sh predict.sh"`.

    python benchmarks/bench_runner.py [--cases 5] [--repeat 2] [--contract harness|flare]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.build import build_algorithm, docker_client, ensure_base_image  # noqa: E402
from harness.casework import RunTask, run_case, score_bytes  # noqa: E402
from harness.challenge import load_challenge  # noqa: E402
from harness.data.dataset import digest_cases, discover  # noqa: E402
from harness.data.synth import write_dataset  # noqa: E402
from harness.models import RunnerKind  # noqa: E402
from harness.pipeline import provenance  # noqa: E402
from harness.runner.docker_runner import DockerRunner  # noqa: E402
from harness.runner.output_volumes import VOLUMES_PER_HOLDER, keep_holders  # noqa: E402
from harness.spec import load_manifest  # noqa: E402
from harness.store import RunRecord, Store  # noqa: E402
from tests.docker.conftest import behave_algorithms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--contract", choices=("harness", "flare"), default="harness")
    args = parser.parse_args()
    client = docker_client()
    base = ensure_base_image(client)
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp_name:
        tmp = Path(tmp_name)
        algorithms = behave_algorithms(tmp, {"bench-ok": ("ok", {})})
        spec = load_manifest(algorithms / "bench-ok" / "algorithm.toml", repo_root=tmp)
        image = build_algorithm(spec, base=base, wheel_cache=tmp / "wheels", client=client)
        tag = image.tag
        if args.contract == "flare":
            spec, tag = flare_twin(client, tmp, image.tag)
        write_dataset(tmp / "data", cases=args.cases, seed=11, size="small")
        dataset, _ = discover(tmp / "data")
        runner = DockerRunner(client)
        profile = load_challenge().profile
        bare_s: list[float] = []
        harness_s: list[float] = []
        with Store.open(tmp / "results") as store, keep_holders():
            for _ in range(args.repeat):
                for case in dataset.cases:
                    assert case.image is not None
                    bare_s.append(bare_run(tag, case.image, tmp, flare=args.contract == "flare"))
                    start = time.perf_counter()
                    task = RunTask(spec=spec, case=case, image=tag, runner=RunnerKind.DOCKER, profile=profile)
                    result = run_case(task, runner=runner, work_dir=tmp)
                    outcome = result.outcome
                    store.layout.replace_run_files(spec.name, case.case_id, result.files)
                    assert result.label_map is not None, outcome.message
                    scored = score_bytes(case, result.label_map, profile)
                    digest = digest_cases([case])[case.case_id]
                    prov = provenance(image_digest=image.image_id, manifest_sha256=spec.manifest_sha256,
                                      input_sha256=digest.image_sha256, runner=RunnerKind.DOCKER,
                                      label_sha256=digest.label_sha256, profile=profile)
                    store.record(RunRecord(spec.name, case.case_id, spec.kind, outcome.status, outcome.exit_code,
                                           outcome.message, outcome.elapsed_s, outcome.wall_s, outcome.started_at,
                                           outcome.ended_at, outcome.log_tail, prov, result.details,
                                           score_status=scored.status, score_message=scored.message),
                                 scored.scores, result.measurements)
                    harness_s.append(time.perf_counter() - start)
                    assert outcome.status == "ok", outcome.message
    bare, ours = statistics.median(bare_s), statistics.median(harness_s)
    print(f"{len(bare_s)} runs each, small phantom cases, image {tag}, contract {args.contract}")
    print(f"bare docker run --rm, median seconds per case:        {bare:.3f} (mean {statistics.mean(bare_s):.3f})")
    print(f"harness (sandbox + checks + score + store), median:   {ours:.3f} (mean {statistics.mean(harness_s):.3f}, "
          f"which shares out the holder's start and removal, once per {VOLUMES_PER_HOLDER} runs)")
    print(f"overhead per case: {ours - bare:+.3f} s median, {statistics.mean(harness_s) - statistics.mean(bare_s):+.3f} s "
          f"mean (goal < 0.1 s), ratio {ours / bare:.2f}")


def flare_twin(client, tmp: Path, behave: str):  # type: ignore[no-untyped-def]
    """The behave image as a FLARE team's (WORKDIR /workspace, predict.sh), and its manifest."""
    context = tmp / "flare-context"
    context.mkdir()
    (context / "predict.sh").write_text("python3 /opt/algorithm/behave.py /workspace/inputs /workspace/outputs\n"
                                        "(echo done > last-run.txt) 2>/dev/null || true\n")  # scratch in its WORKDIR (where writable)
    (context / "Dockerfile").write_text(f"FROM {behave}\nUSER root\nWORKDIR /workspace\nCOPY predict.sh /workspace/\n"
                                         "ENTRYPOINT []\n")
    built, _ = client.images.build(path=str(context), tag="harness-bench/flare-twin:latest", network_mode="none", rm=True)
    folder = tmp / "algorithms" / "bench-flare"
    folder.mkdir(parents=True)
    (folder / "algorithm.toml").write_text(
        'name = "bench-flare"\nversion = "0.0.1"\nkind = "segmenter"\nprofile = "flare22"\ncontract = "flare"\n'
        f'image = "harness-bench/flare-twin:latest@{built.id}"\n\n[resources]\nmemory = "256m"\ntime_limit_s = 20\n')
    return load_manifest(folder / "algorithm.toml", repo_root=tmp), built.id


def bare_run(tag: str, image: Path, tmp: Path, *, flare: bool = False) -> float:
    work = Path(tempfile.mkdtemp(dir=tmp))
    (work / "in").mkdir()
    (work / "out").mkdir()
    shutil.copy(image, work / "in" / image.name)
    for folder in (work, work / "in", work / "out"):
        folder.chmod(0o777)
    start = time.perf_counter()
    if flare:
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{work / 'in'}:/workspace/inputs", "-v",
                        f"{work / 'out'}:/workspace/outputs", tag, "/bin/bash", "-c", "sh predict.sh"],
                       check=True, capture_output=True)
    else:
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{work / 'in'}:/input:ro", "-v",
                        f"{work / 'out'}:/output", tag], check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(work)
    return elapsed


if __name__ == "__main__":
    main()
