"""``evaluation.instruction``: the chained mission's full instruction, or one sub-instruction at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rayrg.config import ConfigError
from rayrg.data.generate import GenerateConfig, make_eval_task
from rayrg.envs.babyai_env import BabyAITaskEnv
from rayrg.envs.base import EvalTask
from rayrg.evaluation.config import EvalConfig
from rayrg.evaluation.evaluate import eval_inputs, evaluate, run_items
from rayrg.evaluation.policies import ExpertPolicy


class RecordingExpert(ExpertPolicy):
    """The scripted expert (so sub-tasks get done), recording the instruction each step showed it."""

    def __init__(self, num_actions: int) -> None:
        super().__init__(num_actions)
        self.seen: dict[int, list[str]] = {}

    def act(self, slots, envs, frames, instructions, prev_actions) -> np.ndarray:
        for slot, instruction in zip(slots, instructions, strict=True):
            self.seen.setdefault(slot, []).append(instruction)
        return super().act(slots, envs, frames, instructions, prev_actions)


@pytest.fixture(scope="module")
def chains() -> list[EvalTask]:
    config = GenerateConfig()
    return [t for n in (2, 3) for t in [make_eval_task(config, n, 0)] if t is not None]


def test_babyai_gives_each_subtasks_own_instruction_at_reset(chains) -> None:
    env = BabyAITaskEnv()
    for task in chains:
        for mode in ("fixed", "randomized"):
            obs = env.reset(task, mode, rng_seed=1)
            assert len(obs.subtask_instructions) == task.num_subtasks
            assert ", then ".join(obs.subtask_instructions) == task.instruction  # as skills are labelled
    env.close()


@pytest.mark.parametrize("instruction", ["full", "one_at_a_time"])
def test_the_policy_sees_the_current_subtask_and_then_the_next(chains, instruction: str) -> None:
    envs = [BabyAITaskEnv() for _ in chains]
    policy = RecordingExpert(7)
    items = [(task, "fixed", 0) for task in chains]
    results = run_items(envs, policy, items, EvalConfig(instruction=instruction))
    for slot, (task, result) in enumerate(zip(chains, results, strict=True)):
        assert result["success"]  # the expert finishes: every sub-instruction was shown
        seen = policy.seen[slot]
        subs = envs[slot].reset(task, "fixed").subtask_instructions
        if instruction == "full":
            assert set(seen) == {task.instruction}
        else:
            # In order, each sub-task's own instruction, switching once its sub-task is done.
            order = list(dict.fromkeys(seen))
            assert order == list(subs), (order, subs)
            assert seen[0] == subs[0] and seen[-1] == subs[-1]
    for env in envs:
        env.close()


def test_one_at_a_time_is_keyed_apart_and_full_keeps_the_old_key(chains) -> None:
    full, one = EvalConfig(), EvalConfig(instruction="one_at_a_time")
    assert "instruction" not in eval_inputs(full, "random", chains)["config"]  # evaluations made before it
    assert eval_inputs(one, "random", chains) != eval_inputs(full, "random", chains)


def test_one_at_a_time_is_refused_for_an_environment_without_subtask_instructions(tmp_path: Path) -> None:
    task = EvalTask(task_id="t0", env_name="alfred-thor", instruction="put a mug in the sink", num_subtasks=1,
                    seed=0, expert_steps=10)
    with pytest.raises(ConfigError, match="one_at_a_time .* alfred-thor does not give") as err:
        evaluate(EvalConfig(instruction="one_at_a_time"), "random", tmp_path / "ev", tasks=[task], progress=False)
    assert "\n" not in str(err.value)
