"""``EvalConfig``: which tasks, which initial-state modes, how many actors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rayrg.config import StageConfig


class EvalConfig(StageConfig):
    """``rayrg evaluate``: held-out tasks × modes × seeds, run by a pool of Ray actors."""

    tasks: str | None = Field(None, description="Evaluation tasks JSON (from `rayrg generate`).")
    modes: list[Literal["fixed", "randomized"]] = Field(default_factory=lambda: ["fixed", "randomized"])
    instruction: Literal["full", "one_at_a_time"] = Field(
        "full", description="What a learned policy is conditioned on: the chained mission's full instruction "
                            "(default), or one_at_a_time: the current sub-task's own instruction, the next one once "
                            "it is done (as skill episodes are labelled; environments that declare "
                            "subtask_instructions). A separate evaluation mode: every report says which ran.")
    seeds: list[int] = Field(default_factory=lambda: [0], description="Evaluation seeds (randomized start, policy sampling).")
    max_tasks_per_count: int | None = Field(None, ge=1, description="Use only the first N tasks per sub-task count.")
    budget_multiplier: float = Field(2.0, gt=0, description="Step budget = multiplier × the expert's steps.")
    min_budget: int = Field(16, ge=1, description="Lower bound of the step budget.")
    num_actors: int = Field(2, ge=1, description="Evaluation actors (each holds its envs and one policy copy).")
    cpus_per_actor: float = Field(0.5, gt=0, description="Fractional, so a 2-core machine never deadlocks.")
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs per actor for the policy (0: CPU).")
    envs_per_actor: int = Field(4, ge=1, description="Episodes an actor runs in lockstep (batched policy calls).")
    policy_device: str = Field("cpu", description="'cpu' or 'cuda' (with gpus_per_actor > 0).")
    env_settings: dict[str, Any] = Field(default_factory=dict, description="Passed to the env factory.")
