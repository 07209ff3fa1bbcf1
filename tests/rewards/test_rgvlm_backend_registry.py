"""A backend added from outside rayrg: this module and one ``register_backend`` line.

The toy backend below is the whole of it (config, Ray plan, labelling): nothing in rayrg
names it, yet YAML configs validate it, and ``rayrg label`` runs it in Ray Data actors on a
local cluster (the actors import this module when they unpickle its class, which registers
it there too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from pydantic import Field

from rayrg.config import ConfigError
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.rgvlm.backends import backend_class, backend_names, register_backend
from rayrg.rewards.rgvlm.backends.base import Backend, OnDone, RayPlan, WindowAnswer, WindowQuery
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.settings import BackendSettings


class ToyBackendConfig(BackendSettings):
    ANSWER_FIELDS = BackendSettings.ANSWER_FIELDS | {"score"}
    NEUTRAL_FIELDS = BackendSettings.NEUTRAL_FIELDS | {"num_actors"}

    type: Literal["toy"] = "toy"
    model: str = "toy-vlm"
    score: int = Field(7, ge=0, le=10, description="The score every step gets.")
    num_actors: int = Field(1, ge=1)


class ToyBackend(Backend):
    """Answers both turns without a model: turn 1 names the process, turn 2 is ``score`` per step."""

    config_class = ToyBackendConfig

    def __init__(self, config: ToyBackendConfig, decoding, max_parse_attempts: int = 3, share: float = 1.0) -> None:
        super().__init__(max_parse_attempts)
        self.config = config

    @classmethod
    def ray_plan(cls, config: ToyBackendConfig) -> RayPlan:
        return RayPlan(num_actors=config.num_actors, batch_size=2, num_cpus=0.25)

    def label_batch(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None) -> list[WindowAnswer]:
        answers = []
        for query in queries:
            answer = WindowAnswer(analysis_text=f"pid {os.getpid()}", backend_calls=2)
            self.finish_scores(answer, query, json.dumps({"scores": [self.config.score] * query.num_steps}))
            if on_done is not None:
                on_done(query, answer)
            answers.append(answer)
        return answers


register_backend("toy", ToyBackend)


def test_registered_backend_joins_the_typed_config_union() -> None:
    assert "toy" in backend_names() and backend_class("toy") is ToyBackend
    config = RGVLMConfig.from_dict({"backend": {"type": "toy", "score": 3}})
    assert isinstance(config.backend, ToyBackendConfig) and config.backend.score == 3
    # the built-in backends are still there, and a wrong field of the toy one is still caught
    assert RGVLMConfig.from_dict({"backend": {"type": "vllm", "model": "m"}}).backend.type == "vllm"
    with pytest.raises(ConfigError, match="score"):
        RGVLMConfig.from_dict({"backend": {"type": "toy", "score": 11}})
    with pytest.raises(ConfigError, match="toy"):  # the error lists the registered types
        RGVLMConfig.from_dict({"backend": {"type": "nope", "model": "m"}})
    # its answer-changing field is part of the cache key, its neutral one is not
    base = RGVLMConfig.from_dict({"backend": {"type": "toy"}}).answer_settings()
    assert RGVLMConfig.from_dict({"backend": {"type": "toy", "score": 2}}).answer_settings() != base
    assert RGVLMConfig.from_dict({"backend": {"type": "toy", "num_actors": 2}}).answer_settings() == base


def test_a_backend_whose_config_type_disagrees_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match="'toy-misnamed'"):
        register_backend("toy-misnamed", ToyBackend)
    assert "toy-misnamed" not in backend_names()


@pytest.mark.integration
def test_toy_backend_labels_through_the_real_pipeline(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    from rayrg.cli import main
    from rayrg.data.access import read_trajectories
    from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    config = {"method": "rgvlm", "backend": {"type": "toy", "score": 7, "num_actors": 2},
              "windows": {"window_size": 4, "stride": 4}}
    path = tmp_path / "label.yaml"
    path.write_text(yaml.safe_dump(config))
    _, loaded = load_label_config(yaml.safe_load(path.read_text()), source=str(path))
    assert isinstance(loaded.backend, ToyBackendConfig)

    assert main(["label", "--config", str(path), "--dataset", str(source), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["windows"] == summary["labelled"] > 0 and summary["failed"] == 0
    labels = pq.read_table(tmp_path / "out" / "_labels").to_pylist()
    assert {r["backend"] for r in labels} == {"toy"} and {r["model"] for r in labels} == {"toy-vlm"}
    # answered in Ray actors, not in this process
    pids = {r["turn1_text"] for r in labels}
    assert f"pid {os.getpid()}" not in pids
    table = read_trajectories(tmp_path / "out")
    np.testing.assert_allclose(table.column("reward_rgvlm").to_numpy(), 0.7)

    # the toy's own answer field is in the cache key: a new score re-labels every window
    config["backend"]["score"] = 2
    path.write_text(yaml.safe_dump(config))
    assert main(["label", "--config", str(path), "--dataset", str(source), "--out", str(tmp_path / "out"),
                 "--overwrite"]) == 0
    again = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert again["cached"] == 0 and again["this_run"]["queried_windows"] == summary["windows"]
    np.testing.assert_allclose(read_trajectories(tmp_path / "out").column("reward_rgvlm").to_numpy(), 0.2)
