"""Which RG-VLM backend an experiment uses when its config says ``auto_backend: true``.

Looked up in the environment, in this order:

1. ``GEMINI_API_KEY`` → Gemini (model ``RAYRG_GEMINI_MODEL``, default ``gemini-3-flash``);
2. ``RAYRG_OPENAI_BASE_URL`` → an OpenAI-compatible endpoint (model ``RAYRG_OPENAI_MODEL``,
   key from ``OPENAI_API_KEY`` if set);
3. nothing → a tiny randomly initialised Qwen2-VL checkpoint built locally and run with
   transformers: a check that the pipeline works end to end, NOT a reward model. The
   returned note says so; the runner prints it prominently and the report carries it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError

PIPELINE_CHECK_NOTE = (
    "NO RG-VLM BACKEND CONFIGURED: RG-VLM ran through a tiny, randomly initialised Qwen2-VL "
    "checkpoint as a PIPELINE CHECK ONLY. Its rewards are noise; results of the RG-VLM methods "
    "say nothing about RG-VLM. Set GEMINI_API_KEY or RAYRG_OPENAI_BASE_URL (+ RAYRG_OPENAI_MODEL) "
    "to label with a real model."
)


def auto_rgvlm_label(raw: dict[str, Any], models_dir: Path) -> tuple[dict[str, Any], str | None]:
    """``raw`` (an rgvlm label config with ``auto_backend``) → a concrete config and a note."""
    config = {k: v for k, v in raw.items() if k != "auto_backend"}
    if os.environ.get("GEMINI_API_KEY"):
        backend = {"type": "gemini", "model": os.environ.get("RAYRG_GEMINI_MODEL", "gemini-3-flash"),
                   "api_key_env": "GEMINI_API_KEY"}
        return {**config, "backend": {**backend, **config.get("backend", {})}}, None
    if os.environ.get("RAYRG_OPENAI_BASE_URL"):
        model = os.environ.get("RAYRG_OPENAI_MODEL")
        if not model:
            raise ConfigError("RAYRG_OPENAI_BASE_URL is set but RAYRG_OPENAI_MODEL is not: name the served model")
        backend = {"type": "openai", "base_url": os.environ["RAYRG_OPENAI_BASE_URL"], "model": model,
                   "api_key_env": "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None}
        return {**config, "backend": {**backend, **config.get("backend", {})}}, None

    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

    checkpoint = models_dir / "tiny-qwen2vl"
    if not (checkpoint / "config.json").exists():
        build_tiny_qwen2vl(checkpoint)
    # Two actors of half a CPU: nothing else runs while the labels are made, and the tiny
    # model's generate loop is bound by per-token overhead, so two halve the stage's time.
    backend = {"type": "transformers", "model": str(checkpoint), "device": "cpu", "num_actors": 2}
    # Short analyses keep the check fast; the scores turn is constrained by xgrammar anyway.
    decoding = {"max_tokens_analysis": 16, **config.get("decoding", {})}
    return {**config, "backend": {**backend, **config.get("backend", {})}, "decoding": decoding}, PIPELINE_CHECK_NOTE
