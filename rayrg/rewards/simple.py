"""Labels that need no model: the sparse reward and *simulated* VLM labels.

Simulated labels are the ground truth (:mod:`rayrg.rewards.truth`) with each transition's
label flipped with probability ``1 - accuracy``: a stand-in for a VLM labeller of known
accuracy (the RG-VLM paper's Table I: Gemini 1.5 Pro 93.4 %, Flash 74.2 %, Qwen2-VL-72B
86.2 %) to study how label accuracy moves policy return when no real VLM is at hand. Their
columns are always named ``reward_simulated_*`` and their provenance says ``simulated``;
they are never presented as a model's labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from rayrg.config import StageConfig
from rayrg.data.access import Dataset
from rayrg.data.schema import SCALAR_COLUMNS
from rayrg.rewards.base import fuse_rewards, reward_column, sparse_rewards, write_labelled_dataset
from rayrg.rewards.declarations import OutputColumn
from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.truth import good_actions


class SparseConfig(StageConfig):
    method: Literal["sparse"] = "sparse"


class SimulatedConfig(StageConfig):
    method: Literal["simulated"] = "simulated"
    accuracy: float = Field(..., gt=0.0, le=1.0, description="P(label == ground truth) per transition.")
    seed: int = Field(0, description="Seed of the label corruption.")
    name: str | None = Field(None, description="Variant suffix; default acc<accuracy*1000>, e.g. acc934.")
    sparse_weight: float | None = Field(
        1.0, description="Also write <column>_sparse = dense + sparse_weight * sparse (None: skip).")

    @property
    def column(self) -> str:
        return reward_column(f"simulated_{self.name or f'acc{round(self.accuracy * 1000)}'}")


def label_sparse(config: SparseConfig, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    Dataset.open(dataset).require_ground_truth(["success"], "the sparse reward (episode success)")

    # Computed per shard from the rows the join reads (episodes never span shards): one read.
    def rewards(shard: pa.Table) -> dict[str, np.ndarray]:
        return {"reward_sparse": sparse_rewards(shard.column("episode_id"), shard.column("success"))}

    return write_labelled_dataset(dataset, rewards, out, provenance={
        "reward_sparse": {"method": "sparse", "definition": "1 on the last transition of a successful episode"}})


def simulate_labels(truth: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Flip each binary label with probability 1 - accuracy (independently, seeded)."""
    flip = np.random.default_rng(seed).random(len(truth)) >= accuracy
    return np.where(flip, ~truth, truth).astype(np.float32)


def label_simulated(config: SimulatedConfig, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    source = Dataset.open(dataset)
    source.require_ground_truth(["expert_action", "subtasks"], "simulated labels")
    # contracts: the evaluation-set kind column's name (rayrg.contracts.columns.EVALSET_KIND).
    from rayrg.data.evalset import EVALSET_KIND, skip_kinds

    has_kinds = EVALSET_KIND in source.names
    table = source.read([*SCALAR_COLUMNS, *([EVALSET_KIND] if has_kinds else [])])
    dense = simulate_labels(good_actions(table), config.accuracy, config.seed)
    # Rows of evaluation-set kinds without the truth good(t) needs (rewound, swapped) are NaN:
    # a flipped made-up truth would score as a label of known accuracy.
    dense, skipped = skip_kinds(dataset, table.column(EVALSET_KIND) if has_kinds else None, dense,
                                ["expert_action", "subtasks"])
    for kind, reason in skipped.items():
        print(f"[rayrg] simulated labels: skipped the {kind} episodes (NaN rewards): {reason}", flush=True)
    columns = {config.column: dense}
    provenance = {config.column: {"method": "simulated", "simulated": True, "accuracy": config.accuracy,
                                  "seed": config.seed, "truth": "rayrg.rewards.truth.good_actions",
                                  **({"skipped_kinds": skipped} if skipped else {})}}
    if config.sparse_weight is not None:
        sparse = sparse_rewards(table.column("episode_id"), table.column("success"))
        fused = f"{config.column}_sparse"
        columns[fused] = fuse_rewards({"dense": dense, "sparse": sparse},
                                      {"dense": 1.0, "sparse": config.sparse_weight})
        provenance[fused] = {**provenance[config.column], "fusion": {"dense": 1.0, "sparse": config.sparse_weight}}
    rewards = pa.table({"episode_id": table.column("episode_id"), "step": table.column("step"),
                        **{k: pa.array(v) for k, v in columns.items()}})
    return write_labelled_dataset(dataset, rewards, out, provenance=provenance)


def _simulated_outputs(config: SimulatedConfig) -> list[OutputColumn]:
    dense = OutputColumn(config.column, "reward", f"ground truth flipped with p = {1 - config.accuracy:g}")
    fused = OutputColumn(f"{config.column}_sparse", "reward", "dense + sparse_weight * sparse")
    return [dense, fused] if config.sparse_weight is not None else [dense]


SPARSE = LabelMethod("sparse", SparseConfig, label_sparse, outputs=lambda config: [OutputColumn(
    "reward_sparse", "reward", "1 on the last transition of a successful episode")])
SIMULATED = LabelMethod("simulated", SimulatedConfig, label_simulated, outputs=_simulated_outputs,
                        describe=lambda config: f"ground truth at accuracy {config.accuracy:g} (no model)")
