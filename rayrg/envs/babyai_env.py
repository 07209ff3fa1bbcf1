"""BabyAI missions behind the :class:`~rayrg.envs.base.TaskEnv` interface (evaluation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rayrg.envs.babyai import (
    ACTION_NAMES,
    BabyAIEnvConfig,
    chain_leaves,
    make_env,
    mission_succeeded,
    randomize_agent,
    reset_env,
    step_env,
    symbolic_state,
)
from rayrg.envs.base import EvalTask, InitMode, Observation, TaskEnv


class BabyAITaskEnv(TaskEnv):
    """One BabyAI environment, rebuilt per task (missions differ in their instruction tree).

    * ``fixed``: ``reset(seed)`` — exactly the dataset's initial state for the task;
    * ``randomized``: the same reset (same layout, same mission and verifier), then the agent
      is moved to a random reachable empty cell with a random heading, drawn from ``rng_seed``.

    The episode itself has no step limit here (``max_steps`` is large); evaluation enforces
    the task's step budget.
    """

    action_names = ACTION_NAMES

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})
        self.env: Any = None

    def reset(self, task: EvalTask, mode: InitMode = "fixed", rng_seed: int = 0) -> Observation:
        fields = {**task.extra.get("env_config", {}), **self.settings}
        if "action_kinds" in fields:  # JSON turns the tuple into a list
            fields["action_kinds"] = tuple(fields["action_kinds"])
        env_config = BabyAIEnvConfig(**fields)
        if self.env is not None:
            self.env.close()
        self.env = make_env(task.num_subtasks, env_config, max_steps=100_000)
        frame, instruction = reset_env(self.env, task.seed)
        if instruction != task.instruction:
            raise ValueError(f"task {task.task_id}: seed {task.seed} gives mission {instruction!r}, "
                             f"the task says {task.instruction!r} (different env settings?)")
        # As the skill episodes' instructions are made (rayrg.data.generate), at reset: BabyAI's
        # "a"/"the" depend on the grid, and the mission is exactly these joined by ", then ".
        subtask_instructions = tuple(leaf.surface(self.env.unwrapped) for leaf in chain_leaves(self.env))
        if mode == "randomized":
            frame = randomize_agent(self.env, np.random.default_rng([task.seed, rng_seed, 0x5EED]))
        elif mode != "fixed":
            raise ValueError(f"unknown initial-state mode {mode!r}")
        return Observation(frame=frame, instruction=instruction, info=self.agent_state(),
                           subtask_instructions=subtask_instructions)

    def step(self, action: int) -> Observation:
        frame, completed, terminal, _ = step_env(self.env, int(action))
        return Observation(frame=frame, instruction=self.env.unwrapped.mission, subtasks_completed=completed,
                           done=terminal, info={"success": mission_succeeded(self.env)})

    def state_observation(self) -> np.ndarray:
        """BabyAI's symbolic egocentric grid now (the dataset's ``state`` column), for policies."""
        return symbolic_state(self.env)

    def agent_state(self) -> dict[str, Any]:
        base = self.env.unwrapped
        return {"agent_pos": tuple(int(v) for v in base.agent_pos), "agent_dir": int(base.agent_dir)}

    @property
    def raw_env(self) -> Any:
        """The wrapped minigrid env (for privileged policies such as the scripted expert)."""
        return self.env

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
