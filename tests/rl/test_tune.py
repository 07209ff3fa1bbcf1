"""Tune ranks trials by evaluation return from evaluation actors, not by a training loss."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rayrg.config import ConfigError
from rayrg.evaluation.config import EvalConfig
from rayrg.experiments.sweep import SweepConfig, _check_fits, results_table
from rayrg.rl.config import TrainConfig

SMALL = {"batch_size": 8, "hidden": 32, "text_dim": 8, "report_every": 5, "checkpoint_every": 10,
         "updates_per_call": 5}


def test_sweep_config_refuses_loss_metrics_and_hides_unswept_values() -> None:
    with pytest.raises(ConfigError, match="metric"):
        SweepConfig.from_dict({"metric": "loss/policy"})
    config = SweepConfig()
    assert (config.metric, config.mode) == ("eval/return_mean", "max")
    dumped = config.to_public_dict()
    assert "expectile" not in dumped["train"] and "beta" not in dumped["train"]
    assert dumped["expectiles"] == [0.7, 0.8, 0.9]


def test_concurrent_trials_must_fit_the_cluster() -> None:
    config = SweepConfig(max_concurrent_trials=2)  # 2 × (0.25 + 0.5 + 0.25) = 2 CPUs
    _check_fits(config, 2.0)
    with pytest.raises(ConfigError, match="needs 3 CPUs"):
        _check_fits(config.model_copy(update={"max_concurrent_trials": 3}), 2.0)


def test_results_table_names_each_hyperparameter_once_best_first() -> None:
    frame = pd.DataFrame({"trial_id": ["a", "b"], "config/expectile": [0.7, 0.9], "config/beta": [3.0, 3.0],
                          "config/train/expectile": [0.8, 0.8], "step": [10, 20],
                          "eval/return_mean": [0.2, 0.5], "loss/policy": [0.1, 9.0]})
    table = results_table(frame, "eval/return_mean", "max")
    assert list(table.columns[:5]) == ["trial_id", "expectile", "beta", "step", "eval/return_mean"]
    assert not any("train/" in c for c in table.columns)
    assert table["trial_id"].tolist() == ["b", "a"]  # by eval return, although b's loss is far higher


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    from rayrg.data.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("gen")
    generate(GenerateConfig(subtask_counts=[1], episodes_per_count=6, eval_tasks_per_count=3, val_tasks_per_count=3,
                            episodes_per_shard=6), out, progress=False)
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_sweep_ranks_trials_by_eval_return(generated: Path, tmp_path: Path, ray_local) -> None:
    from rayrg.evaluation.evaluate import evaluate

    tasks = generated / "val_tasks.json"  # selection ranks on validation tasks only
    (generated / "eval_tasks.json").unlink()  # the test set is never needed to tune
    config = SweepConfig(train=TrainConfig(num_steps=20, **SMALL), expectiles=[0.7, 0.9], betas=[3.0],
                         max_concurrent_trials=1, grace_period=1,
                         eval=EvalConfig(tasks=str(tasks), modes=["fixed"], seeds=[0, 1], num_actors=1,
                                         cpus_per_actor=0.25))
    out = tmp_path / "tune"
    # In its own process (its own local Ray): a sweep's Train controllers must not outlive it
    # inside the shared test cluster, where they would hold CPUs other tests wait for.
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    run = subprocess.run([sys.executable, "-m", "rayrg.cli", "tune", "--config", str(path), "--dataset",
                          str(generated / "trajectories"), "--out", str(out), "--num-cpus", "2"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = run.stdout
    progress = [pd.read_csv(p) for p in sorted((out / "sweep").rglob("progress.csv"))]
    assert len(progress) == 2
    for rows in progress:
        # every result Tune saw is an evaluated checkpoint, with the eval metric
        assert rows["eval/return_mean"].notna().all() and (rows["eval/episodes"] == 3 * 2).all()
        assert set(rows["step"]) <= {10, 20}
    best = json.loads((out / "best.json").read_text())
    everything = pd.concat(progress)
    assert best["eval/return_mean"] == pytest.approx(everything["eval/return_mean"].max())
    assert f"expectile {best['expectile']}" in text
    table = pd.read_csv(out / "sweep_results.csv")
    assert table["expectile"].tolist()[0] == best["expectile"] and len(table) == 2
    assert not any(c.startswith("config/") or "train/" in c for c in table.columns)
    # The reported number is the evaluation return of that checkpoint: re-evaluate it.
    again = evaluate(config.eval, best["checkpoint_path"], tmp_path / "again", progress=False)
    assert again["modes"]["fixed"]["mean"] == pytest.approx(best["eval/return_mean"])


@pytest.mark.integration
@pytest.mark.slow
def test_ctrl_c_during_a_sweep_is_one_line_and_the_sweep_resumes(generated: Path, tmp_path: Path) -> None:
    # Ray Tune takes over SIGINT for a fit() called from the main thread: Ctrl-C ended the sweep
    # "gracefully" with Ray's lines, then rayrg ranked the partial grid and wrote best.json (rc 0).
    from tests.test_console_errors import _ctrl_c, _lines

    config = SweepConfig(train=TrainConfig(num_steps=1_000_000, **SMALL), expectiles=[0.7, 0.9], betas=[3.0],
                         max_concurrent_trials=1, grace_period=1,
                         eval=EvalConfig(tasks=str(generated / "val_tasks.json"), modes=["fixed"], seeds=[0],
                                         num_actors=1, cpus_per_actor=0.25))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    out = tmp_path / "tune"
    args = [sys.executable, "-m", "rayrg.cli", "tune", "--config", str(path), "--dataset",
            str(generated / "trajectories"), "--out", str(out), "--num-cpus", "2"]

    def evaluated(proc: subprocess.Popen) -> str:  # a trial has a checkpoint, evaluated
        while not list(out.glob("sweep/*/eval/checkpoint_*")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        return ""

    code, _, stderr = _ctrl_c(args, tmp_path, evaluated)
    lines = _lines(stderr)
    assert code == 130, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("rayrg tune: interrupted") and "resume" in lines[0], stderr
    assert not (out / "best.json").exists() and not (out / "sweep_results.csv").exists()

    def resumed(proc: subprocess.Popen) -> str:
        seen = []
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if re.search(r"resuming from \S+ \(step [1-9]\d*\)", line):
                break
        return "".join(seen)

    code, stdout, stderr = _ctrl_c(args, tmp_path, resumed)
    assert code == 130 and "resuming the sweep" in stdout, stdout[-3000:] + stderr[-3000:]
    assert re.search(r"trial \S+ resuming from \S+ \(step [1-9]\d*\)", stdout), stdout[-3000:]
    # Another config into the same --out is refused, not restored with the old one's trials.
    path.write_text(yaml.safe_dump(config.model_copy(update={"betas": [1.0]}).to_dict()))
    other = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "holds a sweep of other inputs (param_space.beta.grid_search: [3.0] → [1.0])" \
        in other.stderr, other.stderr


def test_a_sweep_is_restored_only_with_the_same_inputs(tmp_path: Path) -> None:
    """The restore check names what differs: a relabelled dataset at the same path, a swept
    value, a ranking setting, a training setting."""
    from rayrg.experiments.sweep import SWEEP_INPUTS, _check_same_sweep
    from rayrg.storage import resolve

    saved = {"param_space": {"train": {"lr": 0.001}, "beta": {"grid_search": [1.0, 3.0]}},
             "dataset": "fp-a", "metric": "eval/return_mean", "mode": "max", "grace_period": 2}
    (tmp_path / SWEEP_INPUTS).write_text(json.dumps(saved))
    location = resolve(tmp_path)
    _check_same_sweep(location, json.loads(json.dumps(saved)))  # same: restored
    for change, named in [({"dataset": "fp-b"}, 'dataset: "fp-a" → "fp-b"'), ({"grace_period": 3}, "grace_period: 2 → 3"),
                          ({"param_space": {**saved["param_space"], "beta": {"grid_search": [1.0]}}},
                           "param_space.beta.grid_search: [1.0, 3.0] → [1.0]"),
                          ({"param_space": {**saved["param_space"], "train": {"lr": 0.01}}},
                           "param_space.train.lr: 0.001 → 0.01")]:
        with pytest.raises(ConfigError, match=re.escape(f"other inputs ({named})")):
            _check_same_sweep(location, {**saved, **change})
    (tmp_path / SWEEP_INPUTS).unlink()
    with pytest.raises(ConfigError, match="no record of its inputs"):
        _check_same_sweep(location, saved)
