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

from rayrg.rl.config import TrainConfig

log = logging.getLogger(__name__)

LEARNER_FILE = "learner.pt"
FEATURIZER_FILE = "featurizer.json"
RUN_NAME = "iql"


def save_checkpoint(directory: Path, learner: Any, featurizer: Any) -> None:
    import torch

    torch.save(learner.state_dict(), directory / LEARNER_FILE)
    (directory / FEATURIZER_FILE).write_text(json.dumps({"kind": featurizer.kind, "vocab": featurizer.vocab}))
    (directory / "step.txt").write_text(str(learner.step))


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """The worker function: plain dict in, ``ray.train.report`` out."""
    import ray.train
    import ray.train.torch
    import torch

    from rayrg.rl.data import TextFeaturizer, load_transitions
    from rayrg.rl.iql import IQLLearner

    config = TrainConfig.from_dict(loop_config["train"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config.seed * 1009 + rank)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = ray.train.torch.get_device()

    resume = loop_config.get("resume_from")
    featurizer = None
    if resume:
        raw = json.loads((Path(resume) / FEATURIZER_FILE).read_text())
        featurizer = TextFeaturizer(raw["kind"], raw["vocab"])
    data, featurizer, info = load_transitions(loop_config["dataset"], config.reward_column, config.nan_policy,
                                              featurizer, config.instruction_encoder)
    if world > 1:  # each worker keeps every world-th transition: disjoint shards
        data = data.subset(torch.arange(rank, len(data), world))
    data = data.to(device)

    feature_dim = int(data.text.shape[-1]) if featurizer.kind != "tokens" else 0
    learner = IQLLearner(config, info["num_actions"], info["frame_shape"], featurizer.kind,
                         max(featurizer.vocab.values(), default=1) + 1, feature_dim, device=device)
    if resume:
        learner.load_state_dict(torch.load(Path(resume) / LEARNER_FILE, map_location=device, weights_only=False))
    learner.q = ray.train.torch.prepare_model(learner.q)
    learner.v = ray.train.torch.prepare_model(learner.v)
    learner.policy = ray.train.torch.prepare_model(learner.policy)

    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed * 7919 + rank * 104729 + learner.step)
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
        if rank == 0 and (final or step % config.checkpoint_every == 0):
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp), learner, featurizer)
                ray.train.report(numbers, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(numbers)


def latest_checkpoint(out: Path) -> Path | None:
    found = [(int((p / "step.txt").read_text()), p) for p in (out / RUN_NAME).glob("checkpoint_*")
             if (p / LEARNER_FILE).exists() and (p / "step.txt").exists()]
    return max(found)[1] if found else None


def train(config: TrainConfig, dataset: str | Path, out: str | Path, address: str | None = None) -> Path:
    """Train (or finish training) and return ``<out>/final``, the final checkpoint."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayrg.runtime import init_ray

    out = Path(out).resolve()
    final = out / "final"
    if (final / LEARNER_FILE).exists():
        log.info("training in %s is finished; reusing %s", out, final)
        return final
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / "train_config.yaml")
    resume = latest_checkpoint(out)
    if resume is not None:
        print(f"[rayrg] train: resuming from {resume} (step {(resume / 'step.txt').read_text()})", flush=True)
    init_ray(address)
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})}
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"train": config.to_dict(), "dataset": str(Path(dataset).resolve()),
                           "resume_from": str(resume) if resume else None},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=RUN_NAME, storage_path=str(out),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training in {out} ended without a checkpoint")
    tmp = out / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with result.checkpoint.as_directory() as directory:
        shutil.copytree(directory, tmp)
    (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=str))
    tmp.replace(final)
    return final
