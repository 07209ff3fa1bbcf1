"""Labelling methods by name: the ``method`` key of a label config picks one.

Each entry names ``module:attribute`` of a :class:`LabelMethod`; modules are imported only
when their method is used, so a missing optional dependency of one method (an SDK, a
model family) never breaks another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rayrg.config import ConfigError, StageConfig

# method name -> "module:attribute" of a LabelMethod
LABEL_METHODS: dict[str, str] = {
    "sparse": "rayrg.rewards.simple:SPARSE",
    "simulated": "rayrg.rewards.simple:SIMULATED",
    "rgvlm": "rayrg.rewards.rgvlm:RGVLM",
    "clip": "rayrg.rewards.similarity.clip:CLIP",
    "vlmrm": "rayrg.rewards.similarity.clip:VLMRM",
    "blip2": "rayrg.rewards.similarity.blip2:BLIP2",
    "roboclip": "rayrg.rewards.similarity.roboclip:ROBOCLIP",
}


class LabelFn(Protocol):
    def __call__(
        self, config: Any, dataset: Path, out: Path, *, address: str | None = None
    ) -> Path: ...


@dataclass(frozen=True)
class LabelMethod:
    """A labelling method: its typed config and the function that labels a dataset.

    ``run(config, dataset, out, address=...)`` reads the trajectory (or labelled) dataset
    at ``dataset``, writes a labelled dataset (same schema + ``reward_*`` columns) at
    ``out`` and returns ``out``; method-specific side outputs (label tables, caches,
    summaries) go under ``out`` or paths named in the config.
    """

    name: str
    config_cls: type[StageConfig]
    run: LabelFn


def get_method(name: str) -> LabelMethod:
    if name not in LABEL_METHODS:
        raise ConfigError(f"unknown label method {name!r}; known: {sorted(LABEL_METHODS)}")
    module_name, attr = LABEL_METHODS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def load_label_config(data: dict[str, Any], source: str = "<dict>") -> tuple[LabelMethod, StageConfig]:
    if "method" not in data:
        raise ConfigError(f"{source}: label config needs a 'method' key, one of {sorted(LABEL_METHODS)}")
    method = get_method(str(data["method"]))
    return method, method.config_cls.from_dict(data, source=source)
