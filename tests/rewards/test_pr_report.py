"""Reward-quality reports: PR numbers on constructed data, scaling and prompt reports by CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from rayrg.cli import main
from rayrg.data.access import read_trajectories
from rayrg.data.schema import SCALAR_COLUMNS
from rayrg.rewards.base import write_labelled_dataset
from rayrg.rewards.similarity.math import average_precision
from rayrg.rewards.similarity.reports import ground_truth, last_steps
from tests.rewards._similarity_helpers import babyai_dataset, tiny_checkpoints


def test_ground_truth_definitions() -> None:
    keys = pa.table({"episode_id": ["a", "a", "a", "b", "b"], "success": [True] * 3 + [False] * 2,
                     "subtasks_completed": [0, 1, 2, 1, 1]})
    truth = ground_truth(keys)
    np.testing.assert_array_equal(truth["goal"], [False, False, True, False, False])
    np.testing.assert_array_equal(truth["subtask"], [False, True, True, True, False])
    np.testing.assert_array_equal(last_steps(keys.column("episode_id")), [False, False, True, False, True])


def test_pr_report_on_constructed_rewards(make_toy_dataset, tmp_path: Path) -> None:
    data = make_toy_dataset()
    keys = read_trajectories(data, columns=list(SCALAR_COLUMNS), decode_images=False)
    truth = ground_truth(keys)
    rng = np.random.default_rng(0)
    noisy = truth["subtask"] + rng.normal(0, 0.6, keys.num_rows)
    episode_end = np.where(last_steps(keys.column("episode_id")), truth["goal"] * 0.9 + 0.05, 0.0)
    rewards = pa.table({"episode_id": keys.column("episode_id"), "step": keys.column("step"),
                        "reward_perfect": truth["subtask"].astype(np.float32),
                        "reward_noisy": noisy.astype(np.float32),
                        "reward_end": episode_end.astype(np.float32)})
    labelled = write_labelled_dataset(data, rewards, tmp_path / "labelled",
                                      provenance={"reward_end": {"method": "roboclip", "granularity": "episode_end"}})
    out = tmp_path / "report"
    assert main(["pr-report", "--dataset", str(labelled), "--out", str(out)]) == 0
    report = json.loads((out / "pr_report.json").read_text())
    assert (out / "pr_curves.png").stat().st_size > 1000
    rows = {r["column"]: r["truth"] for r in report["columns"]}
    assert rows["reward_perfect"]["subtask"]["average_precision"] == pytest.approx(1.0)
    assert rows["reward_noisy"]["subtask"]["average_precision"] == pytest.approx(
        average_precision(noisy, truth["subtask"]))
    assert rows["reward_noisy"]["subtask"]["positives"] == int(truth["subtask"].sum())
    # episode-end rewards are scored on last transitions only: one row per episode
    assert rows["reward_end"]["goal"]["scored"] == len(set(keys.column("episode_id").to_pylist()))
    assert rows["reward_end"]["goal"]["average_precision"] == pytest.approx(1.0)
    curve = rows["reward_noisy"]["goal"]["curve"]
    assert len(curve["precision"]) == len(curve["recall"]) == len(curve["thresholds"]) > 1


@pytest.mark.integration
def test_scaling_and_prompt_reports_by_cli(tmp_path: Path, ray_local) -> None:
    data = babyai_dataset(tmp_path)
    ckpt = tiny_checkpoints(tmp_path / "ckpt")
    config = tmp_path / "clip.yaml"
    config.write_text(yaml.safe_dump({"method": "clip", "model": str(ckpt["clip"]), "temperature": 0.05}))

    out = tmp_path / "scaling"
    assert main(["scaling-report", "--config", str(config), "--dataset", str(data), "--out", str(out),
                 "--model", f"xs={ckpt['clip']}", "--model", f"s={ckpt['clip_s']}"]) == 0
    report = json.loads((out / "scaling_report.json").read_text())
    assert [m["label"] for m in report["models"]] == ["xs", "s"]  # sorted by size
    assert report["models"][0]["num_parameters"] < report["models"][1]["num_parameters"]
    for m in report["models"]:
        for truth in ("goal", "subtask"):
            assert 0.0 <= m["truth"][truth]["average_precision"] <= 1.0
    assert (out / "scaling.png").exists() and (out / "scaling_pr_curves.png").exists()

    out = tmp_path / "prompts"
    assert main(["prompt-report", "--config", str(config), "--dataset", str(data), "--out", str(out),
                 "--template", "bare::{instruction}", "--template", "a picture of {instruction}"]) == 0
    report = json.loads((out / "prompt_report.json").read_text())
    assert [(t["label"], t["template"]) for t in report["templates"]] == [
        ("bare", "{instruction}"), ("t1", "a picture of {instruction}")]
    assert (out / "prompts.png").exists() and (out / "prompts_pr_curves.png").exists()
