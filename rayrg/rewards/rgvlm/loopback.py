"""A chat-completions server on 127.0.0.1 for tests and benchmarks (no model, no network).

It speaks enough of the OpenAI protocol for :class:`OpenAIBackend` and injects the faults
the labeller must survive: latency, 429 (with ``Retry-After``), 500, timeouts (a reply
slower than the client waits), malformed turn-2 answers, and a "hang" mode that stops
answering after N labelled windows (to kill a labelling run mid-way deterministically).

Counters are kept per window (hash of the image + prompt), so tests can prove that a
window was labelled exactly once across a killed run and its resume.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    latency_s: float = 0.0
    error_rate: float = 0.0  # fraction of requests answered 429 or 500 (half each)
    timeout_rate: float = 0.0  # fraction answered after ``timeout_delay_s`` (client times out)
    timeout_delay_s: float = 5.0
    malformed_rate: float = 0.0  # fraction of turn-2 answers that do not parse
    retry_after_s: float | None = 0.0  # Retry-After header on 429
    hang_after_windows: int | None = None  # stop answering once this many windows got scores
    seed: int = 0
    # progress queries (GVL): fraction answered with percentages outside 0-100
    invalid_progress_rate: float = 0.0
    # log-probability queries (TOPReward): fraction whose top list leaves out the affirmative token
    drop_affirmative_rate: float = 0.0
    logprobs: bool = True  # False: a server that ignores logprobs (returns none)


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    turn1_answers: Counter = field(default_factory=Counter)  # window digest -> 200 answers
    scores_answers: Counter = field(default_factory=Counter)  # window digest -> valid turn-2 answers
    malformed: int = 0
    progress_answers: Counter = field(default_factory=Counter)  # query digest -> answers (GVL)
    logprob_answers: Counter = field(default_factory=Counter)  # query digest -> answers (TOPReward)
    auth_headers: set = field(default_factory=set)
    first_request_at: float | None = None  # time.monotonic()
    last_answer_at: float | None = None
    # Requests being handled now, and its integral over time (request-seconds): the mean number
    # in flight over a span is the change of the integral over the span's length.
    in_flight: int = 0
    in_flight_seconds: float = 0.0
    _since: float = 0.0

    def _count(self, delta: int) -> None:  # on the server's event loop only
        now = time.monotonic()
        self.in_flight_seconds += self.in_flight * (now - self._since) if self._since else 0.0
        self.in_flight, self._since = self.in_flight + delta, now

    def occupancy(self) -> float:
        """The integral up to now (request-seconds), for mean in-flight figures. Read-only: the
        server's thread is the only writer (a write from here could lose its increment)."""
        in_flight, since, area = self.in_flight, self._since, self.in_flight_seconds
        return area + in_flight * (time.monotonic() - since) if since else area


def _window_digest(messages: list[dict[str, Any]]) -> str:
    first_user = next(m for m in messages if m["role"] == "user")
    return hashlib.sha256(json.dumps(first_user["content"], sort_keys=True).encode()).hexdigest()[:16]



def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens as a server of a Qwen2-VL model reports them, without a tokenizer: text by
    characters / 4, each image (H/28)·(W/28) after the processor's resize."""
    from rayrg.rewards.rgvlm.backends import _qwen2vl
    from rayrg.rewards.rgvlm.backends.base import png_size

    chars = images = 0
    for m in messages:
        content = m["content"]
        for part in content if isinstance(content, list) else [{"type": "text", "text": content}]:
            if part["type"] == "text":
                chars += len(part["text"])
            elif part["type"] == "image_url":
                png = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                images += _qwen2vl.image_tokens(*png_size(png))
    return chars // 4 + images


def _num_progress(body: dict[str, Any]) -> int | None:
    """How many percentages a GVL query asks for (None: not a progress query)."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    if "progress" in (schema.get("properties") or {}):
        return int(schema["properties"]["progress"]["minItems"])
    match = re.search(r"each of the (\d+) frames", json.dumps(body["messages"][-1]["content"]))
    return int(match.group(1)) if match else None


def _logprobs_answer(digest: str, top: int, drop_affirmative: bool) -> tuple[str, dict[str, Any]]:
    """A "True"/"False" first token with ``top`` alternatives; p(True) fixed by the query digest."""
    import math

    p_true = 0.05 + 0.9 * (int(digest[:8], 16) % 1000) / 1000
    ranked = [("True", p_true), ("False", (1 - p_true) * 0.9)]
    rest = (1 - p_true) * 0.1
    ranked += [(f"tok{i}", rest / 2 ** (i + 1)) for i in range(max(0, top - 2))]
    ranked.sort(key=lambda t: -t[1])
    if drop_affirmative:
        ranked = [t for t in ranked if t[0] != "True"]
    entries = [{"token": tok, "logprob": math.log(p), "bytes": list(tok.encode())} for tok, p in ranked[:top]]
    first = entries[0]
    return first["token"], {"content": [{**first, "top_logprobs": entries}]}


def _num_scores(body: dict[str, Any]) -> int:
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if schema:
        return int(schema["properties"]["scores"]["minItems"])
    text = body["messages"][-1]["content"]
    match = re.search(r"exactly (\d+) integers", text if isinstance(text, str) else json.dumps(text))
    return int(match.group(1)) if match else 8


class LoopbackServer:
    """``with LoopbackServer(Faults(...)) as server: server.base_url`` (…/v1)."""

    def __init__(self, faults: Faults | None = None, port: int = 0, root: str | None = "/models/loopback-vlm",
                 served: tuple[str, ...] = ("loopback-vlm",)) -> None:
        """``root``: the weights path ``GET /v1/models`` reports for each served name, as
        ``vllm serve`` does (None: no root, like servers that say nothing about their
        weights); ``served``: the names it lists there (it answers chats for any name)."""
        self.root, self.served = root, served
        self.models_requests = 0
        self.faults = faults or Faults()
        self.stats = Stats()
        self._rng = random.Random(self.faults.seed)
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="loopback")
        self._runner = None
        self._release = None
        self.port = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def release(self) -> None:
        """End hang mode: hung requests get errors (their clients are gone), new ones answers."""
        self.faults.hang_after_windows = None
        self._loop.call_soon_threadsafe(self._release.set)

    async def _handle(self, request):
        self.stats._count(+1)
        try:
            return await self._answer(request)
        finally:
            self.stats._count(-1)

    async def _answer(self, request):
        from aiohttp import web

        stats, faults = self.stats, self.faults
        stats.requests += 1
        stats.first_request_at = stats.first_request_at or time.monotonic()
        stats.auth_headers.add(request.headers.get("Authorization"))
        body = await request.json()
        roll = self._rng.random()
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if faults.hang_after_windows is not None and len(stats.scores_answers) >= faults.hang_after_windows:
            # checked after the latency, right before answering: exactly N windows get scores
            await self._release.wait()
            stats.by_status[503] += 1
            return web.Response(status=503, text="released")
        if roll < faults.error_rate:
            status = 429 if roll < faults.error_rate / 2 else 500
            stats.by_status[status] += 1
            headers = ({"Retry-After": str(faults.retry_after_s)}
                       if status == 429 and faults.retry_after_s is not None else {})
            return web.Response(status=status, text="injected", headers=headers)
        if roll < faults.error_rate + faults.timeout_rate:
            await asyncio.sleep(faults.timeout_delay_s)
        messages = body["messages"]
        digest = _window_digest(messages)
        turn2 = sum(m["role"] == "user" for m in messages) >= 2
        logprobs = None
        progress_n = None if turn2 else _num_progress(body)
        if body.get("logprobs") and not turn2:  # a TOPReward query: the first token's top-k
            drop = self._rng.random() < faults.drop_affirmative_rate
            text, logprobs = _logprobs_answer(digest, int(body.get("top_logprobs") or 1), drop)
            logprobs = logprobs if faults.logprobs else None
            stats.logprob_answers[digest] += 1
        elif progress_n is not None:  # a GVL query: one percentage per shown frame
            seed = int(digest, 16)
            values = [(seed >> (3 * i)) % 101 for i in range(progress_n)]
            if self._rng.random() < faults.invalid_progress_rate:
                values[0] = 150
            text = json.dumps({"progress": values})
            stats.progress_answers[digest] += 1
        elif not turn2:
            text = "t=0: the agent turns towards the goal; later frames move it closer."
            stats.turn1_answers[digest] += 1
        elif self._rng.random() < faults.malformed_rate:
            n = _num_scores(body)
            text = self._rng.choice(['{"scores": [1, 2]}', "I think they are all good.",
                                     json.dumps({"scores": [11] * n}), '{"scores": [3, 4'])
            stats.malformed += 1
        else:
            n = _num_scores(body)
            seed = int(digest, 16)
            text = json.dumps({"scores": [(seed >> (4 * i)) % 11 for i in range(n)]})
            stats.scores_answers[digest] += 1
        stats.by_status[200] += 1
        stats.last_answer_at = time.monotonic()
        return web.json_response({
            "id": "loopback", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", **({"logprobs": logprobs} if logprobs else {})}],
            "usage": {"prompt_tokens": prompt_tokens(messages), "completion_tokens": max(1, len(text) // 4)},
        })

    async def _models(self, request):
        from aiohttp import web

        self.models_requests += 1
        data = [{"id": name, "object": "model", "owned_by": "loopback",
                 **({"root": self.root} if self.root else {})} for name in self.served]
        return web.json_response({"object": "list", "data": data})

    async def _start(self) -> None:
        from aiohttp import web

        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> LoopbackServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - manual use: python -m rayrg.rewards.rgvlm.loopback
    import argparse
    import time

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args()
    with LoopbackServer(Faults(latency_s=args.latency), port=args.port) as server:
        print(f"listening on {server.base_url}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
