"""The evaluation-episodes contract: stamped on write; unstamped files of the same columns
read; another version refused in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrg.config import ConfigError
from rayrg.contracts.episodes import SCHEMA, VERSION, VERSION_KEY, read_episodes, write_episodes

ROW = {"task_id": "t", "env_name": "babyai", "num_subtasks": 2, "mode": "fixed", "seed": 3, "return": 0.5,
       "subtasks_completed": 1, "success": False, "steps": 7, "budget": 16, "start_pos": [1, 2], "start_dir": 1}


def test_round_trip_stamped(tmp_path: Path) -> None:
    path = write_episodes(tmp_path, "a", [ROW])
    assert pq.read_schema(path).metadata[VERSION_KEY] == str(VERSION).encode()
    assert read_episodes(tmp_path) == [ROW]
    assert read_episodes(tmp_path / "none") == []
    assert not list(tmp_path.glob(".*.tmp"))


def test_unstamped_episodes_of_before_are_read(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([ROW], schema=SCHEMA.remove_metadata()), tmp_path / "old.parquet")
    write_episodes(tmp_path, "new", [{**ROW, "task_id": "u"}])
    assert sorted(r["task_id"] for r in read_episodes(tmp_path)) == ["t", "u"]


def test_another_version_is_refused_naming_it(tmp_path: Path) -> None:
    schema = SCHEMA.with_metadata({VERSION_KEY: str(VERSION + 1).encode()})
    pq.write_table(pa.Table.from_pylist([ROW], schema=schema), tmp_path / "future.parquet")
    with pytest.raises(ConfigError, match=f"future.parquet: evaluation episodes version {VERSION + 1};") as info:
        read_episodes(tmp_path)
    assert "\n" not in str(info.value)


def test_a_file_without_the_columns_is_one_line(tmp_path: Path) -> None:
    pq.write_table(pa.table({"task_id": ["t"]}), tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="not evaluation episodes"):
        read_episodes(tmp_path)
