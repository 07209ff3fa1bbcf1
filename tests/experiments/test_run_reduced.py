"""A reduced quickstart end to end in CI: every stage through `rayrg run`, then a re-run
that skips everything (the cache/checkpoint machinery)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REDUCED = {
    "name": "reduced",
    "data": {"generate": {"subtask_counts": [1, 2], "episodes_per_count": 3, "eval_tasks_per_count": 1,
                          "noise": 0.2}},
    "labels": [
        {"method": "sparse"},
        {"method": "simulated", "accuracy": 0.9, "name": "acc900"},
        {"method": "rgvlm", "auto_backend": True},
    ],
    "methods": {
        "sparse": {"reward_column": "reward_sparse"},
        "simulated+sparse": {"reward_column": "reward_simulated_acc900_sparse", "note": "SIMULATED labels"},
        "rgvlm+sparse": {"reward_column": "reward_rgvlm_sparse"},
    },
    "train": {"num_steps": 40, "batch_size": 16, "checkpoint_every": 20, "report_every": 20},
    "seeds": [0],
    "evaluation": {"modes": ["fixed", "randomized"], "seeds": [0], "settings": {"num_actors": 1}},
}


@pytest.mark.integration
@pytest.mark.slow
def test_reduced_experiment_end_to_end_and_rerun_skips(tmp_path: Path) -> None:
    config = tmp_path / "reduced.yaml"
    config.write_text(yaml.safe_dump({**REDUCED, "out": str(tmp_path / "run")}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "rayrg.cli", "run", str(config), "--num-cpus", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "NO RG-VLM BACKEND CONFIGURED" in first.stdout  # said prominently
    out = tmp_path / "run"
    report = (out / "report" / "report.md").read_text()
    assert "PIPELINE CHECK ONLY" in report and "Figure-4" in report
    for png in ("return_by_subtasks.png", "reward_curves.png", "window_scores.png"):
        assert (out / "report" / png).stat().st_size > 1000
    numbers = json.loads((out / "report" / "report.json").read_text())
    assert set(numbers["evaluation"]["overall"]) == {"sparse", "simulated_plus_sparse", "rgvlm_plus_sparse"}

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    ran = [line for line in second.stdout.splitlines() if line.startswith("[rayrg]") and line.endswith("...")]
    assert ran == [], f"re-run repeated finished stages: {ran}"
