"""``rayrg import <format>`` / ``rayrg export <format>`` with rayrg's side on a storage URI (the
moto S3 server): an import's ``--out`` and the dataset an export reads. The format's own side
(a LeRobot or Minari dataset root, the ALFRED root) is a local folder its library opens: a URI
there is refused in one line naming the option, and nothing is made (no folder named ``s3:``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rayrg import storage
from rayrg.cli import main
from rayrg.data.access import Dataset
from rayrg.data.export_meta import EXPORT_KEY
from rayrg.rewards.base import write_labelled_dataset
from tests.data import _lerobot_synth as synth
from tests.storage._moto import ray_s3  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def _dense_labels(dataset: str, out: str) -> Any:
    """A second reward column (step / 10) joined onto ``dataset``: a labelled dataset, written
    where ``out`` says (a URI here), without a labeller run."""
    keys = Dataset.open(storage.native(storage.resolve(dataset))).read(["episode_id", "step"])
    dense = pa.table({"episode_id": keys.column("episode_id"), "step": keys.column("step"),
                      "reward_dense": pa.array(np.asarray(keys.column("step").to_numpy(), np.float32) / 10)})
    return write_labelled_dataset(dataset, dense, out,
                                  provenance={"reward_dense": {"method": "test", "definition": "step / 10"}})


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err, err
    return err


def test_lerobot_import_to_s3_inspect_and_export_from_s3(s3_bucket, tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source = synth.write_dataset(tmp_path / "lerobot")
    monkeypatch.chdir(tmp_path)
    uri = f"{s3_bucket.uri}/imp"
    assert main(["import", "lerobot", str(source), "--out", uri]) == 0
    assert capsys.readouterr().out.strip() == f"dataset: {uri}"
    keys = s3_bucket.keys()
    assert {"imp/metadata.json", "imp/_provenance.json", "imp/part-00000.parquet", "imp/part-00001.parquet"} <= set(keys)
    assert not any(".rayrg-probe-" in k for k in keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lerobot"]  # nothing local, no 's3:'

    # read back: the CLI's inspect and the access layer, from the bucket
    assert main(["inspect", uri, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == len(synth.LENGTHS) and summary["transitions"] == sum(synth.LENGTHS)
    table = Dataset.open(storage.native(storage.resolve(uri))).read(["episode_id", "step", "frame"])
    assert table.num_rows == sum(synth.LENGTHS)
    assert table.column("frame")[0].as_py() == synth.frame_png(0, 0)  # the PNG bytes as they were

    # the same import again is up to date (keyed to the source), not redone
    before = {k: s3_bucket.client().head_object(Bucket=s3_bucket.name, Key=k)["ETag"]
              for k in keys if k.endswith(".parquet")}
    assert main(["import", "lerobot", str(source), "--out", uri]) == 0
    capsys.readouterr()
    assert {k: s3_bucket.client().head_object(Bucket=s3_bucket.name, Key=k)["ETag"] for k in before} == before

    # labelled on the bucket, exported from it to a local LeRobot folder
    _dense_labels(uri, f"{s3_bucket.uri}/lab")
    assert main(["export", "lerobot", f"{s3_bucket.uri}/lab", "--out", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    info = json.loads((tmp_path / "exp/meta/info.json").read_text())
    assert "next.reward" in info["features"]
    assert info[EXPORT_KEY]["labelled_dataset"] == f"{s3_bucket.uri}/lab"
    assert info[EXPORT_KEY]["reward_column"] == "reward_dense"


def test_minari_import_to_s3_and_export_from_s3(store: dict[str, Any], s3_bucket, tmp_path: Path,
                                                capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    monkeypatch.chdir(tmp_path)
    uri = f"{s3_bucket.uri}/minari/imp"
    assert main(["import", "minari", str(store["source"]), "--out", uri,
                 "--option", f"action_names={json.dumps(MINIGRID_ACTIONS)}"]) == 0
    assert capsys.readouterr().out.strip() == f"dataset: {uri}"
    assert "minari/imp/metadata.json" in s3_bucket.keys()
    assert list(tmp_path.iterdir()) == []
    assert main(["inspect", uri, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == len(store["episodes"])
    assert summary["transitions"] == sum(len(ep["actions"]) for ep in store["episodes"])

    _dense_labels(uri, f"{s3_bucket.uri}/minari/lab")
    export_id = "rayrg/babyai-dense-v0"
    out = store["root"] / export_id
    assert main(["export", "minari", f"{s3_bucket.uri}/minari/lab", "--out", str(out), "--reward", "dense",
                 "--option", f"dataset_id={export_id}"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store["root"]))
    exported = minari.load_dataset(export_id)
    steps = [np.arange(len(ep["actions"]), dtype=np.float32) / 10 for ep in store["episodes"]]
    for episode in exported.iterate_episodes():
        np.testing.assert_array_equal(episode.rewards, steps[int(episode.id)])
    meta = json.loads((out / "data/metadata.json").read_text())
    assert meta[EXPORT_KEY]["labelled_dataset"] == f"{s3_bucket.uri}/minari/lab"


def test_alfred_import_to_s3_on_ray_tasks(s3_bucket, ray_s3, tmp_path: Path, capsys,  # noqa: F811
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """ALFRED's shard tasks (Ray) write their shards straight into the bucket; the driver its
    tasks, report and metadata; a second run is up to date."""
    from tests.data._alfred_synth import PLAN_LOW, traj_data, write_trial

    root = tmp_path / "alfred"
    write_trial(root, "train", "pick_apple-1", "trial_A", traj_data())
    write_trial(root, "train", "pick_apple-2", "trial_B", traj_data(extra_frames=2))
    write_trial(root, "train", "broken", "no_json", None, num_images=3)
    monkeypatch.chdir(tmp_path)
    uri = f"{s3_bucket.uri}/alfred"
    assert main(["import", "alfred", str(root), "--out", uri, "--option", "split=train",
                 "--option", "trials_per_shard=1"]) == 0
    printed = capsys.readouterr().out
    assert f"dataset: {uri}/trajectories (2 episodes" in printed and "skipped trials: 1" in printed
    keys = set(s3_bucket.keys())
    # trials in sorted order, one per shard: "broken/no_json" (no rows, no shard), then two
    assert {"alfred/trajectories/part-00001.parquet", "alfred/trajectories/part-00002.parquet",
            "alfred/trajectories/metadata.json", "alfred/eval_tasks.json", "alfred/import_report.json",
            "alfred/alfred_import.yaml", "alfred/_provenance.json"} <= keys
    assert not any(".rayrg-shared-" in k or ".rayrg-probe-" in k for k in keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alfred"]
    data = Dataset.open(storage.native(storage.resolve(f"{uri}/trajectories")))
    assert data.metadata.num_transitions == 2 * len(PLAN_LOW)
    assert main(["import", "alfred", str(root), "--out", uri, "--option", "split=train",
                 "--option", "trials_per_shard=1"]) == 0
    assert set(s3_bucket.keys()) == keys


@pytest.mark.parametrize(("argv", "option"), [
    (["import", "lerobot", "s3://bucket/lerobot", "--out", "imp"], "import lerobot SOURCE s3://bucket/lerobot"),
    (["import", "minari", "s3://bucket/minari", "--out", "imp"], "import minari SOURCE s3://bucket/minari"),
    (["import", "alfred", "s3://bucket/alfred", "--out", "imp"], "import alfred SOURCE s3://bucket/alfred"),
    (["alfred-import", "--root", "s3://bucket/alfred", "--split", "train", "--out", "imp"],
     "import alfred --root s3://bucket/alfred"),
    (["import", "lerobot", "s3:/bucket/lerobot", "--out", "imp"], "import lerobot SOURCE s3:/bucket/lerobot"),
    (["export", "lerobot", "labelled", "--out", "s3://bucket/exp"], "export lerobot --out s3://bucket/exp"),
    (["export", "minari", "labelled", "--out", "s3:/bucket/exp"], "export minari --out s3:/bucket/exp"),
    (["export", "lerobot", "labelled", "--out", "s3://AKIAXX:topsecret@bucket/exp"],
     "export lerobot --out s3://<redacted>@bucket/exp"),
])
def test_a_uri_on_the_formats_side_is_one_line_and_makes_nothing(argv: list[str], option: str, tmp_path: Path,
                                                                 capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = _one_line(capsys)
    assert option in err and "a storage URI, but" in err and "local" in err, err
    assert "topsecret" not in err
    assert list(tmp_path.iterdir()) == []  # neither the output nor a folder named 's3:'


def test_the_formats_source_problem_names_a_uri(tmp_path: Path) -> None:
    """``rayrg run``'s preflight asks each format whether its source is usable."""
    from rayrg.data.formats import get_format

    for name in ("lerobot", "alfred"):
        problem = get_format(name).source_problem("s3://bucket/src")
        assert problem is not None and "a storage URI, but" in problem


def test_import_to_a_missing_bucket_is_refused_before_any_work(s3_bucket, tmp_path: Path, capsys,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    source = synth.write_dataset(tmp_path / "lerobot")
    monkeypatch.chdir(tmp_path)
    assert main(["import", "lerobot", str(source), "--out", f"s3://{s3_bucket.name}-missing/imp"]) == 2
    assert _one_line(capsys).endswith(f"s3://{s3_bucket.name}-missing/imp: bucket "
                                      f"'{s3_bucket.name}-missing' does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lerobot"]


# The Minari store (a BabyAI rollout written with Minari) of the Minari tests; without the
# minari extra only the Minari test skips.
try:
    from tests.data.test_minari import MINIGRID_ACTIONS, store
except pytest.skip.Exception:
    MINIGRID_ACTIONS = []

    @pytest.fixture
    def store() -> Any:
        pytest.skip("minari is not installed (the minari extra)")
