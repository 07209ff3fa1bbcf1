"""Ray Tune sweeps of IQL's expectile τ and temperature β, with ASHA early stopping.

Each trial is a Tune function that builds and fits its own ``TorchTrainer``; the trainer's
``TuneReportCallback`` forwards every ``ray.train.report`` to Tune (the supported Ray 2.60
pattern — ``Tuner(trainer)`` is deprecated). Tune writes ``progress.csv``,
``result.json`` and TensorBoard events per trial under ``<out>/sweep``; the summary table
is ``<out>/sweep_results.csv`` and ``.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayrg.rl.config import SweepConfig, TrainConfig


def _trial(trial_config: dict[str, Any]) -> None:
    import ray.tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from rayrg.rl.train import train_fn_per_worker

    config = TrainConfig.from_dict({**trial_config["train"], "expectile": trial_config["expectile"],
                                    "beta": trial_config["beta"]})
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})}
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"train": config.to_dict(), "dataset": trial_config["dataset"], "resume_from": None},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name="train", storage_path=ray.tune.get_context().get_trial_dir(),
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def sweep(config: SweepConfig, dataset: str | Path, out: str | Path, address: str | None = None) -> str:
    """Run the grid; returns the results table as markdown (also written under ``out``)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from rayrg.runtime import init_ray

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / "sweep_config.yaml")
    init_ray(address)
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": config.trial_cpus}),
        param_space={"train": config.train.to_dict(), "dataset": str(Path(dataset).resolve()),
                     "expectile": tune.grid_search(config.expectiles), "beta": tune.grid_search(config.betas)},
        tune_config=tune.TuneConfig(
            metric=config.metric, mode=config.mode, max_concurrent_trials=config.max_concurrent_trials,
            scheduler=ASHAScheduler(time_attr="step", max_t=config.train.num_steps,
                                    grace_period=config.grace_period * config.train.report_every)),
        run_config=tune.RunConfig(name="sweep", storage_path=str(out)),
    )
    results = tuner.fit()
    frame = results.get_dataframe()
    columns = [c for c in ("config/expectile", "config/beta", "step", config.metric, "loss/q", "loss/value",
                           "adv/weight_saturation") if c in frame.columns]
    table = frame[columns].sort_values(config.metric, ascending=config.mode == "min")
    table.to_csv(out / "sweep_results.csv", index=False)
    markdown = table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)
    (out / "sweep_results.md").write_text(markdown + "\n")
    return markdown + f"\n\nTensorBoard: tensorboard --logdir {out / 'sweep'}"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
