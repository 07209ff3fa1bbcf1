"""The one way stages read a trajectory dataset: opened once, columns projected, errors in one line.

::

    ds = Dataset.open(path)          # shard list, each shard's schema checked (Parquet footers
                                     # only), metadata.json
    ds.reward_columns()              # the ``reward_*`` columns, and
    ds.provenance                    #   how each was made (metadata ``extra["labels"]``)
    ds.read(columns)                 # those columns of every shard, structure-checked
    ds.read_shard(path, columns)     # the same for one shard (a Ray task's unit of work)
    ds.ray_read(columns)             # a Ray Dataset of those columns (projection in the reader)
    episode_ends(table["episode_id"])
    require_finished(path, "train", allow=...)   # every consumer of labels: refuse unfinished ones

Reading validates only what it reads: the schema comes from the footers (no data), the
episode structure from ``episode_id``/``step`` (small; added to the read when validating
and dropped again), nulls and PNGs of the requested columns. So validating the scalar
columns never touches the frames, and a corrupt ``frame`` column does not stop a reader
that does not ask for it.

Errors are :class:`~rayrg.data.schema.DatasetError` naming ``file: row ...``, raised by
the same code on the driver and inside Ray tasks; :func:`rayrg.errors.stage_errors`
unwraps the latter, so the user sees the same line either way.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.data.schema import (
    OPTIONAL_SCHEMA,
    TRANSITION_SCHEMA,
    DatasetError,
    DatasetMetadata,
    decode_png,
    read_shard_schema,
    reward_columns,
    shard_files,
    validate_schema,
)
from rayrg.storage import Location, native, parquet_args, resolve

# Where a labelled dataset's metadata keeps how each reward column was made.
PROVENANCE_KEY = "labels"
# Ground truth an imported dataset does not have (``{"subtasks": reason, ...}`` in metadata
# ``extra``): its columns hold placeholders (0, -1), which readers must never score.
MISSING_TRUTH_KEY = "missing_ground_truth"
# A labelled dataset some of whose windows failed (``{"failed", "windows", "method", "missing",
# "retry", "key"}`` in metadata ``extra``): it carries no final fingerprint, and every consumer
# refuses it through :func:`require_finished` unless told to use it anyway.
UNFINISHED_KEY = "unfinished"
FRAME_COLUMNS = ("frame", "final_frame")
_STRUCTURE = ("episode_id", "step")
_FIELDS = {f.name: f for f in [*TRANSITION_SCHEMA, *OPTIONAL_SCHEMA]}


def episode_ends(episode_id: pa.Array | pa.ChunkedArray | Sequence[Any]) -> np.ndarray:
    """True on the last row of each episode (rows grouped by episode, as datasets are written)."""
    values = episode_id.to_pylist() if hasattr(episode_id, "to_pylist") else list(episode_id)
    episodes = np.asarray(values, dtype=object)
    last = np.ones(len(episodes), dtype=bool)
    if len(episodes) > 1:
        last[:-1] = episodes[:-1] != episodes[1:]
    return last


def episode_starts(episode_id: pa.Array | pa.ChunkedArray | Sequence[Any]) -> np.ndarray:
    """True on the first row of each episode: the row after an end, and row 0."""
    ends = episode_ends(episode_id)
    starts = np.ones(len(ends), dtype=bool)
    starts[1:] = ends[:-1]
    return starts


# Set to a file path, every shard read (driver and Ray workers, which inherit the
# environment) appends "<path>\t<columns or *>" there: how many times a run reads what.
READ_LOG_ENV = "RAYRG_READ_LOG"


def _log_read(path: str | Path | Location, columns: list[str] | None) -> None:
    log_path = os.environ.get(READ_LOG_ENV)
    if not log_path:
        return
    location = resolve(path)
    shown = Path(location.path).resolve() if location.is_local else location
    line = f"{shown}\t{','.join(columns) if columns is not None else '*'}\n"
    # One O_APPEND write per line: lines of concurrent workers never interleave.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_parquet_columns(path: str | Path | Location, columns: list[str] | None) -> pa.Table:
    """The only place a trajectory shard's data is read (see :data:`READ_LOG_ENV`); ``path``
    is a local path or a storage URI."""
    _log_read(path, columns)
    try:
        where = parquet_args(path)
        return pq.read_table(where["path"], columns=columns, filesystem=where["filesystem"])
    except (pa.ArrowException, OSError, KeyError) as exc:
        if columns is not None and isinstance(exc, (KeyError, pa.ArrowInvalid)):
            missing = [c for c in columns if c not in read_shard_schema(path).names]
            if missing:
                raise DatasetError(f"{path}: missing columns {missing}") from exc
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc


class UnfinishedLabelsError(DatasetError):
    """A consumer was given a labelled dataset with failed windows (one line: count, retry command)."""


def unfinished_labels(path: str | Path | Location) -> dict[str, Any] | None:
    """The ``unfinished`` record of a labelled dataset's metadata (None: finished, or not labelled)."""
    meta = resolve(path) / "metadata.json"
    try:
        extra = json.loads(meta.read_text()).get("extra") or {}
    except FileNotFoundError:
        return None  # the consumer's own reading names a missing metadata file
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return None
    found = extra.get(UNFINISHED_KEY)
    return dict(found) if found else None


def require_finished(path: str | Path | Location, what: str, allow: bool = False,
                     opt_in: str = "pass --allow-unfinished") -> dict[str, Any] | None:
    """The one check every consumer of labels makes before it uses ``path`` (train, tune,
    encode, a label method on top, export, ``rayrg run``'s later stages).

    Unfinished labels (failed windows, NaN rewards there) are refused in one line giving the
    failed count and the command that retries them; with ``allow`` (the consumer's explicit
    opt-in) they are used and the record is returned. The consumer's fingerprint takes the
    dataset's through :func:`rayrg.provenance.dataset_fingerprint`, which for an unfinished
    dataset names the missing windows, so once the retry fills them the consumer redoes its
    work instead of skipping it as up to date.
    """
    info = unfinished_labels(path)
    if info is None:
        return None
    failed, windows = info.get("failed", "?"), info.get("windows", "?")
    retry = info.get("retry") or "the same label command"
    if not allow:
        raise UnfinishedLabelsError(
            f"{path}: unfinished labels: {failed} of {windows} {info.get('method', '')} windows failed "
            f"(NaN rewards there); retry them with `{retry}`, or {opt_in} to {what} on it anyway")
    print(f"[rayrg] {what}: using unfinished labels of {path} ({failed} of {windows} windows failed); "
          f"after `{retry}` fills them, the same command redoes this", flush=True)
    return info


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def validate_columns(table: pa.Table, source: str, decode_images: bool = True) -> None:
    """Check the columns ``table`` has: nulls, episode structure (if it has ``episode_id`` and
    ``step``) and, with ``decode_images``, that its frame columns decode.

    Types are checked from the footer (:func:`~rayrg.data.schema.validate_schema`) before.
    Episodes must not be split across shards (the generator and writers keep them whole).
    """
    if table.num_rows == 0:
        raise DatasetError(f"{source}: empty shard (no transitions)")
    for name in table.column_names:
        f = _FIELDS.get(name)
        if f is not None and not f.nullable and table.column(name).null_count:
            row = next(i for i, v in enumerate(table.column(name).to_pylist()) if v is None)
            raise DatasetError(f"{source}: row {row}: null in non-nullable column '{name}'")
    has_structure = all(c in table.column_names for c in _STRUCTURE)
    episodes = table.column("episode_id").to_pylist() if has_structure else []
    steps = table.column("step").to_pylist() if has_structure else []
    seen: set[str] = set()
    current, expected = None, 0
    for row, (ep, step) in enumerate(zip(episodes, steps, strict=True)):
        if ep != current:
            if ep in seen:
                raise DatasetError(f"{source}: row {row}: episode '{ep}' is not contiguous")
            seen.add(ep)
            current, expected = ep, 0
        if step != expected:
            raise DatasetError(
                f"{source}: row {row}: episode '{ep}' step {step}, expected {expected} "
                "(steps must be contiguous from 0)"
            )
        expected += 1
    if not decode_images:
        return
    for column in (c for c in FRAME_COLUMNS if c in table.column_names):
        for row, data in enumerate(table.column(column).to_pylist()):
            if data is None:
                continue
            try:
                decode_png(data)
            except Exception as exc:  # PIL raises several types for corrupt data
                where = f"episode '{episodes[row]}', step {steps[row]}" if has_structure else ""
                raise DatasetError(
                    f"{source}: row {row}{f' ({where})' if where else ''}: "
                    f"column '{column}' is not a decodable image: {_first_line(exc)}"
                ) from exc


def read_shard_checked(path: str | Path | Location, columns: Iterable[str] | None = None, validate: bool = True,
                       decode_images: bool = False) -> pa.Table:
    """``columns`` of one shard (all if None), validated as far as they reach.

    Usable in a Ray task: it needs no :class:`Dataset` (so nothing to pickle but a path).
    """
    wanted = list(columns) if columns is not None else None
    read = wanted
    if validate and wanted is not None:
        read = [*wanted, *(c for c in _STRUCTURE if c not in wanted)]
    table = read_parquet_columns(path, read)
    if validate:
        validate_columns(table, str(path), decode_images=decode_images)
    return table.select(wanted) if wanted is not None and read != wanted else table


class Dataset:
    """A trajectory (or labelled) dataset directory, opened once per stage.

    Opening lists the shards and checks every shard's schema from its footer; data is
    read only by :meth:`read`, :meth:`read_shard` and :meth:`ray_read`, each shard once
    per call. ``reads`` counts the shard reads this object made (``path -> count``).

    ``path`` and ``shards`` are ``Path`` objects for a local dataset (as before) and
    :class:`rayrg.storage.Location` objects for a storage URI; ``str()`` of either reads back.
    """

    def __init__(self, path: str | Path | Location, shards: list[Any], schemas: dict[Any, pa.Schema]) -> None:
        self.path = native(path)
        self.shards = shards
        self.schemas = schemas
        self.reads: Counter[str] = Counter()

    @classmethod
    def open(cls, path: str | Path | Location, check_schema: bool = True) -> Dataset:
        shards = shard_files(path)
        schemas = {}
        for shard in shards:
            schemas[shard] = read_shard_schema(shard)
            if check_schema:
                validate_schema(schemas[shard], str(shard))
        return cls(path, shards, schemas)

    @property
    def names(self) -> list[str]:
        """Column names (of the first shard; shards of one dataset share them)."""
        return list(self.schemas[self.shards[0]].names)

    @cached_property
    def metadata(self) -> DatasetMetadata:
        return DatasetMetadata.read(self.path)

    def reward_columns(self, wanted: Sequence[str] | None = None) -> list[str]:
        """The ``reward_*`` columns, in file order; only those in ``wanted`` if given."""
        names = reward_columns(self.names)
        return [c for c in names if c in wanted] if wanted else names

    @property
    def provenance(self) -> dict[str, dict[str, Any]]:
        """How each reward column was made: ``{column: {method, model, ...}}``."""
        return dict(self.metadata.extra.get(PROVENANCE_KEY, {}))

    @property
    def missing_ground_truth(self) -> dict[str, str]:
        """Ground truth the dataset lacks (``subtasks``, ``expert_action``, ``success``,
        ``is_random_action``, ``seed``) and why."""
        return dict(self.metadata.extra.get(MISSING_TRUTH_KEY, {}))

    def require_ground_truth(self, needs: Iterable[str], what: str) -> None:
        """A one-line DatasetError when ``what`` needs ground truth this dataset lacks."""
        lacking = {k: v for k, v in self.missing_ground_truth.items() if k in set(needs)}
        if lacking:
            raise DatasetError(f"{self.path}: {what} needs ground truth the dataset lacks: "
                               + "; ".join(f"{k}: {v}" for k, v in lacking.items()))

    def read_shard(self, shard: str | Path | Location, columns: Iterable[str] | None = None, validate: bool = True,
                   decode_images: bool = False) -> pa.Table:
        self.reads[str(shard)] += 1
        return read_shard_checked(shard, columns, validate=validate, decode_images=decode_images)

    def read(self, columns: Iterable[str] | None = None, validate: bool = True,
             decode_images: bool = False) -> pa.Table:
        """``columns`` of every shard in one table (rows in dataset order)."""
        wanted = list(columns) if columns is not None else None
        tables = [self.read_shard(s, wanted, validate, decode_images) for s in self.shards]
        return pa.concat_tables(tables, promote_options="default")

    def ray_read(self, columns: Sequence[str], include_paths: bool = False) -> Any:
        """A Ray Dataset of ``columns`` (projected in the Parquet reader); schemas checked at open."""
        import ray

        locations = [resolve(s) for s in self.shards]
        filesystem = None if locations[0].is_local else locations[0].fs
        paths = [loc.path if filesystem is not None else str(s) for loc, s in zip(locations, self.shards, strict=True)]
        # select_columns is pushed down into the Parquet reader (Ray 2.60 deprecates columns=).
        selected = [*columns, *(["path"] if include_paths and "path" not in columns else [])]
        return ray.data.read_parquet(paths, include_paths=include_paths, filesystem=filesystem).select_columns(selected)


def read_trajectories(
    directory: str | Path | Location,
    columns: Iterable[str] | None = None,
    validate: bool = True,
    decode_images: bool = True,
) -> pa.Table:
    """Read (and by default validate) ``columns`` of a trajectory dataset into one Arrow table.

    Validation reaches only the columns read (see :mod:`rayrg.data.access`).
    """
    return Dataset.open(directory).read(columns, validate=validate, decode_images=decode_images)


def iter_episodes(table: pa.Table) -> Iterator[pa.Table]:
    """Slices of ``table`` per episode (rows must be grouped by episode, as written)."""
    start = 0
    for end in (int(i) + 1 for i in episode_ends(table.column("episode_id")).nonzero()[0]):
        yield table.slice(start, end - start)
        start = end


def episode_frames(episode: pa.Table) -> list[bytes]:
    """One episode's PNG frames in order, its ``final_frame`` (the observation after the last
    action, where the table has that column and it is set) appended."""
    frames = episode.column("frame").to_pylist()
    final = episode.column("final_frame")[-1].as_py() if "final_frame" in episode.column_names else None
    if final:
        frames.append(final)
    return frames
