"""Environments by ``env_name`` (as stored in datasets and evaluation tasks), imported lazily.

Each entry is a factory taking one settings dict (the ``env_settings`` of an EvalConfig).
"""

from __future__ import annotations

import importlib
from typing import Any

from rayrg.config import ConfigError
from rayrg.envs.base import TaskEnv

ENVIRONMENTS: dict[str, str] = {
    "babyai-chain": "rayrg.envs.babyai_env:BabyAITaskEnv",
    "alfred-thor": "rayrg.envs.thor:make_thor_env",
}


def make_task_env(env_name: str, settings: dict[str, Any] | None = None) -> TaskEnv:
    if env_name not in ENVIRONMENTS:
        raise ConfigError(f"no environment named {env_name!r}; known: {sorted(ENVIRONMENTS)}")
    module, attr = ENVIRONMENTS[env_name].split(":")
    return getattr(importlib.import_module(module), attr)(dict(settings or {}))
