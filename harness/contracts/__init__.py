"""Container contracts: how each platform stages a case, starts the container and names its
outputs, one class per platform (`harness.contracts.base.Contract`), chosen once by name from this
registry. algorithms/README.md has each contract in full, with its sources.

- harness: /input (read-only) -> /output, the image's entry point, our unprivileged user.
- flare (FLARE21-24): /workspace/inputs (a private writable copy) -> /workspace/outputs,
  `/bin/bash -c "sh predict.sh"`, the image's own user.
- grand-challenge: /input/images/<slug>/<uuid>.mha and /input/inputs.json (read-only) -> exactly
  one image under /output/images/<slug>/; the model, when given, at /opt/ml/model (read-only).
- mlcube: MedPerf's `container_config.yaml` or a legacy `mlcube.yaml`.
- nnunet: the image's entry point with `-i /input -o /output` (and `--save_probabilities`).

A sixth platform is one new module with one `Contract` subclass, registered here (`register`):
its manifest table is read through `harness.intake` and its outputs pass `harness.acceptance`
like every other's, because the one-case layer (`harness.casework`) calls both around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.contracts.base import Collected, Contract, Launch, Mount
from harness.contracts.flare import Flare
from harness.contracts.grand_challenge import GrandChallenge, GrandChallengeOptions
from harness.contracts.mlcube import MLCube, MLCubeOptions
from harness.contracts.nnunet import NnUNet, NnUNetOptions
from harness.errors import SpecError

__all__ = ["Collected", "Contract", "Launch", "Mount", "GrandChallengeOptions", "MLCubeOptions", "NnUNetOptions",
           "CONTRACTS", "contract_of", "register", "contract_names", "parse_options"]

ContractOptions = Any  # each contract's own frozen options (or None)

CONTRACTS: dict[str, Contract] = {}


def register(contract: Contract) -> Contract:
    """Add a contract under its name (once); returns it."""
    if contract.name in CONTRACTS and type(CONTRACTS[contract.name]) is not type(contract):
        raise ValueError(f"contract {contract.name!r} is registered twice")
    CONTRACTS[contract.name] = contract
    return contract


for _contract in (Contract(), Flare(), GrandChallenge(), MLCube(), NnUNet()):
    register(_contract)


def contract_names() -> tuple[str, ...]:
    return tuple(CONTRACTS)


def contract_of(name: str) -> Contract:
    """The registered contract called `name` (KeyError: the manifest check refuses others first)."""
    return CONTRACTS[name]


def parse_options(contract: str, raw: dict[str, Any], manifest: Path) -> ContractOptions:
    """The contract's own table of a manifest (e.g. `[grand-challenge]`), checked; a table of another
    contract is an error."""
    chosen = contract_of(contract)
    for other in CONTRACTS.values():
        if other.table is not None and other.table in raw and other is not chosen:
            raise SpecError.of(manifest, f"table [{other.table}] but contract = {contract!r}; set contract = "
                            f"\"{other.name}\" or remove the table")
    if chosen.table is None:
        return chosen.parse_options({}, manifest)
    table = raw.get(chosen.table, {})
    if not isinstance(table, dict):
        raise SpecError.of(manifest, f"key '{chosen.table}' must be a table ([{chosen.table}])")
    return chosen.parse_options(table, manifest)
