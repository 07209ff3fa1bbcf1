"""Self-hosted VLM on vLLM: ONE engine per actor runs both turns of every window.

Why not two chained ``ray.data.llm`` processors: each ``vLLMEngineProcessorConfig``
processor starts its own engine pool, so turn 1 and turn 2 would load the model twice (a
72B model twice). Here the labeller actor (``num_gpus = tensor_parallel_size``) owns one
``vllm.LLM``; for a batch of windows it runs turn 1 for all of them in one ``LLM.chat``
call, then turn 2 (history + turn-1 answers) in a second call on the same engine. With
``enable_prefix_caching`` turn 2 reuses the KV cache of turn 1's prefix (system + image +
analysis prompt + analysis), which is most of its tokens; every window records how many
of its prompt tokens vLLM served from that cache (``RequestOutput.num_cached_tokens``) and
the labels summary reports the hit rate. Tensor parallelism stays inside the actor
(vLLM's multiprocessing executor over the actor's GPUs), so one node serves a 72B model
with TP 4 or 8.

The engine starts on the first window that is not in the answer cache, so a re-run served
from the cache neither loads the model nor calls it.

Threads and devices come from what Ray granted the actor (:func:`engine_env`), set in the
environment the engine's processes start with. On CPU, vLLM's default
(``VLLM_CPU_OMP_THREADS_BIND=auto``) pins its worker process to every core of the NUMA node
but one: right on a machine that runs vLLM alone, wrong inside Ray, which pins nothing else
and packs other processes (its own raylet, GCS, the driver's Ray Data loop, other actors) on
the same cores. On the 2-core build machine the worker went to core 0 (core 1 "reserved")
and waited there behind Ray's processes while core 1 idled. So inside Ray the engine runs
``nobind`` with ``OMP_NUM_THREADS`` = the actor's granted CPUs (``num_cpus``), and the OS
places its threads. On GPU, Ray sets ``CUDA_VISIBLE_DEVICES`` to the actor's GPUs and the
engine (and its tensor-parallel workers, which inherit the environment) uses exactly those:
nothing here overrides it.

Images are capped by ``max_pixels`` (Qwen2-VL: ≈ pixels / 784 tokens). Turn 2 is
constrained with ``structured_outputs={"json": schema}`` (vLLM removed ``guided_json``);
the engine-level xgrammar config turns free whitespace off (in vllm-cpu 0.32.0 the
per-request whitespace switch had no effect).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from rayrg.rewards.declarations import Need
from rayrg.rewards.rgvlm.backends import _qwen2vl
from rayrg.rewards.rgvlm.backends._http import to_openai_messages
from rayrg.rewards.rgvlm.backends.base import (
    Backend,
    OnDone,
    PromptAnswer,
    PromptQuery,
    RayPlan,
    WindowAnswer,
    WindowQuery,
)
from rayrg.rewards.rgvlm.prompts import scores_schema
from rayrg.rewards.rgvlm.settings import Decoding, LocalBackendSettings
from rayrg.runtime import environ


class VLLMBackendConfig(LocalBackendSettings):
    """Self-hosted model on vLLM; ONE engine per actor runs both turns (prefix caching on)."""

    ANSWER_FIELDS = LocalBackendSettings.ANSWER_FIELDS | {"max_model_len", "max_pixels", "engine_kwargs"}
    # Placement, memory and scheduling: the same model answers the same (float-level batch
    # and kernel differences are not counted as a different answer).
    NEUTRAL_FIELDS = LocalBackendSettings.NEUTRAL_FIELDS | {
        "tensor_parallel_size", "enable_prefix_caching", "gpu_memory_utilization", "num_actors",
        "device", "batch_size", "num_cpus"}
    # engine_kwargs not in the key: the same classification, for the free-form dict. Any
    # other engine kwarg (dtype, quantization, kv_cache_dtype, revision, ...) is in it.
    NEUTRAL_ENGINE_KWARGS: ClassVar[frozenset[str]] = frozenset({
        "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "enforce_eager",
        "swap_space", "cpu_offload_gb", "disable_log_stats", "download_dir", "hf_token",
        "tensor_parallel_size", "pipeline_parallel_size", "distributed_executor_backend",
        "enable_prefix_caching", "enable_chunked_prefill", "disable_custom_all_reduce",
        "block_size", "compilation_config"})

    type: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(8192, ge=256)
    max_pixels: int = Field(1024 * 28 * 28, ge=28 * 28, description="Qwen2-VL image cap (tokens ≈ pixels/784).")
    enable_prefix_caching: bool = Field(True, description="Turn 2 reuses turn 1's image prefix.")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1)
    num_actors: int = Field(1, ge=1, description="Engine replicas (each tensor_parallel_size GPUs).")
    device: Literal["cuda", "cpu"] = Field("cuda", description="'cpu' for a CPU build of vLLM (no GPUs asked).")
    batch_size: int = Field(64, ge=1, description="Windows per engine call (vLLM batches them).")
    num_cpus: float = Field(1.0, gt=0, description=(
        "CPUs each actor asks Ray for; on device 'cpu' the engine runs that many threads (at least 1)."))
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vLLM engine kwargs.")

    def image_tokens(self, width: int, height: int) -> int:
        return _qwen2vl.image_tokens(width, height, _qwen2vl.pixel_bounds(self.model)[0], self.max_pixels)

    def answer_settings(self) -> dict[str, Any]:
        settings = super().answer_settings()
        settings["engine_kwargs"] = {k: v for k, v in settings["engine_kwargs"].items()
                                     if k not in self.NEUTRAL_ENGINE_KWARGS}
        return settings


def engine_kwargs(config: VLLMBackendConfig, decoding: Decoding) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` (the engine both turns share)."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "tensor_parallel_size": config.tensor_parallel_size,
        "max_model_len": config.max_model_len,
        "enable_prefix_caching": config.enable_prefix_caching,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "limit_mm_per_prompt": {"image": 1},  # one grid image per window
        "mm_processor_kwargs": {"max_pixels": config.max_pixels},
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    if decoding.seed is not None:
        kwargs["seed"] = decoding.seed
    if config.tensor_parallel_size > 1:
        kwargs["distributed_executor_backend"] = "mp"  # workers on this actor's GPUs
    kwargs.update(config.engine_kwargs)
    return kwargs


# Thread settings a user set for the engine by hand win over the ones derived from Ray.
_THREAD_VARS = ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU")


def granted_resources() -> dict[str, float] | None:
    """What Ray granted the calling actor or task (``None`` outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return dict(ray.get_runtime_context().get_assigned_resources())
    except Exception:  # not in a Ray worker, or a Ray without the runtime context
        return None


def engine_env(config: VLLMBackendConfig, granted: dict[str, float] | None,
               environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """Environment variables for the engine's processes, from the resources Ray granted.

    Outside Ray (``granted`` None) and when the user set vLLM's thread variables: nothing, so
    vLLM's own defaults or the user's choice apply. On CPU: no pinning and one thread per
    granted CPU (see the module docstring). ``CUDA_VISIBLE_DEVICES`` is never set: Ray already
    narrowed it to the actor's GPUs, and vLLM's workers inherit it."""
    if granted is None or any(v in environ for v in _THREAD_VARS):
        return {}
    threads = str(max(1, math.floor(granted.get("CPU", 0.0) + 1e-9)))
    if config.device == "cpu":
        return {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": threads}
    # GPU: host-side torch threads (input processing, sampling glue) within the actor's CPUs
    return {"OMP_NUM_THREADS": threads}


def sampling_kwargs(decoding: Decoding, max_tokens: int,
                    schema: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one turn."""
    kwargs: dict[str, Any] = {"temperature": decoding.temperature, "top_p": decoding.top_p,
                              "max_tokens": max_tokens, "seed": decoding.seed}
    if schema is not None:
        kwargs["structured_outputs"] = {"json": schema}
    return kwargs


def sampling_params(kwargs: dict[str, Any]) -> Any:
    """``vllm.SamplingParams`` from :func:`sampling_kwargs` (needs vLLM)."""
    from vllm import SamplingParams

    kwargs = dict(kwargs)
    structured = kwargs.pop("structured_outputs", None)
    if structured is not None:
        from vllm.sampling_params import StructuredOutputsParams

        kwargs["structured_outputs"] = StructuredOutputsParams(**structured)
    return SamplingParams(**kwargs)


def _record(answer: WindowAnswer, output: Any) -> None:
    """Tokens of one ``RequestOutput``: prompt, generated, and prompt tokens served from the
    prefix cache (vLLM's own count; ``None`` when the engine does not report it)."""
    answer.backend_calls += 1
    prompt = len(output.prompt_token_ids or [])
    answer.input_tokens += prompt
    answer.output_tokens += len(output.outputs[0].token_ids)
    answer.cached_input_tokens += int(getattr(output, "num_cached_tokens", None) or 0)


class VLLMBackend(Backend):
    config_class = VLLMBackendConfig

    @classmethod
    def ray_plan(cls, config: VLLMBackendConfig) -> RayPlan:
        gpus = config.tensor_parallel_size if config.device == "cuda" else None
        return RayPlan(num_actors=config.num_actors, batch_size=config.batch_size, num_cpus=config.num_cpus,
                       num_gpus=gpus)

    @classmethod
    def windows_in_flight(cls, config: VLLMBackendConfig) -> int:
        return config.num_actors * config.batch_size  # the engine batches a call's windows

    @classmethod
    def needs(cls, config: VLLMBackendConfig) -> list[Need]:
        """The weights on this machine (:mod:`rayrg.models.weights`' rule) and the GPUs asked for."""
        out = [*super().needs(config), Need("weights", "backend.model", config.model)]
        if config.device == "cuda":
            out.append(Need("gpus", "backend.tensor_parallel_size", config.tensor_parallel_size * config.num_actors))
        return out

    def __init__(self, config: VLLMBackendConfig, decoding: Decoding, max_parse_attempts: int = 3,
                 share: float = 1.0) -> None:
        import vllm  # noqa: F401 - fail at actor start, with vLLM's own message, if it is missing

        super().__init__(max_parse_attempts)
        self.config, self.decoding = config, decoding
        self._llm: Any = None
        self.engine_env: dict[str, str] = {}  # what the engine started with (engine_env)
        self.engine_starts = 0  # stays 0 when every window came from the answer cache

    @property
    def llm(self) -> Any:
        if self._llm is None:
            from vllm import LLM

            self.engine_starts += 1
            self.engine_env = engine_env(self.config, granted_resources())
            with environ(self.engine_env):  # its processes are spawned now and keep them
                self._llm = LLM(**engine_kwargs(self.config, self.decoding))
        return self._llm

    def _chat(self, conversations: list[list[dict[str, Any]]], params: Any) -> list[Any]:
        return self.llm.chat(conversations, params, use_tqdm=False)

    def _run(self, queries: Sequence[WindowQuery], answers: list[WindowAnswer]) -> None:
        first = self._chat([to_openai_messages(q.turn1()) for q in queries],
                           sampling_params(sampling_kwargs(
                               self.decoding, self.decoding.max_tokens_analysis, None)))
        for a, out in zip(answers, first, strict=True):
            _record(a, out)
            a.analysis_text = out.outputs[0].text
        pending = list(range(len(queries)))
        for _ in range(self.max_parse_attempts):
            if not pending:
                break
            by_steps: dict[int, list[int]] = {}
            for i in pending:
                by_steps.setdefault(queries[i].num_steps, []).append(i)
            still = []
            for num_steps, idx in by_steps.items():  # one schema per window length
                params = sampling_params(sampling_kwargs(
                    self.decoding, self.decoding.max_tokens_scores, scores_schema(num_steps)))
                outs = self._chat([to_openai_messages(queries[i].turn2(answers[i].analysis_text or ""))
                                   for i in idx], params)
                for i, out in zip(idx, outs, strict=True):
                    _record(answers[i], out)
                    if not self.finish_scores(answers[i], queries[i], out.outputs[0].text):
                        still.append(i)
            pending = still

    def label_batch(self, queries: Sequence[WindowQuery],
                    on_done: OnDone | None = None) -> list[WindowAnswer]:
        answers = [WindowAnswer() for _ in queries]
        if not queries:
            return answers
        start = time.perf_counter()
        try:
            self._run(queries, answers)
        except Exception as exc:  # engine errors fail this batch's windows, not the dataset
            reason = f"vllm engine error: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            for a in answers:
                if a.scores is None:
                    a.error = reason
                    a.errors.append(reason)
        elapsed = (time.perf_counter() - start) / len(queries)
        for q, a in zip(queries, answers, strict=True):
            a.latency_s = elapsed  # batched: the engine's time per window
            if on_done is not None:
                on_done(q, a)
        return answers

    @classmethod
    def logprobs_unavailable(cls, config: VLLMBackendConfig) -> str | None:
        return None  # SamplingParams.logprobs: the top-k of each generated token

    def answer_prompts(self, queries: Sequence[PromptQuery],
                       on_done: Callable[[PromptQuery, PromptAnswer], None] | None = None) -> list[PromptAnswer]:
        answers = [PromptAnswer() for _ in queries]
        start = time.perf_counter()
        groups: dict[tuple[str, int, int], list[int]] = {}  # one SamplingParams per schema/budget/top-k
        for i, q in enumerate(queries):
            groups.setdefault((json.dumps(q.schema, sort_keys=True), q.max_tokens, q.top_logprobs), []).append(i)
        for (_, max_tokens, top), idx in groups.items():
            kwargs = sampling_kwargs(self.decoding, max_tokens, queries[idx[0]].schema)
            if top:
                kwargs["logprobs"] = top
            try:
                outs = self._chat([to_openai_messages(queries[i].messages()) for i in idx], sampling_params(kwargs))
            except Exception as exc:  # engine errors fail these queries, not the dataset
                for i in idx:
                    answers[i].error = f"vllm engine error: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
                continue
            for i, out in zip(idx, outs, strict=True):
                _record(answers[i], out)
                gen = out.outputs[0]
                answers[i].text = gen.text
                if top:
                    first = (gen.logprobs or [{}])[0]
                    ranked = sorted(first.values(), key=lambda lp: -lp.logprob)
                    answers[i].top_logprobs = [[lp.decoded_token or "", float(lp.logprob)] for lp in ranked]
        elapsed = (time.perf_counter() - start) / max(1, len(queries))
        for q, a in zip(queries, answers, strict=True):
            a.latency_s = elapsed
            if on_done is not None:
                on_done(q, a)
        return answers

    def close(self) -> None:
        if self._llm is not None:
            # Frees the engine core process (and, with TP > 1, its workers) before the actor exits.
            shutdown = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()
            self._llm = None
