"""Cluster files: the launcher YAMLs (AWS and on-prem) pass Ray's own validation; the KubeRay
manifests match the upstream KubeRay CRDs (vendored, cluster/kuberay/crds/); a deliberately
wrong field is rejected by each."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
CRDS = CLUSTER / "kuberay" / "crds"
KUBERAY_VERSION = "v1.7.0"
# git blob ids of the upstream files at KUBERAY_VERSION (see cluster/kuberay/crds/README.md)
CRD_BLOBS = {"ray.io_rayclusters.yaml.gz": "ff0be58ada3bd457605eff1f258c16df21e61e21",
             "ray.io_rayjobs.yaml.gz": "c7d3f081af8cf08c256a8c33a0c3b6ea28b816a0"}


def _ray_validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_launcher_yaml_passes_ray_validation() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    _ray_validate(config)
    groups = config["available_node_types"]
    assert groups["head"]["resources"]["CPU"] == 0
    assert groups["vllm_gpu"]["resources"]["GPU"] == 8 and groups["vllm_gpu"]["resources"]["vllm_node"] == 1
    assert {"train_node", "eval_node"} <= set(groups["train_gpu"]["resources"]) | set(groups["eval_cpu"]["resources"])
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in config["head_start_ray_commands"][1:])
    # `ray start` with token auth refuses to start without the token: every node gets yours
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_launcher_yaml_wrong_field_rejected() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    config["available_node_types"]["train_gpu"]["gpus_per_node"] = 1  # not a launcher field
    with pytest.raises(jsonschema.ValidationError, match="gpus_per_node"):
        _ray_validate(config)


def test_aws_launcher_backend_is_installed() -> None:
    """`ray up cluster/ray-cluster.yaml` loads the AWS node provider, which imports boto3 (the
    `rayrg[aws]` extra); without it `ray up` ends in a traceback."""
    from ray.autoscaler._private.providers import _get_node_provider_cls

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    assert _get_node_provider_cls(config["provider"]).__name__ == "AWSNodeProvider"


def test_onprem_yaml_passes_ray_validation() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster-onprem.yaml").read_text())
    assert config["provider"]["type"] == "local"
    prepared = _ray_validate(config)
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(config["provider"]["worker_ips"])
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in config["head_start_ray_commands"][1:])
    # `ray start` with token auth refuses to start without the token: every node gets yours
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"

    bad = copy.deepcopy(config)
    bad["provider"]["worker_ip"] = bad["provider"].pop("worker_ips")  # typo: Ray refuses it
    with pytest.raises(click.ClickException, match="worker_ips"):
        _ray_validate(bad)


def test_onprem_worker_picks_its_group_from_its_gpus() -> None:
    """The worker start command's group choice, run by bash on this GPU-less machine (the
    `ray start` part is left out): eval_node, and --resources is valid JSON."""
    config = yaml.safe_load((CLUSTER / "ray-cluster-onprem.yaml").read_text())
    command = config["worker_start_ray_commands"][-1]
    choose, _, start = command.partition("ulimit")
    assert "ray start" in start and '--resources="{\\"$GROUP\\": 1}"' in start
    script = f'{choose} printf "%s" "{{\\"$GROUP\\": 1}}"'
    has_gpu = subprocess.run(["bash", "-c", "nvidia-smi -L"], capture_output=True).returncode == 0
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    resources = json.loads(out)
    assert set(resources) <= {"vllm_node", "train_node", "eval_node"} and list(resources.values()) == [1]
    if not has_gpu:
        assert resources == {"eval_node": 1}


@cache
def _crd(name: str) -> dict[str, Any]:
    # libyaml when present: the pure-Python loader takes tens of seconds on 2.3 MB of YAML
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(gzip.decompress((CRDS / name).read_bytes()), Loader=loader)


@pytest.mark.parametrize("name", sorted(CRD_BLOBS))
def test_vendored_crds_are_upstream_bytes(name: str) -> None:
    data = gzip.decompress((CRDS / name).read_bytes())
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob == CRD_BLOBS[name], f"{name} differs from KubeRay {KUBERAY_VERSION}"
    assert KUBERAY_VERSION in (CRDS / "README.md").read_text()


def _strict(schema: Any) -> Any:
    """The CRD's openAPIV3Schema as the API server applies it: undeclared fields rejected
    unless the schema preserves unknown fields (see cluster/kuberay/crds/README.md)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v if k in _LITERAL_KEYS else _strict(v) for k, v in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


_LITERAL_KEYS = {"default", "enum", "example", "x-kubernetes-validations", "required"}


@cache
def _validator(crd: str) -> jsonschema.protocols.Validator:
    (version,) = [v for v in _crd(crd)["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # OpenAPI v3 schemas are a JSON-schema draft-4 dialect; checked once, then reused (the
    # schemas are large: re-checking them on every validate() takes seconds)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize(("manifest", "crd"), [("raycluster.yaml", "ray.io_rayclusters.yaml.gz"),
                                               ("rayjob.yaml", "ray.io_rayjobs.yaml.gz")])
def test_kuberay_manifests_match_crd_and_reject_typos(manifest: str, crd: str) -> None:
    doc = yaml.safe_load((CLUSTER / "kuberay" / manifest).read_text())
    assert doc["kind"] == _crd(crd)["spec"]["names"]["kind"]
    assert doc["apiVersion"] == f"{_crd(crd)['spec']['group']}/v1"
    validator = _validator(crd)
    validator.validate(doc)
    cluster = doc["spec"].get("rayClusterSpec", doc["spec"])
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"vllm-gpu", "train-gpu", "eval-cpu"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    bad = copy.deepcopy(doc)
    bad_cluster = bad["spec"].get("rayClusterSpec", bad["spec"])
    bad_cluster["workerGroupSpecs"][0]["maxReplica"] = 3  # typo of maxReplicas
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        validator.validate(bad)
    bad = copy.deepcopy(doc)
    bad_cluster = bad["spec"].get("rayClusterSpec", bad["spec"])
    bad_cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(jsonschema.ValidationError, match="imagePulPolicy"):  # deep in the pod template
        validator.validate(bad)


# -- storage: every node gets the storage root, and its role may use the bucket -------------------
POLICY = CLUSTER / "aws" / "storage-policy.json"


def _start_env(command: str, tmp_path: Path) -> dict[str, str]:
    """The environment `ray start` gets from a launcher start command, run by bash with a stub
    `ray` (and `nvidia-smi`) that prints it: what the node's Ray, and so every task and job on
    that node, inherits."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "ray").write_text('#!/bin/sh\nfor v in RAYRG_STORAGE RAYRG_SHARED_MOUNTS RAY_AUTH_MODE; do '
                              'printf "%s=%s\\n" "$v" "$(printenv $v)"; done\n')
    (stub / "ray").chmod(0o755)
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True,
                         env={"PATH": f"{stub}:/usr/bin:/bin", "RAY_HEAD_IP": "10.0.0.10"}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _bucket_of(root: str) -> str:
    assert root.startswith("s3://"), root
    return root[len("s3://"):].split("/", 1)[0]


def _policy_grants(bucket: str) -> tuple[set[str], set[str]]:
    """(actions on the bucket, actions on its objects) that cluster/aws/storage-policy.json allows."""
    on_bucket, on_objects = set(), set()
    for statement in json.loads(POLICY.read_text())["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            if resource == f"arn:aws:s3:::{bucket}":
                on_bucket.update(actions)
            elif resource == f"arn:aws:s3:::{bucket}/*":
                on_objects.update(actions)
    return on_bucket, on_objects


def test_launcher_every_node_gets_the_storage_root_and_a_role_for_its_bucket(tmp_path: Path) -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    head = _start_env(config["head_start_ray_commands"][-1], tmp_path)
    worker = _start_env(config["worker_start_ray_commands"][-1], tmp_path)
    assert head["RAYRG_STORAGE"] == worker["RAYRG_STORAGE"] != ""
    assert head["RAY_AUTH_MODE"] == worker["RAY_AUTH_MODE"] == "token"
    bucket = _bucket_of(head["RAYRG_STORAGE"])
    # every node type (the head and each worker group) runs with an instance profile
    groups = config["available_node_types"]
    profiles = {name: group["node_config"].get("IamInstanceProfile") for name, group in groups.items()}
    assert profiles[config["head_node_type"]] == {"Name": "rayrg-head"}
    assert all(p == {"Name": "rayrg-worker"} for name, p in profiles.items() if name != config["head_node_type"]), profiles
    # ... whose role may read, write, list and delete in that bucket (not only some of it)
    on_bucket, on_objects = _policy_grants(bucket)
    assert "s3:ListBucket" in on_bucket
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} <= on_objects
    # the head's role may hand the worker profile to the instances it launches
    pass_role = json.loads((CLUSTER / "aws" / "head-autoscaler-policy.json").read_text())["Statement"]
    assert any(s["Action"] == "iam:PassRole" and s["Resource"].endswith(":role/rayrg-worker") for s in pass_role)


def test_onprem_every_node_gets_a_declared_shared_storage_root(tmp_path: Path) -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster-onprem.yaml").read_text())
    for command in (config["head_start_ray_commands"][-1], config["worker_start_ray_commands"][-1]):
        env = _start_env(command, tmp_path)
        root, mounts = env["RAYRG_STORAGE"], env["RAYRG_SHARED_MOUNTS"].split(":")
        assert root.startswith("/") and any(root == m or root.startswith(m.rstrip("/") + "/") for m in mounts)


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = doc["spec"].get("rayClusterSpec", doc["spec"])
    return [cluster["headGroupSpec"]["template"]["spec"],
            *(group["template"]["spec"] for group in cluster["workerGroupSpecs"])]


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_every_pod_gets_the_storage_root_and_the_irsa_account(manifest: str) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((CLUSTER / "kuberay" / "storage.yaml").read_text())}
    root = docs["ConfigMap"]["data"]["RAYRG_STORAGE"]
    bucket = _bucket_of(root)
    account = docs["ServiceAccount"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith("arn:aws:iam::") and role.endswith(":role/rayrg-storage")
    on_bucket, on_objects = _policy_grants(bucket)  # the role's policy (cluster/README.md) covers that bucket
    assert "s3:ListBucket" in on_bucket and {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= on_objects

    doc = yaml.safe_load((CLUSTER / "kuberay" / manifest).read_text())
    for spec in _pod_specs(doc):  # the head and every worker group
        assert spec.get("serviceAccountName") == account["metadata"]["name"]
        for container in spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            ref = env["RAYRG_STORAGE"]["valueFrom"]["configMapKeyRef"]
            assert ref == {"name": docs["ConfigMap"]["metadata"]["name"], "key": "RAYRG_STORAGE"}
            assert not ref.get("optional"), "a pod without the root would write to its own disk"

