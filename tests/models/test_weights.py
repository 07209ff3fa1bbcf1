"""One weight check with one rule (rayrg.models.weights), used by preflight and by the stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrg.errors import UserError
from rayrg.experiments.config import ExperimentConfig
from rayrg.experiments.preflight import preflight
from rayrg.models.weights import check_model_weights, weights_problem


@pytest.fixture()
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding one snapshot of ``someone/cached`` (the cache's real layout)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--cached"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("offline", ["0", "1"])
def test_one_rule_online_or_offline(hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    offline: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    check_model_weights("someone/cached", "model")  # cached: fine
    check_model_weights(str(tmp_path), "model")  # a local directory: fine
    # An uncached hub id is refused even where the hub is reachable (the stage check used to
    # let it through online while preflight refused it): one line saying how to download it.
    with pytest.raises(UserError) as err:
        check_model_weights("someone/missing", "backend.model")
    assert "\n" not in str(err.value) and "hf download someone/missing" in str(err.value)
    assert str(err.value).startswith("backend.model: model 'someone/missing' is neither a local path nor")
    with pytest.raises(UserError, match=r"^model: model path '/nope/x' does not exist$"):
        check_model_weights("/nope/x", "model")


def test_preflight_and_the_stage_check_say_the_same(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    config = ExperimentConfig.from_dict({"labels": [{"method": "clip", "model": "someone/missing"}]})
    problems = [p for p in preflight(config) if p.startswith("labels[0]")]
    assert problems == [weights_problem("someone/missing", "labels[0].model")]
    config = ExperimentConfig.from_dict({"labels": [{"method": "clip", "model": "someone/cached"}]})
    assert not [p for p in preflight(config) if p.startswith("labels[0]")]
