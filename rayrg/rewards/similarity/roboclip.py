"""RoboCLIP (Sontakke et al. 2023): one video–text similarity per episode, at its end.

The episode's observations are sub-sampled uniformly to a fixed number of frames and
scored against the instruction by a video–text encoder; the reward is that similarity
on the episode's last transition and 0 on every other one. RoboCLIP used S3D trained on
HowTo100M, whose weights' link is dead upstream, so the encoder is pluggable:

* ``encoder: xclip`` — a transformers X-CLIP checkpoint (hub id such as
  ``microsoft/xclip-base-patch32`` or a local directory); score = cosine of the video
  embedding with the (video-conditioned) text embedding.
* ``encoder: torchscript`` — a local TorchScript file whose module has
  ``encode_video(Tensor[B, T, 3, H, W] float in [0, 1]) -> Tensor[B, D]`` and
  ``encode_text(List[str]) -> Tensor[B, D]`` (e.g. S3D + its word dictionary, scripted);
  score = cosine of the two embeddings (RoboCLIP used the raw dot product of S3D's
  embeddings; the cosine keeps rewards in [-1, 1] whatever the encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from rayrg.rewards.declarations import Need
from rayrg.rewards.similarity import math as sim
from rayrg.rewards.similarity._shared import pick_device, torch_dtype
from rayrg.rewards.similarity.config import SimilarityConfig
from rayrg.rewards.similarity.method import EpisodeMethod


class RoboClipConfig(SimilarityConfig):
    """RoboCLIP: one video–text similarity per episode, given on its last transition.

    The video is every observation of the episode (``frame`` of each row, then the last
    row's ``final_frame``), sub-sampled uniformly to ``num_frames`` (first and last kept).
    """

    method: Literal["roboclip"] = "roboclip"
    encoder: Literal["xclip", "torchscript"] = Field(
        "xclip", description="xclip: a transformers X-CLIP model (hub id or dir); torchscript: a "
                             "local .pt file with encode_video(Tensor[B,T,3,H,W] in 0..1) and "
                             "encode_text(List[str]) methods (e.g. a scripted S3D).")
    num_frames: int | None = Field(None, ge=1, description="Frames sub-sampled uniformly per episode "
                                                           "(None: the model's num_frames; X-CLIP needs it).")
    frame_size: int = Field(224, ge=8, description="torchscript: frames resized to this square side.")
    batch_size: int = Field(4, ge=1, description="Episodes per batch.")

    @model_validator(mode="after")
    def _torchscript_needs_frames(self) -> RoboClipConfig:
        if self.encoder == "torchscript" and self.num_frames is None:
            raise ValueError("encoder 'torchscript' needs num_frames")
        return self


def subsample_indices(length: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread uniformly over ``range(length)``, first and last included.

    Shorter episodes repeat frames (a video model expects exactly ``num_frames``).
    """
    if length < 1:
        raise ValueError("an episode needs at least one observation")
    if num_frames == 1:
        return [length - 1]
    return np.linspace(0, length - 1, num_frames).round().astype(int).tolist()


class XClipVideoEncoder:
    def __init__(self, model: str, device: str = "auto", dtype: str = "float32") -> None:
        from transformers import AutoModel, AutoProcessor

        self.device = pick_device(device)
        self.model = AutoModel.from_pretrained(model, dtype=torch_dtype(dtype, self.device)).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        self.num_frames = int(self.model.config.vision_config.num_frames)
        self.num_parameters = int(sum(p.numel() for p in self.model.parameters()))

    def similarity(self, videos: Sequence[Sequence[np.ndarray]], texts: Sequence[str]) -> np.ndarray:
        """Cosine of each video with its own text (X-CLIP's text embedding depends on the video)."""
        import torch

        unique = list(dict.fromkeys(texts))
        inputs = self.processor(videos=[list(v) for v in videos], text=unique, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model(**inputs)
        # video_embeds [B, D] and text_embeds [B, T, D] are unit-norm: logits / scale = cosine.
        cos = torch.einsum("bd,btd->bt", out.video_embeds.float(), out.text_embeds.float()).cpu().numpy()
        return cos[np.arange(len(texts)), [unique.index(t) for t in texts]].astype(np.float64)


class TorchScriptVideoEncoder:
    def __init__(self, path: str, device: str = "auto", frame_size: int = 224, num_frames: int = 8) -> None:
        import torch

        self.device = pick_device(device)
        self.module = torch.jit.load(str(path), map_location=self.device).eval()
        self.frame_size, self.num_frames = frame_size, num_frames
        self.num_parameters = int(sum(p.numel() for p in self.module.parameters()))

    def similarity(self, videos: Sequence[Sequence[np.ndarray]], texts: Sequence[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        clips = torch.from_numpy(np.stack([np.stack(v) for v in videos])).to(self.device)  # B T H W 3 uint8
        b, t, h, w, c = clips.shape
        frames = clips.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float() / 255.0
        frames = F.interpolate(frames, size=(self.frame_size, self.frame_size), mode="bilinear",
                               align_corners=False)
        video = frames.reshape(b, t, c, self.frame_size, self.frame_size)
        with torch.inference_mode():
            v = self.module.encode_video(video).float().cpu().numpy()
            x = self.module.encode_text(list(texts)).float().cpu().numpy()
        return np.sum(sim.normalize(v) * sim.normalize(x), axis=-1)


def build_video_encoder(config: RoboClipConfig) -> XClipVideoEncoder | TorchScriptVideoEncoder:
    if config.encoder == "xclip":
        return XClipVideoEncoder(config.model, config.device, config.dtype)
    return TorchScriptVideoEncoder(config.model, config.device, config.frame_size, config.num_frames or 8)


class RoboClipMethod(EpisodeMethod):
    value = "video-text cosine on the last transition, 0 elsewhere"

    def method_needs(self, config: RoboClipConfig) -> list[Need]:
        """A TorchScript encoder is a local file, not a checkpoint of the weights rule."""
        needs = super().method_needs(config)
        if config.encoder == "torchscript":
            needs[0] = Need("file", "model", str(config.model), why="the TorchScript video encoder")
        return needs

    def load(self, config: RoboClipConfig) -> XClipVideoEncoder | TorchScriptVideoEncoder:
        return build_video_encoder(config)

    def score_videos(self, model: XClipVideoEncoder | TorchScriptVideoEncoder, config: RoboClipConfig,
                     videos: list[list[np.ndarray]], instructions: list[str]) -> np.ndarray:
        num_frames = config.num_frames or model.num_frames
        clips = [[frames[i] for i in subsample_indices(len(frames), num_frames)] for frames in videos]
        return model.similarity(clips, [config.prompt(i) for i in instructions])

    def provenance(self, config: RoboClipConfig, scored: Any, example: str) -> dict[str, Any]:
        return {"encoder": config.encoder, "num_frames": config.num_frames}


ROBOCLIP = RoboClipMethod("roboclip", RoboClipConfig)
