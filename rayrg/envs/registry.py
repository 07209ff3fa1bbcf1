"""Environments by ``env_name`` (as stored in datasets and evaluation tasks): one registry,
one ``register_environment`` line each, imported lazily.

An entry names the environment's action vocabulary (a light module: no simulator import;
training needs only this) and its factory, which takes one settings dict (the
``env_settings`` of an EvalConfig) and returns a :class:`~rayrg.envs.base.TaskEnv`. Either is
a ``"module:attr"`` path, imported on first use, or the object itself. It also declares, so
``rayrg run``'s preflight can refuse before any work, the reference policies the
environment can run (``random`` runs anywhere; ``expert`` needs a scripted solver) and its
needs: checks of what the machine must have beyond the packages (THOR's Unity build), each a
``"module:attr"`` of a light module or a callable taking ``env_settings`` and returning one
line of what is missing, or None. Environments registered
outside rayrg are found in other processes through ``RAYRG_PLUGINS`` (:mod:`rayrg.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rayrg.config import ConfigError
from rayrg.envs.base import TaskEnv
from rayrg.registry import Registry, resolve

Factory = Callable[[dict[str, Any]], TaskEnv]
NeedCheck = Callable[[dict[str, Any]], "str | None"]  # env_settings -> what is missing, or None

# The reference policies rayrg knows (rayrg.evaluation.policies); an environment declares which
# of them it can run.
REFERENCE_POLICIES = ("expert", "random")


@dataclass(frozen=True)
class Environment:
    actions: str | Sequence[str]  # "module:ATTR" or the action names
    factory: str | Factory | None = None  # "module:attr" or the callable; None: data only, no simulator
    # What makes the environment's episodes: the distributions whose version changes them
    # (levels, rules, rendering, physics) and the adapter's own version (bump ENV_VERSION
    # in its module when rayrg's side changes). See :func:`env_versions`.
    packages: tuple[str, ...] = ()
    version: str = "1"
    reference_policies: tuple[str, ...] = ("random",)  # uniform actions need nothing of the env
    needs: tuple[str | NeedCheck, ...] = ()  # "module:attr" or the callable
    # Whether reset() gives each sub-task's own instruction (Observation.subtask_instructions),
    # which evaluation's instruction: one_at_a_time feeds a policy one by one.
    subtask_instructions: bool = False


_ENVIRONMENTS: Registry[Environment] = Registry("environment", unknown="no environment named {name!r}",
                                                plugins=True)


def register_environment(name: str, *, actions: str | Sequence[str], factory: str | Factory | None = None,
                         packages: Sequence[str] = (), version: str = "1",
                         reference_policies: Sequence[str] = ("random",),
                         needs: Sequence[str | NeedCheck] = (), subtask_instructions: bool = False) -> None:
    unknown = sorted(set(reference_policies) - set(REFERENCE_POLICIES))
    if unknown:
        raise ValueError(f"environment {name!r}: unknown reference policies {unknown}; "
                         f"known: {list(REFERENCE_POLICIES)}")
    _ENVIRONMENTS[name] = Environment(actions, factory, tuple(packages), version,
                                      tuple(reference_policies), tuple(needs), subtask_instructions)


def package_version(name: str) -> str:
    """An installed distribution's version, or ``"not installed"`` (read from its metadata:
    the simulator itself is not imported)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def env_versions(env_name: str) -> dict[str, str]:
    """``{"env": <adapter version>, <package>: <version>, ...}``: part of the fingerprints of
    the stages whose results the environment makes (generate, import, evaluate), so a new
    minigrid or ai2thor redoes them instead of mixing episodes of two simulators."""
    entry = _entry(env_name)
    return {"env": f"{env_name}/{entry.version}", **{p: package_version(p) for p in entry.packages}}


def environment_names() -> list[str]:
    return sorted(_ENVIRONMENTS)


def _entry(env_name: str) -> Environment:
    return _ENVIRONMENTS.load(env_name)  # a missing name first loads RAYRG_PLUGINS


def action_names(env_name: str) -> tuple[str, ...]:
    actions = _entry(env_name).actions
    return tuple(resolve(actions) if isinstance(actions, str) else actions)


def reference_policies(env_name: str) -> tuple[str, ...]:
    """The reference policies ``env_name`` can run (declared; nothing is imported)."""
    return _entry(env_name).reference_policies


def has_subtask_instructions(env_name: str) -> bool:
    """Whether ``env_name`` gives each sub-task's own instruction at reset (declared)."""
    return _entry(env_name).subtask_instructions


def missing_needs(env_name: str, settings: dict[str, Any] | None = None) -> list[str]:
    """What this machine lacks to run ``env_name`` with ``settings``, one line each (empty:
    nothing). Imports only the light modules the needs name, never the simulator."""
    problems = []
    for need in _entry(env_name).needs:
        check = resolve(need) if isinstance(need, str) else need
        problem = check(dict(settings or {}))
        if problem:
            problems.append(problem)
    return problems


def make_task_env(env_name: str, settings: dict[str, Any] | None = None) -> TaskEnv:
    factory = _entry(env_name).factory
    if factory is None:
        raise ConfigError(f"environment {env_name!r} has no simulator (its datasets can be trained on, "
                          "not evaluated)")
    return (resolve(factory) if isinstance(factory, str) else factory)(dict(settings or {}))


# minigrid (and gymnasium under it) make BabyAI's levels, rules, bot and frames; ai2thor pins
# the Unity build (scenes, physics, metadata) that THOR episodes run in. BabyAI's expert is
# minigrid's BabyAIBot; THOR has no scripted solver here (ALFRED's planner is not ported), so
# random only, and it needs a Unity build on the evaluating machine (found without ai2thor's
# Controller, by rayrg.envs.thor_build).
register_environment("babyai-chain", actions="rayrg.envs.babyai:ACTION_NAMES",
                     factory="rayrg.envs.babyai_env:BabyAITaskEnv", packages=("minigrid", "gymnasium"),
                     reference_policies=("expert", "random"), subtask_instructions=True)
register_environment("alfred-thor", actions="rayrg.envs.thor_config:ACTION_NAMES",
                     factory="rayrg.envs.thor:make_thor_env", packages=("ai2thor",),
                     reference_policies=("random",), needs=("rayrg.envs.thor_build:missing_build",))
