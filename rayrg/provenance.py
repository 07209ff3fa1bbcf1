"""Provenance: every stage output is keyed to what made it.

Each stage output directory holds ``_provenance.json``: the stage, the *inputs* that
determine its result (upstream fingerprints, the resolved config without the settings
that cannot change results, versions) and their **fingerprint** (a hash of those inputs).
Datasets also carry their fingerprint in ``metadata.json`` so the next stage can key on it.

On a re-run into the same directory a stage :func:`claim`\\ s it:

* same fingerprint, finished → ``done``: the stage skips;
* same fingerprint, unfinished → ``resume``: the stage's own machinery resumes (written
  shards, the answer cache, checkpoints, finished episodes);
* different fingerprint → the stage refuses with one line naming what changed and how to
  proceed (``--overwrite`` or another ``--out``), or, with ``on_change="redo"`` (what
  ``--overwrite`` and ``rayrg run`` use), clears its outputs and starts again. Since every
  downstream fingerprint contains its upstream ones, redoing a stage redoes everything
  downstream of it too. Never a silent reuse.

A directory with files but no record (made by something else, or an older rayrg) is never
cleared: the stage refuses and the user decides.

``out`` may be a local path or a storage URI (:mod:`rayrg.storage`): the record is read and
written, and a redo deletes, through :class:`rayrg.storage.Location`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rayrg.config import ConfigError
from rayrg.storage import Location, resolve

RECORD_FILE = "_provenance.json"
# Bump when a change in rayrg itself changes what a stage produces from the same inputs
# (a generator fix, a new window layout, a new learner), so old outputs are not reused.
RESULTS_VERSION = "2"

OnChange = Literal["refuse", "redo"]


class StaleOutputError(ConfigError):
    """An output directory holds work made from other inputs (one line: what changed, what to do)."""


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able inputs (key order does not matter)."""
    blob = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


PathLike = str | os.PathLike[str] | Location


def files_fingerprint(paths: Iterable[Path | Location], root: Path | Location) -> str:
    """Content hash of files (relative names and bytes): for inputs that carry no fingerprint."""
    digest = hashlib.sha256()
    base = resolve(root).path.rstrip("/") + "/"
    for location in sorted((resolve(p) for p in paths), key=lambda loc: loc.path.split("/")):  # as Paths sort
        # a file that is the root itself (file_fingerprint of one file) is named by its name
        digest.update((location.path[len(base):] if location.path.startswith(base) else location.name).encode())
        with location.open_input() as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:20]


def dataset_fingerprint(directory: PathLike) -> str:
    """The fingerprint a dataset recorded in ``metadata.json``, else a hash of its contents."""
    from rayrg.contracts.datasets import METADATA_FILE, read_fingerprint, read_unfinished_key

    directory = resolve(directory)
    meta = directory / METADATA_FILE
    recorded = read_fingerprint(directory)
    if recorded:
        return recorded
    # Unfinished labels carry no fingerprint, only a key naming the windows that failed
    # (rayrg.data.access.UNFINISHED_KEY): a consumer allowed to use them keys on it, so
    # after the retry fills those windows it redoes its work.
    unfinished = read_unfinished_key(directory)
    if unfinished:
        return unfinished
    files = [p for p in directory.ls() if p.name.endswith(".parquet")]
    files += [meta] if meta.exists() else []
    return "content:" + files_fingerprint(files, directory)


def file_fingerprint(path: PathLike) -> str:
    location = resolve(path)
    if location.is_dir():
        return "content:" + files_fingerprint(location.glob(), location)
    return "content:" + files_fingerprint([location], location.parent)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


# Prefix of a value kept in an explanation only as a digest (a secret-bearing field such as
# ``headers`` or ``extra_body``): a change is named by its field, its value never shown.
OPAQUE_PREFIX = "opaque:"


def opaque(value: Any) -> str:
    """What an explanation keeps of a secret-bearing value: a digest that shows a change."""
    return OPAQUE_PREFIX + fingerprint({"value": value})[:12]


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    """``a.b: 1 → 2; c: added`` for the first ``limit`` differing leaves (an :func:`opaque`
    leaf: ``a.headers: changed (value not shown)``)."""
    a, b = _flatten(json.loads(json.dumps(old, default=str))), _flatten(json.loads(json.dumps(new, default=str)))

    def short(v: Any) -> str:
        text = json.dumps(v, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    changes = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            changes.append(f"{key}: added")
        elif key not in b:
            changes.append(f"{key}: removed")
        elif a[key] != b[key] and any(str(v).startswith(OPAQUE_PREFIX) for v in (a[key], b[key])):
            changes.append(f"{key}: changed (value not shown)")
        elif a[key] != b[key]:
            changes.append(f"{key}: {short(a[key])} → {short(b[key])}")
    if not changes:
        return "rayrg's recorded fingerprint differs"
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


@dataclass
class Claim:
    """The outcome of :func:`claim`; call :meth:`finish` when the stage's output is complete."""

    stage: str
    out: Path | Location  # a Path for a local ``out`` (as given), the Location for a URI
    fingerprint: str
    inputs: dict[str, Any]
    status: Literal["new", "resume", "done", "redo"]
    record: dict[str, Any] = field(default_factory=dict)
    explain: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == "done"

    def finish(self, **result: Any) -> None:
        self.record = {**self._base(), "complete": True, "result": json.loads(json.dumps(result, default=str))}
        _write(self.out, self.record)

    def _base(self) -> dict[str, Any]:
        base = {"stage": self.stage, "fingerprint": self.fingerprint, "inputs": self.inputs,
                "results_version": RESULTS_VERSION}
        return {**base, "explain": self.explain} if self.explain else base


def _write(out: PathLike, record: dict[str, Any]) -> None:
    location = resolve(out)
    if location.is_local:
        location.mkdirs()
    # atomic on a local disk (temporary file renamed) and on object stores (one PUT)
    (location / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))


def read_record(out: PathLike) -> dict[str, Any] | None:
    location = resolve(out) / RECORD_FILE
    try:
        return json.loads(location.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def claim(out: PathLike, stage: str, inputs: Mapping[str, Any], *, on_change: OnChange = "refuse",
          keep: Iterable[str] = (), quiet: bool = False, explain: Mapping[str, Any] | None = None) -> Claim:
    """Key ``out`` to ``inputs`` before a stage writes there (see the module docstring).

    ``keep``: names inside ``out`` that survive a redo because they are keyed by content
    themselves (the RG-VLM answer cache: paid-for answers are never thrown away).
    ``quiet``: the stage says itself what it skips (evaluation and training may extend
    finished work: more seeds, more steps).
    ``explain``: readable forms of inputs that enter as a hash (``{"answers": {...}}`` for
    RG-VLM's answer settings), recorded beside them but not hashed, so a refusal names the
    setting that changed (``answers.decoding.temperature: 0.0 → 0.7``) rather than two hashes.
    Secret-bearing values in it must be :func:`opaque`.
    """
    location = resolve(out)
    out = location.local_path or location  # as the user gave it, for messages and callers
    inputs = {**json.loads(json.dumps(dict(inputs), default=str)), "results_version": RESULTS_VERSION}
    fp = fingerprint(inputs)
    record = read_record(out)
    contents = [p for p in location.ls() if p.name not in set(keep)]
    status: Literal["new", "resume", "done", "redo"] = "new"
    if record is None:
        if contents:
            raise StaleOutputError(
                f"{stage}: {out} already holds files but no {RECORD_FILE} (made by another tool or an "
                "older rayrg), so rayrg cannot tell what made them; remove it or choose another --out")
    elif record.get("fingerprint") == fp:
        status = "done" if record.get("complete") else "resume"
    else:
        explained = json.loads(json.dumps(dict(explain or {}), default=str))
        what = describe_changes({**record.get("inputs", {}), **record.get("explain", {})},
                                {**inputs, **explained})
        if on_change == "refuse":
            raise StaleOutputError(
                f"{stage}: {out} was made from other inputs ({what}); rerun with --overwrite to "
                "redo it, or choose another --out")
        print(f"[rayrg] {stage}: inputs changed ({what}); redoing it in {out}", flush=True)
        kept = set(keep)
        for child in location.ls():
            if child.name in kept:
                continue
            _delete(child)
        status = "redo"
    result = Claim(stage, out, fp, inputs, status, record or {},
                   json.loads(json.dumps(dict(explain or {}), default=str)))
    if quiet:
        pass
    elif status == "done":
        print(f"[rayrg] {stage}: up to date in {out} (fingerprint {fp}), skipping", flush=True)
    elif status == "resume":
        print(f"[rayrg] {stage}: resuming the unfinished run in {out}", flush=True)
    if status != "done":
        _write(out, {**result._base(), "complete": False})
    return result


def _delete(child: Location) -> None:
    """Delete one entry of a stage's output (a symlink itself, never what it points to)."""
    local = Path(child.path) if child.is_local else None
    if local is not None and (local.is_symlink() or not local.is_dir()):
        local.unlink(missing_ok=True)
    elif child.is_dir():
        child.delete_tree()
    else:
        child.delete()


def public(config: Any) -> dict[str, Any]:
    """A config (StageConfig or mapping) as written to disk: credentials scrubbed."""
    from rayrg.config import scrub_secrets

    return config.to_public_dict() if hasattr(config, "to_public_dict") else scrub_secrets(dict(config))
