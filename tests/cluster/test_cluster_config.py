"""Cluster files: the launcher YAML passes Ray's own validation; KubeRay manifests match the
schemas; a deliberately wrong field is rejected by each."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def _ray_validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_launcher_yaml_passes_ray_validation() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    _ray_validate(config)
    groups = config["available_node_types"]
    assert groups["head"]["resources"]["CPU"] == 0
    assert groups["vllm_gpu"]["resources"]["GPU"] == 8 and groups["vllm_gpu"]["resources"]["vllm_node"] == 1
    assert {"train_node", "eval_node"} <= set(groups["train_gpu"]["resources"]) | set(groups["eval_cpu"]["resources"])
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in config["head_start_ray_commands"][1:])


def test_launcher_yaml_wrong_field_rejected() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    config["available_node_types"]["train_gpu"]["gpus_per_node"] = 1  # not a launcher field
    with pytest.raises(jsonschema.ValidationError, match="gpus_per_node"):
        _ray_validate(config)


@pytest.mark.parametrize(("manifest", "schema"), [("raycluster.yaml", "raycluster.schema.json"),
                                                  ("rayjob.yaml", "rayjob.schema.json")])
def test_kuberay_manifests_match_schema_and_reject_typos(manifest: str, schema: str) -> None:
    doc = yaml.safe_load((CLUSTER / "kuberay" / manifest).read_text())
    spec_schema = json.loads((CLUSTER / "schemas" / schema).read_text())
    jsonschema.validate(doc, spec_schema)
    cluster = doc["spec"].get("rayClusterSpec", doc["spec"])
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"vllm-gpu", "train-gpu", "eval-cpu"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    bad = copy.deepcopy(doc)
    bad_cluster = bad["spec"].get("rayClusterSpec", bad["spec"])
    bad_cluster["workerGroupSpecs"][0]["maxReplica"] = 3  # typo of maxReplicas
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        jsonschema.validate(bad, spec_schema)
