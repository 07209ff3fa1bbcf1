"""Evaluation episodes: one row per (task, mode, seed) episode, small Parquet files in one folder.

Written by :func:`rayrg.evaluation.evaluate.evaluate` (one file per finished chunk, under
``episodes_dir(<eval out>)``); read back by the evaluation to resume and by the report
through the folder the manifest lists.

``VERSION`` is stamped in each file's schema metadata. Files without it (version 0, written
before episodes were versioned) have the same columns and are read; any other version is
refused in one line naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.config import ConfigError
from rayrg.storage import Location, native, resolve

VERSION = 1
VERSION_KEY = b"rayrg.episodes.version"
EPISODES_DIR = "episodes"
# Versions this reader reads: 0 is an unstamped file of the same columns.
READABLE = (0, VERSION)

SCHEMA = pa.schema([
    ("task_id", pa.string()), ("env_name", pa.string()), ("num_subtasks", pa.int32()),
    ("mode", pa.string()), ("seed", pa.int64()), ("return", pa.float64()),
    ("subtasks_completed", pa.int32()), ("success", pa.bool_()), ("steps", pa.int32()),
    ("budget", pa.int32()), ("start_pos", pa.list_(pa.int32())), ("start_dir", pa.int32()),
])
_STAMPED = SCHEMA.with_metadata({VERSION_KEY: str(VERSION).encode()})


def episodes_dir(eval_out: str | Path | Location) -> Path | Location:
    """Where an evaluation writes its episodes (the manifest records this path)."""
    return native(resolve(eval_out) / EPISODES_DIR)


def write_episodes(directory: str | Path | Location, name: str, rows: Sequence[dict[str, Any]]) -> Path | Location:
    """Write ``rows`` (SCHEMA's columns) as ``<directory>/<name>.parquet``, stamped; atomically
    on a local disk, as one upload on an object store (an object appears only when whole)."""
    location = resolve(directory)
    table = pa.Table.from_pylist(list(rows), schema=_STAMPED)
    if location.is_local:
        local = Path(location.path)
        local.mkdir(parents=True, exist_ok=True)
        tmp = local / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(local / f"{name}.parquet")
    else:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        (location / f"{name}.parquet").write_bytes(sink.getvalue().to_pybytes())
    return native(location / f"{name}.parquet")


def _version(path: Location) -> int:
    schema = pq.read_schema(path.path, filesystem=path.fs)
    raw = (schema.metadata or {}).get(VERSION_KEY)
    try:
        version = int(raw) if raw is not None else 0
    except ValueError:
        raise ConfigError(f"{path}: evaluation episodes of unreadable version {raw!r}") from None
    if version not in READABLE:
        raise ConfigError(f"{path}: evaluation episodes version {version}; this rayrg reads versions "
                          f"{', '.join(map(str, READABLE))}: evaluate again into a new folder")
    missing = [n for n in SCHEMA.names if n not in schema.names]
    if missing:
        raise ConfigError(f"{path}: not evaluation episodes (no column {', '.join(missing)})")
    return version


def read_episodes(directory: str | Path) -> list[dict[str, Any]]:
    """Every episode row under ``directory`` (empty when it has none)."""
    location = resolve(directory)
    files = [f for f in location.glob(".parquet") if not f.name.startswith(".")] if location.exists() else []
    for path in files:
        _version(path)
    if not files:
        return []
    return pq.read_table([f.path for f in files], schema=SCHEMA, filesystem=location.fs).to_pylist()
