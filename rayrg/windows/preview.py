"""A PNG of one window for humans: the grid, the instruction and the actions."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

from rayrg.data.schema import DatasetError
from rayrg.windows.grid import preview_image


def read_window(windows: str | Path, window_id: str | None = None, index: int = 0) -> dict:
    dataset = pads.dataset(str(windows), format="parquet")
    if window_id is not None:
        table = dataset.to_table(filter=pc.field("window_id") == window_id)
        if table.num_rows == 0:
            raise DatasetError(f"{windows}: no window with id {window_id!r}")
        return table.slice(0, 1).to_pylist()[0]
    total = dataset.count_rows()
    if not 0 <= index < total:
        raise DatasetError(f"{windows}: window index {index} out of range (0..{total - 1})")
    return dataset.take([index]).to_pylist()[0]


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
