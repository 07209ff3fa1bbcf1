"""Similarity configs, negatives, registry and lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rayrg.config import ConfigError
from rayrg.rewards.registry import get_method, load_label_config
from rayrg.rewards.similarity.config import ClipConfig, NegativesConfig, RoboClipConfig, VLMRMConfig
from rayrg.rewards.similarity.negatives import babyai_goals, build_negatives


def test_registry_dispatches_on_method() -> None:
    method, config = load_label_config({"method": "clip", "model": "m", "threshold": 0.3, "name": "clip_d"})
    assert method.name == "clip" and isinstance(config, ClipConfig)
    assert (config.column, config.prob_column) == ("reward_clip_d", "reward_clip_d_prob")
    for name in ("vlmrm", "blip2", "roboclip"):
        assert get_method(name).name == name
    _, vlmrm = load_label_config({"method": "vlmrm", "model": "m", "alpha": 0.0})
    assert isinstance(vlmrm, VLMRMConfig) and vlmrm.column == "reward_vlmrm"


@pytest.mark.parametrize("bad", [
    {"method": "clip", "model": "m", "template": "no slot"},
    {"method": "clip", "model": "m", "template": "{instruction} {other}"},
    {"method": "clip", "model": "m", "temperature": 0},
    {"method": "vlmrm", "model": "m", "alpha": 2},
    {"method": "clip", "model": "m", "treshold": 0.5},  # typo: unknown keys are errors
    {"method": "roboclip", "model": "x.pt", "encoder": "torchscript"},  # needs num_frames
])
def test_invalid_configs_rejected(bad: dict) -> None:
    with pytest.raises(ConfigError):
        load_label_config(bad)


def test_prompt_template() -> None:
    config = ClipConfig(model="m", template="a picture of {instruction}")
    assert config.prompt("go to the red ball") == "a picture of go to the red ball"
    assert RoboClipConfig(model="m").variant == "roboclip"


def test_babyai_goals_and_negatives() -> None:
    goals = babyai_goals()
    assert len(goals) == len(set(goals)) == 6 * 4 + 6 * 3 + 6
    assert "pick up the blue key" in goals and "open the green door" in goals
    instructions = ["go to the red ball", "pick up the blue key, then open the grey door"]
    negatives = build_negatives(instructions, NegativesConfig(source="dataset+babyai", max_negatives=5))
    for instruction, negs in negatives.items():
        assert len(negs) == 5 and instruction not in negs
    # deterministic per goal, and the seed changes the sample
    again = build_negatives(instructions, NegativesConfig(source="dataset+babyai", max_negatives=5))
    assert again == negatives
    other = build_negatives(instructions, NegativesConfig(source="dataset+babyai", max_negatives=5, seed=1))
    assert other != negatives
    # dataset-only: the other instruction; config texts are always added
    only = build_negatives(instructions, NegativesConfig(source="dataset", texts=["a wall"], max_negatives=None))
    assert only["go to the red ball"] == ["a wall", instructions[1]]
    with pytest.raises(ValueError, match="no negatives"):
        build_negatives(["go to the red ball"], NegativesConfig(source="dataset"))


def test_importing_methods_loads_no_model_library() -> None:
    code = ("import sys\nfrom rayrg.rewards.registry import get_method\n"
            "for m in ('clip', 'vlmrm', 'blip2', 'roboclip'): get_method(m)\n"
            "import rayrg.rewards.similarity.reports, rayrg.rewards.similarity.cli\n"
            "bad = [m for m in ('torch', 'transformers', 'ray', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
