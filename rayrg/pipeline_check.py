"""Whether rewards came from a tiny, randomly initialised checkpoint (a pipeline check).

Tiny-checkpoint builders (:mod:`rayrg.models`) write ``rayrg_tiny.json`` into the
checkpoint; readers decide from that marker, never from a config's name, and every report of
such rewards carries :data:`PIPELINE_CHECK_CAVEAT`. This module imports nothing heavy, so
reward and report code use it without importing the builders.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = "rayrg_tiny.json"


def is_tiny_random(model: str | Path) -> bool:
    """A checkpoint built by rayrg.models.tiny_* (a directory, or a file inside one)."""
    path = Path(model)
    return (path / MARKER).exists() or (path.is_file() and (path.parent / MARKER).exists())


# Shown wherever rewards scored by such a checkpoint are reported (reward-report, pr-report,
# the run report): its numbers only compare random scores with the base rate of good actions.
PIPELINE_CHECK_CAVEAT = ("PIPELINE CHECK: {what} scored by a randomly initialised checkpoint "
                         "({models}); these numbers test the plumbing, not reward quality.")


def provenance_is_tiny_random(prov: dict[str, Any]) -> bool:
    """Whether a reward column's provenance names a tiny random checkpoint.

    Decided from the checkpoint itself (its marker), never from a config's name: labellers that
    record ``tiny_random_weights`` are believed; otherwise the recorded ``model`` path is checked
    (relative paths resolve against the working directory, as they did when labelling).
    """
    if prov.get("tiny_random_weights"):
        return True
    model = prov.get("model")
    return isinstance(model, str) and bool(model) and is_tiny_random(model)


def pipeline_check_caveat(rows: Iterable[dict[str, Any]], what: str = "rewards") -> str | None:
    """One caveat line when any row (with ``tiny_random_weights`` or ``model``) is from a tiny
    random checkpoint, naming those models; ``None`` otherwise."""
    models = sorted({str(r.get("model") or r.get("column") or "?") for r in rows
                     if provenance_is_tiny_random(r)})
    return PIPELINE_CHECK_CAVEAT.format(what=what, models=", ".join(models)) if models else None
