"""Reward-bench results, ``<out>/bench.json``: what ``rayrg reward-bench`` scored.

Written by :mod:`rayrg.bench.bench`; read by the report and by a re-run that skips. ``VERSION``
1 is ``{"version": 1, "dataset", "fingerprint", "assume_success", "episodes", "config",
"columns": {<column>: {<metric>: {"value", "ci95", "n"}, "voc_on", "coverage", ...}}}``; the
metric names are :data:`rayrg.bench.metrics`' (``voc``, ``success_auroc``, ``success_f1``,
``rank_tau``, ``mismatch_auroc``, ``accuracy``, ``precision``, ``recall``). A column whose
labeller records its own noise also has ``chunk_disagreement: {"mean", "max", "n"}`` (GVL: how
much overlapping chunks disagreed before stitching, over ``n`` episodes; read from the label
provenance through :func:`rayrg.contracts.progress_answers.chunk_disagreement`); other columns
omit the key. Any other version is refused in one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError
from rayrg.contracts.versions import read_json_object
from rayrg.storage import resolve

VERSION = 1
BENCH_FILE = "bench.json"


def write_bench(out: str | Path, result: dict[str, Any]) -> Path:
    """``<out>/bench.json`` stamped with ``VERSION``, written atomically."""
    path = resolve(out) / BENCH_FILE
    path.write_text(json.dumps({**result, "version": VERSION}, indent=2, sort_keys=True))  # atomic
    return path


def read_bench(out: str | Path) -> dict[str, Any]:
    """The results in ``<out>/bench.json`` (without the version stamp); one line if absent,
    unreadable, or of a version this rayrg does not read."""
    path = resolve(out) / BENCH_FILE
    if not path.exists():
        raise ConfigError(f"{out}: no {BENCH_FILE} (run `rayrg reward-bench` first)")
    raw = read_json_object(path, "reward-bench results", ConfigError)
    version = raw.pop("version", None)
    if version != VERSION:
        raise ConfigError(f"{path}: reward-bench results version {version}; this rayrg reads version "
                          f"{VERSION}: run `rayrg reward-bench` again")
    return raw
