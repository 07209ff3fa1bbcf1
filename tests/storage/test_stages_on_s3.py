"""`rayrg windows` and `rayrg label` with `--out s3://…` on a real S3-protocol server (moto).

The input dataset is written locally by the usual test helper; every output (windows,
labels, answer cache, labelled dataset, records) must land in the bucket and nothing in the
local working directory; a re-run makes no model call and is skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from tests.storage._moto import ray_s3, s3_bucket  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration
KEY_ENV = "RAYRG_TEST_S3_LOOPBACK_KEY"


def _local_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _under(bucket, prefix: str) -> list[str]:
    return [k for k in bucket.keys() if k.startswith(prefix + "/")]


def test_windows_to_s3_then_skipped(make_toy_dataset, s3_bucket, tmp_path: Path, ray_s3,  # noqa: F811
                                    monkeypatch) -> None:
    from rayrg.cli import main

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    monkeypatch.chdir(tmp_path)
    out = f"{s3_bucket.uri}/run/windows"
    assert main(["windows", "--dataset", str(source), "--out", out, "--window-size", "4"]) == 0
    keys = _under(s3_bucket, "run/windows")
    assert any(k.endswith(".parquet") for k in keys) and "run/windows/_windows.json" in keys
    assert not any(".partial" in k or ".rayrg-shared-" in k for k in s3_bucket.keys())  # staged, published, released
    assert _local_files(tmp_path) == []  # nothing local, no folder named "s3:"
    before = s3_bucket.keys()
    assert main(["windows", "--dataset", str(source), "--out", out, "--window-size", "4"]) == 0
    assert s3_bucket.keys() == before  # same inputs: skipped


@pytest.mark.parametrize("method", ["sparse", "simulated"])
def test_simple_labels_to_s3(make_toy_dataset, s3_bucket, tmp_path: Path, ray_s3, monkeypatch,  # noqa: F811
                             method: str) -> None:
    from rayrg.cli import main

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    config = tmp_path / "cfg" / "label.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"method": method, **({"accuracy": 0.9} if method == "simulated" else {})}))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = f"{s3_bucket.uri}/run/{method}"
    assert main(["label", "--config", str(config), "--dataset", str(source), "--out", out]) == 0
    keys = _under(s3_bucket, f"run/{method}")
    assert sum(k.endswith(".parquet") for k in keys) == 2 and f"run/{method}/metadata.json" in keys
    assert _local_files(work) == []


@pytest.fixture
def loopback_key(monkeypatch) -> None:
    """The backend's key in the environment before Ray starts (its actors send it)."""
    monkeypatch.setenv(KEY_ENV, "sk-s3-test")


def test_rgvlm_labels_and_cache_on_s3_and_rerun_makes_no_call(make_toy_dataset, s3_bucket,  # noqa: F811
                                                               tmp_path: Path, loopback_key, ray_s3,  # noqa: F811
                                                               monkeypatch) -> None:
    from rayrg.cli import main

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    work = tmp_path / "work"
    work.mkdir()
    with LoopbackServer(Faults()) as server:
        config = tmp_path / "label.yaml"
        config.write_text(yaml.safe_dump({
            "method": "rgvlm", "cache_dir": f"{s3_bucket.uri}/shared-cache",
            "windows": {"window_size": 4},
            "backend": {"type": "openai", "base_url": server.base_url, "model": "loopback-vlm",
                        "api_key_env": KEY_ENV, "num_actors": 1}}))
        monkeypatch.chdir(work)
        out = f"{s3_bucket.uri}/run/rgvlm"
        assert main(["label", "--config", str(config), "--dataset", str(source), "--out", out]) == 0
        first = server.stats.requests
        assert main(["label", "--config", str(config), "--dataset", str(source), "--out", out]) == 0
        second = server.stats.requests - first
    assert first > 0 and second == 0
    keys = s3_bucket.keys()
    assert any(k.startswith("run/rgvlm/_labels/") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith("run/rgvlm/_windows/") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith("shared-cache/segments-v3/") and k.endswith(".parquet") for k in keys)
    assert not any(".rayrg-shared-" in k or ".partial" in k or k.endswith(".tmp") for k in keys)
    summary = json.loads(s3_bucket.client().get_object(
        Bucket=s3_bucket.name, Key="run/rgvlm/_rgvlm_summary.json")["Body"].read())
    assert summary["labelled"] == summary["windows"] > 0
    assert summary["cache_dir"].startswith("s3://") and summary["labels_dir"].startswith("s3://")
    assert _local_files(work) == []
    assert "sk-s3-test" not in json.dumps(summary) and os.environ[KEY_ENV] == "sk-s3-test"
