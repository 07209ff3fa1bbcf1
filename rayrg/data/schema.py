"""The trajectory dataset format: one Parquet row per transition, plus ``metadata.json``.

A trajectory dataset is a directory::

    <dataset>/
        metadata.json          # DatasetMetadata (rayrg.contracts.datasets): schema version,
                               #   generator, env, seeds, counts, kinds of added columns
        part-00000.parquet     # shards with TRANSITION_SCHEMA (more columns allowed only
        part-00001.parquet     #   from registered column families, see below)

Row ``t`` of an episode is the transition ``(o_t, a_t, o_{t+1})``: ``frame`` is the
observation *before* the action, the next row's ``frame`` is the observation after it. The
last row of an episode carries the observation after its action in ``final_frame`` (null
elsewhere), so every transition has its next observation without duplicating frames.

Ground truth from the environment:

* ``subtasks_completed`` — sub-tasks of the mission completed *after* this transition
  (monotone within an episode, equals ``num_subtasks`` on the last row of a successful one);
  a transition *advances a sub-task* when it is larger than the previous row's value (or 0).
* ``expert_action`` — the expert's action at this state (-1 where unknown), so labels can
  be scored against the truth; ``is_random_action`` marks ε-noise actions.
* ``terminal`` — the episode ended here by reaching the goal or failing for good (masks
  the bootstrap); ``truncated`` — it stopped at a step budget (does *not* mask it).

Labelled datasets add columns of the families of :mod:`rayrg.contracts.columns`: float32
``reward_<name>`` (``reward_sparse``, ``reward_rgvlm``, ``reward_clip`` ...), one per reward
variant; ``progress_<name>`` (per frame, in [0, 1]); the evaluation-set columns
``evalset_kind`` and ``progress_true``. The metadata records each one's kind.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.contracts import columns as column_families
from rayrg.contracts.columns import PROGRESS_PREFIX, REWARD_PREFIX
from rayrg.contracts.datasets import METADATA_FILE, DatasetMetadata
from rayrg.contracts.datasets import READABLE_VERSIONS as READABLE_DATASET_VERSIONS
from rayrg.contracts.datasets import VERSION as DATASET_VERSION
from rayrg.contracts.versions import DatasetError
from rayrg.storage import Location, native, parquet_args, resolve

__all__ = ["METADATA_FILE", "OPTIONAL_COLUMNS", "OPTIONAL_SCHEMA", "PROGRESS_PREFIX", "REWARD_PREFIX",
           "SCALAR_COLUMNS", "SCHEMA_VERSION", "TRANSITION_COLUMNS", "TRANSITION_SCHEMA", "DatasetError",
           "DatasetMetadata", "added_columns", "decode_png", "encode_png",
           "read_shard_schema", "reward_columns", "shard_files", "validate_schema",
           "write_shard"]

# The metadata contract (rayrg.contracts.datasets) owns the version: 2 added the optional
# symbolic-state columns (OPTIONAL_SCHEMA; version-1 datasets lack them and still read),
# 3 the kinds of added columns. Column families (reward_*, progress_*, evaluation-set
# columns) are rayrg.contracts.columns'.
SCHEMA_VERSION = DATASET_VERSION
READABLE_SCHEMA_VERSIONS = READABLE_DATASET_VERSIONS

TRANSITION_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("num_subtasks", pa.int32(), nullable=False),
        pa.field("env_name", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("frame", pa.binary(), nullable=False),
        pa.field("final_frame", pa.binary(), nullable=True),
        pa.field("action", pa.int32(), nullable=False),
        pa.field("action_name", pa.string(), nullable=False),
        pa.field("expert_action", pa.int32(), nullable=False),
        pa.field("is_random_action", pa.bool_(), nullable=False),
        pa.field("terminal", pa.bool_(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("subtasks_completed", pa.int32(), nullable=False),
        pa.field("success", pa.bool_(), nullable=False),
    ]
)
TRANSITION_COLUMNS: tuple[str, ...] = tuple(TRANSITION_SCHEMA.names)
# Schema version 2: BabyAI's symbolic egocentric grid (``gen_obs()["image"]``, 7x7x3 uint8,
# C-order raw bytes) before the action, and after it on an episode's last row (like
# ``final_frame``). Optional: version-1 datasets and environments without one lack them.
OPTIONAL_SCHEMA = pa.schema(
    [
        pa.field("state", pa.binary(), nullable=True),
        pa.field("final_state", pa.binary(), nullable=True),
        # Continuous actions (imported robot data, e.g. LeRobot): the action vector of the
        # transition; ``action`` is then -1 and ``action_name`` a rendering of the vector.
        pa.field("action_vector", pa.list_(pa.float32()), nullable=True),
    ]
)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(OPTIONAL_SCHEMA.names)
# Columns the image-free tools (inspect, reward reports, IQL indices) read.
SCALAR_COLUMNS: tuple[str, ...] = tuple(
    n for n in TRANSITION_COLUMNS if n not in ("frame", "final_frame")
)


def encode_png(array: Any) -> bytes:
    """HxWx3 uint8 array -> PNG bytes (fast settings: frames are small)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> Any:
    """PNG bytes -> HxWx3 uint8 array; raises ``OSError``/``ValueError`` on corrupt bytes."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def shard_files(directory: str | Path | Location) -> list[Any]:
    """The shards of a dataset, sorted: ``Path`` objects for a local one (as given), storage
    :class:`Location` objects for a URI."""
    location = resolve(directory)
    shown = native(location)
    if not location.is_dir():
        raise DatasetError(f"{shown}: dataset directory does not exist")
    files = [shown / child.name for child in location.ls()
             if child.name.endswith(".parquet")]
    if not files:
        what = "" if (location / METADATA_FILE).exists() else f" and no {METADATA_FILE}"
        raise DatasetError(f"{shown}: not a trajectory dataset: no .parquet shards{what}")
    return files


def reward_columns(names: Iterable[str]) -> list[str]:
    return [n for n in names if column_families.column_kind(n) == "reward"]


def added_columns(names: Iterable[str], kind: str | None = None) -> list[str]:
    """The columns of ``names`` from registered families (of ``kind`` only, if given)."""
    return column_families.added_columns(
        [n for n in names if n not in TRANSITION_COLUMNS and n not in OPTIONAL_COLUMNS], kind)


def validate_schema(schema: pa.Schema, source: str) -> None:
    """Column names and types; columns of registered families are the only extras allowed."""
    names = set(schema.names)
    missing = [c for c in TRANSITION_COLUMNS if c not in names]
    if missing:
        raise DatasetError(f"{source}: missing columns {missing}")
    extra = [n for n in schema.names if n not in TRANSITION_COLUMNS and n not in OPTIONAL_COLUMNS
             and column_families.family_of(n) is None]
    if extra:
        raise DatasetError(
            f"{source}: unexpected columns {extra} (only columns of the families "
            f"{column_families.describe()} may be added)"
        )
    for f in [*TRANSITION_SCHEMA, *(o for o in OPTIONAL_SCHEMA if o.name in names)]:
        actual = schema.field(f.name).type
        if actual != f.type:
            raise DatasetError(f"{source}: column '{f.name}' has type {actual}, expected {f.type}")
    for name in added_columns(schema.names):
        problem = column_families.check_column_type(name, schema.field(name).type)
        if problem:
            raise DatasetError(f"{source}: {problem}")


def read_shard_schema(path: str | Path | Location) -> pa.Schema:
    """The Parquet schema of one shard; a truncated or non-Parquet file is a DatasetError."""
    try:
        where = parquet_args(path)
        return pq.read_schema(where["path"], filesystem=where["filesystem"])
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc


def write_shard(rows: list[dict[str, Any]] | pa.Table, path: str | Path | Location) -> Path | Location:
    """Write transitions (dicts in TRANSITION_SCHEMA order or a table) as one zstd shard, to
    a local path or a storage URI."""
    if isinstance(rows, pa.Table):
        table = rows
    else:
        optional = [f for f in OPTIONAL_SCHEMA if rows and f.name in rows[0]]
        table = pa.Table.from_pylist(rows, schema=pa.schema([*TRANSITION_SCHEMA, *optional]))
    location = resolve(path)
    if not location.is_local:
        # one PUT (multipart for large shards, completed only at close): readers never see a part
        pq.write_table(table, location.path, filesystem=location.fs, compression="zstd")
        return location
    path = Path(location.local_path or location.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)  # atomic: a crash never leaves a half-written shard
    return path
