"""Connecting to Ray: local single-node mode by default, an existing cluster by address."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# Env workers and small torch models are faster with one thread each; several Ray
# workers on 2 cores otherwise oversubscribe the CPU.
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Start (``address=None``: a fresh local cluster) or join (``address``) a Ray cluster.

    Local mode always uses ``address="local"`` so a stale ``ray start`` cluster on the same
    machine is never joined by accident (Ray 2.59+ leaves a ``ray_current_cluster``
    file that a plain ``ray.init()`` attaches to).
    """
    import ray

    from rayrg.config import ConfigError, is_secret_name

    runtime_env = kwargs.pop("runtime_env", {}) or {}
    # Ray writes runtime_env into its session logs and job records: keys must reach workers
    # through the environment of the nodes instead (locally: inherited from this process).
    keys = sorted(name for name in runtime_env.get("env_vars", {}) if is_secret_name(name))
    if keys:
        raise ConfigError(f"runtime_env env_vars {keys} look like credentials, which Ray would log; "
                          "export them on the nodes instead")
    if ray.is_initialized():
        return
    env_vars = {**_WORKER_ENV, **runtime_env.get("env_vars", {})}
    runtime_env = {**runtime_env, "env_vars": env_vars}
    if address in (None, "", "local"):
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env=runtime_env,
            **kwargs,
        )
    else:
        # On a cluster the job's runtime_env (from `ray job submit`) already applies.
        ray.init(address=address, **kwargs)
    log.info("ray: %s", ray.cluster_resources())


def quiet_ray_data() -> None:
    """Keep Ray Data's progress bars (the user's progress view) but drop its verbose logs."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
