"""OpenAI-compatible chat completions over aiohttp (``vllm serve``, Gemini's endpoint, others).

Ray's ``HttpRequestProcessorConfig`` keeps one request in flight per actor (measured with Ray 2.60), which
caps throughput at 1/latency per actor; this backend keeps ``max_in_flight`` windows in
flight per actor on one ``aiohttp`` session instead.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rayrg.config import ConfigError
from rayrg.rewards.declarations import FromEnv, Need
from rayrg.rewards.rgvlm.backends import _qwen2vl
from rayrg.rewards.rgvlm.backends._http import (
    RETRY_STATUSES,
    chat_url,
    models_url,
    read_api_key,
    retry_after_s,
    to_openai_messages,
)
from rayrg.rewards.rgvlm.backends.base import (
    AsyncChatBackend,
    Completion,
    Message,
    PermanentError,
    TransientError,
)
from rayrg.rewards.rgvlm.settings import Decoding, RemoteBackendSettings

# (models URL, served name) -> identity: a server is asked once per run (process).
_SERVED: dict[tuple[str, str], str] = {}


class OpenAIBackendConfig(RemoteBackendSettings):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (vllm serve, Gemini's, others)."""

    ANSWER_FIELDS = RemoteBackendSettings.ANSWER_FIELDS | {"structured_output", "extra_body"}
    NEUTRAL_FIELDS = RemoteBackendSettings.NEUTRAL_FIELDS

    type: Literal["openai"] = "openai"
    base_url: str = Field(..., description="e.g. http://host:8000/v1 (…/chat/completions is appended).")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="response_format for turn 2 ('none' for endpoints without it).")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra request fields (top_k, ...); written to disk redacted.")

    def image_tokens(self, width: int, height: int) -> int:
        # The endpoints this backend is pointed at here serve Qwen2-VL (``vllm serve``), whose
        # processor defaults apply; another model family counts images its own way.
        return _qwen2vl.image_tokens(width, height)


class OpenAIBackend(AsyncChatBackend):
    config_class = OpenAIBackendConfig
    from_env_rank = 1  # after a Gemini key

    @classmethod
    def from_env(cls, models_dir: Path) -> FromEnv | None:
        """``RAYRG_OPENAI_BASE_URL`` set: that OpenAI-compatible endpoint, model
        ``RAYRG_OPENAI_MODEL`` (required), key from ``OPENAI_API_KEY`` if set."""
        base_url = os.environ.get("RAYRG_OPENAI_BASE_URL")
        if not base_url:
            return None
        model = os.environ.get("RAYRG_OPENAI_MODEL")
        if not model:
            raise ConfigError("RAYRG_OPENAI_BASE_URL is set but RAYRG_OPENAI_MODEL is not: name the served model")
        return FromEnv({"backend": {"type": "openai", "base_url": base_url, "model": model,
                                    "api_key_env": "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None}})

    @classmethod
    def needs(cls, config: OpenAIBackendConfig) -> list[Need]:
        """Its key variable, and the server reachable (``base_url``) from the workers."""
        return [*super().needs(config),
                Need("service", "backend.base_url", config.base_url, why="the openai backend's server")]

    @classmethod
    def model_identity(cls, config: OpenAIBackendConfig) -> str:
        """What the server reports about the served name (``GET …/models``: vLLM's ``root``
        is the weights it loaded), asked once per run. ``base_url`` stays out of the key: a
        job's server moves between hosts. Only a server that reports nothing about its
        weights (no ``root``/revision, or no ``/models`` at all) is keyed to its host."""
        import urllib.error
        import urllib.request

        from rayrg.models.identity import served_identity

        url = models_url(config.base_url)
        if (url, config.model) in _SERVED:
            return _SERVED[(url, config.model)]
        headers = dict(config.headers)
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ConfigError(f"backend.api_key_env: environment variable {config.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        where = url.split("?", 1)[0]  # a gateway's key may sit in the query: never echoed
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=min(config.timeout_s, 30.0)) as response:
                reported = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 405, 501):
                raise ConfigError(f"backend.base_url: {where} answered HTTP {exc.code} when asked which "
                                  "model it serves") from None
            reported = None  # no model list on this server: keyed to its host
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise ConfigError(f"backend.base_url: cannot ask {where} which model it serves ({reason})") from None
        identity = served_identity(reported, config.model, config.base_url)
        if identity.startswith("host:"):
            print(f"[rayrg] backend: {where} reports nothing about the weights behind {config.model!r}; "
                  "answers are keyed to its host, so the same server on another host labels again",
                  flush=True)
        _SERVED[(url, config.model)] = identity
        return identity

    def __init__(self, config: OpenAIBackendConfig, decoding: Decoding, max_parse_attempts: int = 3,
                 share: float = 1.0) -> None:
        super().__init__(config, decoding, max_parse_attempts, share)
        self.url = chat_url(config.base_url)
        key = read_api_key(config.api_key_env)
        self.add_secret(key)
        # The key lives only in this header dict; it is never logged or stored.
        self._headers = {**config.headers, **({"Authorization": f"Bearer {key}"} if key else {})}
        self._session = None

    @classmethod
    def logprobs_unavailable(cls, config: OpenAIBackendConfig) -> str | None:
        return None  # logprobs / top_logprobs (vllm serve, OpenAI); a server without them fails the query

    def request_body(self, messages: list[Message], schema: dict[str, Any] | None,
                     max_tokens: int, top_logprobs: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": to_openai_messages(messages),
            "max_tokens": max_tokens,
            "temperature": self.decoding.temperature,
            "top_p": self.decoding.top_p,
        }
        if self.decoding.seed is not None:
            body["seed"] = self.decoding.seed
        if schema is not None and self.config.structured_output == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "scores", "schema": schema, "strict": True}}
        elif schema is not None and self.config.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        if top_logprobs:
            body.update(logprobs=True, top_logprobs=top_logprobs)
        body.update(self.config.extra_body)
        return body

    async def _get_session(self):
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.config.max_in_flight))
        return self._session

    async def complete(self, messages: list[Message], schema: dict[str, Any] | None,
                       max_tokens: int, top_logprobs: int = 0) -> Completion:
        import aiohttp

        session = await self._get_session()
        body = self.request_body(messages, schema, max_tokens, top_logprobs)
        try:
            async with session.post(self.url, json=body, headers=self._headers) as response:
                raw = await response.read()
                if response.status in RETRY_STATUSES or response.status >= 500:
                    raise TransientError(f"HTTP {response.status}",
                                         retry_after_s(response.headers.get("Retry-After")))
                if response.status >= 400:
                    snippet = raw[:200].decode("utf-8", "replace")
                    raise PermanentError(f"HTTP {response.status}: {snippet}")
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise TransientError("timeout") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransientError(f"connection error: {type(exc).__name__}") from exc
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"]["content"] or ""
            top = None
            if top_logprobs:
                content = (data["choices"][0].get("logprobs") or {}).get("content") or []
                top = [(str(t["token"]), float(t["logprob"])) for t in content[0].get("top_logprobs") or []] \
                    if content else None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"malformed response body: {raw[:80]!r}") from exc
        usage = data.get("usage") or {}
        # vllm serve fills prompt_tokens_details.cached_tokens (prefix-cache hits) when started
        # with --enable-prompt-tokens-details; OpenAI itself always does
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                          int(cached), top_logprobs=top)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
