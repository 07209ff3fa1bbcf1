"""`rayrg run` refuses, before Ray starts or a file is written, what this machine lacks:
one line per missing thing, naming the config key to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rayrg.cli import main

BASE = {"methods": {"sparse": {"reward_column": "reward_sparse"}}, "labels": [{"method": "sparse"}]}


def run(tmp_path: Path, capsys: pytest.CaptureFixture, config: dict, *extra: str) -> tuple[int, list[str], str]:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**BASE, "out": str(tmp_path / "out"), **config}))
    code = main(["run", str(path), *extra])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


@pytest.mark.parametrize(("config", "needle"), [
    ({"data": {"source": "path", "trajectories": "/nope/traj", "eval_tasks": "/dev/null"}},
     "data.trajectories: /nope/traj does not exist"),
    # (/bin/sh stands for a Unity build: THOR's need is met, so the root is the one line)
    ({"data": {"source": "alfred", "alfred": {"root": "/nope/alfred"}},
      "evaluation": {"env_settings": {"local_executable_path": "/bin/sh"}}}, "data.alfred.root"),
    ({"labels": [{"method": "clip", "model": "someone/missing-clip"}]},
     "labels[0].model: model 'someone/missing-clip' is neither a local path nor in the Hugging Face cache"),
    ({"labels": [{"method": "rgvlm", "backend": {"type": "gemini", "api_key_env": "RAYRG_TEST_NO_SUCH_KEY"}}]},
     "labels[0].backend.api_key_env: environment variable RAYRG_TEST_NO_SUCH_KEY is not set"),
    ({"train": {"use_gpu": True}}, "train.use_gpu: needs 1 GPU(s), this machine has 0"),
    ({"evaluation": {"gpus_per_actor": 1}}, "evaluation.gpus_per_actor: needs 1 GPU(s)"),
    ({"train": {"num_workers": 64, "cpus_per_worker": 1}}, "needs 64 CPUs at once"),
])
def test_each_missing_thing_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       config: dict, needle: str) -> None:
    import torch

    if "GPU" in needle and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, errors, _ = run(tmp_path, capsys, config)
    assert code == 2
    assert len(errors) == 1 and needle in errors[0], errors
    assert errors[0].startswith("rayrg run: error: ")
    assert not (tmp_path / "out").exists()  # nothing written, nothing started


def test_several_missing_things_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, errors, _ = run(tmp_path, capsys, {
        "labels": [{"method": "clip", "model": "a/b"}, {"method": "blip2", "model": "c/d"}],
        "data": {"source": "path", "trajectories": "/nope/t", "eval_tasks": "/nope/e"}})
    assert code == 2 and len(errors) == 4


def test_dry_run_prints_the_plan_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, errors, out = run(tmp_path, capsys, {}, "--dry-run")
    assert code == 0 and errors == []
    assert "generate: BabyAI" in out and "label[0] sparse" in out and "train: 1 methods × 1 seeds" in out
    assert not (tmp_path / "out").exists()


def test_dry_run_plans_the_bench_stages_and_evalset_needs_bench(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, errors, out = run(tmp_path, capsys, {"evalset": {"seed": 3}, "bench": {"resamples": 50}}, "--dry-run")
    assert code == 0 and errors == []
    assert "evalset: " in out and "seed 3" in out and "reward-bench: every reward column (50 bootstrap" in out
    code, errors, _ = run(tmp_path, capsys, {"evalset": {"seed": 3}}, "--dry-run")
    assert code == 2 and len(errors) == 1 and "evalset and bench go together" in errors[0]
    code, errors, _ = run(tmp_path, capsys, {"evalset": {"sed": 3}, "bench": {}}, "--dry-run")
    assert code == 2 and len(errors) == 1 and "sed" in errors[0]  # the evalset's own typed config
