"""``RGVLMConfig``: the RG-VLM labeller's typed config; ``backend.type`` picks the backend.

YAML example (``jobs/label_openai.yaml``)::

    method: rgvlm
    backend:
      type: openai
      base_url: http://127.0.0.1:8000/v1
      model: Qwen/Qwen2-VL-72B-Instruct
      api_key_env: OPENAI_API_KEY   # the NAME of the variable; keys never sit in configs
      max_in_flight: 64

Everything that changes a model's answer (model, prompt version, decoding parameters,
image cap) is part of the cache key (:mod:`rayrg.rewards.rgvlm.cache`), so changing any of
them re-labels and never serves a stale answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from rayrg.config import StageConfig
from rayrg.windows.build import WindowConfig


class Decoding(StageConfig):
    """Decoding parameters of both turns (part of every label's provenance and cache key)."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens_analysis: int = Field(512, ge=1, description="Turn 1 (analysis) output budget.")
    max_tokens_scores: int = Field(96, ge=8, description="Turn 2 (scores JSON) output budget.")
    seed: int | None = Field(0, description="Sampling seed where the backend takes one.")


class _BackendBase(StageConfig):
    model: str = Field(..., description="Model name / hub id / local directory.")
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per 1M input tokens (cost estimate).")
    price_output_per_mtok: float = Field(0.0, ge=0, description="USD per 1M output tokens (cost estimate).")


class _RemoteBackend(_BackendBase):
    """Shared by the HTTP backends: concurrency, retries, rate limits, secrets by env-var name."""

    api_key_env: str | None = Field(None, description="NAME of the env var holding the API key.")
    max_in_flight: int = Field(64, ge=1, description="Windows in flight per actor (each has one request out).")
    num_actors: int = Field(1, ge=1, description="map_batches actors; limits below are split between them.")
    requests_per_minute: float | None = Field(None, gt=0, description="Rate limit (all actors together).")
    tokens_per_minute: float | None = Field(None, gt=0, description="Rate limit (all actors together).")
    max_retries: int = Field(6, ge=0, description="Retries of one request on 429/5xx/timeouts/connection errors.")
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, value: str | None) -> str | None:
        # A key pasted where its variable's name belongs would end up in provenance and logs.
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError("api_key_env is the NAME of an environment variable (e.g. GEMINI_API_KEY), "
                             "not the key itself")
        if value is not None and (len(value) > 64 or not value.isupper()):
            raise ValueError("api_key_env must be an upper-case environment variable name, not a key")
        return value


class OpenAIBackendConfig(_RemoteBackend):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (vllm serve, Gemini's, others)."""

    type: Literal["openai"] = "openai"
    base_url: str = Field(..., description="e.g. http://host:8000/v1 (…/chat/completions is appended).")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="response_format for turn 2 ('none' for endpoints without it).")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra request fields.")


class GeminiBackendConfig(_RemoteBackend):
    """Google Gemini through ``google-genai`` (async client)."""

    type: Literal["gemini"] = "gemini"
    api_key_env: str | None = "GEMINI_API_KEY"
    model: str = "gemini-3-flash"
    base_url: str | None = Field(None, description="Override of the API endpoint (tests, proxies).")
    batch_mode: bool = Field(False, description="Batch API (half price, ~24 h); not implemented yet.")

    @field_validator("batch_mode")
    @classmethod
    def _no_batch_yet(cls, value: bool) -> bool:
        if value:
            raise ValueError("gemini batch_mode is not implemented in this version; use the online API")
        return value


class TransformersBackendConfig(_BackendBase):
    """A local Hugging Face VLM (hub id or directory) on CPU or GPU; xgrammar constrains turn 2."""

    type: Literal["transformers"] = "transformers"
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:0', 'auto'.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    num_actors: int = Field(1, ge=1)
    num_cpus: float = Field(0.5, gt=0, description="CPUs per actor (fractional: whole CPUs can hang a 2-CPU pool).")
    num_gpus: float = Field(0.0, ge=0)
    batch_size: int = Field(4, ge=1, description="Windows per map_batches call.")


class VLLMBackendConfig(_BackendBase):
    """Self-hosted model on vLLM; ONE engine per actor runs both turns (prefix caching on)."""

    type: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(8192, ge=256)
    max_pixels: int = Field(1024 * 28 * 28, ge=28 * 28, description="Qwen2-VL image cap (tokens ≈ pixels/784).")
    enable_prefix_caching: bool = Field(True, description="Turn 2 reuses turn 1's image prefix.")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1)
    num_actors: int = Field(1, ge=1, description="Engine replicas (each tensor_parallel_size GPUs).")
    device: Literal["cuda", "cpu"] = Field("cuda", description="'cpu' for a CPU build of vLLM (no GPUs asked).")
    batch_size: int = Field(64, ge=1, description="Windows per engine call (vLLM batches them).")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vLLM engine kwargs.")


BackendConfig = Annotated[
    OpenAIBackendConfig | GeminiBackendConfig | TransformersBackendConfig | VLLMBackendConfig,
    Field(discriminator="type"),
]


class RGVLMConfig(StageConfig):
    """``rayrg label`` with ``method: rgvlm``: two-turn LVLM rewards per window."""

    method: Literal["rgvlm"] = "rgvlm"
    backend: BackendConfig
    prompt_version: str = Field("v1", description="Key of rayrg.rewards.rgvlm.prompts.PROMPTS.")
    decoding: Decoding = Field(default_factory=Decoding)
    max_parse_attempts: int = Field(3, ge=1, description="Turn-2 tries per window before it is marked failed.")
    max_image_side: int | None = Field(
        None, ge=28, description="Downscale grids whose longer side exceeds this (None: send as made).")
    windows: WindowConfig = Field(default_factory=WindowConfig, description="How windows are cut.")
    windows_dir: Path | None = Field(None, description="Use this windows dataset instead of building one.")
    labels_dir: Path | None = Field(None, description="Per-window labels Parquet (default <out>/_labels).")
    cache_dir: Path | None = Field(None, description="Answer cache (default <out>/_cache); share it across runs.")
    max_windows: int | None = Field(None, ge=1, description="Label only the first N windows (smoke tests).")
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

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, version: str) -> str:
        from rayrg.rewards.rgvlm.prompts import PROMPTS

        if version not in PROMPTS:
            raise ValueError(f"unknown prompt_version {version!r}; known: {sorted(PROMPTS)}")
        return version
