"""Connecting to Ray: a cluster at ``--address`` / ``RAY_ADDRESS``, else a local instance.

The local instance starts with its dashboard off and its logs kept out of the terminal, so
the sweep's own progress display stays readable, and every server it starts (GCS, raylet,
workers, the metrics agent and its Prometheus endpoint) listens on 127.0.0.1 only: nothing
of it is reachable from another machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spx.errors import ClusterError, ConfigError
from spx.platform.settings import mask_url


def connect(address: str | None, import_path: tuple[str, ...] = ()) -> None:
    """Start or join Ray once per process; ``import_path``: folders every worker can import
    from (a custom task's module beside its sweep file), ahead of the node's PYTHONPATH."""
    import ray

    if ray.is_initialized():
        return
    # "local" always starts a new instance: a bare ray.init() would join whatever cluster
    # /tmp/ray/ray_current_cluster names, even one that died (then it hangs).
    local = address in (None, "", "local")
    runtime_env = None
    if import_path:  # Ray expands ${PYTHONPATH} to the worker node's own value
        keep = ["${PYTHONPATH}"] if not local or os.environ.get("PYTHONPATH") else []
        folders = os.pathsep.join([*import_path, *keep])
        runtime_env = {"env_vars": {"PYTHONPATH": folders}}
    # Ray announces at every start that token auth is on; spx's users need not read it.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    node: dict[str, Any] = {"_node_ip_address": LOOPBACK} if local else {}
    try:
        with _loopback_only(local):
            ray.init(
                address="local" if local else address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env=runtime_env,
                **node,
            )
    except Exception as exc:
        where = "a local instance" if local else mask_url(address or "")
        raise ClusterError(f"could not start or join Ray ({where}): {exc}") from exc


LOOPBACK = "127.0.0.1"


@contextmanager
def _loopback_only(local: bool) -> Iterator[None]:
    """Let a local instance keep 127.0.0.1 as its node address.

    Ray 2.60 replaces a loopback ``_node_ip_address`` with the machine's outward address,
    and then binds its gRPC servers to every interface, unless it runs as a single-machine
    instance (its macOS and Windows mode, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). That
    mode is read once, at import, into ``ray_constants.ENABLE_RAY_CLUSTER``; it is switched
    off only while the local instance starts, so joining a cluster later is unaffected.
    """
    if not local:
        yield
        return
    from ray._private import ray_constants  # private: Ray has no public switch for this

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def node_memory() -> float:
    """The 'memory' resource of the largest live Ray node, in bytes: what one trial there
    may use (Ray reserves the rest for its object store and itself)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return max((n["Resources"].get("memory", 0.0) for n in nodes), default=0.0)


def ray_resources() -> list[dict[str, float]]:
    """The resources of each live node of the Ray cluster this process joined."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def local_resources() -> list[dict[str, float]]:
    """What a local Ray instance would have (one node: this machine's CPUs and GPUs),
    found without starting Ray, as Ray counts them by default."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [{"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}]


def capacity_of(address: str | None) -> tuple[list[dict[str, float]], str]:
    """The node resources a sweep would run on, and their name for messages: the cluster
    at ``address`` (joined), else this machine as a local Ray instance would see it."""
    if address:
        connect(address)
        return ray_resources(), f"the Ray cluster at {mask_url(address)}"
    return local_resources(), "this machine"


def check_capacity(
    cpus: float,
    gpus: float,
    workers: int,
    resources: list[dict[str, float]] | None = None,
    where: str = "the Ray cluster",
) -> None:
    """Fail before launch when no node (or the whole cluster) can place one trial.

    ``resources``: each node's resources (default: the joined Ray cluster's); ``where``
    names them in the message.

    >>> check_capacity(1, 0, 8, [{"CPU": 4.0, "GPU": 0.0}], "this machine")
    Traceback (most recent call last):
    spx.errors.ConfigError: resources.workers_per_trial: this machine cannot place 8 workers \
of 1 CPU / 0 GPU (it has 4 CPUs and 0 GPUs) (got 8)
    """
    nodes = [{"Resources": r} for r in (ray_resources() if resources is None else resources)]
    total_cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
    total_gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
    best_cpu = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    best_gpu = max((n["Resources"].get("GPU", 0.0) for n in nodes), default=0.0)
    if cpus > best_cpu:
        raise ConfigError(
            f"no node of {where} has that many CPUs (the largest has {best_cpu:g})",
            field="resources.cpus_per_worker",
            value=cpus,
        )
    if gpus > best_gpu:
        raise ConfigError(
            f"no node of {where} has that many GPUs (the largest has {best_gpu:g})",
            field="resources.gpus_per_worker",
            value=gpus,
        )
    if workers * cpus > total_cpus or workers * gpus > total_gpus:
        raise ConfigError(
            f"{where} cannot place {workers} workers of {cpus:g} CPU / {gpus:g} GPU "
            f"(it has {total_cpus:g} CPUs and {total_gpus:g} GPUs)",
            field="resources.workers_per_trial",
            value=workers,
        )


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
