"""The Gemini backend: the real google-genai client, its HTTP transport replaced (no network)."""

from __future__ import annotations

import base64
import json

import pytest

pytest.importorskip("google.genai")
httpx2 = pytest.importorskip("httpx2", reason="google-genai's HTTP client (the httpx2 fork)")

from rayrg.rewards.rgvlm.backends.gemini import GeminiBackend  # noqa: E402
from rayrg.rewards.rgvlm.config import RGVLMConfig  # noqa: E402
from rayrg.rewards.rgvlm.pipeline import build_query  # noqa: E402
from tests.rewards._rgvlm_helpers import window_row  # noqa: E402

KEY = "AIza-test-key-never-logged"


class FakeGemini:
    """``generateContent`` over a mock transport; ``plan`` lists what each request gets."""

    def __init__(self, plan: list[str] | None = None) -> None:
        self.plan = list(plan or [])
        self.requests: list[dict] = []
        self.keys: set[str | None] = set()

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append({"url": str(request.url), "body": body})
        self.keys.add(request.headers.get("x-goog-api-key"))
        action = self.plan.pop(0) if self.plan else "ok"
        if action in ("429", "503"):
            return httpx2.Response(int(action), json={"error": {"code": int(action), "message": "injected",
                                                                 "status": "RESOURCE_EXHAUSTED"}})
        if action == "400":
            return httpx2.Response(400, json={"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}})
        schema = body.get("generationConfig", {}).get("responseSchema")
        if schema is None:
            text = "Frame t=0 to t=1: the agent turns towards the ball."
        elif action == "malformed":
            text = '{"scores": [1]}'
        else:
            scores = schema["properties"]["scores"]
            n = scores.get("minItems", scores.get("min_items"))  # proto JSON takes either spelling
            text = json.dumps({"scores": list(range(int(n)))})
        return httpx2.Response(200, json={
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 20, "totalTokenCount": 320}})


@pytest.fixture
def gemini(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)

    def make(plan=None, **backend):
        fake = FakeGemini(plan)
        config = RGVLMConfig.from_dict({"backend": {"type": "gemini", "model": "gemini-3-flash",
                                                    "backoff_initial_s": 0.01, **backend}})
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(fake.handler))
        backend_ = GeminiBackend(config.backend, config.decoding, config.max_parse_attempts, http_client=client)
        return fake, config, backend_

    return make


def test_two_turn_chat_with_image_and_schema(gemini) -> None:
    fake, config, backend = gemini()
    try:
        (answer,) = backend.label_batch([build_query(window_row(0, num_steps=5), config)])
    finally:
        backend.close()
    assert answer.scores == [0, 1, 2, 3, 4] and answer.error is None
    assert answer.input_tokens == 600 and answer.output_tokens == 40
    assert fake.keys == {KEY} and len(fake.requests) == 2
    first, second = (r["body"] for r in fake.requests)
    assert "gemini-3-flash:generateContent" in fake.requests[0]["url"]
    assert "systemInstruction" in first and "responseSchema" not in first.get("generationConfig", {})
    image = first["contents"][0]["parts"][0]["inlineData"]
    assert image.get("mimeType", image.get("mime_type")) == "image/png"
    data = image["data"]  # the SDK sends URL-safe base64 without padding
    assert base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).startswith(b"\x89PNG")
    # turn 2 carries turn 1's answer as the model's turn, then asks for the schema
    assert [c["role"] for c in second["contents"]] == ["user", "model", "user"]
    assert second["contents"][1]["parts"][0]["text"].startswith("Frame t=0")
    gen = second["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    scores = gen["responseSchema"]["properties"]["scores"]
    assert int(scores.get("minItems", scores.get("min_items"))) == 5
    assert int(scores.get("maxItems", scores.get("max_items"))) == 5
    assert scores["items"]["type"] == "INTEGER" and scores["items"]["maximum"] == 10


def test_retries_429_and_5xx_then_reparses_malformed(gemini) -> None:
    fake, config, backend = gemini(["429", "ok", "503", "malformed", "ok"])
    try:
        (answer,) = backend.label_batch([build_query(window_row(1, num_steps=3), config)])
    finally:
        backend.close()
    assert answer.scores == [0, 1, 2]
    assert answer.transport_retries == 2 and answer.invalid_answers == 1 and answer.attempts == 2
    assert len(fake.requests) == 5


def test_client_error_fails_the_window_without_retry(gemini) -> None:
    fake, config, backend = gemini(["400"])
    try:
        (answer,) = backend.label_batch([build_query(window_row(2), config)])
    finally:
        backend.close()
    assert answer.scores is None and answer.error.startswith("HTTP 400") and len(fake.requests) == 1


def test_batch_mode_is_refused_not_faked() -> None:
    from rayrg.config import ConfigError

    with pytest.raises(ConfigError, match="batch_mode is not implemented"):
        RGVLMConfig.from_dict({"backend": {"type": "gemini", "batch_mode": True}})
