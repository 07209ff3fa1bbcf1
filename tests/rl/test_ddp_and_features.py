"""On a real local Ray: 2-worker DDP ends identical on both workers; the `rayrg encode` features path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rayrg.rl.config import TrainConfig

TINY = {"hidden": 16, "text_dim": 4, "batch_size": 8, "report_every": 5, "checkpoint_every": 10,
        "updates_per_call": 5}


@pytest.mark.integration
def test_two_worker_ddp_ends_with_identical_parameters(tiny_babyai: Path, tmp_path: Path, ray_local) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayrg.rl.train import train_fn_per_worker

    config = TrainConfig(observation="state", history=2, num_steps=10, num_workers=2, **TINY)
    dump = tmp_path / "params"
    dump.mkdir()
    TorchTrainer(train_fn_per_worker,
                 train_loop_config={"train": config.to_dict(), "dataset": str(tiny_babyai), "resume_from": None,
                                    "dump_parameters_to": str(dump)},
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                 run_config=RunConfig(name="ddp", storage_path=str(tmp_path / "run"))).fit()
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 10
    for net in ("q", "q_target", "v", "policy"):
        for name, value in ranks[0][net].items():
            torch.testing.assert_close(value, ranks[1][net][name], rtol=0, atol=1e-6, msg=f"{net}.{name}")


@pytest.mark.integration
def test_encode_features_train_and_policy(tiny_babyai: Path, tmp_path: Path, ray_local) -> None:
    from rayrg.data.access import read_trajectories
    from rayrg.data.schema import decode_png
    from rayrg.encode.encoders import ImageEncoder
    from rayrg.encode.stage import ENCODER_FILE, encode
    from rayrg.models.tiny_clip import build_tiny_clip
    from rayrg.rl.checkpoint import network_spec, save_checkpoint
    from rayrg.rl.data import load_transitions
    from rayrg.rl.iql import IQLLearner
    from rayrg.rl.policy import load_policy

    clip = build_tiny_clip(tmp_path / "clip")
    out = encode(tiny_babyai, tmp_path / "feats", "clip", clip, batch_size=16)
    assert (out / ENCODER_FILE).exists()
    with pytest.raises(Exception, match="not empty"):
        encode(tiny_babyai, out, "clip", clip)

    config = TrainConfig(observation="features", history=2, features_dir=str(out), **TINY)
    data, featurizer, info = load_transitions(tiny_babyai, "reward_sparse", observation="features", history=2,
                                              features_dir=out)
    table = read_trajectories(tiny_babyai, columns=["frame"], decode_images=False)
    record = info["image_encoder"]
    frames = np.stack([decode_png(b) for b in table.column("frame").to_pylist()[:3]])
    np.testing.assert_allclose(data.observations[:3].numpy(), ImageEncoder(record)(frames), rtol=1e-4, atol=1e-5)

    learner = IQLLearner(config, network_spec(config, info, featurizer, int(data.text.shape[-1])))
    learner.update(data.sample(8))
    save_checkpoint(tmp_path, learner, featurizer)
    policy = load_policy(tmp_path)
    live = policy.observe([None, None, None], frames)  # the checkpoint's encoder embeds live frames
    np.testing.assert_allclose(live, data.observations[:3].numpy(), rtol=1e-4, atol=1e-5)
    actions = policy.act(np.stack([live, live], axis=1), ["go to the red ball"] * 3)
    assert actions.shape == (3,)
