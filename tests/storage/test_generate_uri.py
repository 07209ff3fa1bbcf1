"""``rayrg generate`` / ``rayrg inspect`` on a storage URI (the moto S3 server): every output in
the bucket and nothing on the local disk; skip, refuse and redo keyed to the config as on a
local disk; a typo creates nothing; a relative ``--out`` lands under ``RAYRG_STORAGE``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayrg import storage

pytestmark = pytest.mark.integration

SMALL = ["--episodes-per-count", "1", "--eval-tasks-per-count", "1", "--num-cpus", "2"]
REPO = Path(__file__).resolve().parents[2]


def rayrg(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "rayrg.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=full)


def test_generate_to_s3_skip_refuse_redo_inspect(s3_bucket, tmp_path: Path) -> None:
    uri = f"{s3_bucket.uri}/run"
    first = rayrg(tmp_path, "generate", "--out", uri, *SMALL)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"dataset: {uri}/trajectories" in first.stdout
    keys = s3_bucket.keys()
    shards = [k for k in keys if k.startswith("run/trajectories/part-") and k.endswith(".parquet")]
    assert len(shards) == 1
    for key in ("run/_provenance.json", "run/eval_tasks.json", "run/generate_config.yaml",
                "run/trajectories/metadata.json", "run/trajectories/.part-00000.stats.json"):
        assert key in keys
    assert not any(".rayrg-shared-" in k or ".rayrg-probe-" in k for k in keys)
    assert list(tmp_path.iterdir()) == []  # nothing local (no folder named 's3:')
    record = json.loads(storage.resolve(f"{uri}/_provenance.json").read_text())
    assert record["complete"] is True and record["stage"] == "generate"

    again = rayrg(tmp_path, "generate", "--out", uri, *SMALL)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr[-2000:]

    changed = rayrg(tmp_path, "generate", "--out", uri, *SMALL[:2], "--eval-tasks-per-count", "2",
                    "--num-cpus", "2")
    assert changed.returncode == 2
    line = changed.stderr.strip().splitlines()[-1]
    assert "eval_tasks_per_count: 1 → 2" in line and uri in line and "--overwrite" in line

    redo = rayrg(tmp_path, "generate", "--out", uri, *SMALL[:2], "--eval-tasks-per-count", "2",
                 "--num-cpus", "2", "--overwrite")
    assert redo.returncode == 0, redo.stderr[-2000:]
    tasks = json.loads(storage.resolve(f"{uri}/eval_tasks.json").read_text())["tasks"]
    assert len(tasks) > len(json.loads(first_tasks_text(record)))  # 2 per count now

    summary = rayrg(tmp_path, "inspect", f"{uri}/trajectories", "--json")
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert json.loads(summary.stdout)["episodes"] == 6
    assert list(tmp_path.iterdir()) == []


def first_tasks_text(record: dict) -> str:
    """The first run's task count, as a JSON list of that length (from its record)."""
    return json.dumps([0] * int(record["result"]["eval_task_count"]))


@pytest.mark.parametrize("typo", ["s3:/bucket/run", "s3:bucket/run", "s4://bucket/run"])
def test_typo_uri_creates_nothing_locally(tmp_path: Path, typo: str) -> None:
    proc = rayrg(tmp_path, "generate", "--out", typo, *SMALL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and typo in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_bucket_refused_before_any_work(s3_bucket, tmp_path: Path) -> None:
    proc = rayrg(tmp_path, "generate", "--out", f"s3://{s3_bucket.name}-missing/run", *SMALL)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("does not exist"), proc.stderr
    assert "generate shards" not in proc.stderr  # refused before any Ray work
    assert list(tmp_path.iterdir()) == []


def test_relative_out_lands_under_storage_root(s3_bucket, tmp_path: Path) -> None:
    proc = rayrg(tmp_path, "generate", "--out", "runs/x", *SMALL,
                 env={storage.STORAGE_ENV: f"{s3_bucket.uri}/root"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "root/runs/x/trajectories/metadata.json" in s3_bucket.keys()
    assert "root/runs/x/_provenance.json" in s3_bucket.keys()
    assert list(tmp_path.iterdir()) == []


def test_prepare_output_and_open_input(s3_bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    location = storage.prepare_output(f"{s3_bucket.uri}/a")
    assert location.uri == f"{s3_bucket.uri}/a" and not location.is_local
    assert not any(".rayrg-probe-" in k for k in s3_bucket.keys())  # the write probe is gone
    with pytest.raises(storage.StorageError, match=r"^s3://.*/nothing: no such dataset$"):
        storage.open_input(f"{s3_bucket.uri}/nothing", what="dataset")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    with pytest.raises(storage.StorageError, match="ray job submit"):
        storage.prepare_output("runs/rel")
    assert storage.prepare_output("runs/rel", root=f"{s3_bucket.uri}/root").uri == f"{s3_bucket.uri}/root/runs/rel"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    local = storage.prepare_output("runs/rel")  # local: exactly as before, nothing made yet
    assert local.local_path == Path("runs/rel") and not (tmp_path / "runs").exists()
