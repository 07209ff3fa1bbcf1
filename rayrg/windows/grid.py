"""Composing a window's frames into ONE grid image, each tile labelled with its step.

RG-VLM sends one image per query (the paper's 8 frames → 1 grid); labels on the tiles
let the model's turn-1 analysis refer to steps by number, matching the actions text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

# Grey levels: uniform greys let the canvas be filled with a scalar (a tuple broadcast
# over the whole canvas cost more than composing it).
BACKGROUND_GREY = 32
EMPTY_TILE_GREY = 64
BACKGROUND = (BACKGROUND_GREY,) * 3
LABEL_COLOR = (255, 255, 255)


@lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def grid_shape(num_tiles: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, num_tiles))
    return -(-num_tiles // columns), columns


def grid_size(frame_height: int, frame_width: int, window_size: int, columns: int = 4, frame_scale: int = 2,
              label_height: int = 14, gap: int = 2) -> tuple[int, int]:
    """(width, height) of the grid :func:`compose_grid` draws for frames of this size, whatever
    the window's length (partial windows keep the layout): the estimate needs no drawing."""
    rows, cols = grid_shape(window_size, columns)
    th, tw = frame_height * frame_scale, frame_width * frame_scale
    return cols * tw + (cols + 1) * gap, rows * (th + label_height) + (rows + 1) * gap


@lru_cache(maxsize=4096)
def _label_band(text: str, width: int, height: int) -> np.ndarray:
    """A tile's label band, rendered once per (text, size): drawing text dominates otherwise."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, height), BACKGROUND)
    ImageDraw.Draw(band).text((2, 1), text, fill=LABEL_COLOR, font=_font(max(8, height - 3)))
    return np.asarray(band)


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
    missing tiles are drawn empty and unlabelled. Tiles are upscaled by pixel repetition
    (nearest neighbour) so grid cells stay crisp for the model.
    """
    if len(frames) != len(steps):
        raise ValueError(f"{len(frames)} frames but {len(steps)} step labels")
    if not frames or len(frames) > window_size:
        raise ValueError(f"a window holds 1..{window_size} frames, got {len(frames)}")
    h, w = frames[0].shape[:2]
    th, tw = h * frame_scale, w * frame_scale
    rows, cols = grid_shape(window_size, columns)
    width, height = grid_size(h, w, window_size, columns, frame_scale, label_height, gap)
    canvas = np.full((height, width, 3), BACKGROUND_GREY, np.uint8)
    for i in range(min(rows * cols, window_size)):
        r, c = divmod(i, cols)
        x = gap + c * (tw + gap)
        y = gap + r * (th + label_height + gap)
        if i < len(frames):
            target = canvas[y + label_height:y + label_height + th, x:x + tw]
            # nearest-neighbour upscale by writing through a strided view (no temporaries)
            target.reshape(h, frame_scale, w, frame_scale, 3)[:] = frames[i][:, None, :, None, :]
            canvas[y:y + label_height, x:x + tw] = _label_band(f"t={steps[i]}", tw, label_height)
        else:
            canvas[y + label_height:y + label_height + th, x:x + tw] = EMPTY_TILE_GREY
    return canvas


def actions_text(steps: Sequence[int], action_names: Sequence[str]) -> str:
    return "\n".join(f"t={s}: {a}" for s, a in zip(steps, action_names, strict=True))


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
