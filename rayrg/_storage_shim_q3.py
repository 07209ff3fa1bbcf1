"""Temporary: ``prepare_output`` and ``open_input`` until they land in :mod:`rayrg.storage`
(same signatures, built on its existing API). The lead switches the imports at merge and
deletes this file."""

from __future__ import annotations

import os

from rayrg.storage import (
    Location,
    StorageError,
    check_writable,
    refuse_local_on_cluster,
    refuse_relative_in_job,
    resolve,
)


def prepare_output(out: str | os.PathLike[str] | Location, *, root: str | None = None) -> Location:
    """At a stage's start, before any work: where its output goes, checked (relative path in
    ``ray job submit``, local path on a multi-node cluster, unwritable location)."""
    if not isinstance(out, Location):
        refuse_relative_in_job(out, root=root)
    location = resolve(out, root=root)
    refuse_local_on_cluster(location)
    if not location.is_local:
        check_writable(location)
    return location


def open_input(path: str | os.PathLike[str] | Location) -> Location:
    """An input that must exist: ``resolve`` it, then one line naming it if it does not."""
    location = resolve(path)
    if not location.exists():
        raise StorageError(f"{location}: no such input")
    return location
