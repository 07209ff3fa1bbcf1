"""OpenAI-compatible chat completions over aiohttp (``vllm serve``, Gemini's endpoint, others).

Ray's ``HttpRequestProcessorConfig`` keeps one request in flight per actor (measured with Ray 2.60), which
caps throughput at 1/latency per actor; this backend keeps ``max_in_flight`` windows in
flight per actor on one ``aiohttp`` session instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rayrg.rewards.rgvlm.backends.base import (
    AsyncChatBackend,
    Completion,
    Message,
    PermanentError,
    TransientError,
)
from rayrg.rewards.rgvlm.config import Decoding, OpenAIBackendConfig

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.get("image") is not None:
            uri = "data:image/png;base64," + base64.b64encode(m["image"]).decode()
            content: Any = [{"type": "image_url", "image_url": {"url": uri}},
                            {"type": "text", "text": m["text"]}]
        else:
            content = m["text"]
        out.append({"role": m["role"], "content": content})
    return out


def retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def chat_url(base_url: str) -> str:
    """``…/chat/completions`` under ``base_url``, keeping its query string (gateways that
    take ``?api-version=`` or a key there)."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/chat/completions"))


def read_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise PermanentError(f"environment variable {env_name} (api_key_env) is not set")
    return key


class OpenAIBackend(AsyncChatBackend):
    def __init__(self, config: OpenAIBackendConfig, decoding: Decoding, max_parse_attempts: int = 3,
                 share: float = 1.0) -> None:
        super().__init__(config, decoding, max_parse_attempts, share)
        self.url = chat_url(config.base_url)
        key = read_api_key(config.api_key_env)
        self.add_secret(key)
        # The key lives only in this header dict; it is never logged or stored.
        self._headers = {**config.headers, **({"Authorization": f"Bearer {key}"} if key else {})}
        self._session = None

    def request_body(self, messages: list[Message], schema: dict[str, Any] | None,
                     max_tokens: int) -> dict[str, Any]:
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
                       max_tokens: int) -> Completion:
        import aiohttp

        session = await self._get_session()
        body = self.request_body(messages, schema, max_tokens)
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
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"malformed response body: {raw[:80]!r}") from exc
        usage = data.get("usage") or {}
        # vllm serve fills prompt_tokens_details.cached_tokens (prefix-cache hits) when started
        # with --enable-prompt-tokens-details; OpenAI itself always does
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                          int(cached))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
