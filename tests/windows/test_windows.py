"""Windows: bounds, partial windows, grid composition and the Ray Data stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rayrg.config import ConfigError
from rayrg.data.access import read_trajectories
from rayrg.data.schema import decode_png
from rayrg.windows.build import SUMMARY_FILE, WindowConfig, make_windows, window_bounds
from rayrg.windows.grid import compose_grid
from rayrg.windows.preview import write_preview


@pytest.mark.parametrize(
    ("n", "w", "stride", "last", "expected"),
    [
        (16, 8, 8, "shorter", [(0, 8), (8, 16)]),
        (19, 8, 8, "shorter", [(0, 8), (8, 16), (16, 19)]),
        (19, 8, 8, "drop", [(0, 8), (8, 16)]),
        (3, 8, 8, "shorter", [(0, 3)]),  # trajectory shorter than a window
        (3, 8, 8, "drop", []),
        (12, 8, 4, "shorter", [(0, 8), (4, 12)]),  # overlap already covers the end
        (13, 8, 4, "shorter", [(0, 8), (4, 12), (8, 13)]),
    ],
)
def test_window_bounds(n, w, stride, last, expected) -> None:
    assert window_bounds(n, w, stride, last) == expected


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="would skip transitions"):
        WindowConfig.from_dict({"window_size": 4, "stride": 5})
    assert WindowConfig().effective_stride == 8


def test_grid_layout_and_labels() -> None:
    frames = [np.full((10, 12, 3), 40 * i, np.uint8) for i in range(5)]
    grid = compose_grid(frames, list(range(20, 25)), window_size=8, columns=4, frame_scale=2,
                        label_height=12, gap=2)
    # 2 rows x 4 columns of 24x20 tiles with 12-px label bands and 2-px gaps
    assert grid.shape == (2 * (20 + 12) + 3 * 2, 4 * 24 + 5 * 2, 3)
    # tile 1 (value 40) is pasted below its label band, upscaled
    assert (grid[2 + 12 + 5, 2 + 24 + 2 + 5] == 40).all()
    # tile 6 is empty (partial window) and drawn as an empty tile, not a frame
    empty = grid[2 + 32 + 2 + 12 + 5, 2 + 2 * 26 + 5]
    assert tuple(empty) == (64, 64, 64)
    # labels draw white pixels in the band of each used tile and none over empty ones
    band = grid[2:14, 2:26]
    assert (band > 150).any()
    assert not (grid[36:48, 2 + 2 * 26: 2 + 2 * 26 + 24] > 150).any()
    with pytest.raises(ValueError, match="1..8 frames"):
        compose_grid(frames * 2, list(range(10)), window_size=8)


def test_make_windows_on_ray(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    source = make_toy_dataset(steps=(5, 9, 12, 3), num_episodes=4)
    out = make_windows(source, tmp_path / "w", WindowConfig(window_size=4))
    table = pq.read_table(out).sort_by([("episode_id", "ascending"), ("start_step", "ascending")])
    summary = json.loads((out / SUMMARY_FILE).read_text())
    # lengths 5, 9, 12, 3 with W=4 -> 2 + 3 + 3 + 1 windows, 3 of them partial
    assert summary["windows"] == table.num_rows == 9
    assert summary["partial_windows"] == 3 and summary["uncovered_transitions"] == 0
    trajectories = read_trajectories(source, decode_images=False)
    by_key = {(r["episode_id"], r["step"]): r for r in trajectories.select(
        ["episode_id", "step", "action", "expert_action", "subtasks_completed"]).to_pylist()}
    for w in table.to_pylist():
        steps = range(w["start_step"], w["start_step"] + w["num_steps"])
        assert w["actions"] == [by_key[(w["episode_id"], t)]["action"] for t in steps]
        assert w["expert_actions"] == [by_key[(w["episode_id"], t)]["expert_action"] for t in steps]
        assert w["is_partial"] == (w["num_steps"] < 4)
        assert w["actions_text"].splitlines()[0].startswith(f"t={w['start_step']}:")
        before = by_key.get((w["episode_id"], w["start_step"] - 1))
        assert w["subtasks_before"] == (before["subtasks_completed"] if before else 0)
        assert decode_png(w["image"]).ndim == 3
    # a second call with the same config reuses the windows
    mtime = (out / SUMMARY_FILE).stat().st_mtime_ns
    make_windows(source, out, WindowConfig(window_size=4))
    assert (out / SUMMARY_FILE).stat().st_mtime_ns == mtime
    png = write_preview(out, tmp_path / "p.png", window_id=table.column("window_id")[0].as_py())
    assert decode_png(png.read_bytes()).shape[1] > decode_png(table.column("image")[0].as_py()).shape[1]


def test_dropped_partial_windows_are_reported(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    source = make_toy_dataset(steps=(5, 9, 12, 3), num_episodes=4)
    out = make_windows(source, tmp_path / "w", WindowConfig(window_size=4, last_window="drop"))
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["windows"] == 6 and summary["uncovered_transitions"] == 1 + 1 + 0 + 3
