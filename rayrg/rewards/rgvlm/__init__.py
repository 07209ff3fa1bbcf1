"""RG-VLM: per-transition rewards from a two-turn chat with a large vision-language model.

Import-light: the backends' SDKs (aiohttp, google-genai, transformers, vllm) load only in
the actors that use them (a subprocess test checks it).
"""

from __future__ import annotations

from typing import Any

from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.rgvlm.config import RGVLMConfig


def _run(config, dataset, out, *, address=None):
    from rayrg.rewards.rgvlm.pipeline import label_rgvlm

    return label_rgvlm(config, dataset, out, address=address)


def _extra_inputs(config: RGVLMConfig) -> dict:
    """The prompt texts themselves, not only their version name, and the model's identity
    (its weights, snapshot, what its server reports: not only its name)."""
    from dataclasses import asdict

    from rayrg.rewards.rgvlm.backends import backend_class
    from rayrg.rewards.rgvlm.prompts import PROMPTS

    template = PROMPTS.get(config.prompt_version)
    return {"prompt": asdict(template) if template else config.prompt_version,
            "model_identity": backend_class(config.backend.type).model_identity(config.backend)}


def side_outputs(config: RGVLMConfig, out: Any) -> dict[str, Any]:
    """The windows dataset and the labels table a run writes (or reads: ``windows_dir``):
    local ``Path``s for local ones (as before), else :class:`rayrg.storage.Location`s."""
    from rayrg.storage import resolve
    from rayrg.windows.staging import as_arg

    out = resolve(out)
    return {"windows": as_arg(resolve(config.windows_dir) if config.windows_dir else out / "_windows"),
            "labels": as_arg(resolve(config.labels_dir) if config.labels_dir else out / "_labels")}


RGVLM = LabelMethod("rgvlm", RGVLMConfig, _run, extra_inputs=_extra_inputs, keep_on_redo=("_cache",),
                    side_outputs=side_outputs)

__all__ = ["RGVLM", "RGVLMConfig"]
