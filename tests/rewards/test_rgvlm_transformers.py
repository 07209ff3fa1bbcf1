"""The transformers backend with a tiny random Qwen2-VL, end to end through Ray Data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rayrg.data.schema import DatasetMetadata, read_trajectories
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
def test_label_babyai_like_dataset_with_tiny_qwen2vl(make_toy_dataset, tiny_qwen2vl: Path, tmp_path: Path,
                                                      ray_local) -> None:
    source = make_toy_dataset(num_episodes=2, steps=(9, 5), frame_size=16)
    raw = {"method": "rgvlm",
           "backend": {"type": "transformers", "model": str(tiny_qwen2vl), "num_cpus": 0.5, "batch_size": 2},
           "decoding": {"max_tokens_analysis": 8, "max_tokens_scores": 48},
           "fusion": {"rgvlm_sparse": {"rgvlm": 1.0, "sparse": 1.0}, "rgvlm_sparse2": {"rgvlm": 0.5, "sparse": 2.0}}}
    method, config = load_label_config(raw)
    out = method.run(config, source, tmp_path / "out")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    # 9 steps -> windows of 8 + 1 (partial), 5 steps -> one partial window
    assert summary["windows"] == 3 and summary["labelled"] == 3 and summary["failed"] == 0
    assert summary["backend_calls"] == 6  # xgrammar: every turn-2 answer parses the first time
    labels = pq.read_table(out / "_labels").to_pylist()
    assert sorted(len(r["scores"]) for r in labels) == [1, 5, 8]
    assert all(r["backend"] == "transformers" and r["input_tokens"] > 0 for r in labels)
    table = read_trajectories(out)
    rgvlm = table.column("reward_rgvlm").to_numpy()
    assert ((rgvlm >= 0) & (rgvlm <= 1)).all()
    assert {"reward_rgvlm_sparse", "reward_rgvlm_sparse2"} <= set(table.column_names)
    prov = DatasetMetadata.read(out).extra["labels"]["reward_rgvlm_sparse2"]
    assert prov["fusion"] == {"rgvlm": 0.5, "sparse": 2.0} and prov["model"] == str(tiny_qwen2vl)

    # a second run is served from the cache: zero model calls
    out2 = method.run(config, source, tmp_path / "out")
    again = json.loads((out2 / SUMMARY_FILE).read_text())
    assert again["backend_calls"] == 0 and again["cached"] == 3
    assert (read_trajectories(out2).column("reward_rgvlm").to_numpy() == rgvlm).all()
