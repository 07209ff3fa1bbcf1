"""Google Gemini through ``google-genai`` (the maintained SDK; ``google-generativeai`` is gone).

Each turn is one ``client.aio.models.generate_content`` call carrying the whole history
(system instruction, the image, turn 1's answer): the same request ``chats.send_message``
builds, but a re-asked turn 2 does not grow the history with the rejected answer. Turn 2
asks for ``application/json`` with a ``response_schema`` of exactly ``num_steps`` integers
0..10. The SDK's own retries stay off; :class:`AsyncChatBackend` retries 429/5xx/timeouts
with backoff under the configured requests/tokens-per-minute limit, like the OpenAI backend.

The Batch API (half price, ~24 h, two jobs for two turns) is not implemented: ``batch_mode``
is rejected by the config rather than silently run online.
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from rayrg.config import ConfigError
from rayrg.rewards.declarations import FromEnv
from rayrg.rewards.rgvlm.backends._http import RETRY_STATUSES, read_api_key
from rayrg.rewards.rgvlm.backends.base import (
    AsyncChatBackend,
    Completion,
    Message,
    PermanentError,
    TransientError,
)
from rayrg.rewards.rgvlm.settings import Decoding, RemoteBackendSettings


class GeminiBackendConfig(RemoteBackendSettings):
    """Google Gemini through ``google-genai`` (async client)."""

    ANSWER_FIELDS = RemoteBackendSettings.ANSWER_FIELDS | {"media_resolution"}  # what the model sees
    NEUTRAL_FIELDS = RemoteBackendSettings.NEUTRAL_FIELDS | {"batch_mode"}  # same model, other queue

    type: Literal["gemini"] = "gemini"
    api_key_env: str | None = "GEMINI_API_KEY"
    model: str = "gemini-3-flash"
    base_url: str | None = Field(None, description="Override of the API endpoint (tests, proxies).")
    batch_mode: bool = Field(False, description="Batch API (half price, ~24 h); not implemented yet.")
    media_resolution: Literal["low", "medium", "high"] | None = Field(
        None, description="Gemini 3 image resolution level (None: the model's default, high for images).")

    @field_validator("batch_mode")
    @classmethod
    def _no_batch_yet(cls, value: bool) -> bool:
        if value:
            raise ValueError("gemini batch_mode is not implemented in this version; use the online API")
        return value

    def image_tokens(self, width: int, height: int) -> int:
        """Gemini 3 models: a fixed count per image by ``media_resolution``, whatever its
        size; earlier models (2.x): 258 tokens for an image ≤ 384 px per side, else 258 per
        768×768 tile."""
        if self.model.startswith("gemini-") and not self.model.startswith(("gemini-1", "gemini-2")):
            return GEMINI3_IMAGE_TOKENS[self.media_resolution or "high"]
        if max(width, height) <= 384:
            return GEMINI_TOKENS_PER_TILE
        return GEMINI_TOKENS_PER_TILE * math.ceil(width / GEMINI_IMAGE_TILE) * math.ceil(height / GEMINI_IMAGE_TILE)


GEMINI_IMAGE_TILE = 768  # Gemini 2.x: ≤384 px per side is one 258-token image; larger ones tile at 768×768
GEMINI_TOKENS_PER_TILE = 258
# Gemini 3: tokens per image at each media_resolution level (high is the default for images)
GEMINI3_IMAGE_TOKENS = {"low": 280, "medium": 560, "high": 1120}


def gemini_schema(schema: dict[str, Any]):
    """The scores JSON schema as a ``types.Schema`` (Gemini's OpenAPI subset)."""
    from google.genai import types

    scores = schema["properties"]["scores"]
    return types.Schema(
        type=types.Type.OBJECT,
        properties={"scores": types.Schema(
            type=types.Type.ARRAY,
            items=types.Schema(type=types.Type.INTEGER, minimum=scores["items"]["minimum"],
                               maximum=scores["items"]["maximum"]),
            min_items=scores["minItems"], max_items=scores["maxItems"])},
        required=["scores"])


def to_gemini_contents(messages: list[Message]) -> tuple[str | None, list[Any]]:
    from google.genai import types

    system = None
    contents = []
    for m in messages:
        if m["role"] == "system":
            system = m["text"]
            continue
        parts = []
        if m.get("parts") is not None:  # several images interleaved with texts
            parts = [types.Part.from_bytes(data=v, mime_type="image/png") if kind == "image"
                     else types.Part.from_text(text=v) for kind, v in m["parts"]]
            contents.append(types.Content(role="user", parts=parts))
            continue
        if m.get("image") is not None:
            parts.append(types.Part.from_bytes(data=m["image"], mime_type="image/png"))
        parts.append(types.Part.from_text(text=m["text"]))
        contents.append(types.Content(role="model" if m["role"] == "assistant" else "user", parts=parts))
    return system, contents


def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError, ConnectionError]
    for module in ("httpx2", "httpx"):
        try:
            mod = __import__(module)
            errors.append(mod.TransportError)  # timeouts, connect/read errors, protocol errors
        except ImportError:
            pass
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    return tuple(errors)


# model name -> identity: the API is asked once per run (process).
_VERSIONS: dict[str, str] = {}


class GeminiBackend(AsyncChatBackend):
    config_class = GeminiBackendConfig
    from_env_rank = 0  # a key in the environment is the first choice of ``auto_backend``

    @classmethod
    def from_env(cls, models_dir: Path) -> FromEnv | None:
        """``GEMINI_API_KEY`` set: Gemini, model ``RAYRG_GEMINI_MODEL`` (default ``gemini-3-flash``)."""
        if not os.environ.get("GEMINI_API_KEY"):
            return None
        return FromEnv({"backend": {"type": "gemini", "api_key_env": "GEMINI_API_KEY",
                                    "model": os.environ.get("RAYRG_GEMINI_MODEL", "gemini-3-flash")}})

    @classmethod
    def model_identity(cls, config: GeminiBackendConfig, http_client: Any = None) -> str:
        """``gemini:<name>@<version>``: the version the API reports for the model (``models.get``),
        asked once per run; an alias that moves to a new version then labels again.
        ``http_client``: tests, an ``httpx2.Client`` with a mock transport."""
        from google import genai
        from google.genai import errors, types

        if config.model in _VERSIONS and http_client is None:
            return _VERSIONS[config.model]
        options: dict[str, Any] = {"timeout": int(min(config.timeout_s, 30.0) * 1000)}
        if config.base_url:
            options["base_url"] = config.base_url
        if config.headers:
            options["headers"] = dict(config.headers)
        if http_client is not None:
            options["httpx_client"] = http_client
        try:
            key = read_api_key(config.api_key_env)
        except PermanentError as exc:
            raise ConfigError(f"backend.api_key_env: {exc}") from None
        client = genai.Client(api_key=key, http_options=types.HttpOptions(**options))
        try:
            model = client.models.get(model=config.model)
        except errors.APIError as exc:
            raise ConfigError(f"backend.model: Gemini answered HTTP {exc.code} {exc.status or ''} when asked "
                              f"for model {config.model!r}".rstrip()) from None
        except _transport_errors() as exc:
            raise ConfigError(f"backend: cannot ask Gemini for model {config.model!r} "
                              f"({type(exc).__name__})") from None
        identity = f"gemini:{model.name or config.model}@{model.version or 'unreported'}"
        if http_client is None:
            _VERSIONS[config.model] = identity
        return identity

    def __init__(self, config: GeminiBackendConfig, decoding: Decoding, max_parse_attempts: int = 3,
                 share: float = 1.0, http_client: Any = None) -> None:
        from google import genai
        from google.genai import types

        super().__init__(config, decoding, max_parse_attempts, share)
        options: dict[str, Any] = {"timeout": int(config.timeout_s * 1000)}
        if config.base_url:
            options["base_url"] = config.base_url
        if config.headers:
            options["headers"] = dict(config.headers)
        if http_client is not None:  # tests: an httpx2.AsyncClient with a mock transport
            options["httpx_async_client"] = http_client
        key = read_api_key(config.api_key_env)
        self.add_secret(key)
        self.client = genai.Client(api_key=key, http_options=types.HttpOptions(**options))
        self._errors = _transport_errors()

    @classmethod
    def logprobs_unavailable(cls, config: Any) -> str | None:
        return None  # response_logprobs / logprobs in the generation config (top 20 at most)

    def generation_config(self, system: str | None, schema: dict[str, Any] | None, max_tokens: int,
                          top_logprobs: int = 0):
        from google.genai import types

        kwargs: dict[str, Any] = {"system_instruction": system, "temperature": self.decoding.temperature,
                                  "top_p": self.decoding.top_p, "max_output_tokens": max_tokens,
                                  "seed": self.decoding.seed}
        if self.config.media_resolution is not None:
            kwargs["media_resolution"] = f"MEDIA_RESOLUTION_{self.config.media_resolution.upper()}"
        if schema is not None:
            kwargs.update(response_mime_type="application/json", response_schema=gemini_schema(schema))
        if top_logprobs:
            kwargs.update(response_logprobs=True, logprobs=min(20, top_logprobs))
        return types.GenerateContentConfig(**kwargs)

    async def complete(self, messages: list[Message], schema: dict[str, Any] | None,
                       max_tokens: int, top_logprobs: int = 0) -> Completion:
        from google.genai import errors

        system, contents = to_gemini_contents(messages)
        try:
            response = await self.client.aio.models.generate_content(
                model=self.config.model, contents=contents,
                config=self.generation_config(system, schema, max_tokens, top_logprobs))
        except errors.APIError as exc:
            reason = f"HTTP {exc.code}: {exc.status or ''}".strip()
            if exc.code in RETRY_STATUSES or (exc.code or 0) >= 500:
                raise TransientError(reason) from exc
            raise PermanentError(reason) from exc
        except self._errors as exc:
            raise TransientError(f"transport error: {type(exc).__name__}") from exc
        usage = response.usage_metadata
        text = response.text
        if text is None:
            reason = response.candidates[0].finish_reason if response.candidates else "no candidates"
            raise TransientError(f"empty response ({reason})")
        top = None
        if top_logprobs:
            result = getattr(response.candidates[0], "logprobs_result", None) if response.candidates else None
            steps = getattr(result, "top_candidates", None) or []
            if steps:
                top = [(c.token or "", float(c.log_probability)) for c in steps[0].candidates or []]
        return Completion(text, int(getattr(usage, "prompt_token_count", 0) or 0),
                          int(getattr(usage, "candidates_token_count", 0) or 0), top_logprobs=top)

    async def aclose(self) -> None:
        try:
            await self.client.aio.aclose()
        except Exception:
            pass
