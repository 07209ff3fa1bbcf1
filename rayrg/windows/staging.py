"""Writing a stage's Parquet folder on any storage: staged, checked shared, then published.

Used by the windows stage and the labellers (RG-VLM's labels table).

- **Staging.** Ray Data writes into ``<parent>/.<name>.partial``; only a complete write is
  published into ``<name>``, so a bad shard found mid-way leaves the previous output whole.
  Local disks publish by ``os.replace`` of each file (atomic per file, as before). Object
  stores have no rename (a "move" is a copy and a delete), so each staged object is copied
  server-side (``CopyObject``: no bytes through this machine) to its final key and the staging
  prefix deleted. Chosen over writing straight to the final prefix: a crash mid-write there
  would leave a mix of old and new files under the final name; with staging, a crash before
  publishing leaves the old output untouched, and the stage's provenance record
  (:mod:`rayrg.provenance`) is only marked finished after publishing, so a crash mid-publish
  is redone, never read as done.
- **Shared check.** Every Ray task that writes runs :func:`rayrg.storage.assert_shared` first
  (:func:`checked_for_write`): a node that cannot see the driver's marker fails the stage in
  one line naming the node, instead of writing to its own disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rayrg.storage import Location, assert_shared, claim_shared, release_shared

__all__ = ["as_arg", "checked_for_write", "discard", "publish", "staged", "staging_for"]


def as_arg(location: Location) -> Path | Location:
    """What to hand the contract and data modules: the local ``Path`` as given (exactly
    today's behaviour for local outputs), else the Location itself."""
    return location.local_path if location.local_path is not None else location


def staging_for(out: Location) -> Location:
    """The staging folder beside ``out`` (emptied)."""
    staging = out.parent / f".{out.name}.partial"
    discard(staging)
    return staging


def discard(location: Location) -> None:
    """Delete a staging folder (missing is fine; never raises over a cleanup)."""
    try:
        location.delete_tree()
    except Exception:  # cleanup after a failure must not hide the failure
        pass


def _check_batch(batch: Any, out: Location, token: str) -> Any:
    assert_shared(out, token)
    return batch


def checked_for_write(ds: Any, out: Location, token: str) -> Any:
    """``ds`` with :func:`~rayrg.storage.assert_shared` run on every block just before the
    write: a plain task-pool map with no resource change, which Ray Data fuses into the write
    operator, so the check runs in the very task (on the very node) that writes."""
    return ds.map_batches(_check_batch, fn_kwargs={"out": out, "token": token},
                          batch_size=None, batch_format="pyarrow", zero_copy_batch=True)


def publish(staging: Location, out: Location, suffix: str = ".parquet") -> None:
    """Replace the ``*suffix`` files of ``out`` by those of ``staging``; delete ``staging``."""
    new = [loc for loc in staging.ls() if loc.name.endswith(suffix)]
    out.mkdirs()
    for old in out.ls():
        if old.name.endswith(suffix):
            old.delete()
    if out.is_local:
        for loc in new:
            os.replace(loc.path, str(Path(out.path) / loc.name))
    else:
        for loc in new:
            out.fs.copy_file(loc.path, (out / loc.name).path)
    discard(staging)


@contextmanager
def staged(out: Location) -> Iterator[tuple[Location, str]]:
    """Write ``out`` through a staging folder: ``out`` claimed as shared (the token for
    :func:`checked_for_write`), the block writes into the yielded staging folder, which is
    published onto ``out`` when the block ends and discarded if it raises (no half-written
    output left behind); the claim is released either way."""
    token = claim_shared(out)
    try:
        staging = staging_for(out)
        try:
            yield staging, token
            publish(staging, out)
        except BaseException:
            discard(staging)
            raise
    finally:
        release_shared(out, token)
