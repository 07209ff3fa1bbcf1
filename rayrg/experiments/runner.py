"""``rayrg run``: data → labels → IQL per (method, seed) → evaluation → report.

Every stage writes under the experiment's ``out`` directory and keys its output to its
inputs (:mod:`rayrg.provenance`): a re-run skips what is done, resumes what was
interrupted (written shards, a label method's answer cache, checkpoints, finished episodes), and
redoes a stage whose inputs changed — and with it everything downstream, because each
downstream fingerprint contains its upstream ones. ``<out>/manifest.json`` lists every
stage's paths, fingerprint and status (:mod:`rayrg.contracts.manifest`): each stage's outputs
are recorded where the stage says it wrote them, and the report reads only what it lists.

Layout::

    <out>/experiment.yaml          the config as run (credentials scrubbed)
    <out>/manifest.json            what was made, from what
    <out>/data/                    trajectories/, eval_tasks.json (test), val_tasks.json (validation)
    <out>/labels/<i>-<method>/     labelled dataset after label step i (chained)
    <out>/train/<method>/seed<k>/  checkpoints
    <out>/eval/<method>/seed<k>/   evaluation results (reference policies: eval/_reference/<name>)
    <out>/evalset/                 with `evalset:` + `bench:`: the evaluation set of data/trajectories
    <out>/evalset_labels/<i>-<method>/  it labelled by the same label steps (chained)
    <out>/bench/                   bench.json, bench.md, bench.png (the reward bench of the last)
    <out>/report/                  report.md, report.html, report.json, plots

``out`` may be a storage URI (``s3://…``), or relative under the config's ``storage:`` root
(else ``$RAYRG_STORAGE``): it is checked before any work (:func:`rayrg.storage.prepare_output`:
writable, and not a plain local path on a multi-node cluster), and every stage then writes
under it. A local ``out`` stays a ``Path``, exactly as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml

from rayrg.contracts.curves import CURVE_FILE
from rayrg.contracts.episodes import episodes_dir
from rayrg.contracts.manifest import (
    BenchEntry,
    Claims,
    DataEntry,
    EvalsetEntry,
    Evaluation,
    LabelStep,
    Manifest,
    MethodEntry,
    StageRun,
    TrainRun,
    write_manifest,
)
from rayrg.contracts.tasks import TASKS_FILE, VAL_TASKS_FILE
from rayrg.experiments.config import AUTO_BACKEND, ExperimentConfig
from rayrg.provenance import dataset_fingerprint, public, read_record
from rayrg.storage import Location, resolve

log = logging.getLogger(__name__)

REDO = "redo"  # inside `rayrg run` a changed stage is redone, with everything downstream


def out_location(config: ExperimentConfig) -> Location:
    """``config.out`` resolved against its ``storage:`` root (else ``$RAYRG_STORAGE``); no I/O."""
    return resolve(config.out, root=getattr(config, "storage", None))


def as_recorded(where: Path | Location) -> Any:
    """A path as the manifest records it: a local ``Path`` as always, a URI as its string
    (``Path("s3://b/x")`` would collapse it to ``s3:/b/x``)."""
    return where.uri if isinstance(where, Location) else where


def _given(path: str | None) -> Any:
    """A path from the config: a local ``Path`` as always, a URI as its Location."""
    if not path:
        return Path("")
    location = resolve(path)
    return location if not location.is_local else Path(path)


def slug(name: str) -> str:
    """A method name as a directory name (``a+b`` → ``a_plus_b``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.replace("+", "_plus_"))


class ExperimentRunner:
    def __init__(self, config: ExperimentConfig, address: str | None = None, command: str | None = None) -> None:
        self.config = config
        self.address = address
        # What retries failed label windows (named when a later stage refuses unfinished labels).
        self.command = command or f"rayrg run <the experiment config> --out {config.out_dir}"
        location = out_location(config)
        # a local out as the Path it always was; a URI as its Location (both join with `/`)
        self.out: Any = Path(location.uri) if location.is_local else location
        self.manifest = Manifest(
            name=config.name, config=public(config),
            methods={name: MethodEntry(display_name=config.display_name(name), note=spec.note,
                                       reward_column=spec.reward_column, slug=slug(name))
                     for name, spec in config.methods.items()},
            comparisons=config.resolved_comparisons(),
            claims=Claims(**config.claims.to_dict()) if config.claims else None)
        self.notes = self.manifest.notes  # prominent messages that also go into the report
        self._labels: list[Any] | None = None  # the label configs, auto_backend resolved (once)

    # -- bookkeeping ----------------------------------------------------------------------
    def _stage(self, name: str, directory: Any, fn: Callable[[], Any]) -> StageRun:
        """Run one stage and record it; 'skipped' when its output was complete with the same inputs."""
        before = read_record(directory)
        start = time.perf_counter()
        fn()
        seconds = round(time.perf_counter() - start, 2)
        after = read_record(directory) or {}
        skipped = bool(before and before.get("complete") and before.get("fingerprint") == after.get("fingerprint"))
        if not skipped:
            print(f"[rayrg] {name}: finished in {seconds:.1f} s", flush=True)
        entry = StageRun(stage=name, path=as_recorded(directory), fingerprint=after.get("fingerprint"),
                         status="skipped" if skipped else "ran", seconds=seconds)
        self.manifest.stages.append(entry)
        self._write_manifest()
        return entry

    def _write_manifest(self) -> None:
        write_manifest(self.out, self.manifest)

    # -- stages ---------------------------------------------------------------------------
    def data(self) -> tuple[Path, Path]:
        cfg = self.config.data
        directory = self.out / "data"
        if cfg.source == "path":
            trajectories, tasks = _given(cfg.trajectories), _given(cfg.eval_tasks)
            if not tasks.exists():
                raise FileNotFoundError(f"data.eval_tasks: evaluation tasks file not found: {tasks}")
        elif cfg.source == "babyai":
            from rayrg.data.generate import generate

            self._stage("generate", directory, lambda: generate(cfg.generate, directory, address=self.address,
                                                                on_change=REDO))
            trajectories, tasks = directory / "trajectories", directory / TASKS_FILE
        else:  # a registered dataset format (rayrg.data.formats)
            trajectories, tasks = self.import_data(directory)
        # Recorded for selection (`rayrg tune`); `rayrg run` itself selects nothing: it
        # evaluates each run's final checkpoint on the test tasks.
        val = tasks.parent / VAL_TASKS_FILE if tasks.parent == directory else None
        self.manifest.data = DataEntry(trajectories=as_recorded(trajectories), eval_tasks=as_recorded(tasks),
                                       val_tasks=as_recorded(val) if val is not None and val.exists() else None,
                                       fingerprint=dataset_fingerprint(trajectories))
        return trajectories, tasks

    def import_data(self, directory: Path) -> tuple[Path, Path]:
        """data.source=<format>: the format's import into ``directory``, as the stage ``import <format>``."""
        from rayrg.data.formats import get_format

        cfg = self.config.data
        fmt = get_format(cfg.source)
        source, options, _ = cfg.import_args()
        done: list[Any] = []
        self._stage(f"import {cfg.source}", directory, lambda: done.append(fmt.import_(
            source, directory, options, on_change=REDO, address=self.address)))
        imported = done[0]
        tasks = imported.eval_tasks if imported.eval_tasks is not None else _given(cfg.eval_tasks)
        if not tasks.exists():
            raise FileNotFoundError(f"data.eval_tasks: evaluation tasks file not found: {tasks}")
        return imported.trajectories, tasks

    def labels(self, trajectories: Path) -> Path:
        current = self._label_chain(trajectories, self.out / "labels", "label", self.manifest.labels)
        self.manifest.labelled = as_recorded(current)
        if self.config.train.nan_policy != "zero":
            from rayrg.data.access import require_finished

            # Refused here, not at the train stage: the bench's evaluation set and its labels
            # (paid requests, maybe) would otherwise be made first for a run that cannot train.
            require_finished(current, "train", opt_in="set train.nan_policy: zero")
        return current

    def _label_chain(self, source: Any, root: Any, stage: str, record: list[LabelStep]) -> Any:
        """The config's ``labels`` applied in order onto ``source``, step i into ``root/<i>-<method>``
        as the stage ``<stage>[i] <method>``, each step recorded in ``record``; the last dataset.
        The run's label step, for its training data and for the bench's evaluation set alike."""
        from rayrg.rewards.registry import get_method, run_label

        current = source
        for i, label in enumerate(self._resolved_labels()):
            method = get_method(label.method)
            directory = root / f"{i}-{method.name}"
            source = current
            if method.costs_money(label):
                # An unattended run never asks (nobody would answer; ``rayrg label`` asks only on
                # a terminal): the method's estimate goes to the log before the first paid request.
                lines = method.estimate_of(label, source).lines()
                print("\n".join(f"[rayrg] {line}" for line in lines), flush=True)
            self._stage(f"{stage}[{i}] {method.name}", directory, lambda m=method, c=label, s=source, d=directory:
                        run_label(m, c, s, d, address=self.address, on_change=REDO, retry=self.command,
                                  # the run's opt-in to unfinished labels is train.nan_policy: zero
                                  allow_unfinished=self.config.train.nan_policy == "zero"))
            # Side outputs where the method says it writes them (not found by probing folders).
            sides = method.side_outputs(label, directory) if method.side_outputs else {}
            record.append(LabelStep(
                index=i, method=method.name, path=as_recorded(directory), fingerprint=dataset_fingerprint(directory),
                windows=sides.get("windows"), labels=sides.get("labels")))
            current = directory
        return current

    def _resolved_labels(self) -> list[Any]:
        """``labels`` with every auto_backend entry resolved from the environment, once per run
        (the training data and the evaluation set are labelled by the same backend)."""
        if self._labels is None:
            self._labels = [self._resolve_label(label) for label in self.config.labels]
        return self._labels

    def bench(self, trajectories: Any) -> None:
        """``evalset`` + ``bench``: the evaluation set of the run's trajectories, labelled by the
        run's label steps, scored by the reward bench; each a stage keyed to its inputs."""
        if self.config.evalset is None or self.config.bench is None:
            return
        from rayrg.bench.bench import reward_bench
        from rayrg.data.evalset import build_evalset

        directory = self.out / "evalset"
        self._stage("evalset", directory, lambda: build_evalset(
            trajectories, directory, self.config.evalset, address=self.address, on_change=REDO))
        entry = EvalsetEntry(path=as_recorded(directory), source=as_recorded(trajectories),
                             fingerprint=dataset_fingerprint(directory))
        self.manifest.evalset = entry
        labelled = self._label_chain(directory, self.out / "evalset_labels", "evalset label", entry.labels)
        entry.labelled = as_recorded(labelled)
        section = self.config.bench
        out = self.out / "bench"
        # A label method that cannot label an evaluation-set kind leaves its rows NaN with the
        # reason in its provenance; the bench states the coverage and the skip.
        self._stage("reward-bench", out, lambda: reward_bench(
            labelled, out, section.columns, config=section.bench_config(), address=self.address, on_change=REDO,
            allow_unfinished=self.config.train.nan_policy == "zero"))
        self.manifest.bench = BenchEntry(dataset=as_recorded(labelled), path=as_recorded(out),
                                         fingerprint=(read_record(out) or {}).get("fingerprint"))

    def _resolve_label(self, label: Any) -> Any:
        if not isinstance(label, dict):
            return label
        from rayrg.rewards.registry import get_method, load_label_config

        raw = {k: v for k, v in label.items() if k != AUTO_BACKEND}
        method = get_method(str(raw["method"]))
        if method.from_env is None:  # the config refuses this already; a hand-built config may not
            from rayrg.config import ConfigError

            raise ConfigError(f"labels: {AUTO_BACKEND} applies to methods that can be built from the "
                              f"environment; {method.name!r} cannot")
        resolved = method.from_env(raw, self.out / "models")
        if resolved.note:
            self.notes.append(resolved.note)
            bar = "!" * 78
            print(f"\n{bar}\n{resolved.note}\n{bar}\n", flush=True)
        return load_label_config(resolved.config, source=f"labels ({AUTO_BACKEND})")[1]

    def train(self, labelled: Path) -> dict[tuple[str, int], Path]:
        from rayrg.rl.checkpoint import final_checkpoint
        from rayrg.rl.train import train

        checkpoints = {}
        for name in self.config.methods:
            for seed in self.config.seeds:
                cfg = self.config.train_config(name, seed)
                directory = self.out / "train" / slug(name) / f"seed{seed}"
                self._stage(f"train {name} seed {seed}", directory, lambda c=cfg, d=directory: train(
                    c, labelled, d, address=self.address, on_change=REDO))
                final = final_checkpoint(directory)
                checkpoints[(name, seed)] = final
                curve = final / CURVE_FILE
                self.manifest.train.append(TrainRun(method=name, seed=seed, checkpoint=as_recorded(final),
                                                    fingerprint=(read_record(directory) or {}).get("fingerprint"),
                                                    curve=as_recorded(curve) if curve.exists() else None))
        return checkpoints

    def evaluate(self, checkpoints: dict[tuple[str, int], Path], tasks: Path) -> None:
        from rayrg.contracts.tasks import read_eval_tasks
        from rayrg.evaluation.evaluate import evaluate

        # The report's numbers come from the test set; a validation file here is refused.
        specs = read_eval_tasks(tasks, split="test")
        cfg = self.config.eval_config(tasks)
        runs: list[tuple[str, Literal["learned", "reference"], int | None, str, Path]] = [
            (name, "learned", seed, str(as_recorded(checkpoint)), self.out / "eval" / slug(name) / f"seed{seed}")
            for (name, seed), checkpoint in checkpoints.items()]
        env_name = specs[0].env_name
        runs += [(ref, "reference", None, ref, self.out / "eval" / "_reference" / ref)
                 for ref in self.config.resolved_reference_policies(env_name)]
        for name, kind, seed, policy, directory in runs:
            stage_name = f"evaluate {name}" + (f" seed {seed}" if seed is not None else "")
            self._stage(stage_name, directory, lambda p=policy, d=directory: evaluate(
                cfg, p, d, address=self.address, on_change=REDO, progress=True))
            self.manifest.evaluations.append(Evaluation(
                method=name, kind=kind, seed=seed, policy=policy, path=as_recorded(directory),
                episodes=as_recorded(episodes_dir(as_recorded(directory))),
                display_name=self.config.display_name(name) if kind == "learned" else f"{name} (reference)",
                fingerprint=(read_record(directory) or {}).get("fingerprint"), split="test"))

    # -- all ------------------------------------------------------------------------------
    def run(self) -> Any:
        from rayrg.runtime import init_ray
        from rayrg.storage import prepare_output, refuse_local_on_cluster

        location = prepare_output(out_location(self.config))
        init_ray(self.address)
        # again, now that the cluster is known: a plain local out on a multi-node or
        # autoscaling cluster is refused here, before any stage runs
        refuse_local_on_cluster(location)
        if location.is_local:
            Path(location.path).mkdir(parents=True, exist_ok=True)
        (location / "experiment.yaml").write_text(yaml.safe_dump(public(self.config), sort_keys=False))
        trajectories, tasks = self.data()
        labelled = self.labels(trajectories)
        # Which reward is best, before any policy is trained on one (cheap beside training).
        self.bench(trajectories)
        checkpoints = self.train(labelled)
        self.evaluate(checkpoints, tasks)
        self._write_manifest()
        from rayrg.report.build import build_report

        report = build_report(self.out)
        print(f"\n[rayrg] report: {report}", flush=True)
        return report


def run_experiment(config: ExperimentConfig, address: str | None = None, command: str | None = None) -> Any:
    return ExperimentRunner(config, address=address, command=command).run()
