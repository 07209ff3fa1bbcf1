"""IQL on Ray Train (V2): a TorchTrainer with DDP across workers (gloo on CPU, NCCL on GPU).

Each worker loads its shard of the transitions onto its device once and samples minibatches
there (``torch.randint`` on the device; no host round trip per step). Metrics are turned
into Python numbers only every ``report_every`` steps. Checkpoints every
``checkpoint_every`` steps; a killed run resumes from the newest checkpoint under ``out``
(Train V2 resumes by loading the checkpoint in the worker function; the path travels in
``train_loop_config``). The final checkpoint is copied to ``<out>/final``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rayrg.contracts.curves import read_curve, write_curve
from rayrg.provenance import OnChange
from rayrg.rl.checkpoint import (
    LEARNER_FILE,
    checkpoint_step,
    final_checkpoint,
    finished_step,
    is_checkpoint,
    load_featurizer,
    load_state,
    save_checkpoint,
    staging_dir,
)
from rayrg.rl.config import TrainConfig

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


def build_trainer(config: TrainConfig, dataset: str | Path, storage_path: str | Path, name: str = RUN_NAME,
                  resume_from: str | Path | None = None, callbacks: list[Any] | None = None,
                  keep_checkpoints: int | None = 2) -> Any:
    """The ``TorchTrainer`` of one IQL run; ``rayrg train`` and every Tune trial use this."""
    from ray.train import CheckpointConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayrg.runtime import ray_log_level

    resources = {"CPU": config.worker_cpus(), **({"GPU": 1} if config.use_gpu else {})}
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"train": config.to_dict(), "dataset": str(Path(dataset).resolve()),
                           "resume_from": str(resume_from) if resume_from else None,
                           "log_level": ray_log_level()},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(storage_path), callbacks=callbacks or [],
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


def latest_checkpoint(out: Path) -> Path | None:
    found = [(checkpoint_step(p), p) for p in (out / RUN_NAME).glob("checkpoint_*") if is_checkpoint(p)]
    return max(found)[1] if found else None


# Settings that change how a run is executed, never its result; num_steps is special: more
# steps of the same run is a legitimate resume (see `train`).
RUNTIME_FIELDS = ("num_steps", "torch_threads", "cpus_per_worker", "use_gpu", "checkpoint_every",
                  "report_every", "updates_per_call")


def train_inputs(config: TrainConfig, dataset: str | Path) -> dict[str, Any]:
    """What a training run is keyed to: the dataset's fingerprint and the result-relevant config."""
    from rayrg.provenance import dataset_fingerprint

    inputs = {"dataset": dataset_fingerprint(dataset),
              "config": {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}}
    if config.features_dir:  # the frozen encoder's output is an input like the dataset
        from rayrg.provenance import file_fingerprint

        inputs["features"] = file_fingerprint(config.features_dir)
    return inputs


def train(config: TrainConfig, dataset: str | Path, out: str | Path, address: str | None = None,
          on_change: OnChange = "refuse") -> Path:
    """Train (or finish training) and return ``<out>/final``, the final checkpoint.

    ``out`` is keyed to the dataset and config (:mod:`rayrg.provenance`). A finished run of
    the same inputs is returned as it is; an interrupted one resumes from its newest
    checkpoint; asking more steps of a finished run continues it from its last step. A run
    of other inputs — or of more steps than now asked — is refused, or with
    ``on_change="redo"`` deleted and trained again from step 0.
    """
    from rayrg.data.access import require_finished
    from rayrg.provenance import StaleOutputError, claim
    from rayrg.rl.data import check_training_data

    # nan_policy: zero is the opt-in: failed windows are learned as reward 0, and the run is
    # keyed to which ones failed (the dataset's unfinished key), so it is redone after the retry.
    require_finished(dataset, "train", allow=config.nan_policy == "zero", opt_in="set nan_policy: zero")
    check_training_data(dataset, config.reward_column, config.nan_policy, config.observation, config.features_dir)
    out = Path(out).resolve()
    final = final_checkpoint(out)
    inputs = train_inputs(config, dataset)
    claimed = claim(out, "train", inputs, on_change=on_change, quiet=True)
    done_step = finished_step(final)
    if done_step is not None and done_step > config.num_steps:
        what = f"it was trained to step {done_step}, the config asks for {config.num_steps}"
        if on_change == "refuse":
            raise StaleOutputError(f"train: {out}: {what}; rerun with --overwrite to train again from "
                                   "step 0, or choose another --out")
        print(f"[rayrg] train: {what}; training again from step 0 in {out}", flush=True)
        shutil.rmtree(out)
        claimed = claim(out, "train", inputs, on_change=on_change)
        done_step = None
    if done_step == config.num_steps and (final / LEARNER_FILE).exists():
        print(f"[rayrg] train: finished earlier in {out} (step {done_step}), skipping", flush=True)
        if not claimed.done:
            claimed.finish(final=str(final), step=done_step)
        return final
    if done_step is not None:  # more steps of the same run: continue from the last checkpoint
        print(f"[rayrg] train: continuing the run in {out} from step {done_step} to {config.num_steps}",
              flush=True)
        shutil.rmtree(final)
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / "train_config.yaml")
    resume = latest_checkpoint(out)
    if resume is not None:
        print(f"[rayrg] train: resuming from {resume} (step {checkpoint_step(resume)})", flush=True)
    result = _fit(config, dataset, out, resume, address)
    tmp = staging_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    with result.checkpoint.as_directory() as directory:
        shutil.copytree(directory, tmp)
    (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=str))
    (tmp / "provenance.json").write_text(json.dumps({"fingerprint": claimed.fingerprint, "inputs": inputs},
                                                    indent=2, default=str))
    tmp.replace(final)
    claimed.finish(final=str(final), step=checkpoint_step(final))
    return final


def check_fits(config: TrainConfig) -> None:
    """Refuse a run whose workers can never all be placed (Ray would wait for them forever)."""
    import ray

    from rayrg.config import ConfigError

    need, have = config.num_workers * config.worker_cpus(), float(ray.cluster_resources().get("CPU", 0.0))
    if need > have + 1e-9:
        raise ConfigError(f"train: {config.num_workers} worker(s) × {config.worker_cpus():g} CPUs "
                          f"(max of cpus_per_worker and torch_threads) = {need:g}, but the cluster has "
                          f"{have:g}: lower torch_threads or num_workers")


def _fit(config: TrainConfig, dataset: str | Path, out: Path, resume: Path | None, address: str | None) -> Any:
    from rayrg.runtime import init_ray

    init_ray(address)
    check_fits(config)
    result = build_trainer(config, dataset, out, resume_from=resume,
                           callbacks=[progress_callback(config.num_steps)]).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training in {out} ended without a checkpoint")
    return result
