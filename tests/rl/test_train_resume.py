"""Training output is keyed to its inputs: a killed run resumes from its checkpoint's step
(not from 0), more steps continue a finished run, and a run of another dataset, config or
fewer steps is refused — or trained again from step 0 with on_change="redo"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rayrg.provenance import StaleOutputError
from rayrg.rl.checkpoint import LEARNER_FILE, checkpoint_step, final_checkpoint
from rayrg.rl.config import TrainConfig
from rayrg.rl.train import latest_checkpoint, train

pytestmark = pytest.mark.integration

SMALL = {"observation": "frame", "channels": [4, 8, 8], "batch_size": 8, "hidden": 32, "text_dim": 8, "report_every": 5, "checkpoint_every": 10,
         "updates_per_call": 5, "lr": 1e-4}
MARK = 50.0


def _marked_bias(state: dict) -> tuple[str, torch.Tensor]:
    name = [k for k in state["policy"] if k.endswith("bias")][-1]
    return name, state["policy"][name]


def test_resume_continue_and_refuse(make_toy_dataset, tmp_path: Path, ray_local: None) -> None:
    d = make_toy_dataset()
    out = tmp_path / "run"
    config = TrainConfig(num_steps=10, **SMALL)
    final = train(config, d, out)
    assert checkpoint_step(final) == 10

    # "Kill" the run after its step-10 checkpoint, and mark that checkpoint: a run that
    # really resumes from it carries the mark (Adam moves a weight by ~lr per step); a
    # run that restarts from step 0 does not.
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None
    state = torch.load(checkpoint / LEARNER_FILE, weights_only=False)
    name, bias = _marked_bias(state)
    state["policy"][name] = bias + MARK
    torch.save(state, checkpoint / LEARNER_FILE)
    shutil.rmtree(final_checkpoint(out))
    record = json.loads((out / "_provenance.json").read_text())
    (out / "_provenance.json").write_text(json.dumps({**record, "complete": False}))
    final = train(config.model_copy(update={"num_steps": 20}), d, out)
    assert checkpoint_step(final) == 20
    resumed = torch.load(final / LEARNER_FILE, weights_only=False)
    _, after = _marked_bias(resumed)
    assert torch.allclose(after, bias + MARK, atol=1.0), "did not resume from the checkpoint's weights"

    # more steps of the finished run continue it from step 20
    final = train(config.model_copy(update={"num_steps": 30}), d, out)
    assert checkpoint_step(final) == 30
    # the same inputs again: returned as they are
    before = (final / LEARNER_FILE).stat().st_mtime_ns
    assert train(config.model_copy(update={"num_steps": 30}), d, out) == final
    assert (final / LEARNER_FILE).stat().st_mtime_ns == before

    with pytest.raises(StaleOutputError, match="trained to step 30, the config asks for 10"):
        train(config, d, out)
    with pytest.raises(StaleOutputError, match="config.expectile: 0.8 → 0.6"):
        train(config.model_copy(update={"num_steps": 30, "expectile": 0.6}), d, out)
    with pytest.raises(StaleOutputError, match="dataset:"):
        train(config.model_copy(update={"num_steps": 30}), make_toy_dataset(seed=9), out)
    final = train(config.model_copy(update={"expectile": 0.6}), d, out, on_change="redo")
    assert checkpoint_step(final) == 10
    assert json.loads((final / "provenance.json").read_text())["inputs"]["config"]["expectile"] == 0.6
