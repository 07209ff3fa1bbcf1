"""`rayrg report` on an experiment whose manifest and episodes are in an S3 bucket (moto on
127.0.0.1): report.md/html/json and the plots are written to ``<out>/report`` in the bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.contracts.episodes import episodes_dir, write_episodes
from rayrg.contracts.manifest import Evaluation, Manifest, write_manifest
from tests.storage._moto import moto_server, s3_bucket  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def test_report_reads_and_writes_the_bucket(s3_bucket, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    from rayrg.cli import main

    out = f"{s3_bucket.uri}/exp"
    evaluations = []
    # success on tasks i < wins of 4 per sub-task count: means 1/4 (sparse) and 3/4 (dense)
    for method, wins in (("sparse", 1), ("dense", 3)):
        directory = f"{out}/eval/{method}/seed0"
        rows = [{"task_id": f"t{k}-{i}", "env_name": "babyai", "num_subtasks": k, "mode": mode, "seed": 0,
                 "return": float(i < wins), "subtasks_completed": k * (i < wins), "success": i < wins,
                 "steps": 5, "budget": 10, "start_pos": [1, 1], "start_dir": 0}
                for k in (1, 2) for i in range(4) for mode in ("fixed", "randomized")]
        write_episodes(episodes_dir(directory), "a", rows)
        evaluations.append(Evaluation(method=method, kind="learned", seed=0, policy=method, path=directory,
                                      episodes=str(episodes_dir(directory)), display_name=method))
    write_manifest(out, Manifest.model_validate({
        "name": "bucket", "methods": {m: {"display_name": m} for m in ("sparse", "dense")},
        "evaluations": evaluations}))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    assert main(["report", out]) == 0
    keys = set(s3_bucket.keys())
    assert {"exp/report/report.md", "exp/report/report.html", "exp/report/report.json",
            "exp/report/return_by_subtasks.png"} <= keys
    client = s3_bucket.client()
    numbers = json.loads(client.get_object(Bucket=s3_bucket.name, Key="exp/report/report.json")["Body"].read())
    table = numbers["evaluation"]["by_mode_method_subtasks"]
    assert table["fixed"]["dense"]["1"]["mean"] == 0.75 and table["fixed"]["sparse"]["2"]["mean"] == 0.25
    assert numbers["manifest"] == f"{out}/manifest.json"
    png = client.get_object(Bucket=s3_bucket.name, Key="exp/report/return_by_subtasks.png")["Body"].read()
    assert png.startswith(b"\x89PNG")
    assert list(cwd.iterdir()) == []  # made in a temporary folder, nothing left locally
