"""IQL on Ray Train (V2): a TorchTrainer with DDP across workers (gloo on CPU, NCCL on GPU).

Each worker loads its shard of the transitions onto its device once and samples minibatches
there (``torch.randint`` on the device; no host round trip per step). Metrics are turned
into Python numbers only every ``report_every`` steps. Checkpoints every
``checkpoint_every`` steps; a killed run resumes from the newest checkpoint under ``out``
(Train V2 resumes by loading the checkpoint in the worker function; the path travels in
``train_loop_config``). The final checkpoint is copied to ``<out>/final``.

``out`` may be a storage URI (``s3://…``): Ray Train then writes every checkpoint there
through ``RunConfig(storage_path=, storage_filesystem=)`` (:func:`rayrg.storage.train_storage`),
a restarted run resumes from the bucket's newest one, and nothing is written to a local disk
but Ray's own temporary folders.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rayrg.contracts.curves import read_curve, write_curve
from rayrg.provenance import OnChange
from rayrg.rl.checkpoint import (
    LEARNER_FILE,
    Where,
    as_where,
    checkpoint_step,
    final_checkpoint,
    finished_step,
    is_checkpoint,
    load_featurizer,
    load_state,
    publish_checkpoint,
    save_checkpoint,
)
from rayrg.rl.config import TrainConfig
from rayrg.storage import Location, resolve, train_storage

log = logging.getLogger(__name__)

RUN_NAME = "iql"


def _quiet_report_log(level: str) -> None:
    """Ray Train 2.60 logs "Reporting training result ..." (INFO, every report) from a logger
    named by its *file path* (``getLogger(__file__)`` in ``train/v2/_internal/execution/
    context.py``), so the run's ``LoggingConfig``, which filters ``ray.train.*`` names only,
    never applies to it and it reaches the console. Give that logger the run's level."""
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(level)


def use_granted_cpus() -> int:
    """Set torch's threads to the CPUs Ray granted this worker or trial, at least 1; return them.

    A fractional grant (the default ``cpus_per_worker: 0.5``, there so that a worker, the
    Train controller and evaluation actors all fit a 2-CPU machine and never deadlock) gives 1
    thread: half a core's worth of Ray's bookkeeping, one thread of work. Together with
    :meth:`TrainConfig.worker_cpus` a run never has more busy threads than the CPUs it holds, and with
    ``OMP_WAIT_POLICY=PASSIVE`` (:mod:`rayrg.runtime`) an idle OpenMP thread sleeps rather
    than spinning on a core another run holds.
    """
    import ray
    import torch

    granted = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    threads = max(1, int(granted + 1e-9))
    torch.set_num_threads(threads)
    try:  # inter-op threads are unused by the update; allowed only before any inter-op work
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return threads


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """The worker function: plain dict in, ``ray.train.report`` out."""
    import os

    # Before torch loads (libgomp reads it once), for clusters whose job environment lacks
    # it; a local cluster's workers get it from rayrg.runtime.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import ray.train
    import ray.train.torch
    import torch

    from rayrg.rl.checkpoint import network_spec
    from rayrg.rl.data import load_transitions
    from rayrg.rl.iql import IQLLearner, unwrap

    config = TrainConfig.from_dict(loop_config["train"])
    _quiet_report_log(loop_config.get("log_level", "INFO"))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config.seed * 1009 + rank)
    use_granted_cpus()  # torch_threads, or 1 for a fractional grant (worker_cpus() asked for them)
    device = ray.train.torch.get_device()

    resume = loop_config.get("resume_from")
    featurizer = load_featurizer(resume) if resume else None
    data, featurizer, info = load_transitions(
        loop_config["dataset"], config.reward_column, config.nan_policy, featurizer, config.instruction_encoder,
        observation=config.observation, history=config.history, features_dir=config.features_dir)
    if world > 1:  # each worker keeps every world-th transition: disjoint shards
        data = data.subset(torch.arange(rank, len(data), world))
    data = data.to(device)

    learner = IQLLearner(config, network_spec(config, info, featurizer, int(data.text.shape[-1])), device=device)
    if resume:
        learner.load_state_dict(load_state(resume, device))
    learner.q = ray.train.torch.prepare_model(learner.q)
    learner.v = ray.train.torch.prepare_model(learner.v)
    learner.policy = ray.train.torch.prepare_model(learner.policy)
    if learner.encoder is not None:
        learner.encoder = ray.train.torch.prepare_model(learner.encoder)
    if not resume:  # DDP broadcast rank 0's weights; the target must start from those on every rank
        learner.q_target.load_state_dict(unwrap(learner.q).state_dict())

    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed * 7919 + rank * 104729 + learner.step)
    # The training curve travels in every checkpoint (rayrg.contracts.curves): a resumed run
    # continues the curve of the checkpoint it resumed from, and the final checkpoint has it all.
    curve = [r for r in read_curve(resume) if r["step"] <= learner.step] if resume else []
    last_time, last_step = time.perf_counter(), learner.step
    while learner.step < config.num_steps:
        for _ in range(min(config.updates_per_call, config.num_steps - learner.step)):
            metrics = learner.update(data.sample(config.batch_size, generator))
            if learner.step % config.report_every == 0 or learner.step % config.checkpoint_every == 0:
                break
        step = learner.step
        final = step >= config.num_steps
        if not (final or step % config.report_every == 0 or step % config.checkpoint_every == 0):
            continue
        now = time.perf_counter()
        numbers = {k: float(v) for k, v in metrics.items()}  # the only host sync
        numbers.update({"step": step, "perf/steps_per_s": (step - last_step) / max(now - last_time, 1e-9)})
        last_time, last_step = now, step
        curve.append(numbers)
        if rank == 0 and (final or step % config.checkpoint_every == 0):
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp), learner, featurizer)
                write_curve(tmp, curve)
                ray.train.report(numbers, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(numbers)
    if loop_config.get("dump_parameters_to"):  # tests: every rank's final parameters, to compare
        torch.save(learner.state_dict(), Path(loop_config["dump_parameters_to"]) / f"rank{rank}.pt")


def as_arg(location: Location) -> str:
    """A location as a plain string for a worker or for a function of another stage: the
    absolute path of a local one, the URI of one in object storage."""
    return location.path if location.is_local else location.uri


def build_trainer(config: TrainConfig, dataset: str | os.PathLike[str] | Location,
                  storage_path: str | os.PathLike[str] | Location, name: str = RUN_NAME,
                  resume_from: str | os.PathLike[str] | Location | None = None,
                  callbacks: list[Any] | None = None, keep_checkpoints: int | None = 2) -> Any:
    """The ``TorchTrainer`` of one IQL run; ``rayrg train`` and every Tune trial use this.

    ``storage_path`` (a local path or a URI) is where Ray Train writes the checkpoints; on a
    cluster it must be storage every node reaches."""
    from ray.train import CheckpointConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayrg.runtime import ray_log_level

    resources = {"CPU": config.worker_cpus(), **({"GPU": 1} if config.use_gpu else {})}
    path, filesystem = train_storage(storage_path)
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"train": config.to_dict(), "dataset": as_arg(resolve(dataset)),
                           "resume_from": as_arg(resolve(resume_from)) if resume_from else None,
                           "log_level": ray_log_level()},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=path, storage_filesystem=filesystem,
                             callbacks=callbacks or [],
                             checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
                             # Ray Train's per-report INFO lines stay off the console by default;
                             # progress_callback prints rayrg's own line instead.
                             logging_config=LoggingConfig(log_level=ray_log_level())),
    )


def progress_callback(num_steps: int) -> Any:
    """One console line per report of rank 0: Ray Train's own per-report line is an INFO log,
    hidden by default (:mod:`rayrg.runtime`). It runs in the Train controller, whose output
    Ray forwards to the console."""
    from ray.train import UserCallback

    class TrainProgress(UserCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            m = metrics[0] if metrics else {}
            if "step" not in m:
                return
            losses = " ".join(f"{k.split('/')[1]} {m[k]:.3g}" for k in ("loss/q", "loss/value", "loss/policy") if k in m)
            print(f"[rayrg] train: step {int(m['step'])}/{num_steps}, {m.get('perf/steps_per_s', 0.0):.1f} "
                  f"updates/s, loss {losses}{', checkpoint saved' if checkpoint else ''}", flush=True)

    return TrainProgress()


def latest_checkpoint(out: str | os.PathLike[str] | Location, name: str = RUN_NAME) -> Where | None:
    """The newest complete Ray Train checkpoint of run ``name`` under ``out`` (a local path or a URI)."""
    found = [(checkpoint_step(p), p.uri, p) for p in (resolve(out) / name).ls()
             if p.name.startswith("checkpoint_") and is_checkpoint(p)]
    return as_where(max(found)[2]) if found else None


# Settings that change how a run is executed, never its result; num_steps is special: more
# steps of the same run is a legitimate resume (see `train`).
RUNTIME_FIELDS = ("num_steps", "torch_threads", "cpus_per_worker", "use_gpu", "checkpoint_every",
                  "report_every", "updates_per_call")


def train_inputs(config: TrainConfig, dataset: str | os.PathLike[str]) -> dict[str, Any]:
    """What a training run is keyed to: the dataset's fingerprint and the result-relevant config."""
    from rayrg.provenance import dataset_fingerprint

    inputs = {"dataset": dataset_fingerprint(dataset),
              "config": {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}}
    if config.features_dir:  # the frozen encoder's output is an input like the dataset
        from rayrg.provenance import file_fingerprint

        inputs["features"] = file_fingerprint(config.features_dir)
    return inputs


def train(config: TrainConfig, dataset: str | os.PathLike[str], out: str | os.PathLike[str] | Location,
          address: str | None = None, on_change: OnChange = "refuse") -> Where:
    """Train (or finish training) and return ``<out>/final``, the final checkpoint.

    ``out`` is a local path (a ``Path`` comes back) or a storage URI (a
    :class:`~rayrg.storage.Location` comes back); it is checked before any work
    (:func:`rayrg.storage.prepare_output`).

    ``out`` is keyed to the dataset and config (:mod:`rayrg.provenance`). A finished run of
    the same inputs is returned as it is; an interrupted one resumes from its newest
    checkpoint; asking more steps of a finished run continues it from its last step. A run
    of other inputs — or of more steps than now asked — is refused, or with
    ``on_change="redo"`` deleted and trained again from step 0.
    """
    from rayrg.data.access import require_finished
    from rayrg.provenance import StaleOutputError, claim
    from rayrg.rewards.shaping import check_gamma
    from rayrg.rl.data import check_training_data
    from rayrg.storage import prepare_output

    location = prepare_output(out)
    dataset = as_arg(resolve(dataset))
    # nan_policy: zero is the opt-in: failed windows are learned as reward 0, and the run is
    # keyed to which ones failed (the dataset's unfinished key), so it is redone after the retry.
    require_finished(dataset, "train", allow=config.nan_policy == "zero", opt_in="set nan_policy: zero")
    check_training_data(dataset, config.reward_column, config.nan_policy, config.observation, config.features_dir)
    # A potential-based shaped reward keeps the optimal policy only with the learner's own γ.
    check_gamma(dataset, config.reward_column, config.gamma)
    out = as_where(location)  # what provenance takes: a Path, or (a URI) the Location
    final = final_checkpoint(location)
    inputs = train_inputs(config, dataset)
    claimed = claim(_claim_arg(location), "train", inputs, on_change=on_change, quiet=True)
    done_step = finished_step(final)
    if done_step is not None and done_step > config.num_steps:
        what = f"it was trained to step {done_step}, the config asks for {config.num_steps}"
        if on_change == "refuse":
            raise StaleOutputError(f"train: {out}: {what}; rerun with --overwrite to train again from "
                                   "step 0, or choose another --out")
        print(f"[rayrg] train: {what}; training again from step 0 in {out}", flush=True)
        location.delete_tree()
        claimed = claim(_claim_arg(location), "train", inputs, on_change=on_change)
        done_step = None
    if done_step == config.num_steps and resolve(final / LEARNER_FILE).exists():
        print(f"[rayrg] train: finished earlier in {out} (step {done_step}), skipping", flush=True)
        if not claimed.done:
            claimed.finish(final=str(final), step=done_step)
        return final
    if done_step is not None:  # more steps of the same run: continue from the last checkpoint
        print(f"[rayrg] train: continuing the run in {out} from step {done_step} to {config.num_steps}",
              flush=True)
        resolve(final).delete_tree()
    elif done_step is None:  # a final folder a killed upload left behind (no step.txt)
        resolve(final).delete_tree()
    if location.is_local:
        Path(location.path).mkdir(parents=True, exist_ok=True)
    config.to_yaml(location / "train_config.yaml")  # a Location: local or a URI
    resume = latest_checkpoint(location)
    if resume is not None:
        print(f"[rayrg] train: resuming from {resume} (step {checkpoint_step(resume)})", flush=True)
    result = _fit(config, dataset, location, resume, address)
    extra = {"metrics.json": json.dumps(result.metrics, indent=2, default=str),
             "provenance.json": json.dumps({"fingerprint": claimed.fingerprint, "inputs": inputs},
                                           indent=2, default=str)}
    with result.checkpoint.as_directory() as directory:
        final = publish_checkpoint(Path(directory), location, extra)
    claimed.finish(final=str(final), step=checkpoint_step(final))
    return final


def _claim_arg(location: Location) -> Any:
    """``out`` as :func:`rayrg.provenance.claim` takes it: the local ``Path`` as always, or
    the URI (provenance records go through :mod:`rayrg.storage` with the stage's output)."""
    return Path(location.path) if location.is_local else location.uri


def check_fits(config: TrainConfig) -> None:
    """Refuse a run whose workers can never all be placed (Ray would wait for them forever)."""
    import ray

    from rayrg.config import ConfigError

    need, have = config.num_workers * config.worker_cpus(), float(ray.cluster_resources().get("CPU", 0.0))
    if need > have + 1e-9:
        raise ConfigError(f"train: {config.num_workers} worker(s) × {config.worker_cpus():g} CPUs "
                          f"(max of cpus_per_worker and torch_threads) = {need:g}, but the cluster has "
                          f"{have:g}: lower torch_threads or num_workers")


def fit_interruptibly(trainer: Any) -> Any:
    """``trainer.fit()``, with Ctrl-C as every rayrg command has it: one line, exit code 130.

    Called from the main thread, Ray Train 2.x replaces the process's SIGINT handler for the
    run: Ctrl-C aborts the run and the process exits with code 1 and nothing of rayrg's on the
    console (measured: `rayrg train` interrupted printed one Ray warning, rc 1; `rayrg run`
    the same mid-experiment). From another thread — as Ray Tune calls it — Ray leaves the
    handler alone, so fit runs in a helper thread and Ctrl-C raises ``KeyboardInterrupt``
    here, which the CLI reports (the run resumes from its newest checkpoint). The helper is a
    daemon: the interpreter does not wait for an abandoned fit when the command exits.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised below, in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="rayrg-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # a timed join: Ctrl-C's KeyboardInterrupt is raised between waits
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _fit(config: TrainConfig, dataset: str, out: Location, resume: Where | None, address: str | None) -> Any:
    from rayrg.runtime import init_ray
    from rayrg.storage import refuse_local_on_cluster

    init_ray(address)
    refuse_local_on_cluster(out)  # again, now that the cluster is known: every node must see `out`
    check_fits(config)
    result = fit_interruptibly(build_trainer(config, dataset, out, resume_from=resume,
                                             callbacks=[progress_callback(config.num_steps)]))
    if result.checkpoint is None:
        raise RuntimeError(f"training in {out} ended without a checkpoint")
    return result
