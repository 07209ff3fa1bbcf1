"""The trajectory dataset format: one Parquet row per transition, plus ``metadata.json``.

A trajectory dataset is a directory::

    <dataset>/
        metadata.json          # DatasetMetadata: schema version, generator, env, seeds, counts
        part-00000.parquet     # shards with TRANSITION_SCHEMA (more columns allowed only
        part-00001.parquet     #   as reward columns "reward_<name>", see below)

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

Labelled datasets add float32 columns ``reward_<name>`` (``reward_sparse``,
``reward_rgvlm``, ``reward_clip`` ...), one per reward variant.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.errors import UserError

# Version 2 added the optional symbolic-state columns (OPTIONAL_SCHEMA); version-1 datasets
# lack them and still read.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
METADATA_FILE = "metadata.json"
REWARD_PREFIX = "reward_"

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


class DatasetError(UserError, ValueError):
    """A dataset that does not follow the format; the message names the file and row."""


@dataclass
class DatasetMetadata:
    """The small JSON file beside the shards."""

    generator: str
    env_name: str
    num_episodes: int
    num_transitions: int
    schema_version: int = SCHEMA_VERSION
    seeds: list[int] = field(default_factory=list)
    noise: float = 0.0
    created_unix: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)
    # What made it (rayrg.provenance): the stage's fingerprint; downstream stages key on it.
    fingerprint: str | None = None

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / METADATA_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        return path

    @classmethod
    def read(cls, directory: str | Path) -> DatasetMetadata:
        path = Path(directory) / METADATA_FILE
        if not path.exists():
            raise DatasetError(f"{directory}: no {METADATA_FILE} (not a rayrg dataset?)")
        try:
            raw = json.loads(path.read_text())
            meta = cls(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise DatasetError(f"{path}: unreadable metadata: {exc}") from exc
        if meta.schema_version not in READABLE_SCHEMA_VERSIONS:
            raise DatasetError(
                f"{path}: schema version {meta.schema_version}, this rayrg reads {SCHEMA_VERSION}"
            )
        return meta


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


def shard_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: dataset directory does not exist")
    files = sorted(directory.glob("*.parquet"))
    if not files:
        what = "" if (directory / METADATA_FILE).exists() else f" and no {METADATA_FILE}"
        raise DatasetError(f"{directory}: not a trajectory dataset: no .parquet shards{what}")
    return files


def reward_columns(names: Iterable[str]) -> list[str]:
    return [n for n in names if n.startswith(REWARD_PREFIX)]


def validate_schema(schema: pa.Schema, source: str) -> None:
    """Column names and types; ``reward_*`` float columns are the only extras allowed."""
    names = set(schema.names)
    missing = [c for c in TRANSITION_COLUMNS if c not in names]
    if missing:
        raise DatasetError(f"{source}: missing columns {missing}")
    extra = [n for n in schema.names if n not in TRANSITION_COLUMNS and n not in OPTIONAL_COLUMNS
             and not n.startswith(REWARD_PREFIX)]
    if extra:
        raise DatasetError(
            f"{source}: unexpected columns {extra} (only '{REWARD_PREFIX}*' columns may be added)"
        )
    for f in [*TRANSITION_SCHEMA, *(o for o in OPTIONAL_SCHEMA if o.name in names)]:
        actual = schema.field(f.name).type
        if actual != f.type:
            raise DatasetError(f"{source}: column '{f.name}' has type {actual}, expected {f.type}")
    for name in reward_columns(schema.names):
        if not pa.types.is_floating(schema.field(name).type):
            raise DatasetError(f"{source}: reward column '{name}' has type "
                               f"{schema.field(name).type}, expected a float type")


def read_shard_schema(path: str | Path) -> pa.Schema:
    """The Parquet schema of one shard; a truncated or non-Parquet file is a DatasetError."""
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc


def write_shard(rows: list[dict[str, Any]] | pa.Table, path: str | Path) -> Path:
    """Write transitions (dicts in TRANSITION_SCHEMA order or a table) as one zstd shard."""
    if isinstance(rows, pa.Table):
        table = rows
    else:
        optional = [f for f in OPTIONAL_SCHEMA if rows and f.name in rows[0]]
        table = pa.Table.from_pylist(rows, schema=pa.schema([*TRANSITION_SCHEMA, *optional]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)  # atomic: a crash never leaves a half-written shard
    return path
