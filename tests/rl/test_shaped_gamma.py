"""Training on a potential-shaped reward column keeps its γ (rayrg.rewards.shaping.check_gamma)."""

from __future__ import annotations


def test_train_refuses_a_column_shaped_with_another_gamma(tiny_babyai, tmp_path) -> None:
    """`rayrg train` on a reward column shaped with γ = 0.5 while the learner's discount is 0.97:
    one line naming both, before any training (a check the train stage does on the driver)."""
    import shutil

    import pytest

    from rayrg.config import ConfigError
    from rayrg.contracts.datasets import read_metadata, write_metadata
    from rayrg.data.access import PROVENANCE_KEY
    from rayrg.rewards.shaping import GAMMA_KEY
    from rayrg.rewards.simple import SPARSE, SparseConfig
    from rayrg.rl.config import TrainConfig
    from rayrg.rl.train import train

    labelled = SPARSE.run(SparseConfig(), tiny_babyai, tmp_path / "l")
    meta = read_metadata(labelled)
    meta.extra.setdefault(PROVENANCE_KEY, {}).setdefault("reward_sparse", {})[GAMMA_KEY] = 0.5
    write_metadata(meta, labelled)
    with pytest.raises(ConfigError, match="shaped with gamma=0.5 but training uses discount 0.97"):
        train(TrainConfig(num_steps=2, reward_column="reward_sparse", observation="frame"), labelled,
              tmp_path / "run")
    assert not (tmp_path / "run" / "final").exists()
    shutil.rmtree(tmp_path / "l")
