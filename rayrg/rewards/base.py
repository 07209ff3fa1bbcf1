"""What every reward labeller shares: the rewards table, the join, sparse and fused rewards.

Every labelling method (RG-VLM, CLIP, VLM-RMs, BLIP-2, RoboCLIP, simulated labels)
produces a *rewards table* keyed by ``(episode_id, step)`` with one or more float32
columns named ``reward_<variant>`` (NaN where a label failed), and
:func:`write_labelled_dataset` joins it onto a trajectory dataset. A labelled dataset is
itself a trajectory dataset (same schema plus ``reward_*`` columns), so methods chain:
label with CLIP, then label the result with RG-VLM, and both columns are there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayrg.config import scrub_secrets
from rayrg.contracts import columns as column_families
from rayrg.data.access import PROVENANCE_KEY, Dataset, episode_ends
from rayrg.data.schema import REWARD_PREFIX, DatasetError, added_columns, write_shard

KEY_COLUMNS = ("episode_id", "step")
__all__ = ["KEY_COLUMNS", "PROVENANCE_KEY", "fuse_rewards", "reward_column", "sparse_rewards",
           "write_labelled_dataset"]


def reward_column(variant: str) -> str:
    if not variant.replace("_", "").isalnum():
        raise ValueError(f"reward variant name must be alphanumeric/underscore: {variant!r}")
    return f"{REWARD_PREFIX}{variant}"


def sparse_rewards(episode_id: pa.Array, success: pa.Array) -> np.ndarray:
    """1.0 on the final transition of a successful episode, else 0.0.

    Rows must be grouped by episode in step order (as datasets are written).
    """
    return (episode_ends(episode_id) & np.asarray(success.to_pylist(), dtype=bool)).astype(np.float32)


def fuse_rewards(columns: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted sum of reward columns (the paper's best variant: dense VLM + sparse, 1 : 1)."""
    missing = [name for name in weights if name not in columns]
    if missing:
        raise DatasetError(f"fusion needs reward columns {missing}, have {sorted(columns)}")
    total = np.zeros_like(next(iter(columns.values())), dtype=np.float32)
    for name, weight in weights.items():
        total += np.float32(weight) * columns[name].astype(np.float32)
    return total


def _check_added(columns: list[str]) -> None:
    bad = [c for c in columns if column_families.family_of(c) is None]
    if bad:
        raise DatasetError(f"rewards table columns must be named {REWARD_PREFIX}* or belong to another "
                           f"column family ({column_families.describe()}): {bad}")


def _added_array(column: str, values: Any) -> pa.Array:
    if column == column_families.EVALSET_KIND:
        return pa.array(list(values), type=pa.string())
    floats = np.asarray(values, dtype=np.float32)
    bounds = column_families.family_of(column).value_range  # type: ignore[union-attr]
    if bounds is not None:
        outside = np.flatnonzero((floats < bounds[0]) | (floats > bounds[1]))  # NaN: unknown, allowed
        if outside.size:
            raise DatasetError(f"column '{column}': row {int(outside[0])} has {floats[outside[0]]}, "
                               f"outside [{bounds[0]}, {bounds[1]}]")
    return pa.array(floats, type=pa.float32())


# Rewards computed from a shard's rows (all its columns, in file order) -> {column: values per row}.
RewardsFn = Callable[[pa.Table], Mapping[str, np.ndarray]]


def _table_rewards(rewards: pa.Table) -> tuple[list[str], RewardsFn]:
    """A rewards table as a per-shard function: a lookup by (episode_id, step), NaN if absent."""
    for key in KEY_COLUMNS:
        if key not in rewards.column_names:
            raise DatasetError(f"rewards table lacks key column '{key}'")
    new_columns = [c for c in rewards.column_names if c not in KEY_COLUMNS]
    _check_added(new_columns)
    keys = pc.binary_join_element_wise(
        rewards.column("episode_id"), pc.cast(rewards.column("step"), pa.string()), ":"
    ).to_pylist()
    if len(set(keys)) != len(keys):
        raise DatasetError("rewards table has duplicate (episode_id, step) keys")
    index = {k: i for i, k in enumerate(keys)}
    values = {c: np.asarray(rewards.column(c).to_numpy(zero_copy_only=False), dtype=np.float32)
              for c in new_columns}

    def lookup(table: pa.Table) -> dict[str, np.ndarray]:
        row_keys = pc.binary_join_element_wise(
            table.column("episode_id"), pc.cast(table.column("step"), pa.string()), ":"
        ).to_pylist()
        rows = np.array([index.get(k, -1) for k in row_keys], dtype=np.int64)
        return {c: np.where(rows >= 0, values[c][np.maximum(rows, 0)], np.float32("nan")) for c in new_columns}

    return new_columns, lookup


def write_labelled_dataset(
    source: Any,
    rewards: pa.Table | RewardsFn,
    out: Any,
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Join ``rewards`` onto ``source`` and write the labelled dataset to ``out``.

    ``rewards`` is a table (episode_id, step, reward_*...) or a function of one shard's
    rows returning ``{reward_*: values per row}``; any column of a registered family
    (:mod:`rayrg.contracts.columns`: ``progress_*`` ...) may be added, and each added
    column's kind is recorded in the metadata (``column_kinds``); the latter lets a labeller compute its
    rewards from the rows this join reads anyway, so the shards are read once, here.
    Shards keep their names and episode grouping; a reward column already in ``source``
    is replaced. Transitions with no row in a rewards table get NaN (never a silent 0).
    ``provenance`` maps each new column to how it was made (method, model, prompt version,
    config) and is stored in the metadata after :func:`~rayrg.config.scrub_secrets`
    (every method's provenance passes here, so none can write a credential).
    """
    from rayrg.storage import open_input, prepare_output
    from rayrg.windows.staging import as_arg

    source_loc, out_loc = open_input(source), prepare_output(out)
    source, out = as_arg(source_loc), as_arg(out_loc)
    data = Dataset.open(source)
    if isinstance(rewards, pa.Table):
        _, per_shard = _table_rewards(rewards)
    else:
        per_shard = rewards
    new_columns: list[str] = []
    write_names: list[str] = data.names

    same_dir = out_loc.fs.equals(source_loc.fs) and out_loc.path.rstrip("/") == source_loc.path.rstrip("/")
    for path in data.shards:
        table = data.read_shard(path)  # every column: the shard is rewritten whole
        for column, values in per_shard(table).items():
            _check_added([column])
            if column not in new_columns:
                new_columns.append(column)
            arr = _added_array(column, values)
            if column in table.column_names:
                table = table.set_column(table.column_names.index(column), column, arr)
            else:
                table = table.append_column(column, arr)
        write_shard(table, out / path.name)
        write_names = table.column_names

    meta = data.metadata
    labels = dict(meta.extra.get(PROVENANCE_KEY, {}))
    for column in new_columns:
        labels[column] = dict((provenance or {}).get(column, {}))
    meta.extra = {**meta.extra, PROVENANCE_KEY: scrub_secrets(json.loads(json.dumps(labels, default=str)))}
    # Every added column's kind, also of columns kept from the source (older metadata lacks them).
    meta.column_kinds = {c: str(meta.kind_of(c)) for c in added_columns(write_names)}
    if not same_dir:
        meta.extra["labelled_from"] = str(source_loc) if not source_loc.is_local else str(source)
    meta.write(out)
    return out
