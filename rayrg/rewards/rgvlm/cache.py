"""Content-addressed answer cache: one JSON file per window query, written atomically.

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

Concurrency: many Ray workers write at once. Each entry is written to a unique temporary
file in the same directory and ``os.replace``d into place, which is atomic on POSIX; two
workers racing on the same key both write a complete, equivalent file and the last rename
wins. Readers never see a partial file. Only successful labels are stored: a failed window
is retried by the next run.

Layout: ``<cache>/<key[:2]>/<key>.json`` (256 fan-out directories keep listings short).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

# Bump when what a backend sends for the same settings changes (request layout, engine
# defaults in code): every older answer then misses instead of being served as current.
CACHE_FORMAT = 2


def cache_key(image: bytes, texts: tuple[str, ...], settings: dict[str, Any]) -> str:
    """``settings``: ``RGVLMConfig.answer_settings()`` (JSON-able)."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(image).digest())
    h.update(json.dumps({"format": CACHE_FORMAT, "texts": list(texts), "settings": settings},
                        sort_keys=True).encode())
    return h.hexdigest()


class AnswerCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):
            return None  # unreadable entry (disk trouble): treat as a miss and overwrite it

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(value, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("??/*.json"))
