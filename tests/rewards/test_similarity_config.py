"""Similarity configs, negatives, registry and lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rayrg.config import ConfigError
from rayrg.rewards.registry import get_method, load_label_config
from rayrg.rewards.similarity.clip import ClipConfig
from rayrg.rewards.similarity.config import NegativesConfig
from rayrg.rewards.similarity.negatives import babyai_goals, build_negatives
from rayrg.rewards.similarity.roboclip import RoboClipConfig
from rayrg.rewards.similarity.vlmrm import VLMRMConfig


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
    # The tiny-checkpoint builders (rayrg.models.tiny_*) are test fixtures: reward code never imports
    # them (rayrg.models.weights, the stdlib-only weight rule, it may).
    code = ("import sys\nfrom rayrg.rewards.registry import get_method\n"
            "for m in ('clip', 'vlmrm', 'blip2', 'roboclip'): get_method(m)\n"
            "import rayrg.rewards.similarity.reports, rayrg.rewards.similarity.cli\n"
            "import rayrg.rewards.similarity.stages, rayrg.rewards.similarity.negatives\n"
            "bad = [m for m in sys.modules if m in ('torch', 'transformers', 'ray', 'matplotlib') or m.startswith('rayrg.models.tiny')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_each_method_object_owns_its_config_and_pickles() -> None:
    import pickle

    from rayrg.data.schema import DatasetError
    from rayrg.rewards.similarity.method import SimilarityMethod
    from rayrg.rewards.similarity.reports import similarity_method

    for name in ("clip", "vlmrm", "blip2", "roboclip"):
        method = get_method(name)
        assert isinstance(method, SimilarityMethod) and method.run == method.label
        assert method.config_cls.model_fields["method"].default == name  # the config names its method
        assert similarity_method({"method": name}) is method
        copy = pickle.loads(pickle.dumps(method))  # travels to the Ray actors
        assert (copy.name, copy.config_cls, copy.granularity) == (name, method.config_cls, method.granularity)
    for other in ("sparse", "nope", None):  # a labeller that is not a similarity method, unknown, missing
        with pytest.raises(DatasetError, match="similarity label config"):
            similarity_method({"method": other} if other else {})
