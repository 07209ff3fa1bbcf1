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

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.errors import UserError
from rayrg.storage import native, resolve

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


def read_json(path: Any, what: str, error: type[Exception] = DatasetError, *, shown: Any = None) -> Any:
    """The JSON document at ``path`` (a local path or a Location); one line (``error``, naming
    ``shown``, by default ``path``) when it is not valid JSON. A missing file raises
    FileNotFoundError, for the caller to say what its absence means."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path if shown is None else shown}: unreadable {what}: {exc}") from None


def read_json_object(path: Any, what: str, error: type[Exception] = DatasetError, *,
                     shown: Any = None) -> dict[str, Any]:
    """:func:`read_json`, which must be an object. Every contract's JSON file is read through this."""
    raw = read_json(path, what, error, shown=shown)
    if not isinstance(raw, dict):
        raise error(f"{path if shown is None else shown}: unreadable {what}: not a JSON object")
    return raw


def read_stamped_json(path: Any, what: str, name: str, readable: Iterable[int], *,
                      pop: bool = False) -> dict[str, Any]:
    """:func:`read_json_object`, refused unless its ``version`` is among ``readable`` (none:
    :data:`UNSTAMPED`); ``pop`` drops the stamp from what is returned."""
    raw = read_json_object(path, what)
    version = raw.pop("version", UNSTAMPED) if pop else raw.get("version", UNSTAMPED)
    refuse_version(path, name, version if isinstance(version, int) else -1, readable)
    return raw


def read_output_record(directory: Any, file: str, command: str, what: str, name: str,
                       readable: Iterable[int], *, pop: bool = False) -> dict[str, Any]:
    """:func:`read_stamped_json` of ``<directory>/<file>``, the record ``rayrg <command>``
    writes; one line when it is absent (``directory`` is not that command's output)."""
    path = resolve(directory) / file
    if not path.exists():
        raise DatasetError(f"{directory}: no {file} (not a `rayrg {command}` output)")
    return read_stamped_json(path, what, name, readable, pop=pop)


def write_stamped_json(path: Any, record: dict[str, Any], version: int) -> Any:
    """``record`` with ``version`` as JSON at ``path`` (atomic locally; one upload on object stores)."""
    path.write_text(json.dumps({**record, "version": version}, indent=2))
    return native(path)


def check_parquet(path: Any, name: str, readable: Iterable[int]) -> pa.Schema:
    """The footer schema of ``path`` (a local path or a storage Location), refused unless it is
    a readable version of ``name``."""
    location = resolve(path)
    path = native(location)
    try:
        schema = pq.read_schema(location.path, filesystem=location.fs)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc
    refuse_version(path, name, schema_version(schema, name, path), readable)
    return schema


def check_parquet_columns(files: Iterable[Any], name: str, readable: Iterable[int],
                          columns: Iterable[str], what: str) -> None:
    """:func:`check_parquet` of each of ``files``, then one line (``<file>: not <what> (no
    column ...)``) for the first that lacks one of ``columns``."""
    readable, wanted = tuple(readable), list(columns)
    for path in files:
        schema = check_parquet(path, name, readable)
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise DatasetError(f"{path}: not {what} (no column {', '.join(missing)})")


def list_parquet(directory: Any) -> list[Any]:
    """The ``*.parquet`` files directly in ``directory`` (sorted; hidden ones left out): local
    ``Path``s for a local folder, ``Location``s on a storage URI; empty when there is none."""
    location = resolve(directory)
    if not location.is_dir():
        return []
    return [native(f) for f in location.ls() if f.name.endswith(".parquet") and not f.name.startswith(".")]


def parquet_files(directory: Any, what: str) -> list[Any]:
    """The ``*.parquet`` files of an output directory (sorted); none is a one-line DatasetError."""
    files = list_parquet(directory)
    if not files:
        raise DatasetError(f"{native(resolve(directory))}: no {what} (no .parquet files)")
    return files


def arrow_dataset(files: Sequence[Any]) -> Any:
    """A ``pyarrow.dataset`` over ``files`` (local paths or Locations of one filesystem)."""
    import pyarrow.dataset as pads

    locations = [resolve(f) for f in files]
    return pads.dataset([loc.path for loc in locations], format="parquet",
                        filesystem=locations[0].fs if locations else None)


def read_parquet_files(files: Sequence[Any], **kwargs: Any) -> pa.Table:
    """``pq.read_table`` of ``files`` (local paths or Locations of one filesystem)."""
    locations = [resolve(f) for f in files]
    return pq.read_table([loc.path for loc in locations], filesystem=locations[0].fs, **kwargs)


def write_dataset_parquet(ds: Any, directory: Any, **kwargs: Any) -> None:
    """Ray Data's ``write_parquet`` into ``directory`` (a local path or a storage URI)."""
    location = resolve(directory)
    ds.write_parquet(location.path, filesystem=location.fs, **kwargs)


def open_ray_parquet(files: Sequence[Any], **kwargs: Any) -> Any:
    """Ray Data's ``read_parquet`` of ``files`` (local paths or Locations of one filesystem)."""
    import ray

    locations = [resolve(f) for f in files]
    return ray.data.read_parquet([loc.path for loc in locations], filesystem=locations[0].fs, **kwargs)
