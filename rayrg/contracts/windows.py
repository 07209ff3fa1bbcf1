"""The windows contract: one Parquet row per window of W consecutive transitions, and its summary.

Written by ``rayrg windows`` (:mod:`rayrg.windows.build`, blocks of :data:`WINDOW_SCHEMA`,
stamped ``rayrg.contract = "windows/1"``) and its ``_windows.json`` summary
(:func:`write_summary`); read by the RG-VLM labeller (:func:`open_windows`, a Ray Dataset),
``rayrg estimate`` (:func:`read_windows`, :func:`head_windows`), the window preview and
``rayrg browse`` (:func:`read_windows` with a filter). Files from before the contract
(unstamped, version 0) have the same columns and read.

A window's frames are composed into ONE grid image (tiles labelled with their step index,
see :mod:`rayrg.windows.grid`); its actions are rendered as text. The ground-truth lists
let reward reports score labels without re-reading the trajectories. The last window of an
episode may be shorter than W (``is_partial``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from rayrg.contracts.versions import (
    UNSTAMPED,
    DatasetError,
    arrow_dataset,
    check_parquet,
    check_parquet_columns,
    list_parquet,
    open_ray_parquet,
    parquet_files,
    read_output_record,
    stamped,
    write_dataset_parquet,
    write_stamped_json,
)
from rayrg.storage import resolve

NAME = "windows"

VERSION = 1
READABLE_VERSIONS = (UNSTAMPED, 1)
SUMMARY_FILE = "_windows.json"  # "_" prefix: pyarrow dataset reads skip it
SUMMARY_VERSION = 1
READABLE_SUMMARY_VERSIONS = (UNSTAMPED, 1)

WINDOW_SCHEMA = stamped(pa.schema(
    [
        pa.field("window_id", pa.string(), nullable=False),  # f"{episode_id}:{start_step}"
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("start_step", pa.int32(), nullable=False),
        pa.field("num_steps", pa.int32(), nullable=False),  # W, or fewer when is_partial
        pa.field("is_partial", pa.bool_(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("num_subtasks", pa.int32(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),  # PNG of the frame grid
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("actions", pa.list_(pa.int32()), nullable=False),
        pa.field("action_names", pa.list_(pa.string()), nullable=False),
        pa.field("actions_text", pa.string(), nullable=False),  # "step 3: move forward\n..."
        # Ground truth (never shown to a labeller):
        pa.field("expert_actions", pa.list_(pa.int32()), nullable=False),
        pa.field("subtasks_before", pa.int32(), nullable=False),  # completed before the window
        pa.field("subtasks_completed", pa.list_(pa.int32()), nullable=False),  # after each step
        pa.field("episode_success", pa.bool_(), nullable=False),
        pa.field("episode_last_step", pa.int32(), nullable=False),
    ]
), NAME, VERSION)
WINDOW_COLUMNS: tuple[str, ...] = tuple(WINDOW_SCHEMA.names)


def windows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Window rows as a stamped windows table (what the windows stage's blocks are)."""
    return pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA)


def write_windows(ds: Any, directory: str | Path) -> list[Path]:
    """Write a Ray Dataset of :func:`windows_table` blocks to ``directory`` (zstd); returns the
    files, each checked to carry this version's stamp."""
    write_dataset_parquet(ds, directory, compression="zstd")
    files = list_parquet(directory)
    for path in files:
        check_parquet(path, NAME, (VERSION,))
    return files


def window_files(directory: str | Path, columns: Iterable[str] | None = None) -> list[Path]:
    """The windows files of ``directory``, each footer checked: readable version, has ``columns``."""
    files = parquet_files(directory, "windows")
    check_parquet_columns(files, NAME, READABLE_VERSIONS, WINDOW_COLUMNS if columns is None else columns,
                          "a windows dataset")
    return files


def read_windows(directory: str | Path, columns: Iterable[str] | None = None,
                 filter: Any = None) -> pa.Table:
    """``columns`` of the windows of ``directory`` (rows matching ``filter``, a pyarrow
    expression, if given: only the matching row groups' images are decoded)."""
    wanted = list(columns) if columns is not None else None
    files = window_files(directory, wanted)
    return arrow_dataset(files).to_table(columns=wanted, filter=filter)


def read_window(directory: str | Path, window_id: str | None = None, index: int = 0) -> dict[str, Any]:
    """One window (every column): by id, else the ``index``-th in file order."""
    import pyarrow.compute as pc

    dataset = arrow_dataset(window_files(directory))
    if window_id is not None:
        table = dataset.to_table(filter=pc.field("window_id") == window_id)
        if table.num_rows == 0:
            raise DatasetError(f"{directory}: no window with id {window_id!r}")
        return table.slice(0, 1).to_pylist()[0]
    total = dataset.count_rows()
    if not 0 <= index < total:
        raise DatasetError(f"{directory}: window index {index} out of range (0..{total - 1})")
    return dataset.take([index]).to_pylist()[0]


def head_windows(directory: str | Path, n: int, columns: Iterable[str] | None = None) -> pa.Table:
    """The first ``n`` windows (file order), reading only the leading record batches."""
    import pyarrow.parquet as pq

    wanted = list(columns) if columns is not None else None
    batches: list[pa.RecordBatch] = []
    for path in window_files(directory, wanted):
        location = resolve(path)
        with location.fs.open_input_file(location.path) as stream:  # seekable: Parquet reads its footer
            for batch in pq.ParquetFile(stream).iter_batches(batch_size=n, columns=wanted):
                batches.append(batch)
                if sum(b.num_rows for b in batches) >= n:
                    return pa.Table.from_batches(batches).slice(0, n)
    if batches:
        return pa.Table.from_batches(batches)
    schema = WINDOW_SCHEMA if wanted is None else pa.schema([WINDOW_SCHEMA.field(c) for c in wanted])
    return schema.empty_table()


def open_windows(directory: str | Path, columns: Iterable[str]) -> Any:
    """A Ray Dataset of ``columns`` of the windows (footers checked first, on the driver)."""

    wanted = list(columns)
    return open_ray_parquet(window_files(directory, wanted), columns=wanted)


def write_summary(directory: str | Path, summary: dict[str, Any]) -> Path:
    return write_stamped_json(resolve(directory) / SUMMARY_FILE, summary, SUMMARY_VERSION)


def read_summary(directory: str | Path) -> dict[str, Any]:
    return read_output_record(directory, SUMMARY_FILE, "windows", "windows summary", "windows summary",
                              READABLE_SUMMARY_VERSIONS)
