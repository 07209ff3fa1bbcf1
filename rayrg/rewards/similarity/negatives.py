"""Negative descriptions for the CLIP softmax: configured texts and the environment's other goals.

Baumli et al. use the other goals of the environment as negatives. Here they come from
the dataset itself (every other instruction in it) and/or from BabyAI's single-object
goals (``go to / pick up / open`` × color × object type, minigrid's own vocabulary). A
goal's negatives never contain the goal itself, and the seeded per-goal sample makes
them reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from rayrg.rewards.similarity.config import NegativesConfig

# minigrid.core.constants.COLOR_NAMES order; object types BabyAI instructions name.
BABYAI_COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
BABYAI_PICKABLE = ("ball", "box", "key")


def babyai_goals() -> list[str]:
    """Single-object BabyAI goals: 'go to the red ball', 'pick up the blue key', 'open the green door'."""
    goals = [f"go to the {c} {t}" for c in BABYAI_COLORS for t in (*BABYAI_PICKABLE, "door")]
    goals += [f"pick up the {c} {t}" for c in BABYAI_COLORS for t in BABYAI_PICKABLE]
    goals += [f"open the {c} door" for c in BABYAI_COLORS]
    return goals


def _stable_seed(seed: int, text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "little")


def negatives_for(instruction: str, pool: list[str], config: NegativesConfig) -> list[str]:
    """The raw (un-templated) negative instructions of one goal: pool minus the goal, sampled."""
    candidates = [t for t in dict.fromkeys(pool) if t.strip().lower() != instruction.strip().lower()]
    if config.max_negatives is not None and len(candidates) > config.max_negatives:
        rng = np.random.default_rng(_stable_seed(config.seed, instruction))
        keep = sorted(rng.choice(len(candidates), size=config.max_negatives, replace=False))
        candidates = [candidates[i] for i in keep]
    return candidates


def negative_pool(instructions: Iterable[str], config: NegativesConfig) -> list[str]:
    """Every candidate negative for a dataset whose distinct instructions are ``instructions``."""
    pool = list(config.texts)
    if "dataset" in config.source:
        pool += sorted(set(instructions))
    if "babyai" in config.source:
        pool += babyai_goals()
    return list(dict.fromkeys(pool))


def build_negatives(instructions: Iterable[str], config: NegativesConfig) -> dict[str, list[str]]:
    """instruction -> its negative instructions (templates are applied by the scorer)."""
    instructions = sorted(set(instructions))
    pool = negative_pool(instructions, config)
    out = {i: negatives_for(i, pool, config) for i in instructions}
    empty = [i for i, n in out.items() if not n]
    if empty:
        raise ValueError(f"no negatives for {len(empty)} goal(s) (e.g. {empty[0]!r}): add negatives.texts "
                         f"or use source 'dataset+babyai'")
    return out
