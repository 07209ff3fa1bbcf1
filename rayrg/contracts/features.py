"""The feature-sidecar contract: ``rayrg encode``'s per-frame features and its encoder record.

``<out>/*.parquet`` (episode_id, step, feature list<float32>, final_feature on episodes' last
rows) and ``<out>/encoder.json`` (the encoder record of :mod:`rayrg.encode.encoders`, plus the
source dataset), written by :mod:`rayrg.encode.stage` through :func:`write_encoder_record`
and read by training (:mod:`rayrg.rl.data`) through :func:`read_encoder_record` and
:func:`read_features`. The record's ``version`` versions the directory; a record without
one (before the contract) reads as version 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from rayrg.contracts.versions import (
    UNSTAMPED,
    DatasetError,
    parquet_files,
    read_output_record,
    read_parquet_files,
    write_stamped_json,
)
from rayrg.storage import resolve

ENCODER_FILE = "encoder.json"

VERSION = 1
READABLE_VERSIONS = (UNSTAMPED, 1)
FEATURE_COLUMNS = ("episode_id", "step", "feature", "final_feature")


def write_encoder_record(directory: str | Path, record: dict[str, Any]) -> Path:
    return write_stamped_json(resolve(directory) / ENCODER_FILE, record, VERSION)


def read_encoder_record(directory: str | Path) -> dict[str, Any]:
    """The encoder record (without the contract's ``version``), one line if absent or unreadable."""
    return read_output_record(directory, ENCODER_FILE, "encode", "encoder record", "features", READABLE_VERSIONS,
                              pop=True)


def read_features(directory: str | Path) -> pa.Table:
    """Every feature row of the sidecar (its record checked first)."""
    read_encoder_record(directory)
    files = parquet_files(directory, "features")
    try:
        table = read_parquet_files(files)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{directory}: unreadable features: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in FEATURE_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{directory}: not a `rayrg encode` output (no column {', '.join(missing)})")
    return table
