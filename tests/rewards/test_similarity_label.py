"""End to end: each similarity method labels a small BabyAI dataset on Ray Data with tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrg.cli import main
from rayrg.data.access import read_trajectories
from rayrg.data.schema import SCALAR_COLUMNS, DatasetMetadata
from rayrg.rewards.base import PROVENANCE_KEY
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.similarity.reports import last_steps
from tests.rewards._similarity_helpers import babyai_dataset, tiny_checkpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, ray_local) -> dict[str, Path]:
    """clip (through the `rayrg label` CLI) -> vlmrm -> blip2 -> roboclip, chained on one dataset."""
    root = tmp_path_factory.mktemp("similarity")
    data, ckpt = babyai_dataset(root), tiny_checkpoints(root / "ckpt")
    clip_yaml = root / "clip.yaml"
    clip_yaml.write_text(yaml.safe_dump({
        "method": "clip", "model": str(ckpt["clip"]), "temperature": 0.05, "threshold": 0.2,
        "template": "a grid world where the agent did: {instruction}", "batch_size": 16}))
    assert main(["label", "--config", str(clip_yaml), "--dataset", str(data), "--out", str(root / "l1")]) == 0
    current = root / "l1"
    for i, cfg in enumerate([
        {"method": "vlmrm", "model": str(ckpt["clip"]), "alpha": 0.5, "baseline": "a grid world",
         "max_episodes": 4},
        {"method": "blip2", "model": str(ckpt["blip2"]), "batch_size": 8},
        {"method": "roboclip", "model": str(ckpt["xclip"])},
    ], start=2):
        method, config = load_label_config(cfg)
        current = method.run(config, current, root / f"l{i}")
    return {"data": data, "out": current}


def test_columns_values_and_provenance(labelled: dict[str, Path]) -> None:
    columns = ["reward_clip", "reward_clip_prob", "reward_vlmrm", "reward_blip2", "reward_roboclip"]
    table = read_trajectories(labelled["out"], columns=[*SCALAR_COLUMNS, *columns])  # full validation
    source = read_trajectories(labelled["data"], columns=list(SCALAR_COLUMNS), decode_images=False)
    assert table.num_rows == source.num_rows
    assert table.column("episode_id").to_pylist() == source.column("episode_id").to_pylist()
    v = {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns}
    episodes = np.asarray(table.column("episode_id").to_pylist())
    first_four = np.isin(episodes, list(dict.fromkeys(episodes))[:4])
    for c in columns:
        assert not np.isnan(v[c][first_four]).any(), c
    # vlmrm had max_episodes=4: the others are NaN (never a made-up 0)
    assert np.isnan(v["reward_vlmrm"][~first_four]).all() and (~first_four).any()
    assert not np.isnan(v["reward_clip"]).any()
    prob = v["reward_clip_prob"]
    assert ((prob > 0) & (prob < 1)).all()
    np.testing.assert_array_equal(v["reward_clip"], (prob >= 0.2).astype(np.float64))
    assert (v["reward_vlmrm"][first_four] <= 1 + 1e-6).all()
    assert ((v["reward_blip2"] >= 0) & (v["reward_blip2"] <= 1)).all()
    last = last_steps(table.column("episode_id"))
    assert (v["reward_roboclip"][~last] == 0).all() and (v["reward_roboclip"][last] != 0).all()

    prov = DatasetMetadata.read(labelled["out"]).extra[PROVENANCE_KEY]
    clip = prov["reward_clip"]
    assert (clip["method"], clip["temperature"], clip["threshold"]) == ("clip", 0.05, 0.2)
    assert clip["template"] == "a grid world where the agent did: {instruction}"
    assert clip["negatives"]["source"] == "dataset+babyai" and clip["negatives"]["per_goal_mean"] >= 1
    assert clip["num_parameters"] > 0 and clip["model"].endswith("clip-xs") and clip["tiny_random_weights"]
    assert (prov["reward_vlmrm"]["alpha"], prov["reward_vlmrm"]["baseline"]) == (0.5, "a grid world")
    assert prov["reward_blip2"]["score"] == "itm"
    assert prov["reward_roboclip"]["granularity"] == "episode_end"
    assert prov["reward_roboclip"]["encoder"] == "xclip"
    assert (labelled["out"] / "_roboclip_summary.json").exists()
