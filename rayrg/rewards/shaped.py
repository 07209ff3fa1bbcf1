"""``method: shape``: the centred or potential-based variant of any dense reward column.

A label step that reads a dense per-transition reward an earlier step wrote (``reward_rgvlm``,
``reward_simulated_acc742``, ``reward_clip`` ...) and writes its variant beside it, plus the
variant fused with the sparse reward, so every dense reward can be trained raw, centred or
shaped without touching its labeller (the formulas live in :mod:`rayrg.rewards.shaping`).

Why the variants exist: a dense reward in [0, 1] whose transitions are mostly "good" pays
about +1 per step, which can pay a policy for long episodes rather than for finishing.

* ``centred``: ``r − mean(r)``, the mean over the whole labelled dataset (NaN ignored; the
  baseline is recorded in the column's provenance). It removes the constant per-step offset.
* ``potential``: ``γ·Φ(s′) − Φ(s)`` with Φ the episode's running sum of ``r`` rescaled to
  [0, 1] (:func:`~rayrg.rewards.shaping.potential_from_rewards`). An episode's shaped sum
  telescopes to about ``γ^T·Φ_T − Φ_0``, whatever its length. It has the form of Ng et al.'s
  (1999) policy-invariant shaping, which needs γ to be the learner's own (recorded, and checked
  by training: :func:`~rayrg.rewards.shaping.check_gamma`); but Φ is rescaled per episode, so it
  is not a function of the state alone and the invariance is not guaranteed — what the variant
  does to a policy is measured (README, the label-accuracy sweep), not assumed.
  An episode with a NaN label anywhere is NaN throughout (its running sum is unknown).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from rayrg.config import StageConfig
from rayrg.contracts.versions import DatasetError
from rayrg.data.access import Dataset, episode_ends
from rayrg.rewards.base import REWARD_PREFIX, fuse_rewards, sparse_rewards, write_labelled_dataset
from rayrg.rewards.declarations import OutputColumn
from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.shaping import (
    GAMMA_KEY,
    centred,
    potential_from_rewards,
    progress_shaping,
    shaping_provenance,
)


class ShapeConfig(StageConfig):
    method: Literal["shape"] = "shape"
    column: str = Field(..., pattern=r"^reward_\w+$",
                        description="The dense per-transition reward column to shape (written by an earlier step).")
    variant: Literal["centred", "potential"] = Field(
        ..., description="centred: r − mean(r); potential: γ·Φ(s′) − Φ(s), Φ = the episode's rescaled running sum.")
    gamma: float = Field(0.97, gt=0, le=1, description="potential: the shaping's discount, which must be the "
                         "learner's (train.gamma; `rayrg run` sets it from there when unset).")
    sparse_weight: float | None = Field(
        1.0, description="Also write <out>_sparse = variant + sparse_weight * sparse (None: skip).")

    @property
    def out_column(self) -> str:
        return f"{self.column}_{self.variant}"


def potential_variant(reward: np.ndarray, gamma: float) -> np.ndarray:
    """One episode's potential-based variant: ``γ·Φ(s′) − Φ(s)`` (NaN throughout if any label is NaN)."""
    r = np.asarray(reward, dtype=np.float64)
    if not np.isfinite(r).all():
        return np.full(r.size, np.nan, dtype=np.float32)
    phi = potential_from_rewards(r)
    scale = float(np.abs(r).sum())
    final = float(r.sum()) / scale if scale > 0 else 0.0  # Φ after the last transition
    return progress_shaping(phi, gamma, final)


def label_shape(config: ShapeConfig, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    source = Dataset.open(dataset)
    if config.column not in source.names:
        have = sorted(n for n in source.names if n.startswith(REWARD_PREFIX))
        raise DatasetError(f"{dataset}: shape: no column {config.column!r} to shape (a label step before this "
                           f"one writes it); reward columns here: {have or 'none'}")
    origin = dict(source.provenance.get(config.column) or {})
    if GAMMA_KEY in origin:
        raise DatasetError(f"{dataset}: shape: {config.column!r} is already potential-shaped; shape the dense "
                           "reward it was made from")
    needs_sparse = config.sparse_weight is not None
    if needs_sparse:
        source.require_ground_truth(["success"], "shape's fused column (the sparse reward: episode success)")
    baseline: float | None = None
    if config.variant == "centred":
        values = source.read([config.column]).column(config.column).to_numpy(zero_copy_only=False)
        finite = values[np.isfinite(values)]
        baseline = float(finite.mean()) if finite.size else 0.0

    def rewards(shard: pa.Table) -> dict[str, np.ndarray]:
        dense = shard.column(config.column).to_numpy(zero_copy_only=False).astype(np.float64)
        if config.variant == "centred":
            shaped = centred(dense, baseline)
        else:
            # Rows are grouped by episode in step order, as datasets are written (episode_ends).
            ends = episode_ends(shard.column("episode_id")).nonzero()[0] + 1
            shaped = np.concatenate([potential_variant(r, config.gamma) for r in np.split(dense, ends[:-1])])
        columns = {config.out_column: shaped}
        if needs_sparse:
            sparse = sparse_rewards(shard.column("episode_id"), shard.column("success"))
            columns[f"{config.out_column}_sparse"] = fuse_rewards(
                {"dense": shaped, "sparse": sparse}, {"dense": 1.0, "sparse": float(config.sparse_weight or 0)})
        return columns

    made: dict[str, Any] = {"method": "shape", "variant": config.variant, "source_column": config.column,
                            "source": origin}
    if "skipped_kinds" in origin:  # the source's NaN rows stay NaN here, for the same reason
        made["skipped_kinds"] = origin["skipped_kinds"]
    if baseline is not None:
        made["baseline"] = baseline
    else:
        made.update(shaping_provenance(config.gamma, f"running sum of {config.column}, rescaled to [0, 1]"))
    provenance = {config.out_column: made}
    if needs_sparse:
        provenance[f"{config.out_column}_sparse"] = {**made, "fusion": {"dense": 1.0, "sparse": config.sparse_weight}}
    return write_labelled_dataset(dataset, rewards, out, provenance=provenance)


def _outputs(config: ShapeConfig) -> list[OutputColumn]:
    what = ("minus its dataset mean" if config.variant == "centred"
            else f"as potential-based shaping, γ = {config.gamma:g}")
    shaped = OutputColumn(config.out_column, "reward", f"{config.column} {what}")
    fused = OutputColumn(f"{config.out_column}_sparse", "reward", f"{config.out_column} + sparse_weight * sparse")
    return [shaped, fused] if config.sparse_weight is not None else [shaped]


SHAPE = LabelMethod("shape", ShapeConfig, label_shape, outputs=_outputs,
                    describe=lambda config: f"{config.variant} variant of {config.column} (no model)")
