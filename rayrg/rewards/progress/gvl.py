"""``method: gvl`` — Generative Value Learning (arXiv 2411.04549; OpenGVL, arXiv 2509.17321).

Per episode (per chunk of ``max_chunk_frames`` frames for long ones, consecutive chunks
sharing ``chunk_overlap`` frames), K frames are sampled; the episode's first frame is shown
as the 0 % reference and the sampled frames after it in a seeded shuffled order; the model
answers each one's completion percentage (JSON schema where the backend has structured
output; parsed and validated always: exactly the right count, integers 0–100). Answers are
un-shuffled, interpolated between sampled frames, chunks stitched (overlaps averaged; their
disagreement reported). Output: ``progress_gvl`` in [0, 1] per frame and
``reward_gvl = γ·Φ(s′) − Φ(s)`` (:mod:`rayrg.rewards.shaping`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from rayrg.rewards.progress.pipeline import (
    ProgressConfig,
    answer_json,
    image_digest,
    progress_method,
    rebuild_backend_field,
)
from rayrg.rewards.progress.prompts import GVL_PROMPTS, gvl_parts, gvl_schema
from rayrg.rewards.progress.sampling import (
    chunk_spans,
    interpolate,
    sample_indices,
    shuffle_order,
    stitch,
    unshuffle,
)

NEEDS_LOGPROBS = False


class GVLConfig(ProgressConfig):
    """``rayrg label`` with ``method: gvl``."""

    ANSWER_FIELDS = ProgressConfig.ANSWER_FIELDS | {"seed", "max_chunk_frames", "chunk_overlap"}
    NEUTRAL_FIELDS = ProgressConfig.NEUTRAL_FIELDS
    PROMPTS = GVL_PROMPTS

    method: Literal["gvl"] = "gvl"
    seed: int = Field(0, description="Shuffle seed (part of every answer's key).")
    max_chunk_frames: int | None = Field(
        None, ge=3, description="Split episodes with more frames into chunks of this many (None: never).")
    chunk_overlap: int = Field(4, ge=1, description="Frames consecutive chunks share (stitched by averaging).")

    @model_validator(mode="after")
    def _overlap_fits(self) -> GVLConfig:
        if self.max_chunk_frames is not None and self.chunk_overlap >= self.max_chunk_frames:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below max_chunk_frames "
                             f"({self.max_chunk_frames})")
        return self


rebuild_backend_field(GVLConfig)
CONFIG = GVLConfig


def rows(config: GVLConfig, episode_id: str, instruction: str, frames: list[bytes]) -> list[dict[str, Any]]:
    """One query per chunk: the episode's frame 0 (0 %) and the chunk's sampled frames after it."""
    out = []
    for start, stop in chunk_spans(len(frames), config.max_chunk_frames, config.chunk_overlap):
        steps = [0, *(start + i for i in sample_indices(stop - start, config.frames) if start + i > 0)]
        if len(steps) < 2:
            continue  # a one-frame episode: its progress is 0 (combine), nothing to ask
        query_id = f"{episode_id}:{start}"
        out.append({"query_id": query_id, "episode_id": episode_id, "instruction": instruction,
                    "chunk_start": start, "chunk_stop": stop, "steps": steps,
                    "images": [frames[s] for s in steps],
                    "order": shuffle_order(len(steps), config.seed, query_id)})
    return out


def query(row: dict[str, Any], config: GVLConfig, settings: dict[str, Any]):
    from rayrg.rewards.rgvlm.backends.base import PromptQuery
    from rayrg.rewards.rgvlm.cache import cache_key

    system, parts = gvl_parts(config.prompt_version, row["instruction"], row["images"], row["order"])
    schema = gvl_schema(len(row["order"]) - 1)
    texts = (config.prompt_version, system, *(v for kind, v in parts if kind == "text"))
    # The order shown is in the texts' and images' order; the seed is in the settings too.
    key = cache_key(image_digest([row["images"][i] for i in row["order"]]), texts, settings)
    return PromptQuery(key=key, query_id=row["query_id"], system=system, parts=tuple(parts),
                       max_tokens=config.max_tokens, schema=schema)


def parse(row: dict[str, Any], answer: Any, config: GVLConfig) -> tuple[list[float] | None, str | None, int]:
    """(progress at ``row["steps"]`` in [0, 1] — frame 0 is 0 — or None, why invalid, 0)."""
    n = len(row["order"]) - 1
    try:
        data = answer_json(answer.text)
        values = data["progress"] if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"invalid answer: {exc}", 0
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        return None, f"invalid answer: {got} percentages for {n} frames", 0
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100 for v in values):
        return None, "invalid answer: percentages outside 0-100", 0
    shown = [0.0, *(float(v) / 100 for v in values)]
    return unshuffle(shown, row["order"]), None, 0


def combine(config: GVLConfig, length: int, answered: list[dict[str, Any]]) -> tuple[np.ndarray, float | None]:
    """Per-frame progress: each chunk interpolated over its span, overlaps averaged."""
    if length == 1:
        return np.zeros(1), None
    chunks = []
    for r in sorted(answered, key=lambda r: r["chunk_start"]):
        a, b = r["chunk_start"], r["chunk_stop"]
        chunks.append((a, b, None if r["values"] is None else interpolate(r["steps"], r["values"], a, b)))
    return stitch(length, chunks)


def provenance(config: GVLConfig) -> dict[str, Any]:
    return {"shuffle_seed": config.seed, "max_chunk_frames": config.max_chunk_frames,
            "chunk_overlap": config.chunk_overlap,
            "progress": "GVL completion % / 100 at K shuffled frames (first fixed at 0), linear in between; "
                        "chunks averaged where they overlap"}


def estimate(config: GVLConfig, episode_lengths: list[int], frame_size: tuple[int, int]) -> dict[str, Any]:
    """Requests and tokens of labelling episodes of these lengths (frames, final included):
    one request per chunk; its images, prompt text (characters / 4) and answer budget."""
    from rayrg.rewards.rgvlm.pipeline import capped_size

    per_image = config.backend.image_tokens(*capped_size(*frame_size, config.max_image_side))
    requests = images = text = 0
    for length in episode_lengths:
        for start, stop in chunk_spans(length, config.max_chunk_frames, config.chunk_overlap):
            n = len([i for i in sample_indices(stop - start, config.frames) if start + i > 0]) + 1
            if n < 2:
                continue
            requests += 1
            images += n
            p = GVL_PROMPTS[config.prompt_version]
            text += (len(p.system) + len(p.intro) + len(p.reference) + n * len(p.frame) + len(p.question)) // 4
    input_tokens = images * per_image + text
    output_tokens = requests * min(config.max_tokens, 4 * config.frames + 16)
    b = config.backend
    return {"requests": requests, "images": images, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_usd": (input_tokens * b.price_input_per_mtok + output_tokens * b.price_output_per_mtok) / 1e6}


GVL = progress_method("gvl", GVLConfig, GVL_PROMPTS)
