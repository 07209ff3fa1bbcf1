"""The per-query answer records of a progress label run (GVL, TOPReward): written by the
labeller (:mod:`rayrg.rewards.progress.pipeline`), read by their browser section.

``<labelled>/_<method>_answers/answers.parquet`` (in a ``_`` folder: Parquet files at a
dataset's top are its shards), one row per query: ``query_id``, ``episode_id``,
``chunk_start``/``chunk_stop``, ``steps`` (the sampled frames), ``order`` (the shown order:
position -> index into ``steps``), ``values`` (per step, in ``steps`` order; null when the query
failed), ``status``, ``error``, ``bounded`` (TOPReward: the bound was used), ``text``, ``cached``.
No images: the frames are the dataset's. Rewritten by every run (cached answers included).

The run's summary, kept in each output column's provenance (``metadata.json``
``extra["labels"][<column>]["summary"]``), records how much stitched chunks disagreed where
they overlap: ``summary["chunk_disagreement"] = {"mean", "max", "episodes"}`` (the mean
absolute difference of two overlapping chunks' progress over their shared steps, per episode,
then averaged over the ``episodes`` that had an overlap answered by both; ``mean`` None when
none had). :func:`chunk_disagreement` reads it for the reward bench, as the labeller's noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.contracts.versions import DatasetError, check_parquet, stamped

NAME = "progress-answers"
VERSION = 1
READABLE_VERSIONS = (1,)
COLUMNS = ("query_id", "episode_id", "chunk_start", "chunk_stop", "steps", "order", "values", "status",
           "error", "bounded", "text", "cached")


CHUNK_DISAGREEMENT = "chunk_disagreement"


def chunk_disagreement(column_provenance: dict[str, Any]) -> dict[str, Any] | None:
    """``{"mean", "max", "n"}`` (n: episodes with an answered overlap) of the labeller's chunk
    disagreement recorded in a column's provenance; None when the column records none (not a
    chunked progress labeller, or no episode long enough to be split)."""
    found = ((column_provenance or {}).get("summary") or {}).get(CHUNK_DISAGREEMENT) or {}
    if found.get("mean") is None or not found.get("episodes"):
        return None
    return {"mean": float(found["mean"]), "max": None if found.get("max") is None else float(found["max"]),
            "n": int(found["episodes"])}


def answers_path(labelled: str | Path, method: str) -> Path:
    return Path(labelled) / f"_{method}_answers" / "answers.parquet"


def write_answers(labelled: str | Path, method: str, records: list[dict[str, Any]]) -> Path:
    path = answers_path(labelled, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in records]) if records else \
        pa.table({k: pa.array([], pa.string()) for k in COLUMNS})
    table = table.replace_schema_metadata(stamped(table.schema, NAME, VERSION).metadata)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_answers(labelled: str | Path, method: str) -> list[dict[str, Any]]:
    """The records; a one-line DatasetError when the run wrote none (not a ``method`` run)."""
    path = answers_path(labelled, method)
    if not path.is_file():
        raise DatasetError(f"{labelled}: no {method} answers ({path.parent.name}/{path.name}); `rayrg browse` "
                           f"shows the episodes of a {method} label run")
    check_parquet(path, NAME, READABLE_VERSIONS)
    return pq.read_table(path).to_pylist()
