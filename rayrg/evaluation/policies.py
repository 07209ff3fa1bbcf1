"""Policies the evaluation actors can run.

* ``expert`` — BabyAI's scripted ``BabyAIBot``, replanning every step (a privileged policy:
  it reads the environment, not the frames). Sanity reference: ≈ 1.0 in fixed mode.
* ``random`` — uniform actions from a seeded generator. Reference for "no skill".
* a checkpoint directory or URI — a trained IQL policy (:func:`rayrg.rl.policy.load_policy`),
  argmax over its action logits, batched over the actor's lockstep episodes.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import numpy as np


class Policy(Protocol):
    history: int

    def observe(self, envs: list[Any], frames: np.ndarray) -> np.ndarray: ...

    def act(self, observations: np.ndarray, instructions: list[str]) -> np.ndarray: ...


class EpisodePolicy:
    """Adapter with per-episode state; ``reset`` at each episode start, ``act`` each step."""

    def reset(self, slot: int, env: Any, seed: int) -> None:
        pass

    def act(self, slots: list[int], envs: list[Any], frames: np.ndarray, instructions: list[str],
            prev_actions: list[int | None]) -> np.ndarray:
        raise NotImplementedError


class ExpertPolicy(EpisodePolicy):
    """BabyAIBot per episode; only for BabyAI envs (needs the raw minigrid env)."""

    def __init__(self, num_actions: int) -> None:
        self.num_actions = num_actions
        self.bots: dict[int, Any] = {}

    def reset(self, slot: int, env: Any, seed: int) -> None:
        from rayrg.envs.babyai import make_bot

        raw = getattr(env, "raw_env", None)
        if raw is None:
            raise ValueError("the expert policy needs a BabyAI environment")
        self.bots[slot] = make_bot(raw)

    def act(self, slots, envs, frames, instructions, prev_actions) -> np.ndarray:
        actions = []
        for slot, prev in zip(slots, prev_actions, strict=True):
            try:
                action = int(self.bots[slot].replan(prev))
            except Exception:  # the bot can get lost (e.g. a box opened): count it as a stall
                action = 0
            actions.append(action if action < self.num_actions else 0)
        return np.asarray(actions, dtype=np.int64)


class RandomPolicy(EpisodePolicy):
    def __init__(self, num_actions: int) -> None:
        self.num_actions = num_actions
        self.rngs: dict[int, np.random.Generator] = {}

    def reset(self, slot: int, env: Any, seed: int) -> None:
        self.rngs[slot] = np.random.default_rng([seed, 0xA11])

    def act(self, slots, envs, frames, instructions, prev_actions) -> np.ndarray:
        return np.asarray([self.rngs[s].integers(self.num_actions) for s in slots], dtype=np.int64)


class LearnedPolicy(EpisodePolicy):
    """A trained policy: one batched ``act`` call for all lockstep episodes.

    Builds the observation the policy was trained on from the live env (``policy.observe``)
    and keeps each episode's last ``policy.history`` observations; at an episode's start
    the first observation fills the history, as in training.
    """

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.history: dict[int, deque] = {}

    def reset(self, slot: int, env: Any, seed: int) -> None:
        self.history[slot] = deque(maxlen=self.policy.history)

    def act(self, slots, envs, frames, instructions, prev_actions) -> np.ndarray:
        current = self.policy.observe(envs, frames)
        stacked = []
        for slot, obs in zip(slots, current, strict=True):
            past = self.history.setdefault(slot, deque(maxlen=self.policy.history))
            if not past:
                past.extend([obs] * self.policy.history)
            else:
                past.append(obs)
            stacked.append(np.stack(past))
        return np.asarray(self.policy.act(np.stack(stacked), instructions), dtype=np.int64)


def load_episode_policy(spec: str, num_actions: int, device: str = "cpu") -> EpisodePolicy:
    if spec == "expert":
        return ExpertPolicy(num_actions)
    if spec == "random":
        return RandomPolicy(num_actions)
    from rayrg.storage import resolve

    if not resolve(spec).exists():  # a local folder or a URI (s3://…/final)
        raise FileNotFoundError(f"policy {spec!r}: not 'expert', 'random' or an existing checkpoint directory")
    from rayrg.rl.policy import load_policy

    return LearnedPolicy(load_policy(spec, device=device))
