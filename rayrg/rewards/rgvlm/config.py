"""``RGVLMConfig``: the RG-VLM labeller's typed config; ``backend.type`` picks the backend.

YAML example (``jobs/label_openai.yaml``)::

    method: rgvlm
    backend:
      type: openai
      base_url: http://127.0.0.1:8000/v1
      model: Qwen/Qwen2-VL-72B-Instruct
      api_key_env: OPENAI_API_KEY   # the NAME of the variable; keys never sit in configs
      max_in_flight: 64

Each backend's config class lives in its own module (``backends/<name>.py``); the
``backend`` field's discriminated union on ``type`` is built from the backend registry
(:mod:`rayrg.rewards.rgvlm.backends`) and rebuilt when a backend registers. The config
classes stay importable from here by name (``OpenAIBackendConfig`` ...).

Everything that can change a model's answer is part of the answer cache key
(:mod:`rayrg.rewards.rgvlm.cache`), so changing it re-labels and never serves a stale answer;
see :mod:`rayrg.rewards.rgvlm.settings` for how fields are classified.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from rayrg.rewards.rgvlm import backends as _backends
from rayrg.rewards.rgvlm.prompts import PROMPTS
from rayrg.rewards.rgvlm.settings import (
    AnswerClassified,
    BackendSettings,
    Decoding,
    PromptedConfig,
    RemoteBackendSettings,
)
from rayrg.windows.build import WindowConfig


class RGVLMConfig(PromptedConfig):
    """``rayrg label`` with ``method: rgvlm``: two-turn LVLM rewards per window."""

    ANSWER_FIELDS = frozenset({"backend", "prompt_version", "decoding", "max_image_side"})
    # ``windows`` shapes the window, whose image bytes and rendered texts the key hashes
    # directly. ``max_parse_attempts`` re-asks only until an answer parses, like a retry.
    NEUTRAL_FIELDS = frozenset({"method", "max_parse_attempts", "windows", "windows_dir", "labels_dir",
                                "cache_dir", "max_windows", "fusion", "continuous_actions"})
    PROMPTS = PROMPTS

    method: Literal["rgvlm"] = "rgvlm"
    backend: BackendSettings  # replaced by the registry's union below
    prompt_version: str = Field("v1", description="Key of rayrg.rewards.rgvlm.prompts.PROMPTS.")
    decoding: Decoding = Field(default_factory=Decoding)
    max_parse_attempts: int = Field(3, ge=1, description="Turn-2 tries per window before it is marked failed.")
    max_image_side: int | None = Field(
        None, ge=28, description="Downscale grids whose longer side exceeds this (None: send as made).")
    windows: WindowConfig = Field(default_factory=WindowConfig, description="How windows are cut.")
    windows_dir: str | None = Field(None, description="Use this windows dataset instead of building one (path or URI).")
    labels_dir: str | None = Field(None, description="Per-window labels Parquet (default <out>/_labels; path or URI).")
    cache_dir: str | None = Field(None, description="Answer cache (default <out>/_cache; path or URI); share it across runs.")
    max_windows: int | None = Field(None, ge=1, description="Label only the first N windows (smoke tests).")
    # A permission, not an input: the rendering is the dataset's action_name column, which the
    # window texts (hashed into each answer's key) and the dataset's fingerprint already hold.
    continuous_actions: Literal["refuse", "as_vectors"] = Field(
        "refuse", description="A dataset with continuous actions (LeRobot): 'as_vectors' shows each action as "
                              "its rounded number vector '(0.12, -0.5, ...)' in the prompt; 'refuse' refuses it.")
    fusion: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"rgvlm_sparse": {"rgvlm": 1.0, "sparse": 1.0}},
        description="Fused variants: column suffix -> weights over 'rgvlm' and 'sparse'.")

    @field_validator("fusion")
    @classmethod
    def _fusion_terms(cls, fusion: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, weights in fusion.items():
            unknown = set(weights) - {"rgvlm", "sparse"}
            if unknown or not weights:
                raise ValueError(f"fusion {name!r}: weights over 'rgvlm'/'sparse' only, got {sorted(weights)}")
            if not name.replace("_", "").isalnum():
                raise ValueError(f"fusion name {name!r} must be alphanumeric/underscore")
        return fusion



def backend_config_union() -> Any:
    """The ``backend`` field's type: the registered backends' configs, discriminated by ``type``."""
    configs = tuple(_backends.backend_class(name).config_class for name in _backends.backend_names())
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[configs], Field(discriminator="type")]  # noqa: UP007 - a runtime tuple


def _rebuild_backend_field() -> None:
    RGVLMConfig.model_fields["backend"].annotation = backend_config_union()
    RGVLMConfig.model_rebuild(force=True)


_rebuild_backend_field()
_backends.on_register(_rebuild_backend_field)


def __getattr__(name: str) -> Any:
    """``OpenAIBackendConfig`` and the others by class name (each lives in its backend module)."""
    for backend in _backends.backend_names():
        config_class = _backends.backend_class(backend).config_class
        if config_class.__name__ == name:
            return config_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AnswerClassified", "BackendSettings", "Decoding", "RGVLMConfig", "RemoteBackendSettings",
           "backend_config_union"]
