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
