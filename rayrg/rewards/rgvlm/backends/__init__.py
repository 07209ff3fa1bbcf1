"""Backends by ``backend.type``; each module is imported only when its backend is used."""

from __future__ import annotations

import importlib
from typing import Any

# backend type -> "module:class"; every class takes (backend_config, decoding, max_parse_attempts, share)
BACKENDS: dict[str, str] = {
    "openai": "rayrg.rewards.rgvlm.backends.openai_http:OpenAIBackend",
    "gemini": "rayrg.rewards.rgvlm.backends.gemini:GeminiBackend",
    "transformers": "rayrg.rewards.rgvlm.backends.hf:TransformersBackend",
    "vllm": "rayrg.rewards.rgvlm.backends.vllm:VLLMBackend",
}


def build_backend(config: Any, share: float = 1.0, **kwargs: Any):
    """The backend for an :class:`~rayrg.rewards.rgvlm.config.RGVLMConfig`.

    ``share`` is this actor's fraction of the configured rate limits.
    """
    module_name, attr = BACKENDS[config.backend.type].split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls(config.backend, config.decoding, max_parse_attempts=config.max_parse_attempts,
               share=share, **kwargs)
