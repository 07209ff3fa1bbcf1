"""IQL training data: next observations, terminals, missing columns, NaN rewards. (Resume and
provenance: test_train_resume.py; DDP: test_ddp_and_features.py; Tune: test_tune.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrg.data.schema import DatasetError
from rayrg.rl.data import load_transitions


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
