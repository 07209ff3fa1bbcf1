"""Config pieces shared by the RG-VLM config and the backends' own configs.

Each backend module owns its config class (a :class:`BackendSettings` subclass); this module
holds only what they and :class:`~rayrg.rewards.rgvlm.config.RGVLMConfig` share, so a backend
module never imports the config module that collects them (no import cycle).

Everything that can change a model's answer is part of the answer cache key
(:mod:`rayrg.rewards.rgvlm.cache`). Which fields those are is decided per config class, field
by field: ``ANSWER_FIELDS`` enter the key, ``NEUTRAL_FIELDS`` (concurrency, retries, limits,
timeouts, prices, the key's variable name) do not. A field in neither list is an error
(:meth:`AnswerClassified.answer_settings` raises and ``tests/rewards/test_cache_key.py`` fails),
so a new field forces that decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from rayrg.config import ConfigError, StageConfig, scrub_secrets


class AnswerClassified(StageConfig):
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


class Decoding(AnswerClassified):
    """Decoding parameters of both turns (part of every label's provenance and cache key)."""

    ANSWER_FIELDS = frozenset({"temperature", "top_p", "max_tokens_analysis", "max_tokens_scores", "seed"})

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens_analysis: int = Field(512, ge=1, description="Turn 1 (analysis) output budget.")
    max_tokens_scores: int = Field(96, ge=8, description="Turn 2 (scores JSON) output budget.")
    seed: int | None = Field(0, description="Sampling seed where the backend takes one.")


class BackendSettings(AnswerClassified):
    """Base of every backend's config: a subclass adds ``type: Literal["<name>"]`` (its
    registered name) and its own fields, each classified for the cache key."""

    ANSWER_FIELDS = frozenset({"type", "model"})
    # prices only feed the cost estimate
    NEUTRAL_FIELDS = frozenset({"price_input_per_mtok", "price_output_per_mtok"})

    model: str = Field(..., description="Model name / hub id / local directory.")
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per 1M input tokens (cost estimate).")
    price_output_per_mtok: float = Field(0.0, ge=0, description="USD per 1M output tokens (cost estimate).")

    # Whether a run costs money at the configured prices (``rayrg label`` asks first).
    @property
    def paid(self) -> bool:
        return self.price_input_per_mtok > 0 or self.price_output_per_mtok > 0

    def image_tokens(self, width: int, height: int) -> int:
        """Input tokens of one ``width``×``height`` image by the served model's own rule.

        Each backend module overrides this with its model family's rule (the estimate and
        the rate limiter both use it)."""
        raise ConfigError(f"backend {self.model_fields['type'].default!r}: {type(self).__name__} has no "
                          "image_tokens rule, so its image tokens cannot be estimated")

    def text_counter(self) -> tuple[Callable[[str], int], str]:
        """(count tokens of a text, how they are counted). Without a local tokenizer: the
        characters / 4 approximation, which English prose and JSON both sit close to."""
        return approx_text_tokens, "approximate: characters / 4"

    def template_tokens(self) -> tuple[int, int]:
        """Tokens the chat template adds around the texts and the image of a turn-1 and a
        turn-2 request (role markers, image start/end); 0 where the template is not known."""
        return 0, 0


def approx_text_tokens(text: str) -> int:
    return len(text) // 4


class RemoteBackendSettings(BackendSettings):
    """Shared by the HTTP backends: concurrency, retries, rate limits, secrets by env-var name."""

    # ``headers`` can select API behaviour (beta flags, versions): in the key, minus credentials.
    ANSWER_FIELDS = BackendSettings.ANSWER_FIELDS | {"headers"}
    # Transport only: how fast and how persistently the same request is sent. ``base_url``
    # too: the served model is named by ``model``, and a job's server moves between hosts.
    NEUTRAL_FIELDS = BackendSettings.NEUTRAL_FIELDS | {
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


class LocalBackendSettings(BackendSettings):
    """Shared by the backends that run the model in this process (transformers, vLLM): a local
    checkpoint's own tokenizer and chat template count the text tokens where it has them."""

    def text_counter(self) -> tuple[Callable[[str], int], str]:
        return local_text_counter(self.model) or super().text_counter()

    def template_tokens(self) -> tuple[int, int]:
        return local_template_tokens(self.model) or super().template_tokens()


class PromptedConfig(AnswerClassified):
    """Base of the labellers that ask a backend (RG-VLM, GVL, TOPReward): ``prompt_version``
    must name one of the method's ``PROMPTS``, and the nested ``backend`` and ``decoding``
    configs contribute their own answer fields."""

    PROMPTS: ClassVar[Mapping[str, Any]] = {}
    if TYPE_CHECKING:  # declared by each subclass, in its own field order
        backend: BackendSettings
        decoding: Decoding

    @field_validator("prompt_version", check_fields=False)
    @classmethod
    def _known_prompt(cls, version: str) -> str:
        if version not in cls.PROMPTS:
            raise ValueError(f"unknown prompt_version {version!r}; known: {sorted(cls.PROMPTS)}")
        return version

    def answer_settings(self) -> dict[str, Any]:
        """Everything besides the query itself that can change an answer (the cache key's
        settings part); every nested config contributes its own answer fields."""
        settings = super().answer_settings()
        settings["backend"] = self.backend.answer_settings()
        settings["decoding"] = self.decoding.answer_settings()
        return settings


def local_text_counter(model: str) -> tuple[Callable[[str], int], str] | None:
    """The model's own tokenizer when ``model`` is a local directory with ``tokenizer.json``
    (read with ``tokenizers`` alone, no model code); None otherwise."""
    path = Path(model) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    counted = ("its chat template's tokens counted" if local_template_tokens(model) is not None
               else "chat-template tokens not counted")
    return (lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids),
            f"exact: the tokenizer of {model} ({counted})")


def _chat_template(model: Path) -> str | None:
    """The chat template a local checkpoint ships, where transformers looks for it."""
    import json

    if (model / "chat_template.jinja").is_file():
        return (model / "chat_template.jinja").read_text()
    for name in ("chat_template.json", "processor_config.json", "tokenizer_config.json"):
        path = model / name
        if path.is_file():
            template = json.loads(path.read_text()).get("chat_template")
            if isinstance(template, str):
                return template
    return None


def local_template_tokens(model: str) -> tuple[int, int] | None:
    """(turn-1, turn-2) tokens the chat template of a local checkpoint adds to the texts and
    images of an RG-VLM request: the template rendered as transformers renders it (jinja2,
    sandboxed, trim_blocks/lstrip_blocks) on the request's messages with empty texts, then
    tokenized, less the one placeholder token per image (the processor expands it into the
    image's own tokens, counted apart). None without a tokenizer.json or a template."""
    root = Path(model)
    template = _chat_template(root) if (root / "tokenizer.json").is_file() else None
    if template is None:
        return None
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    def fail(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = fail
    compiled = env.from_string(template)
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    text = [{"type": "text", "text": ""}]
    turn1 = [{"role": "system", "content": text}, {"role": "user", "content": [{"type": "image"}, *text]}]
    turn2 = [*turn1, {"role": "assistant", "content": text}, {"role": "user", "content": text}]
    counts = []
    for messages in (turn1, turn2):
        rendered = compiled.render(messages=messages, add_generation_prompt=True)
        counts.append(len(tokenizer.encode(rendered, add_special_tokens=False).ids) - 1)  # 1 image
    return counts[0], counts[1]
