"""The trajectory format: every kind of corrupt input gets a clear error naming file and row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrg.data.access import read_trajectories
from rayrg.data.schema import (
    TRANSITION_SCHEMA,
    DatasetError,
    DatasetMetadata,
    shard_files,
    write_shard,
)


def _rewrite(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def _first_shard(directory: Path) -> tuple[Path, pa.Table]:
    path = shard_files(directory)[0]
    return path, pq.read_table(path)


def test_roundtrip_valid(make_toy_dataset) -> None:
    d = make_toy_dataset()
    table = read_trajectories(d)
    assert table.schema.equals(TRANSITION_SCHEMA, check_metadata=False)
    assert table.num_rows == DatasetMetadata.read(d).num_transitions


def test_missing_column(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    _rewrite(path, table.drop_columns(["expert_action"]))
    with pytest.raises(DatasetError, match=r"part-00000.parquet: missing columns \['expert_action'\]"):
        read_trajectories(d)


def test_extra_column(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    _rewrite(path, table.append_column("junk", pa.array([1] * table.num_rows)))
    with pytest.raises(DatasetError, match=r"unexpected columns \['junk'\]"):
        read_trajectories(d)


def test_reward_columns_are_allowed_but_must_be_float(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    _rewrite(path, table.append_column("reward_x", pa.array([0.5] * table.num_rows, pa.float32())))
    read_trajectories(d, decode_images=False)
    _rewrite(path, table.append_column("reward_x", pa.array(["a"] * table.num_rows)))
    with pytest.raises(DatasetError, match="reward column 'reward_x'"):
        read_trajectories(d, decode_images=False)


def test_wrong_type(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    i = table.column_names.index("step")
    _rewrite(path, table.set_column(i, "step", pa.array([str(v) for v in table.column("step").to_pylist()])))
    with pytest.raises(DatasetError, match="column 'step' has type string, expected int32"):
        read_trajectories(d)


def test_undecodable_image(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    frames = table.column("frame").to_pylist()
    frames[3] = frames[3][:40]  # truncated PNG
    _rewrite(path, table.set_column(table.column_names.index("frame"), "frame", pa.array(frames, pa.binary())))
    with pytest.raises(DatasetError, match=r"row 3 .*column 'frame' is not a decodable image"):
        read_trajectories(d)
    # Image decoding can be skipped for scalar-only readers.
    read_trajectories(d, decode_images=False)


def test_non_contiguous_steps(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    steps = table.column("step").to_pylist()
    steps[2] = 7
    _rewrite(path, table.set_column(table.column_names.index("step"), "step", pa.array(steps, pa.int32())))
    with pytest.raises(DatasetError, match="row 2: episode 'toy-0-0' step 7, expected 2"):
        read_trajectories(d, decode_images=False)


def test_interleaved_episode_is_not_contiguous(make_toy_dataset) -> None:
    d = make_toy_dataset(steps=(3, 3), num_episodes=2, shards=1)
    path, table = _first_shard(d)
    order = [0, 1, 2, 3, 4, 5]
    table = table.take(order)
    ids = table.column("episode_id").to_pylist()
    ids[5] = ids[0]  # episode 0 re-appears after episode 1 started
    _rewrite(path, table.set_column(0, "episode_id", pa.array(ids)))
    with pytest.raises(DatasetError, match="row 5: episode 'toy-0-0' is not contiguous"):
        read_trajectories(d, decode_images=False)


def test_empty_shard_and_missing_dataset(make_toy_dataset, tmp_path: Path) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    _rewrite(path, table.slice(0, 0))
    with pytest.raises(DatasetError, match="empty shard"):
        read_trajectories(d, decode_images=False)
    with pytest.raises(DatasetError, match="does not exist"):
        read_trajectories(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .parquet shards"):
        read_trajectories(tmp_path / "empty")


def test_null_in_required_column(make_toy_dataset) -> None:
    d = make_toy_dataset()
    path, table = _first_shard(d)
    names = table.column("action_name").to_pylist()
    names[4] = None
    _rewrite(path, table.set_column(table.column_names.index("action_name"), "action_name", pa.array(names)))
    with pytest.raises(DatasetError, match="row 4: null in non-nullable column 'action_name'"):
        read_trajectories(d, decode_images=False)


def test_not_parquet_and_bad_metadata(make_toy_dataset) -> None:
    d = make_toy_dataset()
    shard_files(d)[0].write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        read_trajectories(d)
    (d / "metadata.json").write_text("{broken")
    with pytest.raises(DatasetError, match="unreadable metadata"):
        DatasetMetadata.read(d)


def test_write_shard_is_atomic(tmp_path: Path, make_toy_dataset) -> None:
    table = read_trajectories(make_toy_dataset(), decode_images=False)
    path = write_shard(table, tmp_path / "part-00000.parquet")
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
