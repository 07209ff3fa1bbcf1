"""Composing a window's frames into ONE grid image, each tile labelled with its step.

RG-VLM sends one image per query (the paper's 8 frames → 1 grid); labels on the tiles
let the model's turn-1 analysis refer to steps by number, matching the actions text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

BACKGROUND = (32, 32, 32)
EMPTY_TILE = (64, 64, 64)
LABEL_COLOR = (255, 255, 255)


@lru_cache(maxsize=4)
def _font(size: int):  # noqa: ANN202 - PIL font type
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def grid_shape(num_tiles: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, num_tiles))
    return -(-num_tiles // columns), columns


def compose_grid(
    frames: Sequence[np.ndarray],
    steps: Sequence[int],
    window_size: int,
    columns: int = 4,
    frame_scale: int = 2,
    label_height: int = 14,
    gap: int = 2,
) -> np.ndarray:
    """``frames`` (HxWx3 uint8, up to ``window_size``) → one labelled grid image.

    The grid always has room for ``window_size`` tiles so partial windows keep the layout;
    missing tiles are drawn empty and unlabelled.
    """
    from PIL import Image, ImageDraw

    if len(frames) != len(steps):
        raise ValueError(f"{len(frames)} frames but {len(steps)} step labels")
    if not frames or len(frames) > window_size:
        raise ValueError(f"a window holds 1..{window_size} frames, got {len(frames)}")
    h, w = frames[0].shape[:2]
    th, tw = h * frame_scale, w * frame_scale
    rows, cols = grid_shape(window_size, columns)
    canvas = Image.new(
        "RGB",
        (cols * tw + (cols + 1) * gap, rows * (th + label_height) + (rows + 1) * gap),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(canvas)
    font = _font(max(8, label_height - 3))
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        x = gap + c * (tw + gap)
        y = gap + r * (th + label_height + gap)
        if i < len(frames):
            tile = Image.fromarray(frames[i])
            if frame_scale != 1:
                tile = tile.resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(tile, (x, y + label_height))
            draw.text((x + 2, y + 1), f"t={steps[i]}", fill=LABEL_COLOR, font=font)
        elif i < window_size:
            draw.rectangle((x, y + label_height, x + tw - 1, y + label_height + th - 1), fill=EMPTY_TILE)
    return np.asarray(canvas)


def actions_text(steps: Sequence[int], action_names: Sequence[str]) -> str:
    return "\n".join(f"t={s}: {a}" for s, a in zip(steps, action_names, strict=True))


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def preview_image(grid_png: bytes, instruction: str, text: str, width: int = 360) -> np.ndarray:
    """The grid with the instruction and the actions (or any text) in a panel beside it."""
    import textwrap

    from PIL import Image, ImageDraw

    grid = Image.open(io.BytesIO(grid_png)).convert("RGB")
    font = _font(12)
    wrapped = textwrap.fill(f"instruction: {instruction}", 52) + "\n\n" + "\n".join(
        textwrap.fill(line, 52) for line in text.splitlines()
    )
    lines = wrapped.count("\n") + 1
    height = max(grid.height, 16 * lines + 16)
    canvas = Image.new("RGB", (grid.width + width, height), (250, 250, 250))
    canvas.paste(grid, (0, 0))
    ImageDraw.Draw(canvas).multiline_text((grid.width + 8, 8), wrapped, fill=(0, 0, 0), font=font, spacing=4)
    return np.asarray(canvas)
