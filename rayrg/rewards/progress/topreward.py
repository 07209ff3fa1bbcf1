"""``method: topreward`` — progress from token probabilities (TOPReward, arXiv 2602.19313).

K frames are sampled per episode; for each, the model sees the sampled frames up to it, the
instruction and "is the task complete?". The completion probability is
``p(yes) / (p(yes) + p(no))`` over the affirmative and negative answer tokens of the first
answer token's top log-probabilities (``top_logprobs``, 20 by default). When no affirmative
token is among them, its probability is at most the last (smallest) one returned: that bound
is used, the frame is marked and counted (``bounded_frames`` in the summary); the same bound
stands in for an absent negative token. Backends without log-probabilities are refused
before any call. Output: ``progress_topreward`` and ``reward_topreward`` (the same shaping).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rayrg.rewards.progress.pipeline import (
    ProgressConfig,
    image_digest,
    progress_method,
    rebuild_backend_field,
)
from rayrg.rewards.progress.prompts import TOPREWARD_PROMPTS, topreward_parts
from rayrg.rewards.progress.sampling import interpolate, sample_indices

NEEDS_LOGPROBS = True


class TOPRewardConfig(ProgressConfig):
    """``rayrg label`` with ``method: topreward``."""

    ANSWER_FIELDS = ProgressConfig.ANSWER_FIELDS | {"top_logprobs"}
    NEUTRAL_FIELDS = ProgressConfig.NEUTRAL_FIELDS
    PROMPTS = TOPREWARD_PROMPTS

    method: Literal["topreward"] = "topreward"
    top_logprobs: int = Field(20, ge=2, le=20, description="Top log-probabilities asked per answer (APIs cap at 20).")
    max_tokens: int = Field(1, ge=1, description="Answer budget: the first token is all that is read.")


rebuild_backend_field(TOPRewardConfig)
CONFIG = TOPRewardConfig


def rows(config: TOPRewardConfig, episode_id: str, instruction: str, frames: list[bytes]) -> list[dict[str, Any]]:
    """One query per sampled frame: the sampled frames up to it."""
    sampled = sample_indices(len(frames), config.frames)
    return [{"query_id": f"{episode_id}:{step}", "episode_id": episode_id, "instruction": instruction,
             "chunk_start": 0, "chunk_stop": len(frames), "steps": [step],
             "images": [frames[s] for s in sampled[:j + 1]], "order": list(range(j + 1))}
            for j, step in enumerate(sampled)]


def query(row: dict[str, Any], config: TOPRewardConfig, settings: dict[str, Any]):
    from rayrg.rewards.rgvlm.backends.base import PromptQuery
    from rayrg.rewards.rgvlm.cache import cache_key

    system, parts = topreward_parts(config.prompt_version, row["instruction"], row["images"])
    texts = (config.prompt_version, system, *(v for kind, v in parts if kind == "text"))
    key = cache_key(image_digest(row["images"]), texts, settings)
    return PromptQuery(key=key, query_id=row["query_id"], system=system, parts=tuple(parts),
                       max_tokens=config.max_tokens, top_logprobs=config.top_logprobs)


def completion_probability(top: list[list[Any]], affirmative: tuple[str, ...],
                           negative: tuple[str, ...]) -> tuple[float, bool]:
    """(p(yes) / (p(yes) + p(no)), whether p(yes) is the top-k bound) from ``[[token, logprob]]``."""
    floor = math.exp(min(float(lp) for _, lp in top))  # the smallest returned: a bound on any absent token
    yes = sum(math.exp(float(lp)) for tok, lp in top if str(tok).strip() in affirmative)
    no = sum(math.exp(float(lp)) for tok, lp in top if str(tok).strip() in negative)
    bounded = yes == 0.0
    yes = yes or floor
    no = no or floor
    return yes / (yes + no), bounded


def parse(row: dict[str, Any], answer: Any, config: TOPRewardConfig) -> tuple[list[float] | None, str | None, int]:
    if not answer.top_logprobs:
        return None, "no log-probabilities in the answer", 0
    p = TOPREWARD_PROMPTS[config.prompt_version]
    prob, bounded = completion_probability(answer.top_logprobs, p.affirmative, p.negative)
    return [prob], None, int(bounded)


def combine(config: TOPRewardConfig, length: int, answered: list[dict[str, Any]]) -> tuple[np.ndarray, None]:
    """Per-frame progress: the answered frames' probabilities, linear in between (NaN when none)."""
    ok = sorted((r["steps"][0], r["values"][0]) for r in answered if r["values"] is not None)
    if not ok:
        return np.full(length, np.nan), None
    return interpolate([s for s, _ in ok], [v for _, v in ok], 0, length), None


def provenance(config: TOPRewardConfig) -> dict[str, Any]:
    return {"top_logprobs": config.top_logprobs,
            "progress": "p(affirmative)/(p(affirmative)+p(negative)) of the first answer token at K frames, "
                        "linear in between; absent tokens bounded by the smallest top-k probability"}


def estimate(config: TOPRewardConfig, episode_lengths: list[int], frame_size: tuple[int, int]) -> dict[str, Any]:
    """Requests and tokens: one request per sampled frame, with the sampled frames up to it."""
    from rayrg.rewards.rgvlm.pipeline import capped_size

    per_image = config.backend.image_tokens(*capped_size(*frame_size, config.max_image_side))
    p = TOPREWARD_PROMPTS[config.prompt_version]
    requests = images = text = 0
    for length in episode_lengths:
        k = len(sample_indices(length, config.frames))
        requests += k
        images += k * (k + 1) // 2
        text += (k * (len(p.system) + len(p.intro) + len(p.question)) + len(p.frame) * k * (k + 1) // 2) // 4
    input_tokens = images * per_image + text
    output_tokens = requests * config.max_tokens
    b = config.backend
    return {"requests": requests, "images": images, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_usd": (input_tokens * b.price_input_per_mtok + output_tokens * b.price_output_per_mtok) / 1e6}


TOPREWARD = progress_method("topreward", TOPRewardConfig, TOPREWARD_PROMPTS)
