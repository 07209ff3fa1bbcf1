"""Trajectories → windows of W transitions, as Ray Data transforms, written as Parquet.

Episode boundaries: a window never crosses episodes. Episodes are never split across
shards (a format invariant, checked here), so each Ray Data task windows whole shards;
this avoids a ``groupby`` shuffle of every frame, which measured ~100x slower on 2 CPUs.

Last partial window (the issue of "trajectories shorter than a window"):

* ``last_window="shorter"`` (default): the steps after the last full window form one
  shorter window (``is_partial``); an episode shorter than W gives exactly one. With
  ``stride == W`` every transition lies in exactly one window.
* ``last_window="drop"``: those steps get no window; the count of uncovered transitions
  is reported in the summary and logged as a warning, never dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from rayrg.config import StageConfig
from rayrg.contracts.windows import (
    SUMMARY_FILE,
    read_windows,
    windows_table,
    write_summary,
    write_windows,
)
from rayrg.data.access import Dataset, iter_episodes, read_shard_checked, validate_columns
from rayrg.data.schema import SCALAR_COLUMNS, DatasetError, decode_png, encode_png
from rayrg.errors import stage_errors
from rayrg.provenance import OnChange, claim, dataset_fingerprint
from rayrg.storage import Location
from rayrg.windows.grid import actions_text, compose_grid
from rayrg.windows.staging import as_arg, checked_for_write, staged

log = logging.getLogger(__name__)

__all__ = ["SUMMARY_FILE", "WindowConfig", "episode_windows", "make_windows", "window_bounds"]
_READ_COLUMNS = [c for c in SCALAR_COLUMNS if c != "final_frame"] + ["frame"]


class WindowConfig(StageConfig):
    """``rayrg windows``: how episodes are cut and how grids are drawn."""

    window_size: int = Field(8, ge=1, le=64, description="Transitions per window (W).")
    stride: int | None = Field(None, ge=1, description="Steps between window starts (default: W).")
    last_window: Literal["shorter", "drop"] = Field(
        "shorter", description="What to do with steps after the last full window.")
    columns: int = Field(4, ge=1, description="Tiles per grid row.")
    frame_scale: int = Field(2, ge=1, le=8, description="Nearest-neighbour upscaling of each frame.")
    label_height: int = Field(14, ge=8, description="Pixels of the step-label band above each tile.")

    @model_validator(mode="after")
    def _stride_fits(self) -> WindowConfig:
        if self.stride is not None and self.stride > self.window_size:
            raise ValueError(f"stride {self.stride} > window_size {self.window_size} would skip transitions")
        return self

    @property
    def effective_stride(self) -> int:
        return self.stride or self.window_size


def window_bounds(num_steps: int, window_size: int, stride: int, last_window: str) -> list[tuple[int, int]]:
    """[start, end) of each window of an episode of ``num_steps`` transitions."""
    bounds = []
    covered_to = 0
    for start in range(0, num_steps, stride):
        end = start + window_size
        if end <= num_steps:
            bounds.append((start, end))
            covered_to = end
        else:
            if last_window == "shorter" and covered_to < num_steps:
                bounds.append((start, num_steps))
            break
    return bounds


def episode_windows(episode: pa.Table, config: WindowConfig) -> list[dict[str, Any]]:
    """All windows of one episode (rows in step order) as WINDOW_SCHEMA dicts."""
    episode = episode.sort_by("step")
    steps = episode.column("step").to_pylist()
    if steps != list(range(len(steps))):
        raise ValueError(f"episode {episode.column('episode_id')[0]}: steps not contiguous from 0")
    first = {k: episode.column(k)[0].as_py() for k in
             ("episode_id", "task_id", "instruction", "num_subtasks", "success")}
    frames_png = episode.column("frame").to_pylist()
    actions = episode.column("action").to_pylist()
    names = episode.column("action_name").to_pylist()
    experts = episode.column("expert_action").to_pylist()
    completed = episode.column("subtasks_completed").to_pylist()
    rows = []
    for start, end in window_bounds(len(steps), config.window_size, config.effective_stride,
                                    config.last_window):
        window_steps = steps[start:end]
        frames = [decode_png(frames_png[t]) for t in range(start, end)]
        grid = encode_png(compose_grid(frames, window_steps, config.window_size, config.columns,
                                      config.frame_scale, config.label_height))
        rows.append({
            "window_id": f"{first['episode_id']}:{start}",
            "episode_id": first["episode_id"],
            "start_step": start,
            "num_steps": end - start,
            "is_partial": end - start < config.window_size,
            "task_id": first["task_id"],
            "instruction": first["instruction"],
            "num_subtasks": first["num_subtasks"],
            "image": grid,
            "image_sha256": hashlib.sha256(grid).hexdigest(),
            "actions": actions[start:end],
            "action_names": names[start:end],
            "actions_text": actions_text(window_steps, names[start:end]),
            "expert_actions": experts[start:end],
            "subtasks_before": completed[start - 1] if start > 0 else 0,
            "subtasks_completed": completed[start:end],
            "episode_success": first["success"],
            "episode_last_step": len(steps) - 1,
        })
    return rows


class _ShardWindower:
    """``map_batches`` callable: shard paths → the windows of all their episodes."""

    def __init__(self, config_dict: dict[str, Any]) -> None:
        self.config = WindowConfig.from_dict(config_dict)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows: list[dict[str, Any]] = []
        for path in batch["path"]:
            # One read of the columns windows need, structure-checked on the way.
            table = read_shard_checked(str(path), _READ_COLUMNS)
            try:
                for episode in iter_episodes(table):
                    rows.extend(episode_windows(episode, self.config))
            except DatasetError:
                raise
            except Exception:
                # Frames are decoded once, here; only on failure are they checked one by one,
                # so a corrupt PNG is reported with its shard and row, as `rayrg inspect` does.
                validate_columns(table, str(path), decode_images=True)
                raise
        return windows_table(rows)


def make_windows(trajectories: str | os.PathLike[str] | Location, out: str | os.PathLike[str] | Location,
                 config: WindowConfig | None = None, address: str | None = None,
                 on_change: OnChange = "refuse") -> Path | Location:
    """Write the windows dataset of ``trajectories`` to ``out`` and a ``_windows.json`` summary.

    Both may be local paths or storage URIs (:mod:`rayrg.storage`). ``out`` is keyed to the
    dataset's fingerprint and the config (:mod:`rayrg.provenance`): windows of the same inputs
    are reused, windows of other inputs refused or redone. Returns ``out`` (a local path as
    given, else its Location).
    """
    import ray

    from rayrg.runtime import init_ray
    from rayrg.storage import open_input, prepare_output, refuse_local_on_cluster

    config = config or WindowConfig()
    source_loc, out_loc = open_input(trajectories), prepare_output(out)
    trajectories, out = as_arg(source_loc), as_arg(out_loc)
    source = Dataset.open(trajectories)  # schemas checked from the footers: no data read here
    files, meta = source.shards, source.metadata
    claimed = claim(out, "windows", {"dataset": dataset_fingerprint(trajectories), "config": config.to_dict()},
                    on_change=on_change)
    if claimed.done:
        return out
    init_ray(address)
    refuse_local_on_cluster(out_loc)  # now that the cluster's shape is known
    windows = ray.data.from_items([{"path": str(f)} for f in files]).map_batches(
        _ShardWindower, fn_constructor_args=(config.to_dict(),), batch_size=1,
        num_cpus=0.5, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=4),
    )
    # Written beside ``out`` first: a bad shard found mid-way leaves the old windows whole
    # (rayrg.windows.staging: rename on local disks, server-side copy on object stores).
    with staged(out_loc) as (staging, token):
        with stage_errors():
            write_windows(checked_for_write(windows, out_loc, token), as_arg(staging))
        (out_loc / SUMMARY_FILE).delete()

    written = read_windows(out, ["num_steps", "is_partial"])
    num_steps = np.asarray(written.column("num_steps").to_numpy())
    is_partial = written.column("is_partial").to_pylist()
    covered = int(num_steps.sum())
    uncovered = max(0, meta.num_transitions - covered) if config.effective_stride == config.window_size else None
    summary = {
        "source": str(Path(trajectories).resolve()) if source_loc.is_local else str(source_loc),
        "config": config.to_dict(),
        "windows": len(num_steps),
        "partial_windows": int(sum(is_partial)),
        "transitions_in_windows": covered,
        "source_transitions": meta.num_transitions,
        "uncovered_transitions": uncovered,
    }
    if uncovered:
        log.warning("%d transitions lie in no window (last_window=%s)", uncovered, config.last_window)
    write_summary(out, summary)
    claimed.finish(windows=summary["windows"])
    return out
