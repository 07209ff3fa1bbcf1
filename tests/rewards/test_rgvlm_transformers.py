"""The transformers backend with a tiny random Qwen2-VL, end to end through Ray Data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rayrg.data.access import read_trajectories
from rayrg.data.schema import DatasetMetadata
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE


@pytest.fixture(scope="module")
def tiny_qwen2vl(tmp_path_factory) -> Path:
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

    directory = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen2vl")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (directory / name).exists(), name
    return directory


def test_tiny_checkpoint_is_a_real_qwen2vl(tiny_qwen2vl: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen2vl)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    tok = processor.tokenizer
    vision = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"]
    assert all(tok.convert_tokens_to_ids(t) < len(tok) for t in vision)
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.text_config.vocab_size > len(tok)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


@pytest.mark.integration
def test_label_babyai_dataset_with_tiny_qwen2vl(tiny_qwen2vl: Path, tmp_path: Path, ray_local) -> None:
    from rayrg.data.generate import GenerateConfig, generate

    source = generate(GenerateConfig(subtask_counts=[1, 2], episodes_per_count=1, eval_tasks_per_count=0,
                                     noise=0.2, episodes_per_shard=2, max_steps=30),
                      tmp_path / "gen", progress=False) / "trajectories"
    raw = {"method": "rgvlm",
           "backend": {"type": "transformers", "model": str(tiny_qwen2vl), "num_cpus": 0.5, "batch_size": 2},
           "decoding": {"max_tokens_analysis": 8, "max_tokens_scores": 48},
           "fusion": {"rgvlm_sparse": {"rgvlm": 1.0, "sparse": 1.0}, "rgvlm_sparse2": {"rgvlm": 0.5, "sparse": 2.0}}}
    method, config = load_label_config(raw)
    out = method.run(config, source, tmp_path / "out")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    windows = pq.read_table(out / "_windows")
    assert summary["windows"] == windows.num_rows == summary["labelled"] and summary["failed"] == 0
    # xgrammar: every turn-2 answer of the random model parses the first time
    assert summary["backend_calls"] == 2 * summary["windows"] and summary["invalid_answers"] == 0
    labels = pq.read_table(out / "_labels").to_pylist()
    assert all(len(r["scores"]) == r["num_steps"] for r in labels)  # partial windows: num_steps scores
    assert all(r["backend"] == "transformers" and r["input_tokens"] > 0 for r in labels)
    table = read_trajectories(out)
    rgvlm = table.column("reward_rgvlm").to_numpy()
    assert ((rgvlm >= 0) & (rgvlm <= 1)).all()  # stride == W: every transition has one score
    assert {"reward_rgvlm_sparse", "reward_rgvlm_sparse2"} <= set(table.column_names)
    prov = DatasetMetadata.read(out).extra["labels"]["reward_rgvlm_sparse2"]
    assert prov["fusion"] == {"rgvlm": 0.5, "sparse": 2.0} and prov["model"] == str(tiny_qwen2vl)

    # a second run is served from the cache: zero model calls, the same rewards
    out2 = method.run(config, source, tmp_path / "out")
    again = json.loads((out2 / SUMMARY_FILE).read_text())
    assert again["backend_calls"] == 0 and again["cached"] == summary["windows"]
    assert (read_trajectories(out2).column("reward_rgvlm").to_numpy() == rgvlm).all()
