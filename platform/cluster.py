"""Connecting to Ray: a cluster at ``--address`` / ``RAY_ADDRESS``, else a local instance.

The local instance starts with its dashboard off and its logs kept out of the terminal, so
the sweep's own progress display stays readable.
"""

from __future__ import annotations

import logging

from spx.errors import ClusterError, ConfigError
from spx.platform.settings import mask_url


def connect(address: str | None) -> None:
    """Start or join Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    # Ray announces at every start that token auth is on; spx's users need not read it.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    try:
        ray.init(
            address=address or None,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except Exception as exc:
        where = mask_url(address) if address else "a local instance"
        raise ClusterError(f"could not start or join Ray ({where}): {exc}") from exc


def check_capacity(cpus: float, gpus: float, workers: int) -> None:
    """Fail before launch when no node (or the whole cluster) can place one trial."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total_cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
    total_gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
    best_cpu = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    best_gpu = max((n["Resources"].get("GPU", 0.0) for n in nodes), default=0.0)
    if cpus > best_cpu:
        raise ConfigError(
            f"no Ray node has that many CPUs (the largest has {best_cpu:g})",
            field="resources.cpus_per_worker",
            value=cpus,
        )
    if gpus > best_gpu:
        raise ConfigError(
            f"no Ray node has that many GPUs (the largest has {best_gpu:g})",
            field="resources.gpus_per_worker",
            value=gpus,
        )
    if workers * cpus > total_cpus or workers * gpus > total_gpus:
        raise ConfigError(
            f"the cluster cannot place {workers} workers of {cpus:g} CPU / {gpus:g} GPU "
            f"(it has {total_cpus:g} CPUs and {total_gpus:g} GPUs)",
            field="resources.workers_per_trial",
            value=workers,
        )


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
