"""RG-VLM: per-transition rewards from a two-turn chat with a large vision-language model.

Import-light: the backends' SDKs (aiohttp, google-genai, transformers, vllm) load only in
the actors that use them (a subprocess test checks it).
"""

from __future__ import annotations

from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.rgvlm.config import RGVLMConfig


def _run(config, dataset, out, *, address=None):
    from rayrg.rewards.rgvlm.pipeline import label_rgvlm

    return label_rgvlm(config, dataset, out, address=address)


RGVLM = LabelMethod("rgvlm", RGVLMConfig, _run)

__all__ = ["RGVLM", "RGVLMConfig"]
