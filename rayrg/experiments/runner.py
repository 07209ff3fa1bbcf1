"""``rayrg run``: data → windows → labels → IQL per (method, seed) → evaluation → report.

Every stage writes under the experiment's ``out`` directory and leaves a ``_stage.json``
marker holding a hash of its inputs when it finishes. A re-run skips every stage whose
marker matches; an interrupted stage resumes through its own machinery (the generator
skips written shards, the RG-VLM cache never pays for a window twice, training resumes
from its last checkpoint, evaluation skips finished episodes).

Layout::

    <out>/experiment.yaml          the config as run
    <out>/data/                    trajectories/, eval_tasks.json
    <out>/labels/<i>-<method>/     labelled dataset after label step i (chained)
    <out>/train/<method>/seed<k>/  checkpoints
    <out>/eval/<method>/seed<k>/   evaluation results
    <out>/report/                  report.md, report.html, plots
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError
from rayrg.experiments.config import ExperimentConfig

log = logging.getLogger(__name__)

MARKER = "_stage.json"


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_stage(name: str, directory: Path, inputs: Any, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` unless ``directory`` holds a finished marker for the same ``inputs``."""
    marker = directory / MARKER
    digest = _digest(inputs)
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("inputs") == digest:
            print(f"[rayrg] {name}: done earlier, skipping ({directory})", flush=True)
            return done
        print(f"[rayrg] {name}: inputs changed since the last run; running again", flush=True)
    print(f"[rayrg] {name} ...", flush=True)
    start = time.perf_counter()
    result = fn()
    record = {"stage": name, "inputs": digest, "seconds": round(time.perf_counter() - start, 2),
              "result": result if isinstance(result, (dict, list, str, int, float)) else str(result)}
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record, indent=2, default=str))
    print(f"[rayrg] {name}: finished in {record['seconds']:.1f} s", flush=True)
    return record


class ExperimentRunner:
    def __init__(self, config: ExperimentConfig, address: str | None = None) -> None:
        config.validate_stages()
        self.config = config
        self.address = address
        self.out = config.out_dir
        self.notes: list[str] = []  # prominent messages that also go into the report

    # -- stages ---------------------------------------------------------------------------
    def data(self) -> tuple[Path, Path]:
        cfg = self.config.data
        if cfg.source == "path":
            if not cfg.eval_tasks:
                raise ConfigError("data.source=path needs data.eval_tasks for evaluation")
            return Path(cfg.trajectories or ""), Path(cfg.eval_tasks)
        directory = self.out / "data"
        if cfg.source == "babyai":
            from rayrg.data.generate import GenerateConfig, generate

            gen = GenerateConfig.from_dict(cfg.generate)
            run_stage("generate", directory, gen.to_dict(),
                      lambda: str(generate(gen, directory, address=self.address)))
            return directory / "trajectories", directory / "eval_tasks.json"
        from rayrg.data.alfred import import_alfred_experiment  # ALFRED: optional, see jobs/

        return import_alfred_experiment(cfg.alfred, directory)

    def labels(self, trajectories: Path) -> Path:
        from rayrg.rewards.registry import load_label_config

        current = trajectories
        for i, raw in enumerate(self.config.labels):
            raw = self._resolve_label(raw)
            method, label_config = load_label_config(raw, source=f"labels[{i}]")
            directory = self.out / "labels" / f"{i}-{method.name}"
            inputs = {"source": str(current), "config": label_config.to_dict()}
            source = current
            run_stage(f"label[{i}] {method.name}", directory, inputs,
                      lambda m=method, c=label_config, s=source, d=directory: str(
                          m.run(c, s, d, address=self.address)))
            current = directory
        return current

    def _resolve_label(self, raw: dict[str, Any]) -> dict[str, Any]:
        if not raw.get("auto_backend"):
            return raw
        from rayrg.experiments.backends import auto_rgvlm_label

        resolved, note = auto_rgvlm_label(raw, self.out / "models")
        if note:
            self.notes.append(note)
            bar = "!" * 78
            print(f"\n{bar}\n{note}\n{bar}\n", flush=True)
        return resolved

    def train(self, labelled: Path) -> dict[tuple[str, int], Path]:
        from rayrg.rl.config import TrainConfig
        from rayrg.rl.train import train

        checkpoints = {}
        for name, spec in self.config.methods.items():
            for seed in self.config.seeds:
                cfg = TrainConfig.from_dict({**self.config.train, **spec.train, "reward_column": spec.reward_column,
                                             "seed": seed}, source=f"train ({name})")
                directory = self.out / "train" / _slug(name) / f"seed{seed}"
                inputs = {"dataset": str(labelled), "config": cfg.to_dict()}
                record = run_stage(f"train {name} seed {seed}", directory, inputs,
                                   lambda c=cfg, d=directory: str(
                                       train(c, labelled, d, address=self.address)))
                checkpoints[(name, seed)] = Path(record["result"])
        return checkpoints

    def evaluate(self, checkpoints: dict[tuple[str, int], Path], tasks: Path) -> dict[tuple[str, int], Path]:
        from rayrg.evaluation.config import EvalConfig
        from rayrg.evaluation.evaluate import evaluate

        ev = self.config.evaluation
        results = {}
        for (name, seed), checkpoint in checkpoints.items():
            cfg = EvalConfig.from_dict({**ev.settings, "tasks": str(tasks), "modes": ev.modes,
                                        "seeds": ev.seeds}, source=f"evaluation ({name})")
            directory = self.out / "eval" / _slug(name) / f"seed{seed}"
            inputs = {"checkpoint": str(checkpoint), "config": cfg.to_dict()}
            run_stage(f"evaluate {name} seed {seed}", directory, inputs,
                      lambda c=cfg, p=checkpoint, d=directory: evaluate(c, str(p), d, address=self.address))
            results[(name, seed)] = directory
        return results

    # -- all ------------------------------------------------------------------------------
    def run(self) -> Path:
        from rayrg.runtime import init_ray

        self.out.mkdir(parents=True, exist_ok=True)
        self.config.to_yaml(self.out / "experiment.yaml")
        init_ray(self.address)
        trajectories, tasks = self.data()
        labelled = self.labels(trajectories)
        checkpoints = self.train(labelled)
        self.evaluate(checkpoints, tasks)
        from rayrg.report.build import build_report

        report = build_report(self.out, notes=self.notes)
        print(f"\n[rayrg] report: {report}", flush=True)
        return report


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.replace("+", "_plus_"))


def run_experiment(config: ExperimentConfig, address: str | None = None) -> Path:
    return ExperimentRunner(config, address=address).run()
