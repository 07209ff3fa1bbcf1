"""A similarity method defined here, in its own file, and registered with one line, runs
through the real label stage (``run_label``, Ray Data actors on a local Ray cluster).

The toy scores each observation by its mean brightness scaled by ``gain``; the test
recomputes that from the frames, so a stage that paired observations and transitions
wrongly, dropped the method's columns or its provenance would fail it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from pydantic import Field

from rayrg.data.access import read_trajectories
from rayrg.data.schema import SCALAR_COLUMNS, DatasetMetadata
from rayrg.rewards.base import PROVENANCE_KEY
from rayrg.rewards.registry import LABEL_METHODS, get_method, load_label_config, run_label
from rayrg.rewards.similarity.config import PerFrameConfig
from rayrg.rewards.similarity.method import Columns, FrameMethod, Provenances

pytestmark = pytest.mark.integration


class ToyConfig(PerFrameConfig):
    method: Literal["toy"] = "toy"
    gain: float = Field(1.0, gt=0, description="Multiplies the brightness.")


class Brightness:
    num_parameters = 0  # no weights: the score is a fixed function of the pixels


class ToyMethod(FrameMethod):
    def load(self, config: ToyConfig) -> Brightness:
        return Brightness()

    def score_frames(self, model: Brightness, config: ToyConfig, images: list[np.ndarray],
                     instructions: list[str], negatives: dict[str, list[str]],
                     cache: dict[str, Any]) -> dict[str, np.ndarray]:
        score = np.array([config.gain * float(im.mean()) / 255.0 for im in images])
        return {"score": score, "cosine": np.full(len(images), np.nan)}

    def provenance(self, config: ToyConfig, scored: Any, example: str) -> dict[str, Any]:
        return {**super().provenance(config, scored, example), "gain": config.gain}

    def columns(self, config: ToyConfig, scored: Any, prov: dict[str, Any]) -> tuple[Columns, Provenances]:
        half = f"{config.column}_half"
        return ({config.column: scored.score, half: scored.score / 2},
                {config.column: {**prov, "value": "gain * mean brightness"},
                 half: {**prov, "value": "half of it"}})


TOY = ToyMethod("toy", ToyConfig)


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LABEL_METHODS, "toy", f"{__name__}:TOY")  # the one register line


def test_toy_method_runs_through_run_label(toy_registered: None, make_toy_dataset, tmp_path: Path,
                                           ray_local) -> None:
    from rayrg.data.schema import decode_png

    data = make_toy_dataset(num_episodes=3)
    weights = tmp_path / "toy-model"  # the stage checks that a local model path exists
    weights.mkdir()
    method, config = load_label_config({"method": "toy", "model": str(weights), "gain": 2.0,
                                        "observation": "current", "batch_size": 4})
    assert method is get_method("toy") is TOY and isinstance(config, ToyConfig)
    out = run_label(method, config, data, tmp_path / "out")

    table = read_trajectories(out, columns=[*SCALAR_COLUMNS, "frame", "reward_toy", "reward_toy_half"],
                              decode_images=False)
    expected = [2.0 * decode_png(p).mean() / 255.0 for p in table.column("frame").to_pylist()]
    toy = table.column("reward_toy").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(toy, expected, rtol=1e-6)  # observation "current": o_t on transition t
    assert len(set(np.round(toy, 6))) > 1
    np.testing.assert_allclose(table.column("reward_toy_half").to_numpy(zero_copy_only=False), toy / 2)

    prov = DatasetMetadata.read(out).extra[PROVENANCE_KEY]
    assert prov["reward_toy"]["value"] == "gain * mean brightness"
    assert prov["reward_toy_half"]["value"] == "half of it"
    for column in ("reward_toy", "reward_toy_half"):
        p = prov[column]
        assert (p["method"], p["gain"], p["observation"], p["granularity"]) == ("toy", 2.0, "current", "transition")
        assert p["num_parameters"] == 0 and p["tiny_random_weights"] is False and p["model"] == str(weights)
    assert (out / "_toy_summary.json").exists() and (out / "_toy.yaml").exists()
    assert DatasetMetadata.read(out).extra.get("labelled_from") == str(data)
