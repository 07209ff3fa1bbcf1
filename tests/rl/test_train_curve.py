"""Every training run leaves its curve (the metrics of each report) in its final checkpoint,
and a resumed run continues the curve of the checkpoint it resumed from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rayrg.contracts.curves import read_curve
from rayrg.rl.checkpoint import final_checkpoint
from rayrg.rl.config import TrainConfig
from rayrg.rl.train import train

pytestmark = pytest.mark.integration

SMALL = {"observation": "frame", "channels": [4, 8, 8], "batch_size": 8, "hidden": 32, "text_dim": 8,
         "report_every": 5, "checkpoint_every": 10, "updates_per_call": 5, "lr": 1e-4}


def test_final_checkpoint_holds_the_whole_curve(make_toy_dataset, tmp_path: Path, ray_local: None) -> None:
    d, out = make_toy_dataset(), tmp_path / "run"
    final = train(TrainConfig(num_steps=10, **SMALL), d, out)
    first = read_curve(final)
    assert [r["step"] for r in first] == [5.0, 10.0]
    assert all("loss/policy" in r and "loss/q" in r for r in first)
    # interrupted after step 10, then asked for 20: the curve continues from the resumed checkpoint
    shutil.rmtree(final_checkpoint(out))
    record = json.loads((out / "_provenance.json").read_text())
    (out / "_provenance.json").write_text(json.dumps({**record, "complete": False}))
    final = train(TrainConfig(num_steps=20, **SMALL), d, out)
    curve = read_curve(final)
    assert [r["step"] for r in curve] == [5.0, 10.0, 15.0, 20.0]
    assert curve[:2] == first
