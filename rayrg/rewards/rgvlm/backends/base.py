"""One interface for every backend: ``label_batch(queries) -> answers``.

A :class:`WindowQuery` holds everything a backend sends (the grid PNG and the rendered
texts); a :class:`WindowAnswer` everything that comes back (scores or the reason there are
none, raw texts, tokens, attempts, latency). The two-turn protocol itself lives here once:

    turn 1: [system] + user(image, analysis prompt)                  -> analysis text
    turn 2: ... + assistant(analysis) + user(scores prompt), schema  -> {"scores": [...]}

Progress labellers (:mod:`rayrg.rewards.progress`) ask single-turn questions instead: a
:class:`PromptQuery` (system text, user parts interleaving texts and images, an optional JSON
schema, and how many top log-probabilities of the first answer token to return) answered by
:meth:`Backend.answer_prompts` with a :class:`PromptAnswer` (text, first-token top
log-probabilities). A backend that cannot return log-probabilities says so in
:meth:`Backend.logprobs_unavailable`; windows and their protocol are unchanged.

Turn 2 is re-asked (same history) up to ``max_parse_attempts`` times while the answer does
not parse; then the window is marked failed with the parser's reason. Transport errors
(429, 5xx, timeouts, dropped connections) are retried inside one attempt by
:class:`AsyncChatBackend` with exponential backoff and jitter (honouring ``Retry-After``);
when retries run out the window fails with that reason. Nothing is raised to Ray: every
window ends labelled or failed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import struct
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rayrg.config import ConfigError, redact_text, secret_values
from rayrg.rewards.declarations import FromEnv, Need, need_problems
from rayrg.rewards.rgvlm.parse import ParseError, parse_scores
from rayrg.rewards.rgvlm.prompts import scores_schema
from rayrg.rewards.rgvlm.settings import BackendSettings

log = logging.getLogger(__name__)

# {"role": "system"|"user"|"assistant", "text": str, "image": bytes (optional)}; a user message
# may instead carry "parts": [("text", str) | ("image", bytes), ...] (several images, interleaved)
Message = dict[str, Any]
OnDone = Callable[["WindowQuery", "WindowAnswer"], None]


@dataclass(frozen=True)
class WindowQuery:
    key: str
    window_id: str
    image: bytes  # PNG as sent
    system: str
    analysis_prompt: str
    scores_prompt: str
    num_steps: int

    def turn1(self) -> list[Message]:
        return [{"role": "system", "text": self.system},
                {"role": "user", "text": self.analysis_prompt, "image": self.image}]

    def turn2(self, analysis: str) -> list[Message]:
        return [*self.turn1(), {"role": "assistant", "text": analysis},
                {"role": "user", "text": self.scores_prompt}]


@dataclass(frozen=True, eq=False)
class PromptQuery:
    """One single-turn request: ``system`` + one user message of ``parts`` (texts and PNGs in
    order). ``schema``: the answer's JSON schema (structured output where the backend has it);
    ``top_logprobs`` > 0: return that many top log-probabilities of the first answer token."""

    key: str
    query_id: str
    system: str
    parts: tuple[tuple[str, Any], ...]
    max_tokens: int
    schema: dict[str, Any] | None = None
    top_logprobs: int = 0

    def messages(self) -> list[Message]:
        text = "".join(v for kind, v in self.parts if kind == "text")
        return [{"role": "system", "text": self.system},
                {"role": "user", "text": text, "parts": list(self.parts)}]


@dataclass
class Completion:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    # [(token text, log-probability)] of the first generated token, best first (when asked)
    top_logprobs: list[tuple[str, float]] | None = None


@dataclass
class WindowAnswer:
    scores: list[int] | None = None
    analysis_text: str | None = None
    scores_text: str | None = None
    error: str | None = None
    attempts: int = 0  # turn-2 answers requested
    invalid_answers: int = 0  # turn-2 answers that did not parse
    transport_retries: int = 0
    backend_calls: int = 0  # requests actually sent (retries included)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # prompt tokens served from the engine's prefix cache
    latency_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, completion: Completion) -> None:
        self.input_tokens += completion.input_tokens
        self.output_tokens += completion.output_tokens
        self.cached_input_tokens += completion.cached_input_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PromptAnswer(WindowAnswer):
    """A :class:`PromptQuery`'s answer: its text and, when asked, the first answer token's top
    log-probabilities (``[[token, logprob], ...]``, best first). Accounting fields as a window's."""

    text: str | None = None
    top_logprobs: list[list[Any]] | None = None


class TransientError(Exception):
    """Worth retrying (429, 5xx, 408, timeouts, connection errors, garbled bodies)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Not worth retrying (400, 401, 404 ...): the window fails with this reason."""


@dataclass(frozen=True)
class RayPlan:
    """How the labeller runs a backend on Ray Data: actors, their resources, batch size, and
    how many ``map_batches`` calls one actor serves at once (more than 1: async backends)."""

    num_actors: int
    batch_size: int
    num_cpus: float | None = None
    num_gpus: float | None = None
    concurrent_calls: int = 1


class Backend(ABC):
    """A backend is one module: a :class:`~rayrg.rewards.rgvlm.settings.BackendSettings`
    subclass (``config_class``, whose ``type`` literal is its registered name), this class
    with its :meth:`ray_plan`, and one ``register_backend`` line
    (:mod:`rayrg.rewards.rgvlm.backends`). Constructed in each labeller actor as
    ``cls(backend_config, decoding, max_parse_attempts=..., share=...)``."""

    config_class: ClassVar[type[BackendSettings]]
    # True: ``submit(queries, on_done)`` returns a concurrent future, and the labeller runs as
    # an async UDF so one actor serves several batches at once (see AsyncChatBackend).
    asynchronous: ClassVar[bool] = False

    def __init__(self, max_parse_attempts: int = 3) -> None:
        self.max_parse_attempts = max_parse_attempts

    @classmethod
    @abstractmethod
    def ray_plan(cls, config: Any) -> RayPlan:
        """Actors and resources for ``config`` (an instance of ``config_class``)."""

    @classmethod
    def windows_in_flight(cls, config: Any) -> int:
        """Windows answered at once across all actors (the wall-time estimate's concurrency):
        by default one per actor (a local model answers one window at a time)."""
        return cls.ray_plan(config).num_actors

    # -- declarations (rayrg.rewards.declarations): what preflight, the plan and the
    # ``auto_backend`` resolution ask; none of them names a backend type.
    # Rank among the backends built from the environment (lower is tried first).
    from_env_rank: ClassVar[int] = 100

    @classmethod
    def needs(cls, config: Any) -> list[Need]:
        """What ``config`` needs before any work (keys relative to the label config): by
        default the API-key variable it names. Local-model backends add their weights and GPUs."""
        key_env = getattr(config, "api_key_env", None)
        return [Need("env", "backend.api_key_env", key_env,
                     why=f"the {config.type} backend needs its API key")] if key_env else []

    @classmethod
    def from_env(cls, models_dir: Path) -> FromEnv | None:
        """The ``backend`` (and any other label-config fields) built from the environment,
        or None when the environment does not configure this backend. ``models_dir``: where
        a backend may build a local checkpoint it needs."""
        return None

    @classmethod
    def preflight(cls, config: Any, local: bool) -> None:
        """Checks on the driver before any work starts (``local``: a local Ray cluster, whose
        workers share this machine's environment and files): :meth:`needs`, each checked by
        :func:`~rayrg.rewards.declarations.need_problem`. Raises ``ConfigError`` (first line)."""
        problems = need_problems(cls.needs(config), local=local)
        if problems:
            raise ConfigError(problems[0])

    @classmethod
    def model_identity(cls, config: Any) -> str:
        """What model answers, beyond its name (:mod:`rayrg.models.identity`): resolved once
        per run on the driver, it enters the labels' fingerprint and every answer's cache key.
        By default ``config.model`` as local weights (content hash) or a hub id (snapshot
        revision); remote backends ask their server."""
        from rayrg.models.identity import model_identity

        return model_identity(config.model)

    @abstractmethod
    def label_batch(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None) -> list[WindowAnswer]:
        """Label every query; ``on_done`` is called as each window finishes (cache writes)."""

    @classmethod
    def logprobs_unavailable(cls, config: Any) -> str | None:
        """Why this backend (with ``config``) cannot return log-probabilities; None when it can."""
        return f"backend '{config.type}' returns no log-probabilities"

    def answer_prompts(self, queries: Sequence[PromptQuery],
                       on_done: Callable[[PromptQuery, PromptAnswer], None] | None = None) -> list[PromptAnswer]:
        """Answer single-turn queries (progress labellers); never raises for one query."""
        raise NotImplementedError(f"{type(self).__name__} does not answer single-turn queries")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def finish_scores(self, answer: WindowAnswer, query: WindowQuery, text: str) -> bool:
        """Record one turn-2 answer; True when it parsed (the window is done)."""
        answer.attempts += 1
        answer.scores_text = text
        try:
            answer.scores = parse_scores(text, query.num_steps)
            answer.error = None
            return True
        except ParseError as exc:
            answer.invalid_answers += 1
            answer.error = f"invalid answer: {exc}"
            answer.errors.append(answer.error)
            return False


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk without decoding it."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def limiter_tokens(chars: int, image_tokens: int, max_tokens: int) -> int:
    """What :class:`RateLimiter` charges one request: prompt characters / 4, the image's
    tokens and the whole output budget (an over-count, on the safe side of a provider's limit)."""
    return chars // 4 + image_tokens + max_tokens


class RateLimiter:
    """Requests and tokens per minute over a sliding 60 s window (exact, not a burst bucket).

    Tokens are *estimated* before a request (prompt characters / 4 + image tokens + the
    output budget), which over-counts and so errs on the safe side of a provider's limit.
    """

    WINDOW_S = 60.0

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._tokens = 0
        self._lock: asyncio.Lock | None = None

    async def acquire(self, tokens: int) -> None:
        if self.rpm is None and self.tpm is None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # FIFO: one waiter at a time
            while True:
                now = time.monotonic()
                while self._events and now - self._events[0][0] >= self.WINDOW_S:
                    self._tokens -= self._events.popleft()[1]
                requests_ok = self.rpm is None or len(self._events) + 1 <= self.rpm
                tokens_ok = self.tpm is None or self._tokens + tokens <= self.tpm or not self._events
                if requests_ok and tokens_ok:
                    self._events.append((now, tokens))
                    self._tokens += tokens
                    return
                await asyncio.sleep(max(0.001, self.WINDOW_S - (now - self._events[0][0])))


class AsyncChatBackend(Backend):
    """Backends whose single request is a coroutine (HTTP APIs): many windows in flight.

    Subclasses implement :meth:`complete` (one request, no retries: raise
    :class:`TransientError` or :class:`PermanentError`). ``label_batch`` runs the windows
    on a persistent event loop in a background thread, at most ``max_in_flight`` at once.
    """

    asynchronous = True

    @classmethod
    def ray_plan(cls, config: Any) -> RayPlan:
        # I/O bound: a quarter CPU each. Several calls per actor at once (async UDF), each a
        # batch of max_in_flight windows, so ~8x max_in_flight windows queue for the slots. A
        # batch ends with its slowest window (a straggler answers seconds late, twice per
        # window); while it does, the slots must be fed from the other batches' queued windows.
        # With 4 batches (1,024 windows at C = 256) the slots emptied to ~40 every few seconds
        # (mean 198 of 256 in flight at the server, 0.77 of the bound); with 8, they stay full.
        return RayPlan(num_actors=config.num_actors, batch_size=config.max_in_flight, num_cpus=0.25,
                       concurrent_calls=8)

    @classmethod
    def windows_in_flight(cls, config: Any) -> int:
        return config.num_actors * config.max_in_flight

    def __init__(self, config: Any, decoding: Any, max_parse_attempts: int = 3, share: float = 1.0) -> None:
        """``config``: a remote backend config (concurrency, retries, limits); ``share``: this
        actor's fraction of the rate limits (the limits are for all actors together)."""
        super().__init__(max_parse_attempts)
        self.config, self.decoding = config, decoding
        self.max_in_flight = config.max_in_flight
        self.max_retries = config.max_retries
        self.backoff_initial_s, self.backoff_max_s = config.backoff_initial_s, config.backoff_max_s
        self.limiter = RateLimiter(config.requests_per_minute and config.requests_per_minute * share,
                                   config.tokens_per_minute and config.tokens_per_minute * share)
        self.max_tokens_analysis = decoding.max_tokens_analysis
        self.max_tokens_scores = decoding.max_tokens_scores
        self._rng = random.Random(decoding.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rgvlm-io", daemon=True)
        self._thread.start()
        self._semaphore: asyncio.Semaphore | None = None
        # Credentials this backend sends (header values, extra_body fields, URL query, the key
        # from the environment): blanked out of every error it records or logs, since a
        # server or client library may echo a request back in an error.
        self._secrets = secret_values(config.to_dict())

    def add_secret(self, value: str | None) -> None:
        if value:
            self._secrets.add(value)

    def redact(self, text: str) -> str:
        return redact_text(text, self._secrets)

    # -- subclass API -----------------------------------------------------------------
    @abstractmethod
    async def complete(self, messages: list[Message], schema: dict[str, Any] | None,
                       max_tokens: int) -> Completion: ...

    async def aclose(self) -> None:
        pass

    def image_tokens(self, png: bytes) -> int:
        """An image's input tokens by the backend config's rule (its model family's)."""
        return self.config.image_tokens(*png_size(png))

    # -- machinery --------------------------------------------------------------------
    def _estimate_tokens(self, messages: list[Message], max_tokens: int) -> int:
        chars = sum(len(m["text"]) for m in messages)
        images = sum(self.image_tokens(m["image"]) for m in messages if m.get("image"))
        return limiter_tokens(chars, images, max_tokens)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.backoff_max_s, retry_after)
        # exponential with full jitter (AWS architecture blog): spreads synchronized retries
        return self._rng.uniform(0, min(self.backoff_max_s, self.backoff_initial_s * 2 ** attempt))

    async def _request(self, answer: WindowAnswer, messages: list[Message],
                       schema: dict[str, Any] | None, max_tokens: int, top_logprobs: int = 0) -> Completion:
        for attempt in range(self.max_retries + 1):
            # tokens are only charged under a tokens-per-minute limit (a backend without an
            # image-token rule still runs without one)
            await self.limiter.acquire(self._estimate_tokens(messages, max_tokens) if self.limiter.tpm else 0)
            answer.backend_calls += 1
            try:
                # only backends that return log-probabilities take the keyword
                completion = await (self.complete(messages, schema, max_tokens, top_logprobs=top_logprobs)
                                    if top_logprobs else self.complete(messages, schema, max_tokens))
                answer.add(completion)
                return completion
            except TransientError as exc:
                answer.errors.append(str(exc))
                if attempt == self.max_retries:
                    raise TransientError(f"{exc} (gave up after {attempt + 1} tries)") from exc
                answer.transport_retries += 1
                await asyncio.sleep(self._backoff(attempt, exc.retry_after))
        raise AssertionError("unreachable")

    async def _label(self, query: WindowQuery, on_done: OnDone | None) -> WindowAnswer:
        assert self._semaphore is not None
        answer = WindowAnswer()
        async with self._semaphore:
            start = time.perf_counter()
            try:
                first = await self._request(answer, query.turn1(), None, self.max_tokens_analysis)
                answer.analysis_text = first.text
                schema = scores_schema(query.num_steps)
                for _ in range(self.max_parse_attempts):
                    second = await self._request(answer, query.turn2(first.text), schema,
                                                 self.max_tokens_scores)
                    if self.finish_scores(answer, query, second.text):
                        break
            except (TransientError, PermanentError) as exc:
                answer.error = str(exc)
            except Exception as exc:  # a backend bug must not take the dataset down
                log.error("window %s: unexpected error\n%s", query.window_id,
                          self.redact("".join(traceback.format_exception(exc))))
                answer.error = f"{type(exc).__name__}: {exc}"
            answer.latency_s = time.perf_counter() - start
            answer.error = None if answer.error is None else self.redact(answer.error)
            answer.errors = [self.redact(e) for e in answer.errors]
        if answer.scores is None and answer.error is None:
            answer.error = "no answer"
        if on_done is not None:
            await asyncio.get_running_loop().run_in_executor(None, on_done, query, answer)
        return answer

    async def _label_all(self, queries: Sequence[WindowQuery], on_done: OnDone | None) -> list[WindowAnswer]:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_in_flight)
        return list(await asyncio.gather(*(self._label(q, on_done) for q in queries)))

    async def _answer(self, query: PromptQuery, on_done: Callable | None) -> PromptAnswer:
        assert self._semaphore is not None
        answer = PromptAnswer()
        async with self._semaphore:
            start = time.perf_counter()
            try:
                done = await self._request(answer, query.messages(), query.schema, query.max_tokens,
                                           query.top_logprobs)
                answer.text = done.text
                answer.top_logprobs = [list(t) for t in done.top_logprobs] if done.top_logprobs else None
                if query.top_logprobs and not answer.top_logprobs:
                    answer.error = "the server returned no log-probabilities"
            except (TransientError, PermanentError) as exc:
                answer.error = str(exc)
            except Exception as exc:  # a backend bug must not take the dataset down
                log.error("query %s: unexpected error\n%s", query.query_id,
                          self.redact("".join(traceback.format_exception(exc))))
                answer.error = f"{type(exc).__name__}: {exc}"
            answer.latency_s = time.perf_counter() - start
            answer.error = None if answer.error is None else self.redact(answer.error)
            answer.errors = [self.redact(e) for e in answer.errors]
        if on_done is not None:
            await asyncio.get_running_loop().run_in_executor(None, on_done, query, answer)
        return answer

    async def _answer_all(self, queries: Sequence[PromptQuery], on_done: Callable | None) -> list[PromptAnswer]:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_in_flight)
        return list(await asyncio.gather(*(self._answer(q, on_done) for q in queries)))

    def answer_prompts(self, queries: Sequence[PromptQuery],
                       on_done: Callable[[PromptQuery, PromptAnswer], None] | None = None) -> list[PromptAnswer]:
        if not queries:
            return []
        return asyncio.run_coroutine_threadsafe(self._answer_all(queries, on_done), self._loop).result()

    def submit(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None):
        """Start labelling on the backend's loop; a ``concurrent.futures.Future`` of the answers."""
        return asyncio.run_coroutine_threadsafe(self._label_all(queries, on_done), self._loop)

    def label_batch(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None) -> list[WindowAnswer]:
        if not queries:
            return []
        return self.submit(queries, on_done).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
