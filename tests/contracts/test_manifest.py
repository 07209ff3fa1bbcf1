"""The manifest contract: typed, versioned, the report's only index of its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.contracts.episodes import episodes_dir, write_episodes
from rayrg.contracts.manifest import (
    VERSION,
    BenchEntry,
    Claims,
    DataEntry,
    EvalsetEntry,
    Evaluation,
    LabelStep,
    Manifest,
    MethodEntry,
    StageRun,
    TrainRun,
    manifest_path,
    read_manifest,
    write_manifest,
)
from rayrg.report.build import build_report


def _full(tmp_path: Path) -> Manifest:
    return Manifest(
        name="m", config={"seeds": [0]},
        stages=[StageRun(stage="generate", path=tmp_path / "data", fingerprint="f0", status="ran", seconds=1.5)],
        data=DataEntry(trajectories=tmp_path / "data" / "trajectories", eval_tasks=tmp_path / "data" / "t.json"),
        labels=[LabelStep(index=0, method="rgvlm", path=tmp_path / "l", windows=tmp_path / "w", labels=tmp_path / "x")],
        labelled=tmp_path / "l",
        train=[TrainRun(method="a", seed=0, checkpoint=tmp_path / "c", fingerprint="f1")],
        evaluations=[Evaluation(method="a", kind="learned", seed=0, policy="p", path=tmp_path / "e",
                                episodes=tmp_path / "e" / "episodes", display_name="A")],
        methods={"a": MethodEntry(display_name="A", note="n", reward_column="reward_x", slug="a")},
        notes=["a note"], comparisons=[("a", "b")], claims=Claims(sparse="a", dense="b", dense_plus_sparse="c"),
        evalset=EvalsetEntry(path=tmp_path / "ev", source=tmp_path / "data" / "trajectories", fingerprint="f2",
                             labels=[LabelStep(index=0, method="sparse", path=tmp_path / "evl")],
                             labelled=tmp_path / "evl"),
        bench=BenchEntry(dataset=tmp_path / "evl", path=tmp_path / "bench", fingerprint="f3"))


def test_round_trip_and_the_writer_stamps_the_version(tmp_path: Path) -> None:
    manifest = _full(tmp_path)
    write_manifest(tmp_path, manifest.model_copy(update={"version": 0}))
    assert json.loads(manifest_path(tmp_path).read_text())["version"] == VERSION
    assert read_manifest(tmp_path) == manifest


@pytest.mark.parametrize(("version", "said"), [(VERSION + 1, f"manifest version {VERSION + 1};"),
                                               (None, "manifest no version")])
def test_another_version_is_refused_in_one_line_naming_it(tmp_path: Path, version: int | None, said: str) -> None:
    raw = _full(tmp_path).model_dump(mode="json")
    if version is None:
        del raw["version"]  # a manifest written before manifests were versioned
    else:
        raw["version"] = version
    manifest_path(tmp_path).write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as info:
        read_manifest(tmp_path)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_a_misspelt_or_mistyped_entry_is_one_line(tmp_path: Path) -> None:
    raw = _full(tmp_path).model_dump(mode="json")
    raw["evaluations"][0]["kind"] = "learnt"
    manifest_path(tmp_path).write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"evaluations\.0\.kind") as info:
        read_manifest(tmp_path)
    assert "\n" not in str(info.value)
    raw["evaluations"][0]["kind"], raw["labels"][0]["window"] = "learned", "w"
    manifest_path(tmp_path).write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"labels\.0\.window: Extra inputs"):
        read_manifest(tmp_path)


def _rows(value: float) -> list[dict]:
    return [{"task_id": f"t{i}", "env_name": "babyai", "num_subtasks": 1, "mode": "fixed", "seed": 0,
             "return": value, "subtasks_completed": int(value), "success": bool(value), "steps": 3,
             "budget": 10, "start_pos": [1, 1], "start_dir": 0} for i in range(4)]


def test_report_reads_only_the_outputs_the_manifest_lists(tmp_path: Path) -> None:
    """The episodes folder the manifest records is read; an ``episodes/`` folder beside the
    evaluation that the manifest does not list is not, nor are labels it does not list."""
    run = tmp_path / "eval" / "a" / "seed0"
    listed = tmp_path / "elsewhere" / "episodes"
    write_episodes(listed, "x", _rows(1.0))
    write_episodes(episodes_dir(run), "stray", _rows(0.0))  # where the folder would be found by looking
    (tmp_path / "labels" / "_labels").mkdir(parents=True)  # an unlisted labels folder: not looked for
    write_manifest(tmp_path, Manifest(
        name="t", methods={"a": MethodEntry(display_name="A")},
        labels=[LabelStep(index=0, method="rgvlm", path=tmp_path / "labels")],
        evaluations=[Evaluation(method="a", kind="learned", seed=0, policy="p", path=run, episodes=listed,
                                display_name="A")]))
    build_report(tmp_path)
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    assert numbers["evaluation"]["overall"]["a"]["fixed"]["mean"] == 1.0
    assert not (tmp_path / "report" / "labels_browser.html").exists()


def test_a_version_1_manifest_still_reads_without_bench_stages(tmp_path: Path) -> None:
    raw = _full(tmp_path).model_dump(mode="json")
    raw["version"] = 1
    del raw["evalset"], raw["bench"]  # version 1 had neither field
    manifest_path(tmp_path).write_text(json.dumps(raw))
    manifest = read_manifest(tmp_path)
    assert manifest.evalset is None and manifest.bench is None and manifest.labels == _full(tmp_path).labels


def test_report_shows_the_bench_table_beside_the_returns(tmp_path: Path) -> None:
    """The bench.json the manifest lists (not one beside it) is read through the bench
    contract; each column's metrics with ci95 and n, its noise and the policy trained on it."""
    from rayrg.contracts.bench import write_bench

    metric = {"value": 0.5, "ci95": [0.25, 0.75], "n": 7}
    columns = {
        "progress_true": {"kind": "progress", "voc_on": "value", "method": "oracle", "pipeline_check": False,
                          **{m: {"value": 1.0, "ci95": [1.0, 1.0], "n": 7} for m in
                             ("voc", "success_auroc", "success_f1", "rank_tau", "mismatch_auroc")}},
        "reward_x": {"kind": "reward", "voc_on": "cumulative", "method": "m", "pipeline_check": True,
                     "chunk_disagreement": {"mean": 0.125, "max": 0.5, "n": 3},
                     "skipped": {"mismatch_auroc": "no swapped twins"},
                     "mismatch_auroc": {"value": None, "ci95": None, "n": 0, "skipped": "no swapped twins"},
                     **{m: metric for m in ("voc", "success_auroc", "success_f1", "rank_tau")}}}
    listed, stray = tmp_path / "b", tmp_path / "bench"
    listed.mkdir()
    stray.mkdir()
    write_bench(listed, {"dataset": "d", "episodes": {"original": 7, "swapped": 7}, "columns": columns})
    write_bench(stray, {"dataset": "d", "episodes": {}, "columns": {"reward_stray": columns["reward_x"]}})
    write_episodes(tmp_path / "episodes", "x", _rows(1.0))
    write_manifest(tmp_path, Manifest(
        name="t", methods={"a": MethodEntry(display_name="A", reward_column="reward_x")},
        evaluations=[Evaluation(method="a", kind="learned", seed=0, policy="p", path=tmp_path / "e",
                                episodes=tmp_path / "episodes", display_name="A")],
        evalset=EvalsetEntry(path=tmp_path / "ev", source=tmp_path / "t"),
        bench=BenchEntry(dataset=tmp_path / "ev", path=listed)))
    build_report(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    assert md.index("Figure-4") < md.index("reward bench") < md.index("Table-I")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| `")}
    assert "reward_stray" not in md
    assert rows["`progress_true` (oracle)"].count("1.000 [1.00, 1.00] (n=7)") == 5
    assert "0.500 [0.25, 0.75] (n=7)" in rows["`reward_x`"] and "skipped" in rows["`reward_x`"]
    assert rows["`reward_x`"].endswith("0.125 (n=3) | **RANDOM WEIGHTS** | A |")
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<td><code>reward_x</code></td>" in html and "0.125 (n=3)" in html
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    assert numbers["bench"]["columns"]["progress_true"]["voc"]["value"] == 1.0
