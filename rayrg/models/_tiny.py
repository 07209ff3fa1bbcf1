"""What every tiny-checkpoint builder shares: the recipe marker and the reuse check.

A builder writes its files, then the marker (``rayrg_tiny.json`` holding the recipe) last,
so a directory with a matching marker is a complete checkpoint and is reused; the marker
also tells readers that the weights are random (plumbing checks only).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rayrg.pipeline_check import MARKER

log = logging.getLogger(__name__)


def is_built(directory: Path, recipe: dict[str, Any]) -> bool:
    marker = directory / MARKER
    return marker.exists() and json.loads(marker.read_text()) == recipe


def finish(directory: Path, recipe: dict[str, Any], name: str, model: Any) -> Path:
    """Write the marker (the checkpoint is complete) and log what was built."""
    (directory / MARKER).write_text(json.dumps(recipe))
    log.info("tiny %s (%d parameters, random weights) written to %s", name,
             sum(p.numel() for p in model.parameters()), directory)
    return directory


def save_and_finish(directory: Path, recipe: dict[str, Any], name: str, model: Any, processor: Any) -> Path:
    """``save_pretrained`` of the model and its processor, then :func:`finish`."""
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return finish(directory, recipe, name, model)
