"""``rayrg reward-bench`` end to end on an evaluation set: the oracle row, keys, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.bench.bench import METRICS, reward_bench
from rayrg.data.evalset import EvalsetConfig, build_evalset
from rayrg.data.schema import DatasetError, DatasetMetadata
from rayrg.rewards.simple import SIMULATED, SPARSE, SimulatedConfig, SparseConfig


@pytest.fixture(scope="module")
def labelled(make_toy_dataset, ray_local, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    src = make_toy_dataset(num_episodes=12, steps=(9, 12, 7, 5, 10, 8), shards=2, seed=11)
    ev = build_evalset(src, root / "ev", EvalsetConfig(seed=1))
    SPARSE.run(SparseConfig(), ev, root / "l1")
    SIMULATED.run(SimulatedConfig(accuracy=0.9), root / "l1", root / "l2")
    return root / "l2"


def test_oracle_scores_one_and_keys_are_the_metrics(labelled: Path, tmp_path: Path) -> None:
    result = reward_bench(labelled, tmp_path / "b")
    on_disk = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert on_disk["columns"].keys() == result["columns"].keys()
    assert {"reward_sparse", "reward_simulated_acc900", "reward_simulated_acc900_sparse",
            "progress_true"} <= set(result["columns"])
    oracle = result["columns"]["progress_true"]
    assert oracle["voc"]["value"] == 1.0 and oracle["voc_on"] == "value"
    assert oracle["success_auroc"]["value"] == 1.0
    assert oracle["voc"]["constant_episodes"] == 0
    for r in result["columns"].values():
        assert set(METRICS) <= set(r)
        for m in METRICS:
            assert {"value", "ci95", "n"} <= set(r[m])
    sparse = result["columns"]["reward_sparse"]
    assert sparse["voc_on"] == "cumulative"
    # Sparse rewards are 0 until the last step: the running sum is constant up to it.
    assert sparse["success_auroc"]["value"] == 1.0
    sim = result["columns"]["reward_simulated_acc900"]
    # Simulated labels skip the rewound kind (no action taken on reverse rows): NaN, stated.
    assert "rewound" in sim["coverage"]["skipped_kinds"] and sim["coverage"]["transitions"] < 1.0
    assert 0.8 < sim["accuracy"]["value"] <= 1.0
    assert (tmp_path / "b" / "bench.md").exists() and (tmp_path / "b" / "bench.png").stat().st_size > 0
    assert "(oracle)" in (tmp_path / "b" / "bench.md").read_text()


def test_unknown_column_lists_the_present_ones(labelled: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no column reward_nope; reward columns present: progress_true, reward_sparse, reward_simulated_acc900"):
        reward_bench(labelled, tmp_path / "b", columns=["reward_nope"])


def test_no_success_info_and_assume_success(labelled: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "nosuccess"
    shutil.copytree(labelled, copy)
    meta = DatasetMetadata.read(copy)
    meta.extra["missing_ground_truth"] = {"success": "LeRobot records no success"}
    meta.write(copy)
    with pytest.raises(DatasetError, match="no way to tell success .*--assume-success"):
        reward_bench(copy, tmp_path / "b")
    result = reward_bench(copy, tmp_path / "b2", columns=["progress_true"], assume_success=True)
    r = result["columns"]["progress_true"]
    assert r["success_auroc"]["value"] is None and "--assume-success" in r["skipped"]["success_auroc"]
    assert r["voc"]["value"] is not None


def test_no_successful_episode_is_one_line(make_toy_dataset, ray_local, tmp_path: Path) -> None:
    src = make_toy_dataset(num_episodes=2, steps=(5, 6), shards=1, seed=4)
    # episode 1 fails, episode 0 succeeds: drop the success
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = next(src.glob("*.parquet"))
    t = pq.read_table(shard)
    t = t.set_column(t.column_names.index("success"), t.schema.field("success"), pa.array([False] * t.num_rows))
    pq.write_table(t, shard)
    SPARSE.run(SparseConfig(), src, tmp_path / "l")
    with pytest.raises(DatasetError, match="no successful episode"):
        reward_bench(tmp_path / "l", tmp_path / "b")


def test_cli_bad_column_is_one_line_exit_2(labelled: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "rayrg.cli", "reward-bench", "--dataset", str(labelled),
                           "--out", str(tmp_path / "b"), "--columns", "reward_nope"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)}, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "reward columns present: progress_true, reward_sparse" in lines[0]
    assert "Traceback" not in proc.stderr


def test_reward_report_leaves_out_rows_without_truth(labelled: Path) -> None:
    """`rayrg reward-report` on an evaluation set: rewound reverse rows (action -1 equals the
    placeholder expert action -1) would score as good; they are left out with the reason, and
    the Table-I accuracy of the 90 % simulated labels stays near 0.9."""
    from rayrg.rewards.report import reward_report

    rows = {r["column"]: r for r in reward_report([labelled])}
    sim = rows["reward_simulated_acc900"]
    assert "rewound" in sim["skipped_kinds"] and "swapped" in sim["skipped_kinds"]
    assert 0.8 < sim["accuracy"] <= 1.0


@pytest.mark.integration
def test_gvl_chunk_disagreement_reaches_bench_json(labelled: Path, tmp_path: Path, ray_local) -> None:
    """GVL stitches chunks whose overlaps disagree and records how much (its summary, in each
    column's provenance); the bench reports it per column as the labeller's noise."""
    from rayrg.rewards.registry import load_label_config, run_label
    from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer

    with LoopbackServer(Faults()) as server:  # answers percentages that differ between chunks
        method, config = load_label_config({
            "method": "gvl", "frames": 5, "max_chunk_frames": 8, "chunk_overlap": 3,
            "cache_dir": str(tmp_path / "cache"),
            "backend": {"type": "openai", "base_url": server.base_url, "model": "loopback-vlm"}})
        run_label(method, config, labelled, tmp_path / "gvl")
    recorded = json.loads((tmp_path / "gvl" / "_gvl_summary.json").read_text())["chunk_disagreement"]
    assert recorded["episodes"] >= 1 and recorded["mean"] > 0  # episodes were chunked, overlaps disagree

    reward_bench(tmp_path / "gvl", tmp_path / "b", columns=["progress_gvl", "reward_gvl", "reward_sparse"])
    columns = json.loads((tmp_path / "b" / "bench.json").read_text())["columns"]
    for c in ("progress_gvl", "reward_gvl"):
        assert columns[c]["chunk_disagreement"] == {"mean": recorded["mean"], "max": recorded["max"],
                                                    "n": recorded["episodes"]}
    assert "chunk_disagreement" not in columns["reward_sparse"]  # a labeller that records none
    rows = {line.split(" | ")[0].lstrip("| "): line for line in
            (tmp_path / "b" / "bench.md").read_text().splitlines() if line.startswith("| ")}
    assert rows["progress_gvl"].endswith(f"{recorded['mean']:.3f} (n={recorded['episodes']}) |")
    assert rows["reward_sparse"].endswith("n/a |")
