"""How a contract file says which version of its contract it follows, and how readers check it.

* Parquet: the schema metadata key ``rayrg.contract`` = ``"<name>/<version>"`` (e.g.
  ``"labels/1"``), stamped by the writer through the contract's schema; the footer is read
  to check it, never the data.
* JSON: a ``version`` field (dataset metadata keeps its historical ``schema_version``).

A file without a stamp was written before its contract was versioned: version 0, read when
the contract lists it as readable. A version the contract does not read (a newer rayrg
wrote it) is refused in one line naming the file, the version and the versions read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.errors import UserError

CONTRACT_KEY = b"rayrg.contract"
UNSTAMPED = 0  # files written before their contract had a version


class DatasetError(UserError, ValueError):
    """A stage output that does not follow its contract; the message names the file and row.

    (Re-exported as ``rayrg.data.schema.DatasetError``: one class, caught as one line.)
    """


def stamped(schema: pa.Schema, name: str, version: int) -> pa.Schema:
    """``schema`` carrying ``rayrg.contract = "<name>/<version>"`` in its metadata."""
    return schema.with_metadata({**(schema.metadata or {}), CONTRACT_KEY: f"{name}/{version}".encode()})


def schema_version(schema: pa.Schema, name: str, source: str | Path) -> int:
    """The version ``schema`` was stamped with (:data:`UNSTAMPED` when none); another
    contract's stamp is a DatasetError."""
    raw = (schema.metadata or {}).get(CONTRACT_KEY)
    if raw is None:
        return UNSTAMPED
    stamp = raw.decode(errors="replace")
    contract, _, version = stamp.partition("/")
    if contract != name or not version.isdigit():
        raise DatasetError(f"{source}: a '{stamp}' file, expected a '{name}' file")
    return int(version)


def refuse_version(source: str | Path, name: str, version: int, readable: Iterable[int]) -> None:
    """One line when ``version`` is not among ``readable``."""
    readable = tuple(readable)
    if version not in readable:
        what = "unversioned" if version == UNSTAMPED else f"version {version}"
        newer = " (written by a newer rayrg: upgrade rayrg)" if version > max(readable) else ""
        raise DatasetError(f"{source}: {name} {what}, this rayrg reads {name} version "
                           f"{', '.join(str(v) for v in readable if v != UNSTAMPED)}{newer}")


def check_parquet(path: str | Path, name: str, readable: Iterable[int]) -> pa.Schema:
    """The footer schema of ``path``, refused unless it is a readable version of ``name``."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc
    refuse_version(path, name, schema_version(schema, name, path), readable)
    return schema


def parquet_files(directory: str | Path, what: str) -> list[Path]:
    """The ``*.parquet`` files of an output directory (sorted); none is a one-line DatasetError."""
    directory = Path(directory)
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        raise DatasetError(f"{directory}: no {what} (no .parquet files)")
    return files
