"""`rayrg run` with `evalset:` + `bench:`: the reward bench as stages of a reduced experiment,
its table beside the returns in the report; a re-run skips the bench stages; a changed
evaluation-set seed redoes them (and only them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rayrg.contracts.bench import read_bench
from rayrg.contracts.manifest import read_manifest

BENCH_STAGES = ("evalset", "evalset label[0] sparse", "evalset label[1] simulated", "reward-bench")

REDUCED_BENCH = {
    "name": "reduced-bench",
    "data": {"generate": {"subtask_counts": [1, 2], "episodes_per_count": 3, "eval_tasks_per_count": 1,
                          "noise": 0.2}},
    "labels": [{"method": "sparse"}, {"method": "simulated", "accuracy": 0.9, "name": "acc900"}],
    "methods": {"sparse": {"reward_column": "reward_sparse"},
                "simulated+sparse": {"reward_column": "reward_simulated_acc900_sparse"}},
    "train": {"num_steps": 20, "batch_size": 16, "checkpoint_every": 20, "report_every": 20},
    "seeds": [0],
    "evaluation": {"modes": ["fixed"], "seeds": [0], "num_actors": 1},
    "reference_policies": ["random"],
    "evalset": {"seed": 0},
    "bench": {"resamples": 200},
}


def _run(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rayrg.cli", "run", str(config), "--num-cpus", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.integration
@pytest.mark.slow
def test_bench_stages_in_a_reduced_experiment_rerun_skips_changed_seed_redoes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "reduced.yaml"
    config.write_text(yaml.safe_dump({**REDUCED_BENCH, "out": str(out)}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

    first = _run(config, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    manifest = read_manifest(out)
    status = {s.stage: s.status for s in manifest.stages}
    assert all(status[s] == "ran" for s in BENCH_STAGES)
    assert manifest.evalset is not None and manifest.bench is not None
    assert manifest.evalset.source == manifest.data.trajectories
    assert [step.method for step in manifest.evalset.labels] == ["sparse", "simulated"]
    assert manifest.bench.dataset == manifest.evalset.labelled == manifest.evalset.labels[-1].path
    bench = read_bench(manifest.bench.path)
    assert bench["columns"]["progress_true"]["voc"]["value"] == 1.0
    assert set(bench["episodes"]) == {"original", "rewound", "truncated", "swapped"}
    # a method that cannot label a kind (no expert action on rewound reverse rows) skips it, stated
    assert "rewound" in bench["columns"]["reward_simulated_acc900"]["coverage"]["skipped_kinds"]

    report = (out / "report" / "report.md").read_text()
    assert report.index("Figure-4") < report.index("reward bench")  # beside the returns
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines() if line.startswith("| `")}
    assert rows["`progress_true` (oracle)"].split(" | ")[2].startswith("1.000 ")  # VOC 1.0
    assert rows["`reward_sparse`"].endswith("| sparse |")  # the policy trained on it
    assert "<code>progress_true</code> (oracle)" in (out / "report" / "report.html").read_text()
    numbers = json.loads((out / "report" / "report.json").read_text())
    assert numbers["bench"]["columns"]["progress_true"]["voc"]["value"] == 1.0

    second = _run(config, env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert [s.stage for s in read_manifest(out).stages if s.status != "skipped"] == []

    config.write_text(yaml.safe_dump({**REDUCED_BENCH, "out": str(out), "evalset": {"seed": 1}}))
    third = _run(config, env)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    manifest = read_manifest(out)
    status = {s.stage: s.status for s in manifest.stages}
    assert all(status[s] == "ran" for s in BENCH_STAGES)  # the changed seed and everything on it
    assert {v for k, v in status.items() if k not in BENCH_STAGES} == {"skipped"}  # not the rest
    assert read_bench(manifest.bench.path)["fingerprint"] != bench["fingerprint"]
