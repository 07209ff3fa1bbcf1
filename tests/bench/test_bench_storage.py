"""`rayrg evalset` and `rayrg reward-bench` with their outputs in a bucket (a real S3-protocol
server, moto), as `rayrg run` runs them on a storage `out`: nothing lands locally, the
results read back through the bench contract, and a re-run is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.storage._moto import moto_server, ray_s3, s3_bucket  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def test_evalset_label_and_bench_in_a_bucket(make_toy_dataset, s3_bucket, tmp_path: Path, ray_s3,  # noqa: F811
                                             monkeypatch, capsys) -> None:
    from rayrg.cli import main
    from rayrg.contracts.bench import read_bench

    source = make_toy_dataset(num_episodes=6, steps=(9, 7, 5), shards=2, seed=3, frame_size=16)
    config = tmp_path / "cfg" / "sparse.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"method": "sparse"}))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run = f"{s3_bucket.uri}/run"
    assert main(["evalset", "--dataset", str(source), "--out", f"{run}/evalset", "--seed", "1"]) == 0
    assert main(["label", "--config", str(config), "--dataset", f"{run}/evalset", "--out", f"{run}/ev-sparse"]) == 0
    assert main(["reward-bench", "--dataset", f"{run}/ev-sparse", "--out", f"{run}/bench"]) == 0
    keys = set(s3_bucket.keys())
    assert {"run/evalset/metadata.json", "run/bench/bench.json", "run/bench/bench.md", "run/bench/bench.png"} <= keys
    assert sorted(p.name for p in work.rglob("*")) == []  # nothing local, no folder named "s3:"
    result = read_bench(f"{run}/bench")
    assert result["columns"]["progress_true"]["voc"]["value"] == 1.0
    assert "reward_sparse" in result["columns"]
    capsys.readouterr()
    assert main(["reward-bench", "--dataset", f"{run}/ev-sparse", "--out", f"{run}/bench"]) == 0
    assert "| progress_true (oracle) |" in capsys.readouterr().out  # skipped: the results read back
    assert set(s3_bucket.keys()) == keys
