"""The dataset-access layer: column projection under validation, reads per run, errors, episodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrg.data.access import (
    READ_LOG_ENV,
    Dataset,
    episode_ends,
    episode_starts,
    iter_episodes,
    read_shard_checked,
    read_trajectories,
)
from rayrg.data.schema import SCALAR_COLUMNS, TRANSITION_COLUMNS, DatasetError
from rayrg.errors import stage_errors

# Set at collection time, before the session's Ray cluster starts: Ray workers inherit the
# environment they start with, so their shard reads land in this log too.
os.environ.setdefault(READ_LOG_ENV, str(Path(tempfile.mkdtemp(prefix="rayrg-reads-")) / "reads.log"))


def _reads(shards: list[Path]) -> dict[str, list[list[str] | None]]:
    """Reads logged for ``shards``: path -> the column lists read (None: all columns)."""
    wanted = {str(p.resolve()): [] for p in shards}
    log = Path(os.environ[READ_LOG_ENV])
    for line in (log.read_text().splitlines() if log.exists() else []):
        path, columns = line.split("\t")
        if path in wanted:
            wanted[path].append(None if columns == "*" else columns.split(","))
    return wanted


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(source, target)
    return target


def test_validation_reads_only_the_requested_columns(make_toy_dataset, tmp_path: Path) -> None:
    """A shard whose frames are null (breaking the format) still gives its scalars, validated;
    asking for the frames names the file and row."""
    d = _copy(make_toy_dataset(), tmp_path)
    shard = sorted(d.glob("*.parquet"))[0]
    table = pq.read_table(shard)
    nulls = pa.nulls(table.num_rows, pa.binary())
    pq.write_table(table.set_column(table.column_names.index("frame"), "frame", nulls), shard)

    source = Dataset.open(d)
    scalars = source.read(SCALAR_COLUMNS)  # validated: structure and nulls of these columns
    assert scalars.column_names == list(SCALAR_COLUMNS) and scalars.num_rows == source.metadata.num_transitions
    assert read_trajectories(d, columns=["seed"]).column_names == ["seed"]
    with pytest.raises(DatasetError, match=rf"{shard.name}: row 0: null in non-nullable column 'frame'"):
        source.read(["frame"])
    with pytest.raises(DatasetError, match="null in non-nullable column 'frame'"):
        read_trajectories(d)  # all columns: the bad one is found

    reads = _reads(source.shards)
    before = {p: len(v) for p, v in reads.items()}
    source.read(["seed"])
    for path, columns in _reads(source.shards).items():
        new = columns[before[path]:]
        assert new == [["seed", "episode_id", "step"]], new  # the frames are never read


def test_reward_columns_and_provenance(make_toy_dataset, tmp_path: Path) -> None:
    from rayrg.rewards.simple import SparseConfig, label_sparse

    data = make_toy_dataset()
    out = label_sparse(SparseConfig(), data, tmp_path / "out")
    # the join computes the rewards from the rows it reads: each shard is read once, whole
    assert all(c == [None] for c in _reads(sorted(data.glob("*.parquet"))).values())
    source = Dataset.open(out)
    assert source.reward_columns() == ["reward_sparse"]
    assert source.reward_columns(["reward_x"]) == []
    assert source.provenance["reward_sparse"]["method"] == "sparse"
    table = source.read([*SCALAR_COLUMNS, "reward_sparse"])
    ends = episode_ends(table.column("episode_id"))
    success = np.asarray(table.column("success").to_pylist())
    assert (table.column("reward_sparse").to_numpy() == (ends & success)).all()
    assert all(n == 1 for n in source.reads.values()) and len(source.reads) == len(source.shards)


def test_rgvlm_label_run_reads_each_shard_once_per_stage(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    """The windows stage reads the columns it needs, the join reads the whole shard it
    rewrites; nothing else reads the trajectories (no separate keys pass, no second
    validation pass)."""
    from rayrg.rewards.rgvlm.loopback import LoopbackServer
    from rayrg.rewards.rgvlm.pipeline import label_rgvlm
    from rayrg.windows.build import _READ_COLUMNS
    from tests.rewards._rgvlm_helpers import openai_config

    d = _copy(make_toy_dataset(num_episodes=3, steps=(5, 9, 3), frame_size=16), tmp_path)
    shards = sorted(d.glob("*.parquet"))
    with LoopbackServer() as server:
        out = label_rgvlm(openai_config(server.base_url), d, tmp_path / "out")
    assert not np.isnan(read_trajectories(out, decode_images=False).column("reward_rgvlm").to_numpy()).any()
    assert "frame" in _READ_COLUMNS and "final_frame" not in _READ_COLUMNS
    for path, columns in _reads(shards).items():
        # one read by the windows stage (in a Ray task), one by the join (all columns)
        assert sorted(columns, key=str) == sorted([list(_READ_COLUMNS), None], key=str), (path, columns)


def _bad_step(make_toy_dataset, tmp_path: Path) -> Path:
    d = _copy(make_toy_dataset(), tmp_path)
    shard = sorted(d.glob("*.parquet"))[0]
    table = pq.read_table(shard)
    steps = table.column("step").to_pylist()
    steps[2] = 7
    pq.write_table(table.set_column(table.column_names.index("step"), "step", pa.array(steps, pa.int32())), shard)
    return shard


def _read_in_task(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for path in batch["path"]:
        read_shard_checked(str(path), SCALAR_COLUMNS)
    return batch


def test_one_line_errors_are_the_same_on_the_driver_and_in_ray_tasks(make_toy_dataset, tmp_path: Path,
                                                                       ray_local) -> None:
    import ray

    shard = _bad_step(make_toy_dataset, tmp_path)
    with pytest.raises(DatasetError) as on_driver:
        Dataset.open(shard.parent).read(SCALAR_COLUMNS)
    line = str(on_driver.value)
    assert line == f"{shard}: row 2: episode 'toy-0-0' step 7, expected 2 (steps must be contiguous from 0)"

    task = ray.remote(read_shard_checked)
    with pytest.raises(DatasetError) as in_task, stage_errors():
        ray.get(task.remote(str(shard), list(SCALAR_COLUMNS)))
    with pytest.raises(DatasetError) as in_data, stage_errors():
        ray.data.from_items([{"path": str(shard)}]).map_batches(_read_in_task, batch_size=1).materialize()
    for raised in (in_task.value, in_data.value):
        assert type(raised) is DatasetError and str(raised) == line and "\n" not in str(raised)


def test_episode_boundaries(make_toy_dataset) -> None:
    assert episode_ends([]).tolist() == [] and episode_starts([]).tolist() == []
    assert episode_ends(["a"]).tolist() == [True] and episode_starts(["a"]).tolist() == [True]
    ids = pa.array(["a", "a", "b", "c", "c", "c"])
    assert episode_ends(ids).tolist() == [False, True, True, False, False, True]
    assert episode_starts(ids).tolist() == [True, False, True, True, False, False]

    table = Dataset.open(make_toy_dataset()).read(TRANSITION_COLUMNS)
    ends = episode_ends(table.column("episode_id"))
    steps = np.asarray(table.column("step").to_pylist())
    assert (episode_starts(table.column("episode_id")) == (steps == 0)).all()
    # The format: the last row of an episode (only it) ends it and carries its final frame.
    done = np.asarray(table.column("terminal").to_pylist()) | np.asarray(table.column("truncated").to_pylist())
    assert (ends == done).all()
    assert (ends == np.asarray([f is not None for f in table.column("final_frame").to_pylist()])).all()
    assert [e.num_rows for e in iter_episodes(table)] == [int(s) + 1 for s in steps[ends]]
