"""A tiny, randomly initialised Qwen2-VL checkpoint directory (real architecture and processor).

Used by tests and by the quickstart as a *pipeline check* when no real VLM backend is
configured: it exercises the exact code path of a hub checkpoint (``AutoProcessor`` +
``AutoModelForImageTextToText.from_pretrained`` on a directory) with ≈ 1 M parameters.
Its answers are noise — rewards from it measure plumbing, never reward quality.

What it is made of (each choice was needed for transformers 5 to load it like the hub's):

* a byte-level BPE trained here with ``tokenizers`` on a small corpus, the 14 Qwen2-VL
  special tokens appended in the real order (``<|endoftext|>`` … ``<|video_pad|>``), wrapped
  in ``Qwen2Tokenizer(vocab=..., merges=...)``, with the official chat template;
* ``Qwen2VLImageProcessor`` with small ``min_pixels``/``max_pixels`` so grids become few
  vision tokens;
* a ``Qwen2VLConfig`` with hidden size 128, 2 layers, head_dim 64 and an ``mrope_section``
  summing to head_dim / 2 ([8, 12, 12]); the vocabulary is padded above the tokenizer size.
"""

from __future__ import annotations

import json
from pathlib import Path

from rayrg.models._tiny import finish, is_built

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# The chat template published with Qwen/Qwen2-VL-*-Instruct.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    '{"scores": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}',
    "The agent moves forward, turns left, turns right, picks up the key and opens the door.",
    "Analyse the differences between the frames and how each action relates to the goal.",
    "go to the red ball, then pick up the blue key, put the box next to the green door",
    "0123456789 t= step action score instruction grid image observation",
]


def _tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>", errors="replace")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.chat_template = CHAT_TEMPLATE
    return tok, model["vocab"], merges


def build_tiny_qwen2vl(directory: str | Path, *, seed: int = 0, bpe_vocab: int = 400,
                       overwrite: bool = False) -> Path:
    """Write the checkpoint to ``directory`` (reused if already built with the same recipe)."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    directory = Path(directory)
    recipe = {"seed": seed, "bpe_vocab": bpe_vocab, "version": 2}
    if not overwrite and is_built(directory, recipe):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab, merges = _tokenizer(bpe_vocab)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64 + 64  # padded above the tokenizer, like the real one
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=CHAT_TEMPLATE)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size, "hidden_size": 128, "intermediate_size": 256,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 4096, "max_window_layers": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [8, 12, 12]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 2, "embed_dim": 64, "hidden_size": 128, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    # The hub's flat files too (older loaders such as vLLM's read these).
    image_processor.to_json_file(directory / "preprocessor_config.json")
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return finish(directory, recipe, "Qwen2-VL", model)


if __name__ == "__main__":  # python -m rayrg.models.tiny_qwen2vl <dir>
    import sys

    print(build_tiny_qwen2vl(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen2vl"))
