"""The trajectory / labelled-dataset metadata contract: ``<dataset>/metadata.json``.

Written by every stage that writes a dataset (generate, the importers, labelling) through
:func:`write_metadata` (or :meth:`DatasetMetadata.write`), read through :func:`read_metadata`
(or :meth:`DatasetMetadata.read`, or :func:`read_fingerprint` for the fingerprint alone).

Its version is the dataset format's ``schema_version``:

* 1: the original format; 2: optional symbolic-state columns in the shards;
* 3: ``column_kinds`` — the kind (:mod:`rayrg.contracts.columns`) of every added column.

Versions 1 and 2 read (their added columns get the kind of their family); a newer version is
refused in one line naming it, before its fields are looked at.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rayrg.contracts.columns import column_kind
from rayrg.contracts.versions import DatasetError, read_json_object, refuse_version
from rayrg.storage import Location, native, resolve

PathLike = str | Path | Location  # a local path or a storage URI (rayrg.storage)

VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
METADATA_FILE = "metadata.json"


@dataclass
class DatasetMetadata:
    """The small JSON file beside the shards."""

    generator: str
    env_name: str
    num_episodes: int
    num_transitions: int
    schema_version: int = VERSION
    seeds: list[int] = field(default_factory=list)
    noise: float = 0.0
    created_unix: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)
    # What made it (rayrg.provenance): the stage's fingerprint; downstream stages key on it.
    fingerprint: str | None = None
    # Added column -> its kind ("reward", "progress", "evalset"): how the reward bench and
    # reports treat it. Recorded by the labelling writer; see :meth:`kind_of` for older files.
    column_kinds: dict[str, str] = field(default_factory=dict)

    def kind_of(self, column: str) -> str | None:
        """The recorded kind of an added column, else its family's (datasets before version 3)."""
        return self.column_kinds.get(column) or column_kind(column)

    def write(self, directory: PathLike) -> Path | Location:
        return write_metadata(self, directory)

    @classmethod
    def read(cls, directory: PathLike) -> DatasetMetadata:
        return read_metadata(directory)


_FIELDS = {f.name for f in fields(DatasetMetadata)}


def write_metadata(meta: DatasetMetadata, directory: PathLike) -> Path | Location:
    """Write ``metadata.json`` stamped with the current version (atomically)."""
    meta.schema_version = VERSION
    location = resolve(directory) / METADATA_FILE
    location.write_text(json.dumps(asdict(meta), indent=2, sort_keys=True))  # atomic
    return native(location)


def _read_raw(directory: PathLike) -> tuple[Any, dict[str, Any]]:
    location = resolve(directory) / METADATA_FILE
    path = native(location)
    try:
        raw = read_json_object(location, "metadata", shown=path)
    except FileNotFoundError:
        raise DatasetError(f"{native(directory)}: no {METADATA_FILE} (not a rayrg dataset?)") from None
    version = raw.get("schema_version", 1)
    if not isinstance(version, int):
        raise DatasetError(f"{path}: unreadable metadata: schema_version {version!r} is not an integer")
    # The version first: a newer file's new fields must not read as a corrupt file.
    refuse_version(path, "dataset metadata", version, READABLE_VERSIONS)
    return path, raw


def read_metadata(directory: PathLike) -> DatasetMetadata:
    """The metadata of the dataset at ``directory``; one-line DatasetError if absent, corrupt,
    or of a version this rayrg does not read."""
    path, raw = _read_raw(directory)
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise DatasetError(f"{path}: unreadable metadata: unknown fields {unknown}")
    try:
        return DatasetMetadata(**raw)
    except TypeError as exc:
        raise DatasetError(f"{path}: unreadable metadata: {exc}") from exc


def read_fingerprint(directory: PathLike) -> str | None:
    """The fingerprint ``directory``'s metadata records; None when it has no (readable) metadata
    or none recorded (its caller then hashes the contents)."""
    try:
        _, raw = _read_raw(directory)
    except DatasetError:
        return None
    recorded = raw.get("fingerprint")
    return str(recorded) if recorded else None


def read_unfinished_key(directory: PathLike) -> str | None:
    """The key of an unfinished labelled dataset (``extra.unfinished.key``: its label fingerprint
    and a hash of the windows that failed), which carries no fingerprint; None otherwise."""
    try:
        _, raw = _read_raw(directory)
    except DatasetError:
        return None
    key = ((raw.get("extra") or {}).get("unfinished") or {}).get("key")
    return str(key) if key else None


def set_fingerprint(directory: PathLike, fingerprint: str) -> Path | Location:
    """Record the fingerprint of the stage that made ``directory`` in its metadata."""
    meta = read_metadata(directory)
    meta.fingerprint = fingerprint
    return write_metadata(meta, directory)
