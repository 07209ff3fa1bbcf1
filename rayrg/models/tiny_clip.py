"""Tiny, randomly initialised CLIP checkpoints (real architecture, real CLIP tokenizer).

For tests and pipeline checks of the CLIP-family rewards: ``CLIPModel`` + ``CLIPProcessor``
saved with ``save_pretrained`` and loaded back with ``from_pretrained`` exactly like
``openai/clip-vit-base-patch32``. The tokenizer is CLIP's own byte-level BPE: its merges
ship inside the ``open_clip_torch`` wheel (``bpe_simple_vocab_16e6.txt.gz``) and the
vocabulary is rebuilt from them the way CLIP's ``SimpleTokenizer`` does (no PyPI package ships real CLIP weights usable offline),
so token ids equal the real model's. Weights are random: scores measure plumbing only.

``TINY_CLIP_SIZES`` are a small "family" of widths/depths for the scaling report.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from rayrg.models._tiny import is_built, save_and_finish

# name -> (hidden size, layers) of both towers; projection dim = hidden size.
TINY_CLIP_SIZES: dict[str, tuple[int, int]] = {"xs": (32, 1), "s": (48, 2), "m": (64, 3)}
CLIP_VOCAB_SIZE = 49408  # 256 bytes x 2 + 48894 merges + 2 special tokens


def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges, rebuilt from the BPE file in the open_clip wheel."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]  # as SimpleTokenizer
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE
    return {token: i for i, token in enumerate(vocab)}, merges  # type: ignore[return-value]


def clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe()
    # vocab=/merges= objects: a vocab_file= argument is silently ignored in transformers 5.
    return CLIPTokenizer(vocab=vocab, merges=merges)


def clip_text_config(tower: dict[str, Any]) -> dict[str, Any]:
    """The text tower's config: ``tower`` (sizes) with CLIP's vocabulary, context length and
    special-token ids (:func:`clip_tokenizer`'s)."""
    return {**tower, "vocab_size": CLIP_VOCAB_SIZE, "max_position_embeddings": 77,
            "bos_token_id": CLIP_VOCAB_SIZE - 2, "eos_token_id": CLIP_VOCAB_SIZE - 1,
            "pad_token_id": CLIP_VOCAB_SIZE - 1}


def build_tiny_clip(directory: str | Path, *, size: str = "xs", seed: int = 0, image_size: int = 32,
                    overwrite: bool = False) -> Path:
    """Write a tiny CLIP checkpoint of family member ``size`` (reused if already built)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    hidden, layers = TINY_CLIP_SIZES[size]
    directory = Path(directory)
    recipe = {"kind": "clip", "size": size, "seed": seed, "image_size": image_size, "version": 1}
    if not overwrite and is_built(directory, recipe):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tower = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
             "num_attention_heads": 2}
    config = CLIPConfig(
        text_config=clip_text_config(tower),
        vision_config={**tower, "image_size": image_size, "patch_size": image_size // 4},
        projection_dim=hidden,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())
    return save_and_finish(directory, recipe, f"CLIP {size}", model, processor)


def build_tiny_clip_family(directory: str | Path, sizes: tuple[str, ...] = tuple(TINY_CLIP_SIZES),
                           seed: int = 0) -> dict[str, Path]:
    """One checkpoint per size under ``directory/<size>`` (for the scaling report)."""
    return {s: build_tiny_clip(Path(directory) / s, size=s, seed=seed) for s in sizes}


if __name__ == "__main__":  # python -m rayrg.models.tiny_clip <dir> [size]
    import sys

    print(build_tiny_clip(sys.argv[1] if len(sys.argv) > 1 else "tiny-clip",
                          size=sys.argv[2] if len(sys.argv) > 2 else "xs"))
