"""A local Hugging Face VLM (hub id or directory) through transformers, on CPU or GPU.

``AutoProcessor`` + ``AutoModelForImageTextToText`` load any chat VLM with an image
processor and a chat template (Qwen2-VL, Qwen2.5-VL, ...). Turn 2 is constrained by
xgrammar's HF logits processor to the scores JSON schema (exactly ``num_steps`` integers
0..10, no free whitespace — measured here: outlines and lm-format-enforcer did not hold with
transformers 5), so even an untrained model answers parseably; the parser still checks.

Windows run one at a time per actor (a grammar per sequence); scale with ``num_actors``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rayrg.rewards.declarations import FromEnv, Need
from rayrg.rewards.rgvlm.backends import _qwen2vl
from rayrg.rewards.rgvlm.backends.base import (
    Backend,
    Message,
    OnDone,
    PromptAnswer,
    PromptQuery,
    RayPlan,
    WindowAnswer,
    WindowQuery,
)
from rayrg.rewards.rgvlm.prompts import scores_schema
from rayrg.rewards.rgvlm.settings import Decoding, LocalBackendSettings


class TransformersBackendConfig(LocalBackendSettings):
    """A local Hugging Face VLM (hub id or directory) on CPU or GPU; xgrammar constrains turn 2."""

    ANSWER_FIELDS = LocalBackendSettings.ANSWER_FIELDS | {"dtype"}
    # Placement and parallelism: the same weights at the same dtype (kernel-level float
    # differences between devices are not counted as a different answer).
    NEUTRAL_FIELDS = LocalBackendSettings.NEUTRAL_FIELDS | {"device", "num_actors", "num_cpus", "num_gpus",
                                                         "batch_size"}

    type: Literal["transformers"] = "transformers"
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:0', 'auto'.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    num_actors: int = Field(1, ge=1)
    num_cpus: float = Field(0.5, gt=0, description="CPUs per actor (fractional: whole CPUs can hang a 2-CPU pool).")
    num_gpus: float = Field(0.0, ge=0)
    batch_size: int = Field(4, ge=1, description="Windows per map_batches call.")

    def image_tokens(self, width: int, height: int) -> int:
        # Qwen2-VL-family processors (the models this backend is used with), bounds from the
        # model directory's preprocessor_config.json
        return _qwen2vl.image_tokens(width, height, *_qwen2vl.pixel_bounds(self.model))


def to_hf_messages(messages: list[Message]) -> list[dict[str, Any]]:
    from PIL import Image

    out = []
    for m in messages:
        content: list[dict[str, Any]] = []
        if m.get("parts") is not None:  # several images interleaved with texts
            out.append({"role": m["role"], "content": [
                {"type": "image", "image": Image.open(io.BytesIO(v)).convert("RGB")} if kind == "image"
                else {"type": "text", "text": v} for kind, v in m["parts"]]})
            continue
        if m.get("image") is not None:
            content.append({"type": "image", "image": Image.open(io.BytesIO(m["image"])).convert("RGB")})
        content.append({"type": "text", "text": m["text"]})
        out.append({"role": m["role"], "content": content})
    return out


# What ``auto_backend`` resolves to when the environment names no model: said loudly.
PIPELINE_CHECK_NOTE = (
    "NO RG-VLM BACKEND CONFIGURED: RG-VLM ran through a tiny, randomly initialised Qwen2-VL "
    "checkpoint as a PIPELINE CHECK ONLY. Its rewards are noise; results of the RG-VLM methods "
    "say nothing about RG-VLM. Set GEMINI_API_KEY or RAYRG_OPENAI_BASE_URL (+ RAYRG_OPENAI_MODEL) "
    "to label with a real model."
)


class TransformersBackend(Backend):
    config_class = TransformersBackendConfig
    from_env_rank = 1000  # the fallback: always available, never a reward model

    @classmethod
    def from_env(cls, models_dir: Path) -> FromEnv | None:
        """Nothing else configured: a tiny randomly initialised Qwen2-VL checkpoint built under
        ``models_dir``, as a check that the pipeline works end to end — NOT a reward model; the
        note says so (the runner prints it prominently and the report carries it)."""
        from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

        checkpoint = models_dir / "tiny-qwen2vl"
        if not (checkpoint / "config.json").exists():
            build_tiny_qwen2vl(checkpoint)
        # Two actors of half a CPU: nothing else runs while the labels are made, and the tiny
        # model's generate loop is bound by per-token overhead, so two halve the stage's time.
        # Short analyses keep the check fast; the scores turn is constrained by xgrammar anyway.
        return FromEnv({"backend": {"type": "transformers", "model": str(checkpoint), "device": "cpu",
                                    "num_actors": 2},
                        "decoding": {"max_tokens_analysis": 16}}, note=PIPELINE_CHECK_NOTE)

    @classmethod
    def ray_plan(cls, config: TransformersBackendConfig) -> RayPlan:
        return RayPlan(num_actors=config.num_actors, batch_size=config.batch_size, num_cpus=config.num_cpus,
                       num_gpus=config.num_gpus or None)

    @classmethod
    def needs(cls, config: TransformersBackendConfig) -> list[Need]:
        """The weights on this machine (:mod:`rayrg.models.weights`' rule) and the GPUs asked for."""
        out = [*super().needs(config), Need("weights", "backend.model", config.model)]
        if config.num_gpus or str(config.device).startswith("cuda"):
            out.append(Need("gpus", "backend.num_gpus", max(config.num_gpus or 1, 1) * config.num_actors))
        return out

    def __init__(self, config: TransformersBackendConfig, decoding: Decoding, max_parse_attempts: int = 3,
                 share: float = 1.0) -> None:
        import torch
        import xgrammar as xgr
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        super().__init__(max_parse_attempts)
        self.config, self.decoding = config, decoding
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        self.processor = AutoProcessor.from_pretrained(config.model)
        self.model = AutoModelForImageTextToText.from_pretrained(
            config.model, dtype=dtype, device_map=config.device if config.device != "cpu" else None)
        self.model.eval()
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)
        model_config = AutoConfig.from_pretrained(config.model)
        text_config = getattr(model_config, "text_config", model_config)
        # vocab_size from the model config: the embedding is padded above the tokenizer
        info = xgr.TokenizerInfo.from_huggingface(self.processor.tokenizer, vocab_size=text_config.vocab_size)
        self._compiler = xgr.GrammarCompiler(info)
        self._grammars: dict[int | str, Any] = {}  # scores schemas by length, others by their JSON

    def _grammar(self, num_steps: int):
        if num_steps not in self._grammars:
            self._grammars[num_steps] = self._compiler.compile_json_schema(
                scores_schema(num_steps), any_whitespace=False)
        return self._grammars[num_steps]

    def _generate(self, answer: WindowAnswer, messages: list[Message], max_new_tokens: int,
                  grammar: Any = None) -> str:
        import torch

        inputs = self.processor.apply_chat_template(
            to_hf_messages(messages), add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt").to(self.model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if self.decoding.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.decoding.temperature, top_p=self.decoding.top_p)
        else:
            kwargs.update(do_sample=False)
        if grammar is not None:
            from xgrammar.contrib.hf import LogitsProcessor

            kwargs["logits_processor"] = [LogitsProcessor(grammar)]
        answer.backend_calls += 1
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new = out[0, prompt_len:]
        answer.input_tokens += int(prompt_len)
        answer.output_tokens += int(new.shape[0])
        return self.processor.decode(new, skip_special_tokens=True)

    @classmethod
    def logprobs_unavailable(cls, config: TransformersBackendConfig) -> str | None:
        return None  # the logits of the next token

    def _schema_grammar(self, schema: dict[str, Any]):
        import json

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = self._compiler.compile_json_schema(key, any_whitespace=False)
        return self._grammars[key]

    def next_token_logprobs(self, messages: list[Message], top: int) -> tuple[list[tuple[str, float]], int]:
        """The ``top`` most likely first answer tokens and their log-probabilities (log-softmax
        of the logits in float32), and the prompt's length in tokens."""
        import torch

        inputs = self.processor.apply_chat_template(
            to_hf_messages(messages), add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        values, ids = torch.topk(logprobs, top)
        tokenizer = self.processor.tokenizer
        return ([(tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids, strict=True)],
                int(inputs["input_ids"].shape[1]))

    def answer_prompts(self, queries: Sequence[PromptQuery],
                       on_done: Callable[[PromptQuery, PromptAnswer], None] | None = None) -> list[PromptAnswer]:
        answers = []
        for query in queries:
            answer = PromptAnswer()
            start = time.perf_counter()
            try:
                if query.top_logprobs:
                    top, prompt_len = self.next_token_logprobs(query.messages(), query.top_logprobs)
                    answer.backend_calls += 1
                    answer.input_tokens += prompt_len
                    answer.output_tokens += 1
                    answer.top_logprobs = [list(t) for t in top]
                    answer.text = top[0][0]
                else:
                    grammar = self._schema_grammar(query.schema) if query.schema else None
                    answer.text = self._generate(answer, query.messages(), query.max_tokens, grammar)
            except Exception as exc:  # one bad query (OOM, odd image) must not stop the dataset
                answer.error = f"{type(exc).__name__}: {exc}"
            answer.latency_s = time.perf_counter() - start
            if on_done is not None:
                on_done(query, answer)
            answers.append(answer)
        return answers

    def _label(self, query: WindowQuery) -> WindowAnswer:
        answer = WindowAnswer()
        start = time.perf_counter()
        try:
            answer.analysis_text = self._generate(answer, query.turn1(), self.decoding.max_tokens_analysis)
            grammar = self._grammar(query.num_steps)
            for _ in range(self.max_parse_attempts):
                text = self._generate(answer, query.turn2(answer.analysis_text), self.decoding.max_tokens_scores,
                                      grammar)
                if self.finish_scores(answer, query, text):
                    break
        except Exception as exc:  # one bad window (OOM, odd image) must not stop the dataset
            answer.error = f"{type(exc).__name__}: {exc}"
        answer.latency_s = time.perf_counter() - start
        return answer

    def label_batch(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None) -> list[WindowAnswer]:
        answers = []
        for query in queries:
            answer = self._label(query)
            if on_done is not None:
                on_done(query, answer)
            answers.append(answer)
        return answers
