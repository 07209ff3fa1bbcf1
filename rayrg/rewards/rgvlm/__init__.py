"""RG-VLM: per-transition rewards from a two-turn chat with a large vision-language model.

Import-light: the backends' SDKs (aiohttp, google-genai, transformers, vllm) load only in
the actors that use them (a subprocess test checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayrg.rewards.declarations import EstimateOptions, FromEnv, Need, OutputColumn
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


# -- declarations (rayrg.rewards.declarations) ------------------------------------------
def needs(config: RGVLMConfig) -> list[Need]:
    """Its backend's: API-key variable, server, weights, GPUs (each backend class says)."""
    from rayrg.rewards.rgvlm.backends import backend_class

    return backend_class(config.backend.type).needs(config.backend)


def dataset_needs(config: RGVLMConfig) -> list[str]:
    """Its prompts list the window's actions by name ("t=0: turn left"): named discrete actions,
    or continuous ones when the config states their rendering (``continuous_actions: as_vectors``)."""
    return ["action_names_or_vectors" if config.continuous_actions == "as_vectors" else "action_names"]


def paid(config: RGVLMConfig) -> bool:
    return bool(config.backend.paid)  # nonzero prices per token


def estimate(config: RGVLMConfig, dataset: Path, options: EstimateOptions) -> Any:
    from rayrg.rewards.rgvlm.estimate import estimate_cli

    return estimate_cli(config, dataset, options.latency_s, options.measure, options.address)


def outputs(config: RGVLMConfig) -> list[OutputColumn]:
    from rayrg.rewards.base import reward_column

    return [OutputColumn(reward_column("rgvlm"), "reward", "the model's score / 10 per transition"),
            *(OutputColumn(reward_column(name), "reward", f"fused: {weights}")
              for name, weights in config.fusion.items())]


def describe(config: RGVLMConfig) -> str:
    from rayrg.rewards.rgvlm.estimate import requests_per_window

    return (f"{config.backend.model} on {config.backend.type} ({requests_per_window(config):g} model calls "
            "per window, re-asks not counted)")


def from_env(raw: dict[str, Any], models_dir: Path) -> FromEnv:
    """``auto_backend``: the first backend (by ``from_env_rank``) the environment configures;
    fields the entry sets itself win over the environment's."""
    from rayrg.rewards.rgvlm.backends import backend_class, backend_names

    for cls in sorted((backend_class(n) for n in backend_names()), key=lambda c: c.from_env_rank):
        found = cls.from_env(models_dir)
        if found is None:
            continue
        merged = dict(raw)
        for key, value in found.config.items():
            own = raw.get(key)
            merged[key] = {**value, **own} if isinstance(value, dict) and isinstance(own, dict) else \
                (own if key in raw else value)
        return FromEnv(merged, found.note)
    from rayrg.config import ConfigError

    raise ConfigError("auto_backend: no RG-VLM backend can be built from the environment")


def _report_section(step: Any) -> str:
    from rayrg.rewards.rgvlm.sections import report_section

    return report_section(step)


def _browser_section(labelled: Path, options: Any) -> Any:
    from rayrg.rewards.rgvlm.browse import browser_section

    return browser_section(labelled, options)


RGVLM = LabelMethod(
    "rgvlm", RGVLMConfig, _run, extra_inputs=_extra_inputs, keep_on_redo=("_cache",), side_outputs=side_outputs,
    needs=needs, dataset_needs=dataset_needs, paid=paid, estimate=estimate, outputs=outputs, describe=describe,
    report_section=_report_section, browser_section=_browser_section, from_env=from_env,
    from_env_doc="GEMINI_API_KEY, else RAYRG_OPENAI_BASE_URL, else a tiny random Qwen2-VL as a pipeline check")

__all__ = ["RGVLM", "RGVLMConfig"]
