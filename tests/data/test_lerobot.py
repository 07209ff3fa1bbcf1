"""LeRobot v3.0 import and export on a dataset written with plain pyarrow in the real layout."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrg.cli import main
from rayrg.config import ConfigError
from rayrg.data.access import Dataset
from rayrg.data.export_meta import EXPORT_KEY
from rayrg.data.inspect import format_summary, summarize
from rayrg.data.lerobot import (
    EPISODE_ID,
    LEROBOT,
    SIDECAR_FILE,
    LeRobotExportConfig,
    LeRobotImportConfig,
    import_lerobot,
)
from rayrg.data.schema import DatasetError, DatasetMetadata
from rayrg.rewards.base import write_labelled_dataset
from rayrg.rewards.registry import get_method, run_label
from rayrg.rewards.report import format_table, reward_report
from tests.data import _lerobot_synth as synth

REPO = Path(__file__).resolve().parents[2]


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def label(method: str, dataset: Path, out: Path, **config) -> Path:
    m = get_method(method)
    return run_label(m, m.config_cls.from_dict(config), dataset, out)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    return synth.write_dataset(tmp_path / "lerobot")


@pytest.fixture()
def labelled(source: Path, tmp_path: Path) -> Path:
    """Imported, labelled with the sparse reward, then with a second variant (step / 10)."""
    sparse = label("sparse", import_lerobot(source, tmp_path / "imported"), tmp_path / "sparse")
    keys = Dataset.open(sparse).read(["episode_id", "step"])
    dense = pa.table({"episode_id": keys.column("episode_id"), "step": keys.column("step"),
                      "reward_dense": pa.array(np.asarray(keys.column("step").to_numpy(), np.float32) / 10)})
    return write_labelled_dataset(sparse, dense, tmp_path / "labelled",
                                  provenance={"reward_dense": {"method": "test", "definition": "step / 10"}})


def test_import_maps_frames_tasks_actions_and_flags(source: Path, tmp_path: Path) -> None:
    out = import_lerobot(source, tmp_path / "imported")
    table = Dataset.open(out).read(None, decode_images=True)  # full validation, PNGs decoded
    assert table.num_rows == sum(synth.LENGTHS)
    rows = table.to_pylist()
    i = 0
    for ep, n in enumerate(synth.LENGTHS):
        for f in range(n):
            r = rows[i]
            assert (r["episode_id"], r["step"]) == (f"lerobot-ep{ep:06d}", f)
            assert r["instruction"] == synth.TASKS[synth.EPISODE_TASK[ep]]
            assert r["task_id"] == f"task-{synth.EPISODE_TASK[ep]}"
            assert r["frame"] == synth.frame_png(ep, f)  # PNG bytes carried over unchanged
            assert r["final_frame"] is None  # LeRobot has no observation after the last action
            assert r["action_vector"] == pytest.approx(synth.action(ep, f))
            assert (r["action"], r["expert_action"]) == (-1, -1)
            assert r["success"] is synth.SUCCESS[ep]
            assert r["terminal"] is (f == n - 1)  # next.done on every last frame here
            assert r["truncated"] is False
            i += 1
    meta = DatasetMetadata.read(out)
    assert meta.extra["lerobot"]["source"] == str(source.resolve())
    assert meta.extra["lerobot"]["camera"] == synth.IMAGE and meta.extra["lerobot"]["mode"] == "image"
    assert set(meta.extra["missing_ground_truth"]) == {"subtasks", "expert_action", "is_random_action"}
    assert meta.num_episodes == len(synth.LENGTHS)
    # same inputs: skipped; the source untouched
    before = hashes(source)
    assert import_lerobot(source, tmp_path / "imported") == out
    assert hashes(source) == before


def test_import_without_next_flags_records_missing_success(source: Path, tmp_path: Path) -> None:
    for path in sorted((source / "data").glob("*/*.parquet")):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["next.done", "next.success"]), path)
    out = import_lerobot(source, tmp_path / "imported", LeRobotImportConfig(max_episodes=2))
    table = Dataset.open(out).read(["episode_id", "terminal", "truncated", "success"])
    assert table.num_rows == synth.LENGTHS[0] + synth.LENGTHS[1]
    assert not any(table.column("terminal").to_pylist())  # unknown ending: truncated, not terminal
    assert sum(table.column("truncated").to_pylist()) == 2
    assert "success" in DatasetMetadata.read(out).extra["missing_ground_truth"]
    with pytest.raises(DatasetError, match="sparse reward .* lacks: success"):
        label("sparse", out, tmp_path / "sparse")
    # inspect says what is unknown instead of printing the placeholders' rates
    summary = summarize(out)
    assert summary["success_rate"] is None and summary["noise_rate"] is None
    assert summary["expert_agreement"] is None and summary["subtask_histogram"] == {}
    text = format_summary(summary)
    assert "success rate unknown   noise rate unknown" in text and "lacks        subtasks: LeRobot" in text


def test_missing_ground_truth_is_never_scored(source: Path, tmp_path: Path, labelled: Path) -> None:
    with pytest.raises(DatasetError, match="simulated labels needs ground truth .*expert_action"):
        label("simulated", import_lerobot(source, tmp_path / "imported"), tmp_path / "sim", accuracy=0.9)
    rows = reward_report([labelled])
    assert {r["column"] for r in rows} == {"reward_sparse", "reward_dense"}
    assert all("expert_action" in r["skipped"] and "accuracy" not in r for r in rows)
    assert "reward_dense (" in format_table(rows) and "skipped, no ground truth" in format_table(rows)


def test_export_adds_reward_features_and_keeps_originals(source: Path, labelled: Path, tmp_path: Path) -> None:
    before = hashes(source)
    out = LEROBOT.export(labelled, tmp_path / "export", "dense")
    assert hashes(source) == before  # the source untouched
    after = hashes(out)
    changed = {"meta/info.json", "meta/stats.json", "data/chunk-000/file-000.parquet",
               "data/chunk-000/file-001.parquet"}
    for rel, digest in before.items():
        if rel not in changed:
            assert after[rel] == digest, rel  # copied byte for byte (tasks, episodes)
    assert {SIDECAR_FILE, "rayrg_export.json", "_provenance.json"} <= set(after)

    info = json.loads((out / "meta/info.json").read_text())
    src_info = json.loads((source / "meta/info.json").read_text())
    assert info["features"]["next.reward"] == {"dtype": "float32", "shape": [1], "names": None}
    assert info["features"]["rayrg.sparse"] == {"dtype": "float32", "shape": [1], "names": None}
    assert {k: v for k, v in info["features"].items() if k not in ("next.reward", "rayrg.sparse")} == src_info["features"]
    assert ({k: v for k, v in info.items() if k not in ("features", EXPORT_KEY)}
            == {k: v for k, v in src_info.items() if k != "features"})
    # Where next.reward came from travels in LeRobot's own info.json, which LeRobot reads as a
    # plain dict (unknown keys kept, ignored); the source's info.json has no such record.
    record = info[EXPORT_KEY]
    assert EXPORT_KEY not in src_info
    assert record["reward_column"] == "reward_dense" and record["labeller"] == {"method": "test",
                                                                               "definition": "step / 10"}
    assert record["method"] == "test" and record["pipeline_check"] is False and record["caveat"] is None
    assert record["dataset_id"] == f"rayrg/{source.name}-dense"
    stats = json.loads((out / "meta/stats.json").read_text())
    assert stats["next.reward"]["max"] == [pytest.approx(0.4)] and stats["rayrg.sparse"]["max"] == [1.0]
    assert stats["action"] == json.loads((source / "meta/stats.json").read_text())["action"]

    for rel in ("data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet"):
        old, new = pq.read_table(source / rel), pq.read_table(out / rel)
        assert new.select(old.column_names).equals(old)  # original columns unchanged
        assert new.schema.field("next.reward").type == pa.float32()
        assert new.schema.field("rayrg.sparse").type == pa.float32()
        hf = json.loads(new.schema.metadata[b"huggingface"])["info"]["features"]
        assert hf["next.reward"] == {"dtype": "float32", "_type": "Value"} and hf[synth.IMAGE] == {"_type": "Image"}
        frames = new.column("frame_index").to_numpy()
        np.testing.assert_allclose(new.column("next.reward").to_numpy(), frames / 10, rtol=1e-6)
        last = np.append(new.column("episode_index").to_numpy()[1:] != new.column("episode_index").to_numpy()[:-1], True)
        success = np.array([synth.SUCCESS[e] for e in new.column("episode_index").to_numpy()])
        np.testing.assert_array_equal(new.column("rayrg.sparse").to_numpy(), (last & success).astype(np.float32))

    side = pq.read_table(out / SIDECAR_FILE)
    assert side.column_names == ["index", "episode_index", "frame_index", "progress_sparse"]
    assert [f.type for f in side.schema] == [pa.int64()] * 3 + [pa.float32()]
    assert side.column("index").to_pylist() == list(range(sum(synth.LENGTHS)))
    # progress: cumulative reward over the episode's total (step/10 rewards: 0, .1, .2, .3 ...)
    ep0 = side.filter(pa.compute.equal(side.column("episode_index"), 0)).column("progress_sparse").to_numpy()
    np.testing.assert_allclose(ep0, np.cumsum([0, 1, 2, 3]) / 6, rtol=1e-6)
    # the same command again: up to date
    assert LEROBOT.export(labelled, tmp_path / "export", "dense") == out
    assert hashes(out) == after


def test_export_sparse_progress_and_dense_option(labelled: Path, tmp_path: Path) -> None:
    out = LEROBOT.export(labelled, tmp_path / "export", "reward_sparse", LeRobotExportConfig(dense_column="dense"))
    side = pq.read_table(out / SIDECAR_FILE).to_pandas()
    assert list(side.columns) == ["index", "episode_index", "frame_index", "progress_sparse", "progress_dense"]
    ep1 = side[side.episode_index == 1]  # failed episode: no reward, no progress
    assert (ep1.progress_sparse == 0).all()
    ep0 = side[side.episode_index == 0]
    assert ep0.progress_sparse.tolist() == [0, 0, 0, 1]
    assert ep1.progress_dense.iloc[-1] == pytest.approx(1.0)


def test_export_errors_are_one_line(source: Path, labelled: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="several reward columns"):
        LEROBOT.export(labelled, tmp_path / "e1", None)
    with pytest.raises(ConfigError, match="not a reward column"):
        LEROBOT.export(labelled, tmp_path / "e2", "nope")
    foreign = tmp_path / "foreign"
    shutil.copytree(labelled, foreign)
    meta = json.loads((foreign / "metadata.json").read_text())
    del meta["extra"]["lerobot"]
    (foreign / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="was not imported from LeRobot"):
        LEROBOT.export(foreign, tmp_path / "e3", "dense")
    os.utime(source / "meta/tasks.parquet", ns=(1, 1))  # the source changed after the import
    with pytest.raises(DatasetError, match="changed since"):
        LEROBOT.export(labelled, tmp_path / "e4", "dense")


def test_video_mode_needs_av(tmp_path: Path, monkeypatch) -> None:
    root = synth.write_dataset(tmp_path / "video", video=importlib.util.find_spec("av") is not None)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(DatasetError, match=r"stored as video; decoding it needs PyAV \(pip install av\)"):
        import_lerobot(root, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()  # refused before writing anything


def test_video_mode_import(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from rayrg.data.schema import decode_png

    root = synth.write_dataset(tmp_path / "video", video=True)
    out = import_lerobot(root, tmp_path / "imported")
    table = Dataset.open(out).read(["episode_id", "step", "frame"], decode_images=True)
    assert table.num_rows == sum(synth.LENGTHS)
    assert DatasetMetadata.read(out).extra["lerobot"]["mode"] == "video"
    for r in table.to_pylist():
        ep, f = int(r["episode_id"][-6:]), r["step"]
        img = decode_png(r["frame"]).astype(int)
        assert img.shape == (64, 64, 3)
        # lossy AV1: each frame is nearest to its own colour (30/episode red, 20/frame green)
        assert abs(img[..., 0].mean() - 30 * ep) < 8 and abs(img[..., 1].mean() - 20 * f) < 8, (ep, f)


def test_cli_import_export_and_one_line_error(source: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    assert main(["import", "lerobot", str(source), "--out", str(tmp_path / "imp"),
                 "--option", "max_episodes=1"]) == 0
    assert Dataset.open(tmp_path / "imp").read(["step"]).num_rows == synth.LENGTHS[0]
    assert main(["label", "--config", str(_yaml(tmp_path, "method: sparse\n")), "--dataset", str(tmp_path / "imp"),
                 "--out", str(tmp_path / "lab")]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # a relative --out: the output gives the absolute root to pass
    assert main(["export", "lerobot", str(tmp_path / "lab"), "--out", "exp"]) == 0
    assert "next.reward" in json.loads((tmp_path / "exp/meta/info.json").read_text())["features"]
    root = str((tmp_path / "exp").resolve())
    assert f"LeRobotDataset('rayrg/{source.name}-sparse', root={root!r})" in capsys.readouterr().out
    assert main(["export", "lerobot", str(tmp_path / "imp"), "--out", str(tmp_path / "exp2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no reward_* columns" in err
    assert main(["import", "lerobot", str(source), "--out", str(tmp_path / "x"), "--option", "cam=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("import lerobot: unknown option cam; valid: camera, action_key, max_episodes")
    assert "\n" not in err


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "label.yaml"
    path.write_text(text)
    return path


def test_formats_are_imported_lazily() -> None:
    code = ("import sys, rayrg.cli as c; c.build_parser(); "
            "assert not [m for m in sys.modules if m in ('rayrg.data.lerobot', 'rayrg.data.minari')], 'eager'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


@pytest.mark.integration
def test_rgvlm_round_trip_through_the_loopback_server(source: Path, tmp_path: Path, ray_local) -> None:
    """Import → RG-VLM labels from a real HTTP server (OpenAI protocol) on Ray Data → export.
    Imported data has no ground truth; RG-VLM needs only frames, instruction and actions."""
    from rayrg.rewards.rgvlm.loopback import LoopbackServer

    imported = import_lerobot(source, tmp_path / "imported")
    with LoopbackServer() as server:
        backend = {"type": "openai", "base_url": server.base_url, "model": "loopback-vlm", "backoff_initial_s": 0.01}
        # Continuous actions reach the model only where the config states their rendering.
        with pytest.raises(DatasetError, match="continuous vectors"):
            label("rgvlm", imported, tmp_path / "refused", backend=backend)
        assert server.stats.requests == 0 and not (tmp_path / "refused").exists()
        labelled_dir = label("rgvlm", imported, tmp_path / "rgvlm", backend=backend, continuous_actions="as_vectors")
        assert server.stats.requests == 2 * len(synth.LENGTHS)  # one window per short episode, two turns
    table = Dataset.open(labelled_dir).read(["episode_id", "step", "reward_rgvlm"])
    rewards = table.column("reward_rgvlm").to_numpy()
    assert not np.isnan(rewards).any() and ((rewards >= 0) & (rewards <= 1)).all()

    out = LEROBOT.export(labelled_dir, tmp_path / "export", "rgvlm")
    label_of = dict(zip(zip(table.column("episode_id").to_pylist(), table.column("step").to_pylist(), strict=True),
                        rewards, strict=True))
    for rel in ("data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet"):
        exported = pq.read_table(out / rel)
        frames = zip(exported.column("episode_index").to_pylist(), exported.column("frame_index").to_pylist(),
                     strict=True)
        want = [label_of[(EPISODE_ID.format(e), f)] for e, f in frames]
        # each frame's exported reward is the label of the same (episode, frame), as float32
        np.testing.assert_array_equal(exported.column("next.reward").to_numpy(), np.asarray(want, np.float32))


@pytest.mark.lerobot
def test_export_loads_in_lerobot(labelled: Path, tmp_path: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = LEROBOT.export(labelled, tmp_path / "export", "dense")
    ds = LeRobotDataset("local/rayrg-export", root=out)
    assert len(ds) == sum(synth.LENGTHS)
    item = ds[5]  # episode 1, frame 1
    assert float(item["next.reward"]) == pytest.approx(0.1)
    assert float(item["rayrg.sparse"]) == 0.0
    assert tuple(item[synth.IMAGE].shape) == (3, 8, 8)
    # RA-BC reads the sidecar (its module moved between lerobot releases)
    try:
        from lerobot.rewards.sarm.rabc import RABCWeights
    except ImportError:
        from lerobot.utils.rabc import RABCWeights
    import torch

    weights = RABCWeights(out / SIDECAR_FILE, chunk_size=2, device=torch.device("cpu"))
    assert len(weights.progress_lookup) == sum(synth.LENGTHS)
    assert weights.progress_lookup[3] == pytest.approx(1.0)  # episode 0's last frame
