"""Versioned contracts: each file one stage writes and another reads round-trips at the current
version, reads its pre-contract (unversioned) form, and refuses a newer version in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrg.contracts import columns, datasets, features, labels, windows
from rayrg.contracts.versions import CONTRACT_KEY, DatasetError
from tests.rewards._rgvlm_helpers import window_row


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def _label_row(i: int) -> dict:
    row = {c: None for c in labels.LABEL_COLUMNS}
    row.update(window_id=f"ep{i}:0", episode_id=f"ep{i}", start_step=0, num_steps=2, status="ok",
               scores=[3, 7], rewards=[0.3, 0.7], actions=[1, 2], expert_actions=[1, 0],
               subtasks_before=0, subtasks_completed=[0, 1], instruction="go", model="m")
    return row


def _restamp(table: pa.Table, stamp: str | None) -> pa.Table:
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != CONTRACT_KEY}
    if stamp is not None:
        meta[CONTRACT_KEY] = stamp.encode()
    return table.replace_schema_metadata(meta)


# -- labels ----------------------------------------------------------------------------------

def test_labels_round_trip_is_stamped(tmp_path: Path) -> None:
    table = labels.labels_table([_label_row(0), _label_row(1)])
    pq.write_table(table, tmp_path / "part-0.parquet")
    assert pq.read_schema(tmp_path / "part-0.parquet").metadata[CONTRACT_KEY] == b"labels/1"
    back = labels.read_labels(tmp_path)
    assert back.to_pylist() == table.to_pylist()
    assert labels.read_labels(tmp_path, ["window_id", "scores"]).column("scores").to_pylist() == [[3, 7], [3, 7]]


def test_labels_before_the_contract_still_read(tmp_path: Path) -> None:
    pq.write_table(_restamp(labels.labels_table([_label_row(0)]), None), tmp_path / "part-0.parquet")
    assert labels.read_labels(tmp_path).num_rows == 1


def test_labels_of_a_newer_version_are_refused_in_one_line(tmp_path: Path) -> None:
    pq.write_table(_restamp(labels.labels_table([_label_row(0)]), "labels/2"), tmp_path / "part-0.parquet")
    with pytest.raises(DatasetError) as exc:
        labels.read_labels(tmp_path)
    line = _one_line(exc)
    assert "part-0.parquet: labels version 2, this rayrg reads labels version 1" in line


def test_windows_file_is_not_a_labels_file(tmp_path: Path) -> None:
    pq.write_table(windows.windows_table([window_row(0)]), tmp_path / "part-0.parquet")
    with pytest.raises(DatasetError, match="a 'windows/1' file, expected a 'labels' file"):
        labels.read_labels(tmp_path)


def test_labels_summary_versions(tmp_path: Path) -> None:
    assert labels.read_summary(tmp_path) is None
    labels.write_summary(tmp_path, {"failed": 2, "labels_dir": "x"})
    assert labels.read_summary(tmp_path) == {"failed": 2, "labels_dir": "x", "version": 1}
    (tmp_path / labels.SUMMARY_FILE).write_text(json.dumps({"failed": 0, "version": 7}))
    with pytest.raises(DatasetError) as exc:
        labels.read_summary(tmp_path)
    assert "labelling summary version 7" in _one_line(exc)


# -- windows ---------------------------------------------------------------------------------

def test_windows_round_trip_and_future_version(tmp_path: Path) -> None:
    rows = [window_row(i) for i in range(3)]
    pq.write_table(windows.windows_table(rows), tmp_path / "part-0.parquet")
    back = windows.read_windows(tmp_path, ["window_id", "num_steps"])
    assert back.column("window_id").to_pylist() == ["ep0:0", "ep1:0", "ep2:0"]
    assert windows.head_windows(tmp_path, 2).num_rows == 2
    assert windows.read_window(tmp_path, "ep1:0")["image"] == rows[1]["image"]
    windows.write_summary(tmp_path, {"windows": 3})
    assert windows.read_summary(tmp_path)["windows"] == 3

    pq.write_table(_restamp(windows.windows_table(rows), "windows/3"), tmp_path / "part-1.parquet")
    with pytest.raises(DatasetError) as exc:
        windows.read_windows(tmp_path)
    assert "part-1.parquet: windows version 3, this rayrg reads windows version 1" in _one_line(exc)


# -- dataset metadata and column families ----------------------------------------------------

def test_metadata_round_trip_and_future_version(tmp_path: Path) -> None:
    meta = datasets.DatasetMetadata(generator="t", env_name="e", num_episodes=1, num_transitions=2,
                                    column_kinds={"progress_x": "progress"})
    datasets.write_metadata(meta, tmp_path)
    back = datasets.read_metadata(tmp_path)
    assert back == meta and back.schema_version == datasets.VERSION
    assert back.kind_of("progress_x") == "progress" and back.kind_of("reward_y") == "reward"
    raw = json.loads((tmp_path / datasets.METADATA_FILE).read_text())
    # A newer rayrg's metadata, with a field this one does not know: refused by its version,
    # not reported as a corrupt file.
    raw.update(schema_version=datasets.VERSION + 1, new_field=1)
    (tmp_path / datasets.METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(DatasetError) as exc:
        datasets.read_metadata(tmp_path)
    assert f"dataset metadata version {datasets.VERSION + 1}, this rayrg reads" in _one_line(exc)


def test_version_2_metadata_reads_with_family_kinds(tmp_path: Path) -> None:
    (tmp_path / datasets.METADATA_FILE).write_text(json.dumps(
        {"generator": "g", "env_name": "e", "num_episodes": 1, "num_transitions": 1, "schema_version": 2}))
    meta = datasets.read_metadata(tmp_path)
    assert meta.column_kinds == {} and meta.kind_of("progress_vlm") == "progress"


def test_progress_column_passes_the_reader_and_its_kind_is_recorded(make_toy_dataset, tmp_path: Path) -> None:
    from rayrg.data.access import Dataset, read_trajectories
    from rayrg.rewards.base import write_labelled_dataset

    source = make_toy_dataset()

    def added(table: pa.Table) -> dict[str, np.ndarray]:
        step = np.asarray(table.column("step").to_numpy(), dtype=np.float32)
        return {"progress_toy": step / 20.0, "reward_toy": np.ones(table.num_rows, np.float32)}

    out = write_labelled_dataset(source, added, tmp_path / "labelled")
    table = read_trajectories(out, ["step", "progress_toy"], decode_images=False)
    assert np.allclose(table.column("progress_toy").to_numpy(), table.column("step").to_numpy() / 20.0)
    meta = datasets.read_metadata(out)
    assert meta.column_kinds == {"progress_toy": "progress", "reward_toy": "reward"}
    # reward_* readers see reward columns only
    assert Dataset.open(out).reward_columns() == ["reward_toy"]


def test_progress_outside_unit_interval_is_refused(make_toy_dataset, tmp_path: Path) -> None:
    from rayrg.rewards.base import write_labelled_dataset

    def added(table: pa.Table) -> dict[str, np.ndarray]:
        return {"progress_bad": np.full(table.num_rows, 1.5, np.float32)}

    with pytest.raises(DatasetError, match=r"column 'progress_bad': row 0 has 1.5, outside \[0.0, 1.0\]"):
        write_labelled_dataset(make_toy_dataset(), added, tmp_path / "labelled")


def test_evalset_columns_and_registered_families(make_toy_dataset) -> None:
    from rayrg.data.access import read_trajectories

    d = make_toy_dataset()
    path = sorted(d.glob("*.parquet"))[0]
    table = pq.read_table(path)
    n = table.num_rows
    table = table.append_column("evalset_kind", pa.array(["near"] * n)).append_column(
        "progress_true", pa.array([0.5] * n, pa.float32()))
    pq.write_table(table, path)
    read_trajectories(d, decode_images=False)
    assert columns.column_kind("progress_true") == "evalset"  # a named column wins over progress_*

    pq.write_table(table.append_column("bench_x", pa.array([0.5] * n, pa.float32())), path)
    with pytest.raises(DatasetError, match=r"unexpected columns \['bench_x'\]"):
        read_trajectories(d, decode_images=False)
    family = columns.ColumnFamily("bench", "reward", "a test family", prefix="bench_")
    columns.register_family(family)
    try:
        read_trajectories(d, decode_images=False)
        with pytest.raises(ValueError, match="already belong to family 'bench'"):
            columns.register_family(columns.ColumnFamily("bench2", "progress", "clash", prefix="bench_"))
    finally:
        columns._FAMILIES.pop("bench")


# -- features --------------------------------------------------------------------------------

def test_encoder_record_versions(tmp_path: Path) -> None:
    features.write_encoder_record(tmp_path, {"name": "e", "dim": 4})
    assert features.read_encoder_record(tmp_path) == {"name": "e", "dim": 4}
    (tmp_path / features.ENCODER_FILE).write_text(json.dumps({"name": "e", "version": 9}))
    with pytest.raises(DatasetError) as exc:
        features.read_encoder_record(tmp_path)
    assert "features version 9, this rayrg reads features version 1" in _one_line(exc)


# -- the truth rule is one -------------------------------------------------------------------

def test_window_truth_is_the_dataset_truth(make_toy_dataset) -> None:
    from rayrg.data.access import iter_episodes, read_trajectories
    from rayrg.rewards.truth import good_actions, window_good_actions

    table = read_trajectories(make_toy_dataset(num_subtasks=3), decode_images=False)
    for episode in iter_episodes(table):
        truth = good_actions(episode).tolist()
        completed = episode.column("subtasks_completed").to_pylist()
        for start in range(0, episode.num_rows, 4):
            end = min(start + 4, episode.num_rows)
            window = window_good_actions(episode.column("action").to_pylist()[start:end],
                                         episode.column("expert_action").to_pylist()[start:end],
                                         completed[start - 1] if start else 0, completed[start:end])
            assert window == truth[start:end]
