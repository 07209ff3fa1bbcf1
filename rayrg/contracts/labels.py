"""The RG-VLM labels contract: one Parquet row per labelled window, and the run's summary.

``<labels_dir>/*.parquet`` (default ``<labelled>/_labels``) is written by the labelling stage
(:mod:`rayrg.rewards.rgvlm.pipeline`) through :func:`labels_table` + :func:`write_labels`, and
read by the labelled-dataset join, ``rayrg estimate --measure``, ``rayrg browse`` and the
report through :func:`read_labels`. ``<labelled>/_rgvlm_summary.json`` (counts, failures,
tokens, cost, where the labels are) goes through :func:`write_summary` / :func:`read_summary`.

Versions: Parquet files carry ``rayrg.contract = "labels/1"``; files from before the contract
(unstamped, version 0) have the same columns and read. The summary carries ``version``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from rayrg.contracts.versions import (
    UNSTAMPED,
    DatasetError,
    check_parquet,
    check_parquet_columns,
    list_parquet,
    read_parquet_files,
    read_stamped_json,
    stamped,
    write_dataset_parquet,
    write_stamped_json,
)
from rayrg.storage import resolve

NAME = "labels"

VERSION = 1
READABLE_VERSIONS = (UNSTAMPED, 1)
SUMMARY_FILE = "_rgvlm_summary.json"  # "_" prefix: Parquet readers of the labelled dataset skip it
SUMMARY_VERSION = 1
READABLE_SUMMARY_VERSIONS = (UNSTAMPED, 1)
DEFAULT_DIR = "_labels"

LABELS_SCHEMA = stamped(pa.schema([
    pa.field("window_id", pa.string()),
    pa.field("episode_id", pa.string()),
    pa.field("start_step", pa.int32()),
    pa.field("num_steps", pa.int32()),
    pa.field("is_partial", pa.bool_()),
    pa.field("task_id", pa.string()),
    pa.field("instruction", pa.string()),
    pa.field("status", pa.string()),  # "ok" | "failed"
    pa.field("scores", pa.list_(pa.int32())),  # null when failed
    pa.field("rewards", pa.list_(pa.float32())),  # scores / 10
    pa.field("error", pa.string()),  # why it failed (last reason), null when ok
    pa.field("turn1_text", pa.string()),
    pa.field("turn2_text", pa.string()),  # the last turn-2 answer
    pa.field("model", pa.string()),
    pa.field("backend", pa.string()),
    pa.field("prompt_version", pa.string()),
    pa.field("decoding", pa.string()),  # JSON of the decoding parameters
    pa.field("latency_s", pa.float64()),  # of the original query (also for cache hits)
    pa.field("input_tokens", pa.int64()),
    pa.field("output_tokens", pa.int64()),
    pa.field("cached_input_tokens", pa.int64()),  # prefix-cache hits (engines that report them)
    pa.field("cost_usd", pa.float64()),  # estimate from the configured prices
    pa.field("attempts", pa.int32()),  # turn-2 answers requested
    pa.field("invalid_answers", pa.int32()),
    pa.field("transport_retries", pa.int32()),
    pa.field("backend_calls", pa.int32()),  # requests sent by THIS run (0 for cache hits)
    pa.field("cached", pa.bool_()),
    pa.field("cache_key", pa.string()),
    # ground truth carried from the windows (never shown to the model)
    pa.field("actions", pa.list_(pa.int32())),
    pa.field("expert_actions", pa.list_(pa.int32())),
    pa.field("subtasks_before", pa.int32()),
    pa.field("subtasks_completed", pa.list_(pa.int32())),
    pa.field("episode_success", pa.bool_()),
    pa.field("episode_last_step", pa.int32()),
]), NAME, VERSION)
LABEL_COLUMNS: tuple[str, ...] = tuple(LABELS_SCHEMA.names)
# Column groups readers ask for (the rest is cost and cache bookkeeping).
WINDOW_KEY_COLUMNS = ("window_id", "episode_id", "start_step", "num_steps", "instruction")
ANSWER_COLUMNS = ("status", "scores", "error", "turn1_text", "turn2_text", "model", "backend", "prompt_version")
TRUTH_COLUMNS = ("actions", "expert_actions", "subtasks_before", "subtasks_completed")


def labels_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Label rows as a stamped labels table (what the labeller's Ray Data blocks are)."""
    return pa.Table.from_pylist(rows, schema=LABELS_SCHEMA)


def empty_labels() -> pa.Table:
    return LABELS_SCHEMA.empty_table()


def label_files(directory: str | Path) -> list[Path]:
    """The labels files of ``directory`` (sorted; empty when it has none)."""
    return list_parquet(directory)


def write_labels(ds: Any, directory: str | Path) -> list[Path]:
    """Write a Ray Dataset of :func:`labels_table` blocks to ``directory``; returns the files.

    Every written file is checked to carry this version's stamp (a block built without
    :data:`LABELS_SCHEMA` would otherwise write an unversioned file)."""
    write_dataset_parquet(ds, directory)
    files = label_files(directory)
    for path in files:
        check_parquet(path, NAME, (VERSION,))
    return files


def _checked(files: Sequence[Path], columns: Iterable[str] | None) -> None:
    check_parquet_columns(files, NAME, READABLE_VERSIONS, LABEL_COLUMNS if columns is None else columns,
                          "an RG-VLM labels table")


def read_labels(directory: str | Path, columns: Iterable[str] | None = None, *,
                missing_ok: bool = False) -> pa.Table:
    """``columns`` (all if None) of every labels file of ``directory``, with the contract's types.

    No files: an empty table with ``missing_ok``, else a one-line DatasetError."""
    files = label_files(directory)
    wanted = list(columns) if columns is not None else None
    schema = LABELS_SCHEMA if wanted is None else pa.schema([LABELS_SCHEMA.field(c) for c in wanted
                                                             if c in LABEL_COLUMNS],
                                                            metadata=LABELS_SCHEMA.metadata)
    if not files:
        if missing_ok:
            return schema.empty_table()
        raise DatasetError(f"{directory}: no RG-VLM labels (no .parquet files)")
    _checked(files, wanted)
    try:
        return read_parquet_files(files, columns=wanted, schema=LABELS_SCHEMA)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{directory}: unreadable labels: {str(exc).splitlines()[0]}") from exc


def write_summary(directory: str | Path, summary: dict[str, Any], name: str = SUMMARY_FILE) -> Path:
    """``<directory>/_rgvlm_summary.json`` stamped with ``version``; ``name``: another method's
    summary file (``_<method>_summary.json``: the progress labellers)."""
    return write_stamped_json(resolve(directory) / name, summary, SUMMARY_VERSION)


def read_summary(directory: str | Path, name: str = SUMMARY_FILE) -> dict[str, Any] | None:
    """The labelling run's summary in ``directory`` (None when it has none); one line when it
    is corrupt or of a version this rayrg does not read. ``name``: another method's summary
    file (``_<method>_summary.json``), which follows the same contract."""
    path = resolve(directory) / name
    if not path.exists() or path.is_dir():
        return None
    return read_stamped_json(path, "labelling summary", "labelling summary", READABLE_SUMMARY_VERSIONS)
