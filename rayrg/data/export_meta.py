"""What an exported dataset records about its rewards (both interchange formats).

An export is read by tools that never see rayrg's ``metadata.json``: the record travels in the
format's own metadata (Minari's ``data/metadata.json``, LeRobot's ``meta/info.json``) under
:data:`EXPORT_KEY`: the reward column, the labeller (its provenance, secrets scrubbed), what
that provenance says about the model, and whether a tiny random checkpoint made the rewards
(:mod:`rayrg.pipeline_check`), with the caveat line then.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError, scrub_secrets
from rayrg.data.access import Dataset
from rayrg.data.schema import REWARD_PREFIX
from rayrg.pipeline_check import pipeline_check_caveat, provenance_is_tiny_random

EXPORT_KEY = "rayrg_rewards"
# Provenance keys that say which model scored (the name, and whatever identity the labeller
# recorded: a content hash, a hub revision, what a server reported).
_MODEL_KEY = re.compile(r"model|revision|identity|snapshot|weights", re.IGNORECASE)


def resolve_reward(data: Dataset, requested: str | None, fmt: str, skip: tuple[str, ...] = ()) -> str:
    """The reward column ``--reward`` names (``reward_<variant>`` or ``<variant>``), refused in
    one line listing the columns present; without ``--reward``, the only labelled column."""
    present = data.reward_columns()
    if requested is None:
        labelled = [c for c in present if c not in skip]
        if len(labelled) == 1:
            return labelled[0]
        raise ConfigError(f"export {fmt}: pick the reward column with --reward; {data.path} has "
                          f"{present or 'no reward columns (label it first: rayrg label)'}")
    column = requested if requested.startswith(REWARD_PREFIX) else REWARD_PREFIX + requested
    if column not in present:
        raise ConfigError(f"export {fmt}: --reward {requested!r} is not a reward column of {data.path}; "
                          f"it has {present}")
    return column


def variant(column: str) -> str:
    return column.removeprefix(REWARD_PREFIX)


def export_record(data: Dataset, column: str, new_id: str, source_id: str | None = None) -> dict[str, Any]:
    """The record written into the exported dataset's own metadata under :data:`EXPORT_KEY`."""
    labeller = scrub_secrets(dict(data.provenance.get(column, {})))
    check = provenance_is_tiny_random(labeller)
    return {
        "reward_column": column,
        "dataset_id": new_id,
        "source_dataset_id": source_id,
        # absolute if local; a storage URI as shown (credentials never reach a URI: rayrg.storage)
        "labelled_dataset": str(data.path.resolve() if isinstance(data.path, Path) else data.path),
        "labeller": labeller,
        "method": labeller.get("method"),
        "model": {k: v for k, v in labeller.items() if _MODEL_KEY.search(k)},
        "pipeline_check": check,
        "caveat": pipeline_check_caveat([{**labeller, "column": column}]) if check else None,
    }
