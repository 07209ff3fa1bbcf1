"""Rewards scored by a tiny random checkpoint carry the pipeline-check caveat in every report
(reward-report, pr-report, the run report's table); others do not. Detection is by the
checkpoint's marker, never by a config's or directory's name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rayrg.data.access import read_trajectories
from rayrg.models._tiny import MARKER
from rayrg.rewards.base import write_labelled_dataset
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.rgvlm.pipeline import provenance


@pytest.fixture(scope="module")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("models") / "tiny-qwen2vl")


def _rgvlm_labels(source: Path, out: Path, model: str) -> Path:
    """Labels with the provenance the RG-VLM pipeline records for ``jobs/label_tiny_qwen2vl.yaml``
    pointed at ``model`` (scores: a coin flip, the model's are noise too)."""
    _, config = load_label_config({"method": "rgvlm",
                                   "backend": {"type": "transformers", "model": model, "device": "cpu"}})
    table = read_trajectories(source, decode_images=False)
    scores = np.random.default_rng(0).random(table.num_rows).astype(np.float32)
    rewards = pa.table({"episode_id": table.column("episode_id"), "step": table.column("step"),
                        "reward_rgvlm": scores})
    return write_labelled_dataset(source, rewards, out, provenance={"reward_rgvlm": provenance(config)})


def _reward_report(dataset: Path, capsys: pytest.CaptureFixture[str]) -> str:
    from rayrg.cli import main

    assert main(["reward-report", "--dataset", str(dataset)]) == 0
    return capsys.readouterr().out


def test_reward_report_on_tiny_qwen2vl_labels_carries_caveat(
        tiny_qwen2vl: Path, make_toy_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the job file's relative model path, resolved from the working directory as when labelling
    (tmp_path / "runs" / "models").mkdir(parents=True)
    shutil.copytree(tiny_qwen2vl, tmp_path / "runs" / "models" / "tiny-qwen2vl")
    monkeypatch.chdir(tmp_path)
    labelled = _rgvlm_labels(make_toy_dataset(), tmp_path / "labelled", "runs/models/tiny-qwen2vl")
    out = _reward_report(labelled, capsys)
    assert "(RANDOM WEIGHTS)" in out
    assert "PIPELINE CHECK" in out and "runs/models/tiny-qwen2vl" in out and "not reward quality" in out

    from rayrg.cli import main

    assert main(["pr-report", "--dataset", str(labelled), "--out", str(tmp_path / "pr")]) == 0
    assert "PIPELINE CHECK" in capsys.readouterr().out
    saved = json.loads((tmp_path / "pr" / "pr_report.json").read_text())
    assert saved["columns"][0]["tiny_random_weights"] and "PIPELINE CHECK" in saved["caveat"]


def test_no_caveat_for_sparse_simulated_or_a_real_checkpoint_named_tiny(
        tiny_qwen2vl: Path, make_toy_dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_toy_dataset()
    for raw in ({"method": "sparse"}, {"method": "simulated", "accuracy": 0.9}):
        method, config = load_label_config(raw)
        labelled = method.run(config, source, tmp_path / raw["method"])
        out = _reward_report(labelled, capsys)
        assert "PIPELINE CHECK" not in out and "RANDOM WEIGHTS" not in out, out

    # same files and name, no marker: a checkpoint someone trained is not flagged by its name
    trained = tmp_path / "tiny-qwen2vl"
    shutil.copytree(tiny_qwen2vl, trained)
    (trained / MARKER).unlink()
    out = _reward_report(_rgvlm_labels(source, tmp_path / "trained", str(trained)), capsys)
    assert "PIPELINE CHECK" not in out and "RANDOM WEIGHTS" not in out, out


def test_run_report_table_carries_caveat(tiny_qwen2vl: Path, make_toy_dataset, tmp_path: Path) -> None:
    # the run report's reward section (its data loading is separate and may change)
    from rayrg.report.build import _reward_table

    labelled = _rgvlm_labels(make_toy_dataset(), tmp_path / "labels", str(tiny_qwen2vl))
    text, rows = _reward_table(labelled, [])
    assert text.count("PIPELINE CHECK") >= 2 and "(RANDOM WEIGHTS)" in text  # in the table and bold
    assert rows[0]["tiny_random_weights"]
