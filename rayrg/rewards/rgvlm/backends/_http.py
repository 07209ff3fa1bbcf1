"""Helpers the HTTP backends share (OpenAI-compatible, Gemini) and vLLM's chat format.

Private: a backend module imports from here, never from another backend module, so each
backend stays one file that can be added or removed alone.
"""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rayrg.rewards.rgvlm.backends.base import Message, PermanentError

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """OpenAI chat messages (the image as a PNG data URI); vLLM's ``LLM.chat`` takes them too."""
    out = []
    for m in messages:
        if m.get("parts") is not None:  # several images interleaved with texts
            content = [{"type": "image_url", "image_url": {"url": _data_uri(v)}} if kind == "image"
                       else {"type": "text", "text": v} for kind, v in m["parts"]]
        elif m.get("image") is not None:
            uri = "data:image/png;base64," + base64.b64encode(m["image"]).decode()
            content: Any = [{"type": "image_url", "image_url": {"url": uri}},
                            {"type": "text", "text": m["text"]}]
        else:
            content = m["text"]
        out.append({"role": m["role"], "content": content})
    return out


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


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


def models_url(base_url: str) -> str:
    """``…/models`` under ``base_url`` (the OpenAI list of served models), query string kept."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/models"))


def read_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise PermanentError(f"environment variable {env_name} (api_key_env) is not set")
    return key
