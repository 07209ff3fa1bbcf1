"""``rayrg generate`` on the real 2-node layout (head with 0 CPUs, worker node with its own
disk): a local ``--out`` is refused before any work (it used to exit 0 with every shard lost
on the worker's disk); ``--out s3://…`` puts every shard where the head reads it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest

from tests.cluster._multinode import REPO, two_node_cluster  # noqa: F401 - fixture
from tests.storage._moto import moto_server, s3_bucket  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = ["--episodes-per-count", "1", "--eval-tasks-per-count", "1"]


def rayrg(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rayrg.cli", *args], env=cluster.driver_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_local_out_refused_before_any_work(two_node_cluster) -> None:  # noqa: F811
    out = two_node_cluster.private_dir / f"run-{secrets.token_hex(3)}"
    proc = rayrg(two_node_cluster, "generate", "--address", two_node_cluster.address, "--out", str(out), *SMALL)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert f"{out} is a local path, but the Ray cluster has 2 nodes" in line
    assert "generate shards" not in proc.stderr and not out.exists()  # nothing started, nothing made


def test_s3_out_every_shard_seen_by_the_head(two_node_cluster, s3_bucket) -> None:  # noqa: F811
    uri = f"{s3_bucket.uri}/run"
    proc = rayrg(two_node_cluster, "generate", "--address", two_node_cluster.address, "--out", uri, *SMALL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    keys = s3_bucket.keys()
    assert [k for k in keys if k.startswith("run/trajectories/part-")], keys
    assert "run/trajectories/metadata.json" in keys and "run/_provenance.json" in keys
    summary = rayrg(two_node_cluster, "inspect", f"{uri}/trajectories", "--json")
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert json.loads(summary.stdout)["episodes"] == 6
