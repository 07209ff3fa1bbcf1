"""Training curves, ``train_curve.json`` in every IQL checkpoint: the metrics of each report.

Written by the rl stage's rank-0 worker into each checkpoint it saves (so the final
checkpoint holds the whole run's curve, a resumed run continuing the curve of the checkpoint
it resumed from); read by the report through the manifest's train entries
(``TrainRun.curve``). ``VERSION`` 1 is ``{"version": 1, "records": [{"step": int, <metric>:
float, ...}, ...]}`` in step order, one record per ``report_every`` (and checkpoint) step;
metric names are Ray Train's report keys (``loss/q``, ``loss/value``, ``loss/policy``,
``adv/weight_saturation``, ...). Another version is refused in one line naming it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rayrg.config import ConfigError
from rayrg.storage import resolve

VERSION = 1
CURVE_FILE = "train_curve.json"


class Curve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = VERSION
    records: list[dict[str, float]]


def write_curve(directory: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write ``<directory>/train_curve.json`` (records as numbers, sorted by step)."""
    path = resolve(directory) / CURVE_FILE
    rows = sorted(({k: float(v) for k, v in r.items()} for r in records), key=lambda r: r["step"])
    path.write_text(json.dumps(Curve(records=rows).model_dump()))
    return path


def read_curve(path: str | Path) -> list[dict[str, float]]:
    """The records of a curve file (or of ``<path>/train_curve.json`` for a checkpoint folder);
    [] when there is none (checkpoints written before curves existed)."""
    path = resolve(path)
    if path.is_dir():
        path = path / CURVE_FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        found = raw.get("version") if isinstance(raw, dict) else None
        raise ConfigError(f"{path}: training curve version {found!r}; this rayrg reads version {VERSION}")
    try:
        return Curve.model_validate(raw).records
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
