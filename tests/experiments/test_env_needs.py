"""Each environment declares its reference policies and its needs (rayrg.envs.registry), and
`rayrg run` refuses, in one line before any work, an experiment whose environment lacks a
policy it asks for or what it needs (THOR's Unity build)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rayrg.cli import main
from rayrg.config import ConfigError
from rayrg.envs.base import EvalTask
from rayrg.envs.registry import REFERENCE_POLICIES, missing_needs, reference_policies
from rayrg.evaluation.config import EvalConfig
from rayrg.experiments.config import ExperimentConfig
from rayrg.experiments.preflight import preflight

ROOT = Path(__file__).resolve().parents[2]
BASE = {"methods": {"sparse": {"reward_column": "reward_sparse"}}, "labels": [{"method": "sparse"}]}


def run(tmp_path: Path, capsys: pytest.CaptureFixture, config: dict, *extra: str) -> tuple[int, list[str], str]:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**BASE, "out": str(tmp_path / "out"), **config}))
    code = main(["run", str(path), *extra])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def toy_data(tmp_path: Path) -> dict:
    """``source: path`` data in the test suite's toy environment (no expert: see tests/envs/toy.py)."""
    (tmp_path / "traj").mkdir()
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"task_id": "t0", "env_name": "toy", "instruction": "go", "num_subtasks": 1,
                                  "seed": 0, "expert_steps": 1}]))
    return {"source": "path", "trajectories": str(tmp_path / "traj"), "eval_tasks": str(tasks)}


def test_declarations() -> None:
    assert reference_policies("babyai-chain") == ("expert", "random")
    assert reference_policies("alfred-thor") == ("random",)
    assert reference_policies("toy") == ("random",)  # the default: random runs in any environment
    assert missing_needs("babyai-chain") == [] and missing_needs("toy") == []
    assert set(REFERENCE_POLICIES) == {"expert", "random"}


def test_declarations_are_read_without_the_simulator() -> None:
    code = ("import sys; from rayrg.envs.registry import reference_policies, missing_needs; "
            "reference_policies('alfred-thor'); reference_policies('babyai-chain'); "
            "missing_needs('alfred-thor', {'allow_download': False}); "
            "print(sorted(m for m in ('rayrg.envs.thor', 'ai2thor.controller', 'rayrg.envs.babyai_env', "
            "'minigrid') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_toy_env_with_expert_is_refused_in_one_line_before_any_work(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    config = {"data": toy_data(tmp_path), "reference_policies": ["expert"]}
    for extra in (("--dry-run",), ()):
        code, errors, _ = run(tmp_path, capsys, config, *extra)
        assert code == 2 and len(errors) == 1, errors
        assert errors[0].startswith("rayrg run: error: reference_policies: toy has no 'expert' policy "
                                    "(it has: random)"), errors
        assert not (tmp_path / "out").exists()  # nothing written, nothing started


def test_comparison_with_a_policy_the_env_lacks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, errors, _ = run(tmp_path, capsys, {"data": toy_data(tmp_path), "comparisons": [["sparse", "expert"]]},
                          "--dry-run")
    assert code == 2 and len(errors) == 1 and "comparisons/claims: toy has no 'expert' policy" in errors[0], errors


def test_default_reference_policies_are_the_environments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, errors, out = run(tmp_path, capsys, {"data": toy_data(tmp_path)}, "--dry-run")
    assert code == 0 and errors == []
    assert "reference ['random'] in toy" in out
    config = ExperimentConfig.from_yaml(ROOT / "jobs" / "alfred_gemini.yaml")
    assert config.reference_policies is None  # not set there: THOR's own, random
    assert config.resolved_reference_policies("alfred-thor") == ["random"]
    assert ExperimentConfig().resolved_reference_policies("babyai-chain") == ["expert", "random"]
    # On a cluster the build and keys are the workers' business; the policies are not.
    assert not [p for p in preflight(config, address="auto") if "reference_policies" in p]


@pytest.fixture()
def no_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.ai2thor/releases is empty
    monkeypatch.delenv("RAYRG_THOR_EXECUTABLE", raising=False)
    return tmp_path


def test_thor_without_a_build_is_refused_by_the_dry_run(no_builds: Path, capsys: pytest.CaptureFixture) -> None:
    (no_builds / "alfred").mkdir()
    config = {"data": {"source": "alfred", "alfred": {"root": str(no_builds / "alfred")}},
              "evaluation": {"env_settings": {"platform": "CloudRendering", "allow_download": False}}}
    code, errors, _ = run(no_builds, capsys, config, "--dry-run")
    assert code == 2 and len(errors) == 1, errors
    line = errors[0]
    assert line.startswith("rayrg run: error: evaluation.env_settings: alfred-thor cannot run here: "
                           "no AI2-THOR build ("), line
    assert "local_executable_path" in line and "RAYRG_THOR_EXECUTABLE" in line  # how to give one
    assert str(no_builds / ".ai2thor" / "releases" / "thor-CloudRendering-") in line  # or where to unpack it
    assert not (no_builds / "out").exists()
    # A typo in env_settings is refused there too (ThorConfig forbids unknown keys).
    config["evaluation"]["env_settings"]["platfrom"] = "Linux64"
    code, errors, _ = run(no_builds, capsys, config, "--dry-run")
    assert code == 2 and len(errors) == 1 and "platfrom" in errors[0], errors


def test_thor_with_a_build_passes(no_builds: Path, capsys: pytest.CaptureFixture) -> None:
    exe = no_builds / "thor.x86_64"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    pytest.importorskip("ai2thor")
    assert missing_needs("alfred-thor", {"local_executable_path": str(exe)}) == []
    line = missing_needs("alfred-thor", {"local_executable_path": str(no_builds / "nope")})[0]
    assert "is not an executable file" in line and "local_executable_path" in line


def test_evaluate_refuses_a_reference_policy_the_env_lacks(tmp_path: Path) -> None:
    task = EvalTask(task_id="t0", env_name="toy", instruction="go", num_subtasks=1, seed=0, expert_steps=1)
    with pytest.raises(ConfigError, match=r"policy 'expert': toy has no such policy \(it has: random\)"):
        from rayrg.evaluation.evaluate import evaluate

        evaluate(EvalConfig(), "expert", tmp_path / "out", tasks=[task], progress=False)
    assert not (tmp_path / "out").exists()
