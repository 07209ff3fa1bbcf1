"""Content-addressed answer cache: immutable Parquet segments of many entries each.

Key = sha256 over the image bytes sent, the rendered prompt texts (prompt version,
instruction, actions, number of steps) and the *answer settings*: every config field that
can change an answer (backend type, model, decoding, image cap, structured-output mode,
``extra_body``, headers, ``max_pixels``, answer-changing engine kwargs ...), as declared
field by field in :mod:`rayrg.rewards.rgvlm.config` (``RGVLMConfig.answer_settings``).
Concurrency, retries, rate limits, timeouts and the API key's variable are not in it; the
key itself is never read into a config, and credentials inside ``extra_body`` or headers
are redacted by name before hashing, so a rotated key still hits. Nothing else (not the
window id, not the run) enters it, so the same query in another dataset or run is answered
from the cache too.

Layout (format 3): ``<cache>/segments-v3/<time>-<pid>-<uuid>.parquet``, columns ``key`` and
``value`` (the entry as JSON). Why segments and not one file per entry (format 2): at
ALFRED size (50k windows) one fsynced file per answer was the labeller's hot spot
(``benchmarks/bench_label_scale.py`` profiled half the actor's busy samples in ``fsync``),
and a re-run would open 50k small files — 50k requests on object storage. A writer buffers
answers and writes a segment when it holds ``flush_entries`` answers, when its oldest is
``flush_interval_s`` old (a background thread checks, so a killed run loses at most about
that much paid work), and on :meth:`flush` (the labeller flushes at the end of every batch,
before its rows leave the actor).

Concurrency: segments are never modified. Each is written under a dot-name and moved to
its final, unique name (atomic rename locally; on object storage a finished object appears
whole and readers skip dot-names), so any number of Ray workers write at once without
locks and readers never see a partial segment. Two workers that answer the same key both
store a complete, equivalent entry; a reader takes either. An unreadable segment (disk
trouble) is skipped: its keys miss and are asked again. Only successful labels are stored.

Paths go through ``pyarrow.fs``: a local directory or a URI (``s3://``, ``gs://``, ...),
so the cache can live on shared object storage for a multi-node cluster.

Readers index keys lazily: :meth:`get_many` lists segments it has not seen yet, reads
only their ``key`` column, and reads a segment's values only for hits (the last few
segments read stay in memory; a re-run's batch finds its answers in a few segments).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

# Bump when what a backend sends for the same settings changes (request layout, engine
# defaults in code), or the storage layout changes: every older answer then misses instead
# of being served as current. 3: Parquet segments instead of one JSON file per entry.
CACHE_FORMAT = 3
SEGMENTS = f"segments-v{CACHE_FORMAT}"
_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("value", pa.string())])


def cache_key(image: bytes, texts: tuple[str, ...], settings: dict[str, Any]) -> str:
    """``settings``: ``RGVLMConfig.answer_settings()`` (JSON-able)."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(image).digest())
    h.update(json.dumps({"format": CACHE_FORMAT, "texts": list(texts), "settings": settings},
                        sort_keys=True).encode())
    return h.hexdigest()


def _filesystem(directory: Any):
    """(pyarrow filesystem, path inside it) for a local directory, a URI or a
    :class:`rayrg.storage.Location` (S3 endpoint and credentials as everywhere in rayrg)."""
    from rayrg.storage import resolve

    location = resolve(directory)
    return location.fs, location.path


class AnswerCache:
    """``get``/``get_many`` read, ``put`` buffers, ``flush`` writes a segment (thread-safe)."""

    def __init__(self, directory: Any, flush_entries: int = 256, flush_interval_s: float = 2.0,
                 keep_segments: int = 8) -> None:
        self.directory = directory
        self.fs, root = _filesystem(directory)
        self.root = f"{root.rstrip('/')}/{SEGMENTS}"
        # Local: write under a dot-name and rename (atomic). Object stores have no rename (a
        # move is copy + delete) but a PUT appears whole, so a segment is written to its name.
        self._rename = isinstance(self.fs, pafs.LocalFileSystem)
        self.fs.create_dir(self.root, recursive=True)
        self.flush_entries, self.flush_interval_s = flush_entries, flush_interval_s
        self._lock = threading.RLock()
        self._index: dict[str, str] = {}  # key -> segment path
        self._seen: set[str] = set()  # segments whose keys are in the index (or unreadable)
        self._values: collections.OrderedDict[str, dict[str, str]] = collections.OrderedDict()
        self._keep = keep_segments
        self._buffer: dict[str, str] = {}
        self._oldest: float | None = None
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()

    # -- reading ----------------------------------------------------------------------
    def _segments(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File
                      and i.base_name.endswith(".parquet") and not i.base_name.startswith("."))

    def refresh(self) -> None:
        """Index the keys of segments written since the last refresh (by any writer)."""
        new = [p for p in self._segments() if p not in self._seen]
        for path in new:
            try:
                keys = pq.read_table(path, columns=["key"], filesystem=self.fs).column("key").to_pylist()
            except (OSError, pa.ArrowInvalid) as exc:
                log.warning("answer cache: skipping unreadable segment %s (%s)", path, exc)
                keys = []
            with self._lock:
                self._seen.add(path)
                for k in keys:
                    self._index.setdefault(k, path)

    def _segment_values(self, path: str) -> dict[str, str] | None:
        with self._lock:
            values = self._values.get(path)
            if values is not None:
                self._values.move_to_end(path)
                return values
        try:
            table = pq.read_table(path, filesystem=self.fs)
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("answer cache: skipping unreadable segment %s (%s)", path, exc)
            return None
        values = dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True))
        with self._lock:
            self._values[path] = values
            while len(self._values) > self._keep:
                self._values.popitem(last=False)
        return values

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The stored entries of ``keys`` (missing keys absent): one listing for the lot."""
        with self._lock:
            pending = {k: self._buffer[k] for k in keys if k in self._buffer}
        if any(k not in self._index and k not in pending for k in keys):
            self.refresh()
        out: dict[str, dict[str, Any]] = {}
        for k, raw in pending.items():
            out[k] = json.loads(raw)
        by_segment: dict[str, list[str]] = collections.defaultdict(list)
        for k in keys:
            if k not in out and k in self._index:
                by_segment[self._index[k]].append(k)
        for path, ks in by_segment.items():
            values = self._segment_values(path)
            for k in ks:
                try:
                    out[k] = json.loads(values[k]) if values is not None else None
                except (KeyError, ValueError):
                    out[k] = None
        return {k: v for k, v in out.items() if v is not None}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    # -- writing ----------------------------------------------------------------------
    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value)
        with self._lock:
            self._buffer[key] = raw
            self._oldest = self._oldest or time.monotonic()
            due = (len(self._buffer) >= self.flush_entries
                   or time.monotonic() - self._oldest >= self.flush_interval_s)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="rgvlm-cache-flush", daemon=True)
                self._flusher.start()
        if due:
            self.flush()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.flush_interval_s / 4):
            with self._lock:
                due = self._oldest is not None and time.monotonic() - self._oldest >= self.flush_interval_s
            if due:
                try:
                    self.flush()
                except Exception as exc:  # a full disk must not kill the actor; the batch's flush retries
                    log.warning("answer cache: background flush failed (%s)", exc)

    def flush(self) -> None:
        """Write the buffered entries as one segment (nothing to do when empty)."""
        with self._lock:
            if not self._buffer:
                return
            entries, self._buffer, self._oldest = self._buffer, {}, None
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex}.parquet"
        final = f"{self.root}/{name}"
        tmp = f"{self.root}/.{name}.tmp" if self._rename else final
        table = pa.table({"key": list(entries), "value": list(entries.values())}, schema=_SCHEMA)
        try:
            with self.fs.open_output_stream(tmp) as f:
                # uncompressed, plain strings: the entries stay greppable (the secrets test
                # scans every file for keys; a compressed page would hide one)
                pq.write_table(table, f, compression="none", use_dictionary=False)
            if tmp != final:
                self.fs.move(tmp, final)
        except BaseException:
            with self._lock:  # keep them for the next flush; nothing paid for is dropped
                self._buffer = {**entries, **self._buffer}
                self._oldest = self._oldest or time.monotonic()
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise
        with self._lock:
            self._seen.add(final)
            for k in entries:
                self._index.setdefault(k, final)

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def __len__(self) -> int:
        """Distinct keys stored (buffered ones included)."""
        self.refresh()
        with self._lock:
            return len(set(self._index) | set(self._buffer))


class CachedBackendActor:
    """Base of the labellers' ``map_batches`` actors (RG-VLM's windows, GVL/TOPReward's
    queries): one backend per actor, built from the config's ``backend``, ``decoding`` and
    ``max_parse_attempts``, behind one answer cache; both closed with the actor."""

    def __init__(self, config: Any, cache_dir: Any, share: float, backend_cls: type) -> None:
        self.cache = AnswerCache(cache_dir)
        self.backend = backend_cls(config.backend, config.decoding,
                                   max_parse_attempts=config.max_parse_attempts, share=share)

    def __del__(self) -> None:
        for close in (self.backend.close, self.cache.close):
            try:
                close()
            except Exception:
                pass
