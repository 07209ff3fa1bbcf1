"""Temporary: ``prepare_output`` / ``open_input`` until they land in :mod:`rayrg.storage`.

The stage modules (windows, rewards, encode) import these two from here; at merge the
imports switch to ``rayrg.storage`` and this file goes. Built only on the existing
storage API (resolve, check_writable, refuse_local_on_cluster, refuse_relative_in_job).
"""

from __future__ import annotations

import json
import os

from rayrg import storage
from rayrg.storage import (
    Location,
    StorageError,
    check_writable,
    refuse_relative_in_job,
    resolve,
)

__all__ = ["open_input", "prepare_output", "refuse_local_on_cluster"]


def _cluster_shape() -> tuple[int, bool]:
    """``storage.cluster_shape`` with one fix (to move into storage.py): every Ray head runs
    the v1 monitor, which publishes ``__autoscaling_status`` even with no autoscaler (a plain
    ``ray.init``/``ray start --head``), so its mere presence said "autoscaling" on every
    local cluster, and every stage refused its local ``--out``."""
    import ray

    if not ray.is_initialized():
        return 1, False
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    autoscaling = False
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        if config is not None:
            autoscaling = any(group.max_count == -1 or group.max_count > group.min_count
                              for group in config.node_group_configs)
    except Exception:  # private API: absent in another Ray version
        pass
    if not autoscaling:
        try:
            from ray._private import ray_constants
            from ray.experimental.internal_kv import _internal_kv_get

            raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
            report = (json.loads(raw) if raw else {}).get("autoscaler_report") or {}
            # Without a cluster config the monitor runs a read-only provider that names each
            # node's type after the node (``node_<id>``); a launched cluster's types are its
            # config's worker groups (``ray.worker.default`` ...), which can add nodes.
            autoscaling = any(kind != f"node_{node}"
                              for node, kind in (report.get("node_type_mapping") or {}).items())
        except Exception:
            pass
    return alive, autoscaling


def refuse_local_on_cluster(location: Location | str | os.PathLike[str]) -> None:
    """:func:`rayrg.storage.refuse_local_on_cluster` with :func:`_cluster_shape`."""
    location = resolve(location)
    if storage.is_declared_shared(location):
        return
    alive, autoscaling = _cluster_shape()
    if alive <= 1 and not autoscaling:
        return
    shape = f"{alive} nodes" + (", autoscaling" if autoscaling else "")
    raise storage.NotSharedError(
        f"{location} is a local path, but the Ray cluster has {shape}: each node would write to "
        f"its own disk; use a URI (s3://…), a storage root ({storage.STORAGE_ENV}), or declare "
        f"a shared mount in {storage.SHARED_MOUNTS_ENV}")


def prepare_output(out: str | os.PathLike[str] | Location, *, root: str | None = None) -> Location:
    """An output location, checked before any work: inside ``ray job submit`` a relative
    path with no storage root is refused, then resolved, probed writable, and (a plain
    local path on a multi-node or autoscaling cluster) refused. One line on failure."""
    if not isinstance(out, Location):
        refuse_relative_in_job(out, root=root)
    location = resolve(out, root=root)
    check_writable(location)
    refuse_local_on_cluster(location)
    return location


def open_input(path: str | os.PathLike[str] | Location) -> Location:
    """An input location that exists; one line naming it otherwise."""
    location = resolve(path)
    if not location.exists():
        raise StorageError(f"{location}: does not exist")
    return location
