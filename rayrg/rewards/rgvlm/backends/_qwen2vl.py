"""Qwen2-VL's image-token rule, shared by the backends that serve Qwen2-VL-family models.

The image processor resizes an image so both sides are multiples of 28 (14-pixel patches,
merged 2×2) and its pixel count lies within ``[min_pixels, max_pixels]``; the language model
then sees one token per 28×28 block: ``(H/28)·(W/28)``. :func:`smart_resize` mirrors
``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`` (same rounding, same
bounds; a test checks them against each other), written out because importing that module
imports torch, which ``rayrg estimate`` must not need.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

PATCH = 28  # 14-pixel patches merged 2×2: one language-model token each
MIN_PIXELS = 56 * 56  # the processor's default lower bound
MAX_PIXELS = 28 * 28 * 16384  # Qwen2-VL-*-Instruct's preprocessor_config.json upper bound


def smart_resize(height: int, width: int, factor: int = PATCH, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(height, width) the Qwen2-VL processor resizes an image to."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds 200, which Qwen2-VL rejects")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> int:
    """Language-model tokens of one ``width``×``height`` image: (H/28)·(W/28) after resizing."""
    h, w = smart_resize(height, width, PATCH, min_pixels, max_pixels)
    return (h // PATCH) * (w // PATCH)


def pixel_bounds(model_dir: str) -> tuple[int, int]:
    """(min_pixels, max_pixels) from a local model directory's ``preprocessor_config.json``
    (the defaults when it is a hub id or names neither)."""
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return MIN_PIXELS, MAX_PIXELS
    data = json.loads(path.read_text())
    size = data.get("size") or {}
    low = data.get("min_pixels") or size.get("shortest_edge") or MIN_PIXELS
    high = data.get("max_pixels") or size.get("longest_edge") or MAX_PIXELS
    return int(low), int(high)
