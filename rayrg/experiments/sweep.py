"""``rayrg tune``: Ray Tune sweeps of IQL's expectile τ and temperature β, ranked by evaluation return.

Why not a loss: the AWR policy loss is scaled by exp(β·A) and the value loss by τ, so a
trial with a smaller loss is not a better policy, and losses are not comparable across the
grid. Every checkpoint a trial saves (``train.checkpoint_every`` steps) is therefore
evaluated by the evaluation actors of :mod:`rayrg.evaluation` on a small budget of
held-out **validation** tasks (``SweepConfig.eval``; ``val_tasks.json`` of ``rayrg generate``),
and ASHA and the best trial use ``eval/return_mean`` (or ``eval/return_<mode>``). A sweep
never reads the test tasks (``eval_tasks.json``): a file holding them (or written before
task sets had splits) is refused before anything runs, so the return a report measures on
the test tasks was not used to choose what it measures (:mod:`rayrg.contracts.tasks`).

Each trial is a Tune function that builds its ``TorchTrainer`` with
:func:`rayrg.rl.train.build_trainer` (the supported Ray 2.60 pattern; ``Tuner(trainer)`` is
deprecated). An :class:`EvalReportCallback` on the Train controller evaluates each
reported checkpoint and forwards that report, with its ``eval/*`` metrics, to Tune; reports
without a checkpoint are not forwarded (Tune refuses results that lack the metric). Tune
writes ``progress.csv``, ``result.json`` and TensorBoard events per trial under
``<out>/sweep``; each trial's evaluations are under ``<trial>/eval/<checkpoint>``. The table
of each trial's best evaluated checkpoint is ``<out>/sweep_results.csv`` and ``.md``, and the
best trial is ``<out>/best.json``. Each trial trains into ``<out>/sweep/<trial>/train`` (the
sweep's storage, not the Ray session's staging folder), so an interrupted sweep (Ctrl-C: rayrg's
one line, exit 130) is restored by the same command, each unfinished trial from its newest
checkpoint; ``<out>/sweep_inputs.json`` records its inputs, and other ones are refused.

An experiment, not part of the rl stage: it drives training and evaluation together (the
layers in ARCHITECTURE.md), so the rl stage never imports evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

from rayrg.config import ConfigError, StageConfig
from rayrg.evaluation.config import EvalConfig
from rayrg.rl.config import TrainConfig

# The Train run of each trial (under the trial's folder) and the record of a sweep's inputs
# (param space, dataset fingerprint, ranking settings), compared when a sweep is restored.
TRIAL_RUN_NAME = "train"
SWEEP_INPUTS = "sweep_inputs.json"
TUNE_NO_SIGINT = "TUNE_DISABLE_SIGINT_HANDLER"  # read by tune.run as it starts


def _sweep_eval_default() -> EvalConfig:
    # A small budget: each checkpoint of each trial is evaluated; fixed starts, 3 tasks per
    # mission length, one actor of 0.25 CPU so 2 concurrent trials fit 2 cores.
    return EvalConfig(modes=["fixed"], seeds=[0], max_tasks_per_count=3, num_actors=1, cpus_per_actor=0.25)


class SweepConfig(StageConfig):
    """``rayrg tune``: a Tune sweep over expectile τ and temperature β with ASHA.

    Trials are ranked by evaluation return, never by a training loss: the AWR policy loss is
    scaled by exp(β·A) and the value loss by τ, so losses are not comparable across the grid.
    Every checkpoint (``train.checkpoint_every`` steps) is evaluated by evaluation actors on
    ``eval.tasks``; ASHA and the best trial use ``metric``. ``train.expectile`` and
    ``train.beta`` are ignored: the swept ``expectiles`` and ``betas`` are what trials use.
    """

    train: TrainConfig = Field(default_factory=TrainConfig)
    expectiles: list[float] = Field(default_factory=lambda: [0.7, 0.8, 0.9])
    betas: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0])
    eval: EvalConfig = Field(
        default_factory=_sweep_eval_default,
        description="Evaluation of each checkpoint; eval.tasks is the VALIDATION tasks JSON "
                    "(val_tasks.json of `rayrg generate`; required; a test set is refused). Keep it "
                    "small: it runs once per checkpoint per trial.")
    metric: str = Field("eval/return_mean", pattern=r"^eval/",
                        description="Evaluation metric ASHA and the best trial use: eval/return_mean "
                                    "(all modes) or eval/return_<mode>.")
    mode: Literal["min", "max"] = "max"
    grace_period: int = Field(2, ge=1, description="ASHA: evaluated checkpoints before a trial may be stopped.")
    max_concurrent_trials: int = Field(2, ge=1)
    trial_cpus: float = Field(0.25, gt=0.0, description="CPUs of the Tune driver function of each trial.")

    def trial_cpus_total(self) -> float:
        """Logical CPUs one running trial holds: driver, Train workers and evaluation actors."""
        return (self.trial_cpus + self.train.num_workers * self.train.worker_cpus()
                + self.eval.num_actors * self.eval.cpus_per_actor)

    def to_public_dict(self) -> dict[str, Any]:
        # train.expectile/beta are not used by any trial; dumping them beside the swept values
        # made the sweep's config unreadable.
        data = super().to_public_dict()
        for key in ("expectile", "beta"):
            data["train"].pop(key, None)
        return data


def eval_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """``eval/*`` metrics of an evaluation summary: the mean return over every episode and per mode."""
    modes = summary["modes"]
    episodes = sum(m["episodes"] for m in modes.values())
    if not episodes:
        raise RuntimeError("the evaluation ran no episodes")
    metrics = {"eval/return_mean": sum(m["mean"] * m["episodes"] for m in modes.values()) / episodes,
               "eval/episodes": float(episodes)}
    for mode, m in modes.items():
        metrics[f"eval/return_{mode}"] = m["mean"]
        metrics[f"eval/return_{mode}_ci95_low"], metrics[f"eval/return_{mode}_ci95_high"] = m["ci95"]
    return metrics


class EvalReportCallback(TuneReportCallback):
    """On the Train controller: evaluate each reported checkpoint, then forward to Tune."""

    def __init__(self, eval_config: dict[str, Any], eval_dir: str, scheme: str | None = None) -> None:
        super().__init__()
        self.eval_config = eval_config
        self.eval_dir = eval_dir  # a local path or a URI
        self.scheme = scheme  # the storage's URI scheme: a checkpoint's path there has none

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if checkpoint is None:
            return
        from rayrg.evaluation.config import EvalConfig
        from rayrg.evaluation.evaluate import evaluate
        from rayrg.storage import resolve

        name = checkpoint.path.rstrip("/").rsplit("/", 1)[-1]
        policy = f"{self.scheme}://{checkpoint.path}" if self.scheme else checkpoint.path
        summary = evaluate(EvalConfig.from_dict(self.eval_config), policy, resolve(self.eval_dir) / name,
                           progress=False, on_change="redo")
        super().after_report(run_context, [{**metrics[0], **eval_metrics(summary)}], checkpoint)


def _trial(trial_config: dict[str, Any]) -> None:
    import ray.tune

    from rayrg.rl.checkpoint import checkpoint_step
    from rayrg.rl.train import build_trainer, latest_checkpoint, use_granted_cpus
    from rayrg.storage import resolve

    use_granted_cpus()  # the trial's own process: threads = its with_resources grant (≥ 1)
    config = TrainConfig.from_dict({**trial_config["train"], "expectile": trial_config["expectile"],
                                    "beta": trial_config["beta"]})
    # The trial's folder in the sweep's storage, not Tune's trial dir (a staging folder of this
    # Ray session, copied to storage now and then): a restored sweep runs in a new session and
    # finds the trial's checkpoints only there, and the results table's checkpoint paths stay valid.
    name = Path(ray.tune.get_context().get_trial_dir()).name
    where = resolve(trial_config["storage"]) / "sweep" / name
    trial_dir = where.path if where.is_local else where.uri
    scheme = None if where.is_local else where.uri.split("://", 1)[0]
    callback = EvalReportCallback(trial_config["eval"], f"{trial_dir.rstrip('/')}/eval", scheme)
    resume = latest_checkpoint(where, name=TRIAL_RUN_NAME)  # an interrupted sweep, restored
    if resume is not None:
        print(f"[rayrg] tune: trial {name} resuming from {resume} (step {checkpoint_step(resume)})", flush=True)
    build_trainer(config, trial_config["dataset"], trial_dir, name=TRIAL_RUN_NAME, resume_from=resume,
                  callbacks=[callback], keep_checkpoints=None).fit()


def sweep(config: SweepConfig, dataset: str | Path, out: str | Path, address: str | None = None) -> str:
    """Run the grid; returns the results table as markdown (also written under ``out``).

    ``out`` may be a storage URI: Tune's ``storage_path`` and every trial's checkpoints and
    evaluations are then there (:func:`rayrg.storage.train_storage`)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from rayrg.data.access import require_finished
    from rayrg.runtime import environ, init_ray

    require_finished(dataset, "tune", allow=config.train.nan_policy == "zero",
                     opt_in="set train.nan_policy: zero")
    selection_tasks(config)  # a bad or test tasks file fails here, not inside every trial
    from rayrg.storage import prepare_output, refuse_local_on_cluster, train_storage

    location = prepare_output(out)
    out = Path(location.path) if location.is_local else location
    if location.is_local:
        out.mkdir(parents=True, exist_ok=True)
    init_ray(address)
    refuse_local_on_cluster(location)
    _check_fits(config, float(ray.cluster_resources().get("CPU", 0.0)))
    train = config.train.to_dict()
    for swept in ("expectile", "beta"):  # each hyperparameter appears once, as used
        train.pop(swept)
    storage_path, filesystem = train_storage(location)
    trainable = tune.with_resources(_trial, {"cpu": config.trial_cpus})
    param_space = {"train": train, "dataset": _arg(dataset), "storage": _arg(location),
                   "eval": {**config.eval.to_dict(), "tasks": _arg(config.eval.tasks)},
                   "expectile": tune.grid_search(config.expectiles), "beta": tune.grid_search(config.betas)}
    # What a restored sweep must share with the interrupted one: the param space, the dataset's
    # content (a path relabelled in between would mix trials of two label sets) and what ranks
    # and stops trials. Not the CPUs per trial or the concurrency: they change no result.
    from rayrg.provenance import dataset_fingerprint

    inputs = {"param_space": param_space, "dataset": dataset_fingerprint(dataset),
              "metric": config.metric, "mode": config.mode, "grace_period": config.grace_period}
    experiment = f"{storage_path.rstrip('/')}/sweep"
    if tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
        # An interrupted sweep (Ctrl-C, a lost driver): run the same command, and Tune restores
        # it; each unfinished trial resumes from its newest checkpoint (_trial).
        _check_same_sweep(location, inputs)
        print(f"[rayrg] tune: resuming the sweep in {out / 'sweep'}", flush=True)
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=param_space, storage_filesystem=filesystem)
    else:
        config.to_yaml(location / "sweep_config.yaml")
        (location / SWEEP_INPUTS).write_text(json.dumps(inputs, indent=2, sort_keys=True))
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=config.metric, mode=config.mode, max_concurrent_trials=config.max_concurrent_trials,
                # one Tune result per evaluated checkpoint, so rungs are counted in checkpoints
                scheduler=ASHAScheduler(time_attr="step", max_t=config.train.num_steps,
                                        grace_period=config.grace_period * config.train.checkpoint_every)),
            run_config=tune.RunConfig(name="sweep", storage_path=storage_path, storage_filesystem=filesystem),
        )
    # Tune takes over SIGINT for a fit() called from the main thread: Ctrl-C then ended the sweep
    # "gracefully", with Ray's lines, and the partial grid was ranked and written as the result
    # (rc 0, no line of rayrg's). Without its handler, Ctrl-C is a KeyboardInterrupt that leaves
    # the loop: rayrg's one line, and the same command restores the sweep from the experiment
    # state Tune saves as it runs (above). Not fit in a helper thread (as `rayrg train` does):
    # Tune's loop would go on there while the interpreter shuts Ray down, and print its failures.
    with environ({TUNE_NO_SIGINT: "1"}):
        results = tuner.fit()
    errors = [str(e).strip().splitlines()[-1] for e in results.errors]
    if errors:
        raise RuntimeError(f"{len(errors)} trial(s) failed; first: {errors[0]} (logs under {out / 'sweep'})")
    table = results_table(results.get_dataframe(filter_metric=config.metric, filter_mode=config.mode),
                          config.metric, config.mode)
    (location / "sweep_results.csv").write_text(table.to_csv(index=False))
    best = table.iloc[0].to_dict()
    (location / "best.json").write_text(json.dumps({"metric": config.metric, "mode": config.mode, **best},
                                                   indent=2, default=str))
    markdown = table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)
    (location / "sweep_results.md").write_text(markdown + "\n")
    return (markdown + f"\n\nBest: expectile {best['expectile']}, beta {best['beta']} "
            f"({config.metric} {best[config.metric]:.3f} at step {best['step']})"
            f"\nTensorBoard: tensorboard --logdir {out / 'sweep'}")


def _check_same_sweep(location: Any, inputs: dict[str, Any]) -> None:
    """Refuse to restore a sweep of other inputs into ``location`` (one line naming them)."""
    from rayrg.provenance import describe_changes

    record = location / SWEEP_INPUTS
    saved = json.loads(record.read_text()) if record.exists() else None
    current = json.loads(json.dumps(inputs))  # as written: tuples become lists
    if saved == current:
        return
    changed = "no record of its inputs" if saved is None else describe_changes(saved, current)
    raise ConfigError(f"tune: {location} holds a sweep of other inputs ({changed}); "
                      "pass another --out, or delete it to start over")


def selection_tasks(config: SweepConfig) -> list[Any]:
    """The validation tasks trials are ranked on; one-line ConfigError for a missing setting
    or a file holding the test tasks (selection never sees the test set)."""
    from rayrg.contracts.tasks import read_eval_tasks

    if not config.eval.tasks:
        raise ConfigError("SweepConfig eval.tasks is not set: trials are ranked by evaluation return on "
                          "validation tasks (give the val_tasks.json of `rayrg generate`, or "
                          "`rayrg tune --val-tasks`)")
    return read_eval_tasks(config.eval.tasks, split="validation")


def _arg(path: str | Path) -> str:
    """A path for the trials: absolute if local (they run elsewhere), else the URI."""
    from rayrg.storage import resolve

    location = resolve(path)
    return location.path if location.is_local else location.uri


def results_table(frame: Any, metric: str, mode: str) -> Any:
    """One row per trial (its best evaluated checkpoint), best first; swept values named once."""
    frame = frame.rename(columns={"config/expectile": "expectile", "config/beta": "beta"})
    evals = sorted(c for c in frame.columns if c.startswith("eval/") and c != metric)
    losses = [c for c in ("loss/q", "loss/value", "loss/policy", "adv/weight_saturation") if c in frame.columns]
    columns = ["trial_id", "expectile", "beta", "step", metric, *evals, *losses, CHECKPOINT_PATH_KEY]
    table = frame[[c for c in columns if c in frame.columns]]
    return table.sort_values(metric, ascending=mode == "min", kind="stable").reset_index(drop=True)


def _check_fits(config: SweepConfig, cluster_cpus: float) -> None:
    """Refuse a sweep whose concurrent trials cannot all run at once.

    Train workers and evaluation actors are scheduled outside the trial's own resources; if
    they cannot all start, a trial's controller waits for its evaluation actors while the
    other trials hold the CPUs, and the sweep hangs.
    """
    trials = min(config.max_concurrent_trials, len(config.expectiles) * len(config.betas))
    need = trials * config.trial_cpus_total()
    if need > cluster_cpus + 1e-9:
        raise ConfigError(
            f"sweep needs {need:g} CPUs for {trials} concurrent trial(s) of {config.trial_cpus_total():g} "
            f"(trial_cpus + train workers + eval actors) but the cluster has {cluster_cpus:g}: lower "
            f"max_concurrent_trials, trial_cpus, train.cpus_per_worker, train.torch_threads or eval.cpus_per_actor")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
