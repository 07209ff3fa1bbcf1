"""The answer cache key: every setting that can change an answer misses, nothing else does.

Keys are computed the way the labeller computes them (``build_query`` on a window row), so
the test covers what reaches ``cache_key``, not only the hash. Each config field of every
backend gets an explicit expectation below; a field without one fails
``test_every_field_has_an_expectation``, so a new field forces a decision here as well as
in the config's ``ANSWER_FIELDS`` / ``NEUTRAL_FIELDS``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from rayrg.rewards.rgvlm import prompts
from rayrg.rewards.rgvlm.config import (
    Decoding,
    GeminiBackendConfig,
    OpenAIBackendConfig,
    RGVLMConfig,
    TransformersBackendConfig,
    VLLMBackendConfig,
)
from rayrg.rewards.rgvlm.pipeline import build_query
from tests.rewards._rgvlm_helpers import window_row

MISS, HIT = "miss", "hit"
FIXED = "fixed"  # a Literal with one allowed value: nothing to change

BASE_BACKENDS: dict[str, dict[str, Any]] = {
    "openai": {"type": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m",
               "api_key_env": "RAYRG_TEST_KEY"},
    "gemini": {"type": "gemini", "model": "gemini-3-flash"},
    "transformers": {"type": "transformers", "model": "/models/tiny"},
    "vllm": {"type": "vllm", "model": "Qwen/Qwen2-VL-2B-Instruct"},
}

REMOTE = {
    "model": ("m2", MISS),
    "headers": ({"OpenAI-Beta": "assistants=v2"}, MISS),
    "price_input_per_mtok": (3.0, HIT),
    "price_output_per_mtok": (9.0, HIT),
    "api_key_env": ("OTHER_API_KEY", HIT),
    "max_in_flight": (3, HIT),
    "num_actors": (4, HIT),
    "requests_per_minute": (60.0, HIT),
    "tokens_per_minute": (1e5, HIT),
    "max_retries": (0, HIT),
    "backoff_initial_s": (0.5, HIT),
    "backoff_max_s": (5.0, HIT),
    "timeout_s": (7.0, HIT),
    "base_url": ("http://10.0.0.7:9000/v1", HIT),
}
# (field -> (new value, expected)) per config class
CHANGES: dict[type, dict[str, tuple[Any, str]]] = {
    OpenAIBackendConfig: {**REMOTE, "type": (None, FIXED),
                          "structured_output": ("json_object", MISS),
                          "extra_body": ({"top_k": 20}, MISS)},
    GeminiBackendConfig: {**REMOTE, "type": (None, FIXED), "base_url": ("http://127.0.0.1:1/", HIT),
                          "batch_mode": (None, FIXED),  # True is refused by the config
                          "media_resolution": ("low", MISS)},
    TransformersBackendConfig: {
        "type": (None, FIXED), "model": ("/models/other", MISS), "dtype": ("bfloat16", MISS),
        "price_input_per_mtok": (1.0, HIT), "price_output_per_mtok": (1.0, HIT),
        "device": ("cuda", HIT), "num_actors": (2, HIT), "num_cpus": (1.0, HIT), "num_gpus": (1.0, HIT),
        "batch_size": (16, HIT)},
    VLLMBackendConfig: {
        "type": (None, FIXED), "model": ("Qwen/Qwen2-VL-7B-Instruct", MISS),
        "max_model_len": (4096, MISS), "max_pixels": (256 * 28 * 28, MISS),
        "engine_kwargs": ({"dtype": "bfloat16"}, MISS),
        "price_input_per_mtok": (1.0, HIT), "price_output_per_mtok": (1.0, HIT),
        "tensor_parallel_size": (4, HIT), "enable_prefix_caching": (False, HIT),
        "gpu_memory_utilization": (0.5, HIT), "num_actors": (2, HIT), "num_cpus": (2.0, HIT), "device": ("cpu", HIT),
        "batch_size": (8, HIT)},
    Decoding: {"temperature": (0.7, MISS), "top_p": (0.9, MISS), "max_tokens_analysis": (256, MISS),
               "max_tokens_scores": (64, MISS), "seed": (1, MISS)},
    RGVLMConfig: {
        "method": (None, FIXED), "backend": (None, FIXED),  # covered field by field above
        "decoding": (None, FIXED),  # covered by Decoding's fields
        "max_image_side": (48, MISS),
        "prompt_version": (None, FIXED),  # one version exists; its texts are tested below
        "max_parse_attempts": (1, HIT), "windows": ({"window_size": 4}, HIT),
        "windows_dir": ("/tmp/w", HIT), "labels_dir": ("/tmp/l", HIT), "cache_dir": ("/tmp/c", HIT),
        "max_windows": (5, HIT), "fusion": ({"x": {"rgvlm": 2.0}}, HIT),
        "continuous_actions": ("as_vectors", HIT)},
}
BACKEND_CLASSES = {"openai": OpenAIBackendConfig, "gemini": GeminiBackendConfig,
                   "transformers": TransformersBackendConfig, "vllm": VLLMBackendConfig}
ROW = window_row(0)  # a 64x128 grid: a 48 px cap changes the image sent


def _key(backend: dict[str, Any], row: dict[str, Any] = ROW, **top: Any) -> str:
    config = RGVLMConfig.from_dict({"method": "rgvlm", "backend": backend, **top})
    return build_query(row, config).key


def _cases() -> list[tuple[str, str, str, Any, str]]:
    cases = []
    for backend, cls in BACKEND_CLASSES.items():
        for name, (value, expected) in CHANGES[cls].items():
            cases.append((backend, "backend", name, value, expected))
        for part in ("decoding", "top"):
            table = CHANGES[Decoding if part == "decoding" else RGVLMConfig]
            for name, (value, expected) in table.items():
                cases.append((backend, part, name, value, expected))
    return [c for c in cases if c[4] != FIXED]


@pytest.mark.parametrize(("backend", "part", "name", "value", "expected"), _cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_each_setting_misses_or_hits(backend: str, part: str, name: str, value: Any, expected: str) -> None:
    base = BASE_BACKENDS[backend]
    before = _key(base)
    assert before == _key(base), "the key is not deterministic"
    if part == "backend":
        after = _key({**base, name: value})
    elif part == "decoding":
        after = _key(base, decoding={name: value})
    else:
        after = _key(base, **{name: value})
    assert (after != before) == (expected == MISS), f"{backend}: changing {part}.{name} should {expected}"


@pytest.mark.parametrize("cls", list(CHANGES))
def test_every_field_has_an_expectation(cls: type) -> None:
    assert set(CHANGES[cls]) == set(cls.model_fields), "add the new field to CHANGES (and classify it)"


@pytest.mark.parametrize("cls", list(CHANGES))
def test_every_field_is_classified_once(cls: type) -> None:
    assert not cls.unclassified_fields()
    assert not cls.ANSWER_FIELDS & cls.NEUTRAL_FIELDS
    # the expectations above and the classification agree
    for name, (_, expected) in CHANGES[cls].items():
        if expected != FIXED:
            assert (name in cls.ANSWER_FIELDS) == (expected == MISS), name


def test_an_unclassified_field_is_refused() -> None:
    class Sloppy(OpenAIBackendConfig):
        new_knob: int = 1

    config = Sloppy(base_url="http://x/v1", model="m")
    with pytest.raises(TypeError, match="new_knob"):
        config.answer_settings()


def test_backend_type_misses() -> None:
    # the same model name served by two kinds of backend is two models
    keys = {_key({**BASE_BACKENDS[b], "model": "same"}) for b in BASE_BACKENDS}
    assert len(keys) == len(BASE_BACKENDS)


def test_window_content_and_prompt_texts_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    base = BASE_BACKENDS["openai"]
    before = _key(base)
    assert _key(base, row={**ROW, "instruction": "go to the blue box"}) != before
    assert _key(base, row=window_row(1)) != before  # another image
    assert _key(base, row={**ROW, "actions_text": ROW["actions_text"] + " "}) != before
    # an edited template under the same version name must not be served old answers
    for part in ("system", "analysis", "scores"):
        edited = dataclasses.replace(prompts.PROMPTS["v1"], **{part: getattr(prompts.PROMPTS["v1"], part) + " "})
        monkeypatch.setitem(prompts.PROMPTS, "v1", edited)
        assert _key(base) != before, part
        monkeypatch.undo()
    assert _key(base) == before


def test_extra_body_and_vllm_engine_kwargs_by_content() -> None:
    openai, vllm = BASE_BACKENDS["openai"], BASE_BACKENDS["vllm"]
    top_k = _key({**openai, "extra_body": {"top_k": 20}})
    assert _key({**openai, "extra_body": {"top_k": 5}}) != top_k
    # a credential inside extra_body is not an answer setting: rotating it still hits
    assert _key({**openai, "extra_body": {"top_k": 20, "auth_token": "tok-1"}}) == \
        _key({**openai, "extra_body": {"top_k": 20, "auth_token": "tok-2"}})
    assert _key({**openai, "headers": {"Authorization": "Bearer a"}}) == \
        _key({**openai, "headers": {"Authorization": "Bearer b"}})
    base = _key(vllm)
    for kwarg, value in (("dtype", "float16"), ("quantization", "fp8"), ("kv_cache_dtype", "fp8"),
                         ("revision", "abc123")):
        assert _key({**vllm, "engine_kwargs": {kwarg: value}}) != base, kwarg
    for kwarg, value in (("max_num_seqs", 8), ("enforce_eager", True), ("gpu_memory_utilization", 0.5),
                         ("hf_token", "hf_x")):
        assert _key({**vllm, "engine_kwargs": {kwarg: value}}) == base, kwarg


def test_api_key_is_not_in_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key_value = "sk-cachekey-Vb71QmZt"
    base = BASE_BACKENDS["openai"]
    monkeypatch.setenv("RAYRG_TEST_KEY", key_value)
    with_key = _key(base)
    monkeypatch.setenv("RAYRG_TEST_KEY", "sk-another-key-value")
    assert _key(base) == with_key  # a rotated key is a hit
    config = RGVLMConfig.from_dict({"backend": {**base, "extra_body": {"api_key": key_value},
                                                "headers": {"x-api-key": key_value}}})
    settings = json.dumps(config.answer_settings())
    assert key_value not in settings and "RAYRG_TEST_KEY" not in settings
