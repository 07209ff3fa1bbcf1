"""Frozen image encoders: uint8 frames ``[B, H, W, 3]`` → float32 features ``[B, D]``.

An encoder is named by a small JSON-able *record* ``{"name", "checkpoint", "dim"}`` that the
feature sidecar and every policy checkpoint trained on it keep, so evaluation embeds live
frames with exactly the encoder that made the training features.

* ``clip`` — the vision tower + projection of a ``CLIPModel`` checkpoint directory (its own
  image processor resizes and normalises);
* ``resnet18`` — torchvision's ResNet-18 without its classifier (512-d pooled features),
  weights from a ``state_dict`` file (``checkpoint``); ImageNet normalisation at the frame's
  own resolution (the global pool accepts any size ≥ 32 px).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ENCODERS = ("clip", "resnet18")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageEncoder:
    def __init__(self, record: dict[str, Any], device: str = "cpu", batch_size: int = 256) -> None:
        import torch

        self.record, self.device, self.batch_size = dict(record), device, batch_size
        name, checkpoint = record["name"], record["checkpoint"]
        if name not in ENCODERS:
            raise ValueError(f"unknown image encoder {name!r}; choose one of {list(ENCODERS)}")
        if not Path(checkpoint).exists():
            raise FileNotFoundError(f"image encoder {name}: checkpoint {checkpoint} does not exist")
        if name == "clip":
            from transformers import CLIPImageProcessor, CLIPModel

            self.processor = CLIPImageProcessor.from_pretrained(checkpoint)
            self.model = CLIPModel.from_pretrained(checkpoint).to(device).eval()
        else:
            import torchvision

            self.model = torchvision.models.resnet18(weights=None)
            self.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
            self.model.fc = torch.nn.Identity()
            self.model = self.model.to(device).eval()
            self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def _embed(self, frames: np.ndarray) -> Any:
        import torch

        if self.record["name"] == "clip":
            pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
            out = self.model.get_image_features(pixel_values=pixels)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return self.model((x - self.mean) / self.std)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(frames), self.batch_size):
                out.append(self._embed(frames[i:i + self.batch_size]).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def encoder_record(name: str, checkpoint: str | Path) -> dict[str, Any]:
    """The record of an encoder, with its output width measured on one blank frame."""
    from rayrg.models.identity import local_identity

    record = {"name": name, "checkpoint": str(Path(checkpoint).resolve())}
    # the weights' content, so features (and training keyed on them) change with the weights
    record["identity"] = local_identity(checkpoint) if Path(checkpoint).exists() else None
    record["dim"] = int(ImageEncoder(record)(np.zeros((1, 56, 56, 3), dtype=np.uint8)).shape[-1])
    return record


def load_image_encoder(record: dict[str, Any] | None, device: str = "cpu") -> ImageEncoder:
    if not record:
        raise ValueError("a features policy without an image-encoder record (checkpoint predates it)")
    return ImageEncoder(record, device)
