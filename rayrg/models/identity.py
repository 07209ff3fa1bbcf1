"""Model identity: what a model *is*, not what it is called, for fingerprints and cache keys.

A model's name (``backend.model``, a similarity method's ``model``) says nothing about the
weights behind it: new weights saved into the same directory, a new snapshot of the same
hub id, or another server answering the same served name would all reuse labels and cached
answers made by a different model. Every labeller therefore keys its outputs and its answer
cache to one of these identity strings, resolved once per run on the driver:

* a local directory or file — ``sha256:<hash>`` of every file's relative name and bytes
  (config, tokenizer, weights). Each file's hash is cached by (path, size, mtime) in
  ``<user cache>/rayrg/model_identity.json``, so a 146 GB checkpoint is read once, not on
  every run; rewriting a file changes its mtime, so it is hashed again.
* a hub id — ``hub:<id>@<revision>``, the snapshot revision the local Hugging Face cache
  resolves ``main`` to (no network). A model not yet downloaded is
  ``hub:<id>@not-in-local-cache``: download it first (``hf download <id>``) to pin it.
* an OpenAI-compatible server — :func:`served_identity`: what ``GET /models`` reports about
  the served name (vLLM reports the weights it was started with as ``root``);
* Gemini — the model version the API reports (``rayrg.rewards.rgvlm.backends.gemini``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CACHE_NAME = "model_identity.json"
NOT_CACHED = "not-in-local-cache"


def cache_path() -> Path:
    """``$RAYRG_CACHE_DIR`` or ``$XDG_CACHE_HOME/rayrg`` or ``~/.cache/rayrg``, plus the file name."""
    base = os.environ.get("RAYRG_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rayrg"
    return Path(base) / CACHE_NAME


def _load_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or unreadable: hash again


def _save_cache(path: Path, cache: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".model_identity.", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(cache, handle)
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except OSError:
        pass  # a read-only home: identities still work, they are only computed again


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_identity(path: str | Path) -> str:
    """``sha256:<20 hex>`` of a checkpoint directory's (or one file's) names and contents.

    Hidden files and directories (``.cache``, ``.git``) are skipped: download bookkeeping,
    not the model."""
    path = Path(path).expanduser().resolve()
    root = path if path.is_dir() else path.parent
    files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path])
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    store = cache_path()
    cache = _load_cache(store)
    changed = False
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in cache:
            cache[key] = _file_sha256(file)
            changed = True
        digest.update(f"{file.relative_to(root)}\0{cache[key]}\n".encode())
    if changed:
        _save_cache(store, cache)
    return "sha256:" + digest.hexdigest()[:20]


def hub_revision(repo_id: str) -> str | None:
    """The snapshot revision ``main`` resolves to in the local Hugging Face cache, or None.

    Found by the same marker files as :func:`rayrg.models.weights.hub_cached`, so a snapshot
    that check accepts (a diffusers pipeline, a processor-only repo) has a revision too."""
    from rayrg.models.weights import hub_snapshot

    snapshot = hub_snapshot(repo_id)
    return snapshot.name if snapshot is not None else None


def model_identity(model: str) -> str:
    """The identity of a model given as a local path or a hub id (see the module docstring)."""
    if Path(model).expanduser().exists():
        return local_identity(model)
    revision = hub_revision(model)
    return f"hub:{model}@{revision or NOT_CACHED}"


def served_identity(models_response: dict[str, Any] | None, model: str, base_url: str) -> str:
    """The identity of ``model`` from an OpenAI-compatible ``GET /models`` answer.

    vLLM's entry carries ``root``: the path or hub id it loaded the weights from (the served
    ``id`` is only a name); a server that reports a revision or version adds it. Only when
    the server reports nothing about its weights does the identity fall back to the host
    (``base_url``'s host and port), so a server moved to another host is then a new model.
    """
    entries = (models_response or {}).get("data") or []
    entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == model), None)
    if entry is not None:
        parts = [str(entry[k]) for k in ("root", "revision", "version") if entry.get(k)]
        if parts:
            return "served:" + "@".join(parts)
    return f"host:{urlsplit(base_url).netloc}/{model}"
