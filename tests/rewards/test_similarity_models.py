"""Tiny CLIP / BLIP-2 / X-CLIP / TorchScript checkpoints through the scorers (no Ray).

Random weights: these check shapes, ranges, reloading and determinism, never quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rayrg.data.schema import encode_png
from rayrg.rewards.similarity import math as sim
from rayrg.rewards.similarity.clip import ClipConfig
from rayrg.rewards.similarity.config import NegativesConfig
from rayrg.rewards.similarity.vlmrm import VLMRM, VLMRMConfig
from tests.rewards._similarity_helpers import tiny_checkpoints


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (56, 56, 3), dtype=np.uint8) for _ in range(5)]


def test_tiny_clip_uses_the_real_clip_tokenizer(ckpt: dict[str, Path]) -> None:
    import open_clip
    from transformers import AutoProcessor

    text = "pick up the blue key, then open the grey door"
    ours = AutoProcessor.from_pretrained(ckpt["clip"]).tokenizer(text).input_ids
    real = open_clip.get_tokenizer("ViT-B-32")([text])[0].tolist()
    assert ours == real[: len(ours)] and len(ours) > 5 and ours[0] == 49406 and ours[-1] == 49407


def test_clip_encoder_shapes_norm_and_determinism(ckpt: dict[str, Path], frames: list[np.ndarray]) -> None:
    from rayrg.rewards.similarity.clip import ClipEncoder, clip_scores
    from rayrg.rewards.similarity.vlmrm import vlmrm_scores

    a, b = ClipEncoder(str(ckpt["clip"]), device="cpu"), ClipEncoder(str(ckpt["clip"]), device="cpu")
    images = a.encode_images(frames)
    assert images.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(images, b.encode_images(frames))  # reload -> identical
    assert len({round(float(x), 6) for x in images[:, 0]}) > 1  # frames differ
    texts = a.encode_texts(["go to the red ball", "open the door", "go to the red ball"])
    assert texts.shape == (3, 32)
    np.testing.assert_array_equal(texts[0], texts[2])

    instructions = ["go to the red ball"] * 3 + ["open the door"] * 2
    negatives = {"go to the red ball": ["open the door", "pick up the key"], "open the door": ["go to the red ball"]}
    config = ClipConfig(model=str(ckpt["clip"]), temperature=0.05, template="a photo: {instruction}",
                        negatives=NegativesConfig(source="config"))
    out = clip_scores(a, images, instructions, config, negatives)
    manual = images[:3] @ a.encode_texts(["a photo: go to the red ball", "a photo: open the door",
                                          "a photo: pick up the key"]).T
    np.testing.assert_allclose(out["score"][:3], sim.goal_probability(manual, 0.05))
    np.testing.assert_allclose(out["cosine"][:3], manual[:, 0])
    assert ((out["score"] > 0) & (out["score"] < 1)).all()

    vconfig = VLMRMConfig(model=str(ckpt["clip"]), alpha=0.0)
    v = vlmrm_scores(a, images, instructions, vconfig)
    np.testing.assert_allclose(v["score"], v["cosine"], atol=1e-6)  # alpha 0 is the plain cosine


def test_tiny_clip_family_grows(ckpt: dict[str, Path]) -> None:
    from rayrg.rewards.similarity.clip import ClipEncoder

    assert ClipEncoder(str(ckpt["clip_s"])).num_parameters > ClipEncoder(str(ckpt["clip"])).num_parameters


def test_blip2_itm_and_itc(ckpt: dict[str, Path], frames: list[np.ndarray]) -> None:
    from rayrg.rewards.similarity.blip2 import Blip2Scorer

    texts = ["go to the red ball"] * 3 + ["pick up the blue key"] * 2
    itm = Blip2Scorer(str(ckpt["blip2"]), device="cpu")(frames, texts)
    assert itm["score"].shape == (5,) and ((itm["score"] >= 0) & (itm["score"] <= 1)).all()
    np.testing.assert_array_equal(itm["score"], Blip2Scorer(str(ckpt["blip2"]))(frames, texts)["score"])
    assert len(set(np.round(itm["score"], 6))) > 1
    itc = Blip2Scorer(str(ckpt["blip2"]), score="itc")(frames, texts)
    assert itc["score"].shape == (5,) and (np.abs(itc["score"]) <= 1 + 1e-6).all()
    # A variant's score type wins over the loaded model's (variants share one model).
    np.testing.assert_array_equal(Blip2Scorer(str(ckpt["blip2"]))(frames, texts, score="itc")["score"],
                                  itc["score"])


def test_tiny_marker_is_read_from_the_checkpoint(ckpt: dict[str, Path], tmp_path: Path) -> None:
    from rayrg.pipeline_check import is_tiny_random, provenance_is_tiny_random

    assert is_tiny_random(ckpt["clip"]) and is_tiny_random(ckpt["clip"] / "config.json")  # dir, file in one
    assert not is_tiny_random(tmp_path) and not is_tiny_random("openai/clip-vit-base-patch32")
    assert provenance_is_tiny_random({"model": str(ckpt["blip2"])})
    assert not provenance_is_tiny_random({"model": str(tmp_path)})


def test_video_encoders(ckpt: dict[str, Path], frames: list[np.ndarray]) -> None:
    from rayrg.rewards.similarity.roboclip import (
        TorchScriptVideoEncoder,
        XClipVideoEncoder,
        subsample_indices,
    )

    videos = [[frames[i] for i in subsample_indices(5, 8)], [frames[i] for i in subsample_indices(3, 8)]]
    texts = ["go to the red ball", "open the door"]
    x = XClipVideoEncoder(str(ckpt["xclip"]))
    assert x.num_frames == 8
    s = x.similarity(videos, texts)
    assert s.shape == (2,) and (np.abs(s) <= 1 + 1e-6).all()
    np.testing.assert_allclose(s[::-1], x.similarity(videos[::-1], texts[::-1]), rtol=1e-5)  # per-pair
    t = TorchScriptVideoEncoder(str(ckpt["torchscript"]), frame_size=16)
    assert t.similarity(videos, texts).shape == (2,)


def test_subsample_indices() -> None:
    from rayrg.rewards.similarity.roboclip import subsample_indices

    assert subsample_indices(10, 4) == [0, 3, 6, 9]
    assert subsample_indices(3, 5) == [0, 0, 1, 2, 2]  # short episodes repeat frames
    assert subsample_indices(7, 1) == [6]
    with pytest.raises(ValueError):
        subsample_indices(0, 4)


def _batch(steps: int, last_has_final: bool = True) -> pa.Table:
    rng = np.random.default_rng(1)
    png = [encode_png(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)) for _ in range(steps + 1)]
    return pa.table({"episode_id": ["e"] * steps, "step": list(range(steps)),
                     "instruction": ["go to the red ball"] * steps, "frame": png[:steps],
                     "final_frame": [None] * (steps - 1) + [png[steps] if last_has_final else None]})


@pytest.mark.parametrize("observation,expected", [("next", [1, 2, 3]), ("current", [0, 1, 2])])
def test_frame_scorer_scores_the_chosen_observation(ckpt: dict[str, Path], observation: str,
                                                      expected: list[int]) -> None:
    from rayrg.rewards.similarity.stages import FrameScorer

    config = VLMRMConfig(model=str(ckpt["clip"]), observation=observation)
    out = FrameScorer(VLMRM, [config.to_dict()], [{}])(_batch(3))
    assert sorted(out.column("obs_index").to_pylist()) == expected
    assert not np.isnan(out.column("score").to_numpy()).any()
    skipped = FrameScorer(VLMRM, [config.to_dict()], [{}], episodes=["other"])(_batch(3))
    assert skipped.num_rows == 0


def test_frame_scorer_variants_share_one_pass(ckpt: dict[str, Path]) -> None:
    from rayrg.rewards.similarity.stages import FrameScorer

    a = VLMRMConfig(model=str(ckpt["clip"]), alpha=0.0)
    b = VLMRMConfig(model=str(ckpt["clip"]), alpha=0.0, template="a picture of {instruction}")
    c = VLMRMConfig(model=str(ckpt["clip_s"]), alpha=0.0)
    scorer = FrameScorer(VLMRM, [a.to_dict(), b.to_dict(), c.to_dict()], [{}, {}, {}])
    assert len(scorer.models) == 2  # each checkpoint loaded once
    out = scorer(_batch(4))
    variant = np.asarray(out.column("variant").to_numpy())
    assert np.bincount(variant).tolist() == [4, 4, 4]
    score = np.asarray(out.column("score").to_numpy())
    alone = FrameScorer(VLMRM, [b.to_dict()], [{}])(_batch(4)).column("score").to_numpy()
    np.testing.assert_allclose(score[variant == 1], alone)  # same as scoring the variant by itself
    assert not np.allclose(score[variant == 0], score[variant == 1])
