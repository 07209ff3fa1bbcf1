"""A dataset whose actions have no names (issue 27, Bad input).

RG-VLM's prompts show the actions ("t=0: turn left"); a Minari set imported without
``action_names`` would reach the model as "t=0: action 5", LeRobot's as number vectors. RG-VLM
declares it needs named actions: ``rayrg label`` and ``rayrg run``'s preflight refuse such a
dataset before any work, in one line naming the import option; ``rayrg inspect`` warns. GVL and
TOPReward show no actions and need none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayrg.contracts.datasets import read_metadata, write_metadata
from rayrg.data.actions import action_naming
from rayrg.data.inspect import format_summary, summarize
from rayrg.rewards.registry import get_method

REPO = Path(__file__).resolve().parents[2]
# Paid prices: were the refusal after the cost confirmation, the estimate would be printed first.
RGVLM = {"method": "rgvlm", "backend": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                         "price_input_per_mtok": 1.0, "price_output_per_mtok": 1.0}}


def _as_import(src: Path, dst: Path, **meta: Any) -> Path:
    """A copy of a toy dataset whose metadata says what an import would."""
    shutil.copytree(src, dst)
    m = read_metadata(dst)
    for key, value in meta.items():
        if key == "extra":
            m.extra.update(value)
        else:
            setattr(m, key, value)
    write_metadata(m, dst)
    return dst


@pytest.fixture(scope="module")
def toy(make_toy_dataset: Any) -> Path:
    return make_toy_dataset(num_episodes=2, seed=7)


@pytest.fixture()
def unnamed(toy: Path, tmp_path: Path) -> Path:
    # Exactly what rayrg.data.minari's import writes without the option: action_names null.
    return _as_import(toy, tmp_path / "minari-unnamed", generator="rayrg.data.minari:import",
                      env_name="minari:rayrg/babyai-v0", extra={"action_names": None})


def test_rgvlm_refuses_unnamed_actions_and_gvl_topreward_accept(unnamed: Path, toy: Path, tmp_path: Path) -> None:
    rgvlm = get_method("rgvlm")
    lines = rgvlm.dataset_problems(rgvlm.config_cls.from_dict(RGVLM), unnamed)
    assert len(lines) == 1
    assert "unnamed ids" in lines[0] and "rayrg import minari" in lines[0] and "--option action_names=" in lines[0]
    for name in ("gvl", "topreward"):
        method = get_method(name)
        config = method.config_cls.from_dict({**RGVLM, "method": name})
        assert method.dataset_problems(config, unnamed) == []
    # The same import with the option given: accepted.
    named = _as_import(toy, tmp_path / "named", generator="rayrg.data.minari:import", env_name="minari:x",
                       extra={"action_names": ["left", "right", "forward", "pickup", "drop", "toggle", "done"]})
    assert rgvlm.dataset_problems(rgvlm.config_cls.from_dict(RGVLM), named) == []


def test_naming_kinds(toy: Path, tmp_path: Path) -> None:
    assert action_naming(read_metadata(toy)).problem == ""  # a producer that wrote its own names
    babyai = _as_import(toy, tmp_path / "babyai", env_name="babyai-chain")
    assert action_naming(read_metadata(babyai)).kind == "named"  # the registered environment names them
    lerobot = _as_import(toy, tmp_path / "lerobot", generator="rayrg.data.lerobot:import", env_name="lerobot")
    naming = action_naming(read_metadata(lerobot))
    assert naming.kind == "continuous" and "continuous vectors" in naming.problem
    # RG-VLM refuses vectors unless its config states their rendering; unnamed ids stay refused.
    rgvlm = get_method("rgvlm")
    assert rgvlm.dataset_problems(rgvlm.config_cls.from_dict(RGVLM), lerobot)
    vectors = rgvlm.config_cls.from_dict({**RGVLM, "continuous_actions": "as_vectors"})
    assert rgvlm.dataset_problems(vectors, lerobot) == []
    unnamed = _as_import(toy, tmp_path / "unnamed", generator="rayrg.data.minari:import", env_name="minari:x",
                         extra={"action_names": None})
    assert rgvlm.dataset_problems(vectors, unnamed)


def test_label_cli_refuses_in_one_line_before_any_work(unnamed: Path, tmp_path: Path) -> None:
    config = tmp_path / "rgvlm.yaml"
    config.write_text(yaml.safe_dump(RGVLM))
    out = tmp_path / "labelled"
    done = subprocess.run([sys.executable, "-m", "rayrg.cli", "label", "--config", str(config), "--dataset",
                           str(unnamed), "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "rgvlm shows the actions in its prompts" in errors[0], errors
    assert "--option action_names=" in errors[0]
    assert "estimate" not in done.stdout and not out.exists()  # refused before the cost confirmation


def test_run_preflight_refuses_an_existing_unnamed_dataset(unnamed: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from rayrg.cli import main

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "methods": {"rgvlm": {"reward_column": "reward_rgvlm"}}, "labels": [RGVLM], "out": str(tmp_path / "out"),
        "data": {"source": "path", "trajectories": str(unnamed), "eval_tasks": str(unnamed / "metadata.json")}}))
    code = main(["run", str(path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and not (tmp_path / "out").exists()
    assert any(e.count("labels[0]: ") == 1 and "unnamed ids" in e for e in errors), errors


def test_inspect_warns(unnamed: Path, toy: Path) -> None:
    text = format_summary(summarize(unnamed))
    assert "warning      actions: its actions are unnamed ids" in text
    assert "warning" not in format_summary(summarize(toy))
