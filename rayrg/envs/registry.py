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


# Action vocabularies (light modules: no simulator import).
ACTION_SPACES: dict[str, str] = {
    "babyai-chain": "rayrg.envs.babyai:ACTION_NAMES",
    "alfred-thor": "rayrg.envs.thor_config:ACTION_NAMES",
    "toy": "rayrg.envs.babyai:ACTION_NAMES",  # the test suite's synthetic datasets
}


def action_names(env_name: str) -> tuple[str, ...]:
    if env_name not in ACTION_SPACES:
        raise ConfigError(f"no action space for environment {env_name!r}; known: {sorted(ACTION_SPACES)}")
    module, attr = ACTION_SPACES[env_name].split(":")
    return tuple(getattr(importlib.import_module(module), attr))


def make_task_env(env_name: str, settings: dict[str, Any] | None = None) -> TaskEnv:
    if env_name not in ENVIRONMENTS:
        raise ConfigError(f"no environment named {env_name!r}; known: {sorted(ENVIRONMENTS)}")
    module, attr = ENVIRONMENTS[env_name].split(":")
    return getattr(importlib.import_module(module), attr)(dict(settings or {}))
