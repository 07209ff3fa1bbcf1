"""Tiny, randomly initialised video–text encoders for RoboCLIP-style rewards.

* :func:`build_tiny_xclip` — an ``XCLIPModel`` (the architecture of
  ``microsoft/xclip-base-patch32``) with CLIP's real tokenizer (see
  :mod:`rayrg.models.tiny_clip`) and a ``VideoMAEImageProcessor``, in ``save_pretrained``
  layout.
* :func:`build_tiny_torchscript_video` — a TorchScript file with the interface
  :mod:`rayrg.rewards.similarity.roboclip` expects of a local video–text encoder
  (``encode_video(Tensor[B, T, 3, H, W])``, ``encode_text(List[str])``): the shape of a
  scripted S3D + word dictionary, with hashed words and a pooled linear video tower.

Random weights: plumbing only.
"""

from __future__ import annotations

from pathlib import Path

from rayrg.models._tiny import is_built, save_and_finish


def build_tiny_xclip(directory: str | Path, *, seed: int = 0, image_size: int = 32, num_frames: int = 8,
                     hidden: int = 32, overwrite: bool = False) -> Path:
    import torch
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    from rayrg.models.tiny_clip import clip_text_config, clip_tokenizer

    directory = Path(directory)
    recipe = {"kind": "xclip", "seed": seed, "image_size": image_size, "num_frames": num_frames,
              "hidden": hidden, "version": 1}
    if not overwrite and is_built(directory, recipe):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tower = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 1,
             "num_attention_heads": 2}
    config = XCLIPConfig(
        text_config=clip_text_config(tower),
        vision_config={**tower, "image_size": image_size, "patch_size": image_size // 4, "num_frames": num_frames,
                       "mit_hidden_size": hidden, "mit_intermediate_size": 2 * hidden,
                       "mit_num_hidden_layers": 1, "mit_num_attention_heads": 2},
        projection_dim=hidden, prompt_layers=1, prompt_attention_heads=2,
    )
    torch.manual_seed(seed)
    model = XCLIPModel(config)
    image_processor = VideoMAEImageProcessor(size={"shortest_edge": image_size},
                                             crop_size={"height": image_size, "width": image_size})
    processor = XCLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())
    return save_and_finish(directory, recipe, "X-CLIP", model, processor)


def build_tiny_torchscript_video(path: str | Path, *, seed: int = 0, dim: int = 16, buckets: int = 257) -> Path:
    """A scripted video–text encoder file (see module docstring)."""
    import torch
    from torch import nn

    class TinyVideoText(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.buckets = buckets
            self.words = nn.Embedding(buckets, dim)
            self.video = nn.Linear(3, dim)

        @torch.jit.export
        def encode_video(self, video: torch.Tensor) -> torch.Tensor:
            return self.video(video.mean(dim=(3, 4)).mean(dim=1))  # [B, T, 3, H, W] -> [B, dim]

        @torch.jit.export
        def encode_text(self, texts: list[str]) -> torch.Tensor:
            rows: list[torch.Tensor] = []
            for text in texts:
                ids: list[int] = []
                for word in text.lower().split():
                    h = 0
                    for ch in word:
                        h = (h * 31 + ord(ch)) % self.buckets
                    ids.append(h)
                if len(ids) == 0:
                    ids.append(0)
                rows.append(self.words(torch.tensor(ids)).mean(dim=0))
            return torch.stack(rows)

        def forward(self, video: torch.Tensor) -> torch.Tensor:
            return self.encode_video(video)

    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyVideoText()).save(str(path))
    return path


if __name__ == "__main__":  # python -m rayrg.models.tiny_xclip <dir>
    import sys

    print(build_tiny_xclip(sys.argv[1] if len(sys.argv) > 1 else "tiny-xclip"))
