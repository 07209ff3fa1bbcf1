"""IQL on a real local Ray cluster: 2-worker DDP, checkpoint/resume, policy loading, Tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rayrg.data.schema import DatasetError
from rayrg.rl.config import SweepConfig, TrainConfig
from rayrg.rl.data import load_transitions
from rayrg.rl.policy import load_policy
from rayrg.rl.train import LEARNER_FILE, latest_checkpoint, train

SMALL = {"observation": "frame", "history": 1, "batch_size": 8, "channels": [4, 8, 8], "hidden": 32, "text_dim": 8, "report_every": 5,
         "checkpoint_every": 10, "updates_per_call": 5}


def test_data_next_frames_terminals_and_missing_columns(make_toy_dataset) -> None:
    d = make_toy_dataset(steps=(3, 4), num_episodes=2, shards=1)
    data, _, _ = load_transitions(d, "reward_sparse")
    assert len(data) == 7 and data.observations.shape[0] == 7 + 2  # two final frames appended
    assert data.next_index[:, 0].tolist() == [1, 2, 7, 4, 5, 6, 8]
    assert data.rewards.tolist() == [0, 0, 1, 0, 0, 0, 0]  # episode 0 succeeds, episode 1 does not
    assert data.terminals.tolist() == [0, 0, 1, 0, 0, 0, 0]  # episode 1 is truncated: no mask
    with pytest.raises(DatasetError, match="reward column 'reward_rgvlm' is not in the dataset"):
        load_transitions(d, "reward_rgvlm")


def test_nan_rewards_are_refused_unless_configured(make_toy_dataset, tmp_path: Path) -> None:
    import pyarrow as pa

    from rayrg.rewards.base import write_labelled_dataset

    d = make_toy_dataset(steps=(3, 4), num_episodes=2, shards=1)
    out = write_labelled_dataset(d, pa.table({"episode_id": ["toy-0-0"], "step": [0], "reward_x": [1.0]}),
                                 tmp_path / "l")
    with pytest.raises(DatasetError, match="6 of 7 transitions have NaN"):
        load_transitions(out, "reward_x")
    data, _, _ = load_transitions(out, "reward_x", nan_policy="zero")
    assert data.rewards.tolist() == [1, 0, 0, 0, 0, 0, 0]


@pytest.mark.integration
def test_ddp_two_workers_resume_and_policy(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    d = make_toy_dataset()
    out = tmp_path / "run"
    config = TrainConfig(num_steps=10, num_workers=2, cpus_per_worker=0.5, **SMALL)
    final = train(config, d, out)
    assert (final / LEARNER_FILE).exists()
    first = latest_checkpoint(out)
    assert first is not None and (first / "step.txt").read_text() == "10"
    # "Kill" after step 10 of a 20-step run: the rerun resumes from step 10, not from 0.
    (final / LEARNER_FILE).unlink()
    final.rename(tmp_path / "old_final")
    final = train(config.model_copy(update={"num_steps": 20}), d, out)
    import json

    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["step"] == 20
    assert (final / "step.txt").read_text() == "20"
    # finished runs are not trained again
    assert train(config, d, out) == final

    policy = load_policy(final)
    frames = np.zeros((3, 1, 56, 56, 3), np.uint8)
    actions = policy.act(frames, ["go to the red ball", "pick up the key", "unseen words here"])
    assert actions.shape == (3,) and ((0 <= actions) & (actions < 6)).all()


@pytest.mark.integration
@pytest.mark.slow
def test_tune_sweep_two_trials(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    from rayrg.rl.tune import sweep

    d = make_toy_dataset()
    config = SweepConfig(train=TrainConfig(num_steps=10, **SMALL), expectiles=[0.7, 0.9], betas=[3.0],
                         max_concurrent_trials=1)
    table = sweep(config, d, tmp_path / "tune")
    assert (tmp_path / "tune" / "sweep_results.csv").exists()
    assert "0.7" in table and "0.9" in table
    assert list((tmp_path / "tune" / "sweep").rglob("events.out.tfevents*"))
