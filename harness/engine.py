"""The Docker engine, reached lazily: scoring and ranking never import the Docker SDK.

Below `harness.build` and `harness.baseimage`, which both need a client and image lookups.
"""

from __future__ import annotations

from harness.errors import HostError


def _docker():  # type: ignore[no-untyped-def]
    import docker  # imported lazily: scoring and ranking never need the Docker SDK

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure means "no engine reachable"
        raise HostError(
            f"Docker engine not reachable ({' '.join(str(exc).split())[:200]}); start it and check that this user may "
            "use it (the docker group), or run `harness run --runner local` without containers"
        ) from None
    return client


def docker_client():  # type: ignore[no-untyped-def]
    """A connected Docker SDK client, or a HarnessError saying how to get one."""
    return _docker()


def _image_exists(client, ref: str) -> str | None:  # type: ignore[no-untyped-def]
    import docker

    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None
