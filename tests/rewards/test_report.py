"""The reward-quality report (Table I): metrics by hand, NaN handling, provenance, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rayrg.data.access import read_trajectories
from rayrg.rewards.base import write_labelled_dataset
from rayrg.rewards.report import binary_metrics, format_table, reward_report
from rayrg.rewards.truth import good_actions


def test_binary_metrics_by_hand() -> None:
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    truth = np.array([1, 0, 1, 0, 1, 0], bool)
    m = binary_metrics(pred, truth)
    assert m["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert np.isnan(binary_metrics(np.zeros(3, bool), np.zeros(3, bool))["precision"])


def test_report_scores_columns_against_truth_and_skips_nan(make_toy_dataset, tmp_path: Path) -> None:
    source = make_toy_dataset()
    table = read_trajectories(source, decode_images=False)
    truth = good_actions(table)
    perfect = truth.astype(np.float32)
    partial = np.where(np.arange(len(truth)) % 2 == 0, perfect, np.nan).astype(np.float32)
    inverted = 1 - perfect
    rewards = pa.table({"episode_id": table.column("episode_id"), "step": table.column("step"),
                        "reward_rgvlm": perfect * 0.9, "reward_half": partial, "reward_bad": inverted})
    summary = {"mean_seconds_per_query": 2.5, "input_tokens": 9000, "output_tokens": 1000, "cost_usd": 0.5,
               "transitions_labelled": 500, "invalid_answer_rate": 0.02}
    out = write_labelled_dataset(source, rewards, tmp_path / "labelled", provenance={
        "reward_rgvlm": {"method": "rgvlm", "backend": "gemini", "model": "gemini-3-flash", "summary": summary}})
    rows = {r["column"]: r for r in reward_report([out])}
    assert rows["reward_rgvlm"]["accuracy"] == 1.0 and rows["reward_rgvlm"]["coverage"] == 1.0
    assert rows["reward_rgvlm"]["tokens_per_1000_transitions"] == pytest.approx(20000)
    assert rows["reward_rgvlm"]["cost_usd_per_1000_transitions"] == pytest.approx(1.0)
    assert rows["reward_rgvlm"]["mean_seconds_per_query"] == 2.5 and rows["reward_rgvlm"]["model"] == "gemini-3-flash"
    assert rows["reward_half"]["accuracy"] == 1.0
    assert rows["reward_half"]["labelled"] == (len(truth) + 1) // 2
    assert rows["reward_bad"]["accuracy"] == 0.0 and rows["reward_bad"]["tokens_per_1000_transitions"] is None
    text = format_table(list(rows.values()))
    assert "gemini/gemini-3-flash" in text and "1.000" in text

    from rayrg.cli import main

    assert main(["reward-report", "--dataset", str(out), "--column", "reward_rgvlm",
                 "--out", str(tmp_path / "report.json")]) == 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["threshold"] == 0.5 and [r["column"] for r in saved["rows"]] == ["reward_rgvlm"]
