"""``RGVLMConfig``: the RG-VLM labeller's typed config; ``backend.type`` picks the backend.

YAML example (``jobs/label_openai.yaml``)::

    method: rgvlm
    backend:
      type: openai
      base_url: http://127.0.0.1:8000/v1
      model: Qwen/Qwen2-VL-72B-Instruct
      api_key_env: OPENAI_API_KEY   # the NAME of the variable; keys never sit in configs
      max_in_flight: 64

Everything that can change a model's answer is part of the answer cache key
(:mod:`rayrg.rewards.rgvlm.cache`), so changing it re-labels and never serves a stale answer.
Which fields those are is decided per config class, field by field: ``ANSWER_FIELDS`` enter
the key, ``NEUTRAL_FIELDS`` (concurrency, retries, limits, timeouts, prices, the key's
variable name) do not. A field in neither list is an error (:meth:`answer_settings` raises
and ``tests/rewards/test_cache_key.py`` fails), so a new field forces that decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from rayrg.config import StageConfig, scrub_secrets
from rayrg.windows.build import WindowConfig


class _AnswerClassified(StageConfig):
    """A config whose every field is declared answer-changing or not (for the cache key)."""

    ANSWER_FIELDS: ClassVar[frozenset[str]] = frozenset()
    NEUTRAL_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def unclassified_fields(cls) -> set[str]:
        return set(cls.model_fields) ^ (cls.ANSWER_FIELDS | cls.NEUTRAL_FIELDS)

    def answer_settings(self) -> dict[str, Any]:
        """The answer-changing fields, credentials in them redacted by name (a rotated token
        is the same answer; ``api_key_env`` is neutral, so no key or key name enters)."""
        wrong = self.unclassified_fields()
        if wrong:
            raise TypeError(f"{type(self).__name__}: fields {sorted(wrong)} are not classified in "
                            "ANSWER_FIELDS / NEUTRAL_FIELDS (or are classified but do not exist)")
        data = self.to_dict()
        return scrub_secrets({name: data[name] for name in sorted(self.ANSWER_FIELDS)}, opaque=())


class Decoding(_AnswerClassified):
    """Decoding parameters of both turns (part of every label's provenance and cache key)."""

    ANSWER_FIELDS = frozenset({"temperature", "top_p", "max_tokens_analysis", "max_tokens_scores", "seed"})

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens_analysis: int = Field(512, ge=1, description="Turn 1 (analysis) output budget.")
    max_tokens_scores: int = Field(96, ge=8, description="Turn 2 (scores JSON) output budget.")
    seed: int | None = Field(0, description="Sampling seed where the backend takes one.")


class _BackendBase(_AnswerClassified):
    ANSWER_FIELDS = frozenset({"type", "model"})
    # prices only feed the cost estimate
    NEUTRAL_FIELDS = frozenset({"price_input_per_mtok", "price_output_per_mtok"})

    model: str = Field(..., description="Model name / hub id / local directory.")
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per 1M input tokens (cost estimate).")
    price_output_per_mtok: float = Field(0.0, ge=0, description="USD per 1M output tokens (cost estimate).")


class _RemoteBackend(_BackendBase):
    """Shared by the HTTP backends: concurrency, retries, rate limits, secrets by env-var name."""

    # ``headers`` can select API behaviour (beta flags, versions): in the key, minus credentials.
    ANSWER_FIELDS = _BackendBase.ANSWER_FIELDS | {"headers"}
    # Transport only: how fast and how persistently the same request is sent. ``base_url``
    # too: the served model is named by ``model``, and a job's server moves between hosts.
    NEUTRAL_FIELDS = _BackendBase.NEUTRAL_FIELDS | {
        "api_key_env", "max_in_flight", "num_actors", "requests_per_minute", "tokens_per_minute",
        "max_retries", "backoff_initial_s", "backoff_max_s", "timeout_s", "base_url"}

    api_key_env: str | None = Field(None, description="NAME of the env var holding the API key.")
    max_in_flight: int = Field(64, ge=1, description="Windows in flight per actor (each has one request out).")
    num_actors: int = Field(1, ge=1, description="map_batches actors; limits below are split between them.")
    requests_per_minute: float | None = Field(None, gt=0, description="Rate limit (all actors together).")
    tokens_per_minute: float | None = Field(None, gt=0, description="Rate limit (all actors together).")
    max_retries: int = Field(6, ge=0, description="Retries of one request on 429/5xx/timeouts/connection errors.")
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers (proxies, gateways); written to disk redacted.")

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

    ANSWER_FIELDS = _RemoteBackend.ANSWER_FIELDS | {"structured_output", "extra_body"}
    NEUTRAL_FIELDS = _RemoteBackend.NEUTRAL_FIELDS

    type: Literal["openai"] = "openai"
    base_url: str = Field(..., description="e.g. http://host:8000/v1 (…/chat/completions is appended).")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="response_format for turn 2 ('none' for endpoints without it).")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra request fields (top_k, ...); written to disk redacted.")


class GeminiBackendConfig(_RemoteBackend):
    """Google Gemini through ``google-genai`` (async client)."""

    ANSWER_FIELDS = _RemoteBackend.ANSWER_FIELDS
    NEUTRAL_FIELDS = _RemoteBackend.NEUTRAL_FIELDS | {"batch_mode"}  # same model, other queue

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

    ANSWER_FIELDS = _BackendBase.ANSWER_FIELDS | {"dtype"}
    # Placement and parallelism: the same weights at the same dtype (kernel-level float
    # differences between devices are not counted as a different answer).
    NEUTRAL_FIELDS = _BackendBase.NEUTRAL_FIELDS | {"device", "num_actors", "num_cpus", "num_gpus",
                                                    "batch_size"}

    type: Literal["transformers"] = "transformers"
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:0', 'auto'.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    num_actors: int = Field(1, ge=1)
    num_cpus: float = Field(0.5, gt=0, description="CPUs per actor (fractional: whole CPUs can hang a 2-CPU pool).")
    num_gpus: float = Field(0.0, ge=0)
    batch_size: int = Field(4, ge=1, description="Windows per map_batches call.")


class VLLMBackendConfig(_BackendBase):
    """Self-hosted model on vLLM; ONE engine per actor runs both turns (prefix caching on)."""

    ANSWER_FIELDS = _BackendBase.ANSWER_FIELDS | {"max_model_len", "max_pixels", "engine_kwargs"}
    # Placement, memory and scheduling: the same model answers the same (float-level batch
    # and kernel differences are not counted as a different answer).
    NEUTRAL_FIELDS = _BackendBase.NEUTRAL_FIELDS | {
        "tensor_parallel_size", "enable_prefix_caching", "gpu_memory_utilization", "num_actors",
        "device", "batch_size"}
    # engine_kwargs not in the key: the same classification, for the free-form dict. Any
    # other engine kwarg (dtype, quantization, kv_cache_dtype, revision, ...) is in it.
    NEUTRAL_ENGINE_KWARGS: ClassVar[frozenset[str]] = frozenset({
        "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "enforce_eager",
        "swap_space", "cpu_offload_gb", "disable_log_stats", "download_dir", "hf_token",
        "tensor_parallel_size", "pipeline_parallel_size", "distributed_executor_backend",
        "enable_prefix_caching", "enable_chunked_prefill", "disable_custom_all_reduce",
        "block_size", "compilation_config"})

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

    def answer_settings(self) -> dict[str, Any]:
        settings = super().answer_settings()
        settings["engine_kwargs"] = {k: v for k, v in settings["engine_kwargs"].items()
                                     if k not in self.NEUTRAL_ENGINE_KWARGS}
        return settings


BackendConfig = Annotated[
    OpenAIBackendConfig | GeminiBackendConfig | TransformersBackendConfig | VLLMBackendConfig,
    Field(discriminator="type"),
]


class RGVLMConfig(_AnswerClassified):
    """``rayrg label`` with ``method: rgvlm``: two-turn LVLM rewards per window."""

    ANSWER_FIELDS = frozenset({"backend", "prompt_version", "decoding", "max_image_side"})
    # ``windows`` shapes the window, whose image bytes and rendered texts the key hashes
    # directly. ``max_parse_attempts`` re-asks only until an answer parses, like a retry.
    NEUTRAL_FIELDS = frozenset({"method", "max_parse_attempts", "windows", "windows_dir", "labels_dir",
                                "cache_dir", "max_windows", "fusion"})

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

    def answer_settings(self) -> dict[str, Any]:
        """Everything besides the window itself that can change an answer (the cache key's
        settings part); every nested config contributes its own answer fields."""
        settings = super().answer_settings()
        settings["backend"] = self.backend.answer_settings()
        settings["decoding"] = self.decoding.answer_settings()
        return settings

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, version: str) -> str:
        from rayrg.rewards.rgvlm.prompts import PROMPTS

        if version not in PROMPTS:
            raise ValueError(f"unknown prompt_version {version!r}; known: {sorted(PROMPTS)}")
        return version
