"""Typed configs of the similarity labellers; the ``method`` key picks one (see registry).

Shared fields live in :class:`SimilarityConfig`; each method adds its own. Every model is
a hub id or a local directory (``save_pretrained`` layout) loaded with ``from_pretrained``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rayrg.config import StageConfig
from rayrg.rewards.base import reward_column

DEFAULT_TEMPLATE = "{instruction}"


class NegativesConfig(StageConfig):
    """Negative descriptions for the softmax (Baumli: the environment's other goals)."""

    source: Literal["config", "dataset", "babyai", "dataset+babyai"] = Field(
        "dataset+babyai",
        description="config: only `texts`; dataset: the dataset's other instructions; "
                    "babyai: generated single-object BabyAI goals (verb × color × object); "
                    "`texts` are always added.")
    texts: list[str] = Field(default_factory=list, description="Extra negative texts (template applied).")
    max_negatives: int | None = Field(16, ge=1, description="Cap per goal (seeded sample); None: all.")
    seed: int = Field(0, description="Seed of the per-goal sample of negatives.")


class SimilarityConfig(StageConfig):
    model: str = Field(..., description="Hub id or local checkpoint directory.")
    template: str = Field(DEFAULT_TEMPLATE, description="Goal prompt; '{instruction}' is replaced.")
    name: str | None = Field(None, description="Column variant: reward_<name>; default the method name.")
    batch_size: int = Field(32, ge=1, description="Frames per batch of inference.")
    max_actors: int = Field(2, ge=1, description="Autoscaling actor pool: 1..max_actors.")
    num_cpus: float = Field(0.5, gt=0, description="CPUs per actor (fractional: whole CPUs can hang 2-CPU pools).")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per actor; None: 1 when the cluster has GPUs, else 0.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Model dtype (GPU: half types).")
    max_episodes: int | None = Field(None, ge=1, description="Label only the first N episodes (others NaN).")

    @field_validator("template")
    @classmethod
    def _has_slot(cls, template: str) -> str:
        if "{instruction}" not in template:
            raise ValueError("template must contain '{instruction}'")
        try:
            template.format(instruction="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template may only use the slot '{{instruction}}': {exc!r}") from exc
        return template

    @property
    def variant(self) -> str:
        return self.name or self.method  # type: ignore[attr-defined]

    @property
    def column(self) -> str:
        return reward_column(self.variant)

    def prompt(self, instruction: str) -> str:
        return self.template.format(instruction=instruction)


class PerFrameConfig(SimilarityConfig):
    observation: Literal["next", "current"] = Field(
        "next", description="Score the observation after the action (next: the state the action "
                            "reached, so the last transition sees the achieved goal) or before it.")


class ClipConfig(PerFrameConfig):
    """Baumli et al.: softmax over goal + negatives with a temperature, then a threshold.

    Writes ``reward_<name>`` (binary) and ``reward_<name>_prob`` (the probability).
    """

    method: Literal["clip"] = "clip"
    temperature: float = Field(0.01, gt=0, description="Softmax temperature on cosine similarities "
                                                       "(CLIP's trained logit scale 100 = 0.01).")
    threshold: float = Field(0.5, ge=0, le=1, description="Reward 1 where p(goal) >= threshold.")
    negatives: NegativesConfig = Field(default_factory=NegativesConfig)

    @property
    def prob_column(self) -> str:
        return reward_column(f"{self.variant}_prob")


class VLMRMConfig(PerFrameConfig):
    """VLM-RMs: CLIP cosine with goal–baseline projection of strength ``alpha``."""

    method: Literal["vlmrm"] = "vlmrm"
    baseline: str = Field("a grid world seen from above",
                          description="Baseline prompt b (the environment without the goal).")
    alpha: float = Field(0.5, ge=0, le=1, description="0: plain cosine with the goal; 1: only along g - b.")


class Blip2Config(PerFrameConfig):
    """BLIP-2 image–text matching: P(match) of each frame with the goal prompt."""

    method: Literal["blip2"] = "blip2"
    score: Literal["itm", "itc"] = Field(
        "itm", description="itm: matching-head probability; itc: query–text cosine (max over queries).")
    batch_size: int = Field(16, ge=1)


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


AnySimilarityConfig = ClipConfig | VLMRMConfig | Blip2Config | RoboClipConfig
