"""A PNG of one window for humans: the grid, the instruction and the actions."""

from __future__ import annotations

from pathlib import Path

from rayrg.contracts.windows import read_window
from rayrg.windows.grid import preview_image

__all__ = ["read_window", "write_preview"]


def write_preview(windows: str | Path, out: str | Path, window_id: str | None = None, index: int = 0,
                  text: str | None = None) -> Path:
    from PIL import Image

    row = read_window(windows, window_id, index)
    image = preview_image(row["image"], row["instruction"],
                          f"window {row['window_id']}\n\n{text or row['actions_text']}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    return out
