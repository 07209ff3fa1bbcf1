"""Every stage refuses to reuse an output made from other inputs (one line, exit 2), skips
one made from the same inputs, and redoes it with --overwrite: through the real CLI on a
real local Ray cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rayrg.cli import main

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    root = tmp_path_factory.mktemp("stale")
    cfg = root / "gen.yaml"
    cfg.write_text(yaml.safe_dump({"subtask_counts": [1], "episodes_per_count": 2, "eval_tasks_per_count": 1}))
    assert main(["generate", "--config", str(cfg), "--out", str(root / "data")]) == 0
    return root


def test_generate_skips_refuses_and_overwrites(generated: Path, capsys: pytest.CaptureFixture) -> None:
    cfg, data = generated / "gen.yaml", generated / "data"
    code, out, _ = run(capsys, "generate", "--config", cfg, "--out", data)
    assert code == 0 and "up to date" in out
    code, _, err = run(capsys, "generate", "--config", cfg, "--out", data, "--noise", "0.5")
    refused(code, err, "config.noise: 0.15 → 0.5", "--overwrite")
    meta = json.loads((data / "trajectories" / "metadata.json").read_text())
    assert meta["noise"] == 0.15  # refusing rewrote nothing
    other = generated / "other"
    code, _, _ = run(capsys, "generate", "--config", cfg, "--out", other, "--noise", "0.5")
    assert code == 0
    meta_other = json.loads((other / "trajectories" / "metadata.json").read_text())
    assert meta_other["noise"] == 0.5 and meta_other["fingerprint"] != meta["fingerprint"]


def test_windows_and_labels_are_keyed_to_the_dataset(generated: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    a, b = generated / "data" / "trajectories", generated / "other" / "trajectories"
    if not b.exists():
        pytest.skip("needs the dataset of test_generate_skips_refuses_and_overwrites")
    windows = tmp_path / "windows"
    assert run(capsys, "windows", "--dataset", a, "--out", windows)[0] == 0
    code, _, err = run(capsys, "windows", "--dataset", b, "--out", windows)
    refused(code, err, "windows", "dataset:")
    code, _, err = run(capsys, "windows", "--dataset", a, "--out", windows, "--window-size", "4")
    refused(code, err, "config.window_size: 8 → 4")

    sim = tmp_path / "sim.yaml"
    sim.write_text(yaml.safe_dump({"method": "simulated", "accuracy": 0.9}))
    labelled = tmp_path / "labelled"
    assert run(capsys, "label", "--config", sim, "--dataset", a, "--out", labelled)[0] == 0
    first = json.loads((labelled / "metadata.json").read_text())["fingerprint"]
    code, out, _ = run(capsys, "label", "--config", sim, "--dataset", a, "--out", labelled)
    assert code == 0 and "up to date" in out
    code, _, err = run(capsys, "label", "--config", sim, "--dataset", b, "--out", labelled)
    refused(code, err, "label simulated", "dataset:")
    sim.write_text(yaml.safe_dump({"method": "simulated", "accuracy": 0.8}))
    code, _, err = run(capsys, "label", "--config", sim, "--dataset", a, "--out", labelled)
    refused(code, err, "config.accuracy: 0.9 → 0.8")
    code, out, _ = run(capsys, "label", "--config", sim, "--dataset", a, "--out", labelled, "--overwrite")
    assert code == 0 and "redoing" in out
    meta = json.loads((labelled / "metadata.json").read_text())
    assert meta["fingerprint"] != first and meta["extra"]["labels"]["reward_simulated_acc800"]["accuracy"] == 0.8
    assert "reward_simulated_acc900" not in meta["extra"]["labels"]  # the old variant is gone, not mixed in


def test_evaluation_episodes_are_keyed_to_the_policy(generated: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    tasks, out = generated / "data" / "eval_tasks.json", tmp_path / "eval"
    base = ("evaluate", "--tasks", tasks, "--out", out, "--num-actors", "1")
    assert run(capsys, *base, "--policy", "expert")[0] == 0
    expert = json.loads((out / "summary.json").read_text())
    code, _, err = run(capsys, *base, "--policy", "random")
    refused(code, err, 'policy: "expert" → "random"')
    code, _, _ = run(capsys, *base, "--policy", "random", "--overwrite")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "random" and summary["episodes"] == expert["episodes"]
