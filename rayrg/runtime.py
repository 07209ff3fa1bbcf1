"""Connecting to Ray: local single-node mode by default, an existing cluster by address.

The console stays quiet by default: rayrg's stage lines and progress bars, Ray's warnings
and errors, and whatever a worker prints — but not Ray's INFO logs (Ray Data's progress
log lines, Ray Train's "Reporting training result", cluster start-up notices). ``rayrg -v``
(:func:`set_verbose`) brings them back. Errors are never filtered: they reach the user as
exceptions, and worker stdout/stderr is always forwarded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

# Env workers and small torch models are faster with one thread each; several Ray
# workers on 2 cores otherwise oversubscribe the CPU.
# OMP_WAIT_POLICY=PASSIVE: an OpenMP thread that waits for work sleeps instead of spinning.
# It must be in the environment before torch loads (libgomp reads it once), so it travels here
# rather than in the worker function. With the default (spin), two training runs on 2 cores,
# each using 2 intra-op threads, fell to 1/20 of one run alone (issue 29; bench_train_shared).
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_WAIT_POLICY": "PASSIVE"}

_verbose = False

# Driver-side loggers whose INFO (and, for the local token notice, WARNING) lines are noise at
# the default verbosity: Ray's own, Ray Data's progress log, and the notice that a local
# cluster uses token authentication (it always does since Ray 2.59; nothing to act on).
_QUIET_LOGGERS = {"ray": logging.WARNING, "ray.data": logging.WARNING, "ray.train": logging.WARNING,
                  "ray.tune": logging.WARNING,
                  "ray._private.authentication.authentication_token_setup": logging.ERROR,
                  # Ray Data logs a failed task's stack at ERROR before raising it; the exception
                  # itself reaches rayrg's one error line and its log file (rayrg.errors).
                  "ray.data.exceptions": logging.CRITICAL,
                  "ray.data._internal.execution.streaming_executor_state": logging.CRITICAL}


class _NoTransientCpuWarning(logging.Filter):
    """Drops Ray Data's "does not have any available CPUs" warning on rayrg's own local cluster.

    Ray Data checks ``ray.available_resources()`` once as a dataset starts. On a local cluster
    that rayrg sized, the only CPUs held then are the previous dataset's actor pool (the
    windows stage's, just before labelling), which Ray is still tearing down: the warning that
    the job "will hang" is a false alarm on every such run (seen in CI). On a cluster it stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not have any available CPUs" not in record.getMessage()


_NO_CPU_WARNING = _NoTransientCpuWarning()


def set_verbose(verbose: bool) -> None:
    """``rayrg -v``: Ray's INFO logs on the driver and in workers; otherwise only warnings
    (applied by :func:`init_ray`, so commands that never start Ray never import it)."""
    global _verbose
    _verbose = verbose


def quiet_loggers() -> None:
    """Apply the driver's log levels (at start-up and when Ray starts)."""
    import ray.data  # noqa: F401 - importing Ray Data (re)configures its logger: set levels after

    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if _verbose else level)


def ray_log_level() -> str:
    """The level of Ray's own logs on the console: ``WARNING``, or ``DEBUG`` with ``-v``."""
    return "DEBUG" if _verbose else "WARNING"


def _logging_config() -> Any:
    import ray

    # Applies to every worker process: Ray's loggers log INFO there, which log_to_driver
    # would print here. (Ray Train's own console filter is set per run: rl/train.py.)
    return ray.LoggingConfig(log_level=ray_log_level())


def pin_ray_address() -> None:
    """Point everything in this process that looks Ray up by itself at the cluster it is in.

    ``ray.util.state`` (and Ray Train's placement-group cleaner, a detached actor that polls
    it every second) resolves a missing address by auto-discovery: with two local clusters on
    one machine (two ``rayrg`` commands at once) that raises "Found multiple active Ray
    instances". ``RAY_ADDRESS`` is what that discovery reads first. Runs in the driver after
    ``ray.init`` and, as the local cluster's ``worker_process_setup_hook``, in every worker;
    it overrides an inherited value, which may name another cluster (a parent process's).
    """
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


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
    quiet_loggers()
    kwargs.setdefault("logging_config", _logging_config())
    env_vars = {**_WORKER_ENV, **runtime_env.get("env_vars", {})}
    runtime_env = {**runtime_env, "env_vars": env_vars}
    if address in (None, "", "local"):
        runtime_env.setdefault("worker_process_setup_hook", f"{__name__}.pin_ray_address")
        # Ray Train 2.60 starts a node-preemption watcher per training run (spot instances on a
        # cluster); on this one local node nothing is preempted, and its actor prints a core
        # worker error line ("PreemptionWatcher ... constructor arguments in the object store")
        # on every run's console. On a cluster the job's own environment decides.
        runtime_env["env_vars"].setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        logging.getLogger("ray.data.dataset").addFilter(_NO_CPU_WARNING)  # a set: added once
        ray.init(
            address="local",
            num_cpus=num_cpus,
            # The dashboard serves the State API, which Ray Train's placement-group cleaner
            # polls every second for its controller: without it, each training run prints a
            # "Failed to query Ray Train Controller actor state" warning per second and a
            # crashed run's placement group is never reclaimed. It costs ~2 s at start-up and
            # listens on 127.0.0.1 (8265, or the next free port).
            include_dashboard=True,
            log_to_driver=True,
            runtime_env=runtime_env,
            **kwargs,
        )
    else:
        # On a cluster the job's runtime_env (from `ray job submit`) already applies.
        ray.init(address=address, **kwargs)
    pin_ray_address()
    log.debug("ray: %s", ray.cluster_resources())


def quiet_ray_data() -> None:
    """Keep Ray Data's progress bars (the user's progress view) but drop its verbose logs."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")


def agg_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only; no display needed on a cluster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cancel_pending(refs: list[Any]) -> None:
    """Cancel the tasks behind ``refs`` and read their outcome, as a stage leaves early (Ctrl-C).

    Otherwise queued tasks start after the stage has released its output's shared-storage
    marker, each fails with a misleading ``NotSharedError``, and Ray prints every such failure
    as an "Unhandled error" traceback while the command exits (measured: `rayrg generate`
    interrupted printed dozens). Reading a cancelled task's error marks it handled.
    """
    import ray

    for ref in refs:
        ray.cancel(ref, force=True)
    # At most 30 s in all: a task Ray cannot reach in that time is left to the shutdown.
    ended, _ = ray.wait(refs, num_returns=len(refs), timeout=30) if refs else ([], [])
    for ref in ended:
        try:
            ray.get(ref)
        except Exception:  # cancelled, or killed by the Ctrl-C every process of the group got
            pass


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block; each variable as it was afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
