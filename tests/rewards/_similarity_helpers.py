"""Shared builders for the similarity-reward tests: a small BabyAI dataset, tiny checkpoints."""

from __future__ import annotations

from pathlib import Path


def babyai_dataset(root: Path) -> Path:
    """6 short BabyAI episodes (1 and 2 sub-tasks), ≈ 2 s on 2 cores; needs a Ray cluster."""
    from rayrg.data.generate import GenerateConfig, generate

    config = GenerateConfig(subtask_counts=[1, 2], episodes_per_count=3, eval_tasks_per_count=0, noise=0.2,
                            episodes_per_shard=3, max_steps=40)
    return generate(config, root / "gen", progress=False) / "trajectories"


def tiny_checkpoints(root: Path) -> dict[str, Path]:
    from rayrg.models.tiny_blip2 import build_tiny_blip2
    from rayrg.models.tiny_clip import build_tiny_clip
    from rayrg.models.tiny_xclip import build_tiny_torchscript_video, build_tiny_xclip

    return {"clip": build_tiny_clip(root / "clip-xs", size="xs"),
            "clip_s": build_tiny_clip(root / "clip-s", size="s"),
            "blip2": build_tiny_blip2(root / "blip2"),
            "xclip": build_tiny_xclip(root / "xclip"),
            "torchscript": build_tiny_torchscript_video(root / "video.pt")}
