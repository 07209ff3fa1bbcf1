"""The 2-node harness is real: a node-local write is lost to the driver, the marker check
names the node, and the same task writing to the S3 server is seen by the driver."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.cluster._multinode import two_node_cluster  # noqa: F401 - fixture
from tests.storage._moto import moto_server, s3_bucket  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRIVER = r'''
import json, sys
from pathlib import Path
import ray
from rayrg import storage
from rayrg.errors import unwrap_user_error

out, uri = sys.argv[1], sys.argv[2]
ray.init(log_to_driver=False)
result = {"alive": sum(n["Alive"] for n in ray.nodes()),
          "head": ray.get_runtime_context().get_node_id()}

@ray.remote(num_cpus=1)  # the head has 0 CPUs: these run on the worker node
def write_local(path):
    Path(path).mkdir(parents=True, exist_ok=True)
    (Path(path) / "shard-0.txt").write_text("written on the worker node")
    return ray.get_runtime_context().get_node_id()

@ray.remote(num_cpus=1)
def check_shared(path, token):
    storage.assert_shared(path, token)

@ray.remote(num_cpus=1)
def write_uri(target):
    storage.resolve(target).write_text("written on the worker node")

result["worker"] = ray.get(write_local.remote(out))
result["local_seen"] = (Path(out) / "shard-0.txt").exists()
token = storage.claim_shared(out)
try:
    ray.get(check_shared.remote(out, token))
    result["marker_error"] = None
except Exception as exc:
    found = unwrap_user_error(exc)
    result["marker_error"] = [type(found).__name__, str(found)] if found else ["?", str(exc)]
try:
    storage.refuse_local_on_cluster(out)
    result["refused"] = None
except storage.NotSharedError as exc:
    result["refused"] = str(exc)
ray.get(write_uri.remote(uri + "/shard-0.txt"))
result["uri_text"] = storage.resolve(uri + "/shard-0.txt").read_text()
print("RESULT " + json.dumps(result))
'''


def test_two_node_layout(two_node_cluster, s3_bucket) -> None:  # noqa: F811
    out = two_node_cluster.private_dir / f"run-{secrets.token_hex(3)}"
    uri = f"{s3_bucket.uri}/run"
    run = two_node_cluster.run_driver(f"import sys; sys.argv[1:] = [{str(out)!r}, {uri!r}]\n{DRIVER}")
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["alive"] == 2 and result["worker"] != result["head"]
    # 1. a node-local write is lost to the driver (its tmpfs is the worker's own)
    assert result["local_seen"] is False and not (out / "shard-0.txt").exists()
    # 2. the marker check inside such a task fails in one line naming the node and the path
    kind, line = result["marker_error"]
    assert kind == "NotSharedError" and "\n" not in line
    assert line.startswith(f"{out} is not shared storage: node ") and result["worker"][:12] in line
    assert "cannot see the driver's marker" in line
    # 3. the driver refuses the local path up front on this cluster
    assert result["refused"] and "the Ray cluster has 2 nodes" in result["refused"]
    # 4. the same task writing to the S3 server: the driver sees it
    assert result["uri_text"] == "written on the worker node"
    assert "run/shard-0.txt" in s3_bucket.keys()
