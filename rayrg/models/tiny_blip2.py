"""A tiny, randomly initialised BLIP-2 image–text retrieval checkpoint.

``Blip2ForImageTextRetrieval`` (the architecture of ``Salesforce/blip2-itm-vit-g``) with
``use_qformer_text_input=True`` so the Q-Former reads the text, a BERT WordPiece
tokenizer built here over BabyAI's vocabulary (plus single characters for WordPiece
fallback), and a ``BlipImageProcessor``; saved with ``save_pretrained`` and loaded with
``from_pretrained`` like the hub checkpoint. Random weights: plumbing only.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from rayrg.models._tiny import is_built, save_and_finish

WEIGHT_STD = 0.2
_WORDS = ("go to the a an then after you and put next pick up open door key ball box red green blue "
          "purple yellow grey gray agent grid world image of frame robot top down view with objects "
          "in on at room wall floor picture photo is are it").split()


def bert_tokenizer() -> Any:
    from transformers import BertTokenizer

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(_WORDS), *chars,
              *(f"##{c}" for c in string.ascii_lowercase + string.digits)]
    # vocab= object: a vocab_file= argument is silently ignored in transformers 5.
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})


def build_tiny_blip2(directory: str | Path, *, seed: int = 0, image_size: int = 32, hidden: int = 32,
                     overwrite: bool = False) -> Path:
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForImageTextRetrieval,
        Blip2Processor,
        BlipImageProcessor,
    )

    directory = Path(directory)
    recipe = {"kind": "blip2", "seed": seed, "image_size": image_size, "hidden": hidden, "version": 2}
    if not overwrite and is_built(directory, recipe):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = bert_tokenizer()
    config = Blip2Config(
        vision_config={"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": image_size // 4},
        qformer_config={"vocab_size": len(tokenizer), "hidden_size": hidden, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "intermediate_size": 2 * hidden,
                        "encoder_hidden_size": hidden, "max_position_embeddings": 64,
                        "use_qformer_text_input": True, "pad_token_id": 0},
        # the retrieval model has no language model; Blip2Config still wants a text config
        text_config={"model_type": "opt", "vocab_size": 64, "hidden_size": hidden, "num_hidden_layers": 1,
                     "ffn_dim": 2 * hidden, "num_attention_heads": 2, "word_embed_proj_dim": hidden},
        num_query_tokens=4, image_text_hidden_size=hidden // 2, use_qformer_text_input=True,
    )
    torch.manual_seed(seed)
    model = Blip2ForImageTextRetrieval(config)
    with torch.no_grad():  # the default std 0.02 makes every frame score ~0.49 at this size
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, WEIGHT_STD)
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer)
    return save_and_finish(directory, recipe, "BLIP-2", model, processor)


if __name__ == "__main__":  # python -m rayrg.models.tiny_blip2 <dir>
    import sys

    print(build_tiny_blip2(sys.argv[1] if len(sys.argv) > 1 else "tiny-blip2"))
