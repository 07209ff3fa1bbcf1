"""ALFRED reader on synthetic trials in the real layout, including broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.contracts.tasks import read_eval_tasks
from rayrg.data.access import read_trajectories
from rayrg.data.alfred import (
    REPORT_FILE,
    AlfredImportConfig,
    BrokenTrial,
    build_eval_tasks,
    import_alfred,
    is_validation_trial,
    subtask_progress,
    trial_rows,
)
from rayrg.data.schema import DatasetError, DatasetMetadata, decode_png
from rayrg.envs.thor_config import ACTION_IDS, ACTION_NAMES
from rayrg.provenance import StaleOutputError
from tests.data._alfred_synth import PLAN_LOW, traj_data, write_trial


def config(root: Path, **kw) -> AlfredImportConfig:
    return AlfredImportConfig.from_dict({"root": str(root), "split": "train", "use_ray": False, **kw})


@pytest.fixture()
def alfred_root(tmp_path: Path) -> Path:
    root = tmp_path / "alfred"
    write_trial(root, "train", "pick_apple-1", "trial_A", traj_data())
    write_trial(root, "train", "pick_apple-1", "trial_B", traj_data(extra_frames=2))  # filler frames
    # raw_images with JPEGs while traj_data lists *.png names (as in ALFRED's full data)
    write_trial(root, "train", "pick_apple-2", "trial_C", traj_data(), image_dir="raw_images", suffix=".jpg")
    # no images list: one image per action plus one, in folder order
    write_trial(root, "train", "pick_apple-2", "trial_D", traj_data(images=False), num_images=len(PLAN_LOW) + 1)
    # broken trials, one per kind
    write_trial(root, "train", "broken", "no_json", None, num_images=3)
    write_trial(root, "train", "broken", "bad_json", '{"plan": [', num_images=3)
    write_trial(root, "train", "broken", "missing_image", traj_data(), skip_image=2)
    write_trial(root, "train", "broken", "count_mismatch", traj_data(images=False), num_images=len(PLAN_LOW) - 1)
    bad = traj_data()
    bad["plan"]["low_actions"][0]["discrete_action"]["action"] = "Teleport_99"
    write_trial(root, "train", "broken", "unknown_action", bad)
    write_trial(root, "train", "broken", "no_image_folder", traj_data(), image_dir="other_images")
    malformed = traj_data()
    malformed["plan"]["low_actions"][2] = ["not", "a", "dict"]
    write_trial(root, "train", "broken", "malformed", malformed)
    return root


def test_subtask_progress_counts_finished_subgoals() -> None:
    assert subtask_progress([0, 0, 1, 2, 2], 3) == [0, 1, 2, 2, 3]
    # a sub-goal without low actions completes together with the one before it
    assert subtask_progress([0, 2, 2], 3) == [2, 2, 3]


def test_trial_rows_follow_the_schema_rules(alfred_root: Path) -> None:
    cfg = config(alfred_root)
    rows = trial_rows(alfred_root / "train" / "pick_apple-1" / "trial_B", "train", cfg)
    assert len(rows) == len(PLAN_LOW)  # first annotation only by default
    assert [r["action"] for r in rows] == [ACTION_IDS[n] for n, _, _ in PLAN_LOW]
    assert [r["subtasks_completed"] for r in rows] == [0, 0, 1, 2, 2, 3]
    assert rows[3]["action_name"] == "PickupObject(Apple)"
    assert rows[5]["action_name"] == "PutObject(CounterTop)"
    assert all(r["expert_action"] == r["action"] and r["success"] for r in rows)
    assert [r["terminal"] for r in rows] == [False] * 5 + [True]
    assert rows[-1]["final_frame"] is not None and all(r["final_frame"] is None for r in rows[:-1])
    assert rows[0]["instruction"] == "Put an apple on the counter."
    assert rows[0]["num_subtasks"] == 3 and rows[0]["seed"] == 1234
    # with 2 filler frames per action, frame t is the FIRST image of low_idx t (index 3t)
    folder = alfred_root / "train" / "pick_apple-1" / "trial_B" / "high_res_images"
    for t in (0, 1, 4):
        assert (decode_png(rows[t]["frame"]) == decode_png((folder / f"{3 * t:09d}.png").read_bytes())).all()
    last = sorted(folder.iterdir())[-1]
    assert (decode_png(rows[-1]["final_frame"]) == decode_png(last.read_bytes())).all()


def test_instruction_and_annotation_options(alfred_root: Path) -> None:
    cfg = config(alfred_root, instruction="high_descs", annotations="all", frame_size=16)
    rows = trial_rows(alfred_root / "train" / "pick_apple-1" / "trial_A", "train", cfg)
    episodes = {r["episode_id"] for r in rows}
    assert len(episodes) == 2 and len(rows) == 2 * len(PLAN_LOW)
    assert rows[0]["instruction"] == "Walk to the apple. Pick up the apple. Put it on the counter."
    assert decode_png(rows[0]["frame"]).shape == (16, 16, 3)


def test_import_skips_and_reports_broken_trials(alfred_root: Path, tmp_path: Path) -> None:
    out = import_alfred(config(alfred_root, trials_per_shard=3), tmp_path / "out", progress=False)
    table = read_trajectories(out / "trajectories")  # full validation incl. image decoding
    assert table.num_rows == 4 * len(PLAN_LOW)
    assert set(table.column("action").to_pylist()) <= set(range(len(ACTION_NAMES)))
    report = json.loads((out / REPORT_FILE).read_text())
    reasons = {b["trial"].split("/")[1]: b["reason"] for b in report["broken"]}
    assert set(reasons) == {"no_json", "bad_json", "missing_image", "count_mismatch",
                            "unknown_action", "no_image_folder", "malformed"}
    assert "no traj_data.json" in reasons["no_json"]
    assert "traj_data.json: unreadable trial record" in reasons["bad_json"]
    assert "missing image" in reasons["missing_image"]
    assert "count mismatch" in reasons["count_mismatch"]
    assert "Teleport_99" in reasons["unknown_action"]
    assert "no image folder" in reasons["no_image_folder"]
    assert reasons["malformed"].startswith("malformed traj_data.json: AttributeError")
    meta = DatasetMetadata.read(out / "trajectories")
    assert meta.num_episodes == 4 and meta.extra["broken_trials"] == 7
    assert meta.extra["action_names"] == list(ACTION_NAMES)
    tasks = [t.model_dump() for t in read_eval_tasks(out / "eval_tasks.json")]
    # eval tasks need traj_data only: the image-less broken trials still give tasks (each in
    # the test set unless its trial falls to validation, rayrg.data.alfred.is_validation_trial)
    with_json = ["pick_apple-1/trial_A", "pick_apple-1/trial_B", "pick_apple-2/trial_C", "pick_apple-2/trial_D",
                 "broken/missing_image", "broken/count_mismatch", "broken/no_image_folder"]
    in_test = [k for k in with_json if not is_validation_trial(k, AlfredImportConfig.model_fields["val_fraction"].default)]
    assert len(tasks) == len(in_test) and tasks[0]["env_name"] == "alfred-thor"
    # a second run resumes: every shard is already there
    import_alfred(config(alfred_root, trials_per_shard=3), tmp_path / "out", progress=False)
    assert read_trajectories(out / "trajectories", decode_images=False).num_rows == table.num_rows


def test_eval_tasks_carry_the_scene_and_subgoals(alfred_root: Path) -> None:
    tasks, broken = build_eval_tasks(config(alfred_root, annotations="all", val_fraction=0.0))
    assert {b["trial"].split("/")[1] for b in broken} == {"no_json", "bad_json", "unknown_action", "malformed"}
    task = next(t for t in tasks if t.task_id.startswith("pick_apple-1/trial_A"))
    assert task.task_id == "pick_apple-1/trial_A#a0" and task.expert_steps == len(PLAN_LOW)
    assert task.num_subtasks == 3 and task.step_budget() == 16
    assert [s["action"] for s in task.extra["subgoals"]] == ["GotoLocation", "PickupObject", "PutObject"]
    assert task.extra["scene"]["floor_plan"] == "FloorPlan1"
    assert task.extra["scene"]["init_action"]["rotation"] == 0


def test_missing_split_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="split folder not found"):
        import_alfred(config(tmp_path), tmp_path / "out", progress=False)


def test_all_broken_is_an_error(tmp_path: Path) -> None:
    write_trial(tmp_path, "train", "t", "x", None)
    with pytest.raises(DatasetError, match="no importable trial"):
        import_alfred(config(tmp_path), tmp_path / "out", progress=False)


def test_broken_trial_reason_for_test_split_without_plan(tmp_path: Path) -> None:
    data = traj_data()
    del data["plan"]
    folder = write_trial(tmp_path, "tests_seen", "t", "x", data)
    with pytest.raises(BrokenTrial, match="no plan"):
        trial_rows(folder, "tests_seen", config(tmp_path))


def test_cli_import(alfred_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rayrg.cli import main

    rc = main(["alfred-import", "--root", str(alfred_root), "--split", "train",
               "--out", str(tmp_path / "cli"), "--no-ray", "--instruction", "high_descs"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "4 episodes" in printed and "skipped trials: 7" in printed
    assert (tmp_path / "cli" / "trajectories" / "metadata.json").exists()


def test_reimport_skips_and_a_changed_config_is_refused(alfred_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    cfg = config(alfred_root, use_ray=False, eval_max_tasks=2)
    out = import_alfred(cfg, tmp_path / "data", progress=False)
    assert len(read_eval_tasks(out / "eval_tasks.json")) == 2
    assert read_trajectories(out / "trajectories", decode_images=False).num_rows == 4 * len(PLAN_LOW)
    import_alfred(cfg, tmp_path / "data", progress=False)
    assert "up to date" in capsys.readouterr().out
    before = read_trajectories(out / "trajectories", columns=["instruction"], decode_images=False)
    changed = cfg.model_copy(update={"instruction": "high_descs"})
    with pytest.raises(StaleOutputError, match=r"config\.instruction: \"task_desc\" → \"high_descs\""):
        import_alfred(changed, tmp_path / "data", progress=False)
    import_alfred(changed, tmp_path / "data", progress=False, on_change="redo")
    after = read_trajectories(out / "trajectories", columns=["instruction"], decode_images=False)
    assert after.column("instruction").to_pylist() != before.column("instruction").to_pylist()


def test_import_on_ray(alfred_root: Path, tmp_path: Path, ray_local: None) -> None:
    out = import_alfred(config(alfred_root, use_ray=True, trials_per_shard=2), tmp_path / "ray", progress=False)
    assert read_trajectories(out / "trajectories", decode_images=False).num_rows == 4 * len(PLAN_LOW)


@pytest.mark.parametrize("job", ["alfred_gemini.yaml", "alfred_qwen72b.yaml"])
def test_alfred_job_drafts_parse(job: str) -> None:
    import yaml

    from rayrg.envs.thor_config import ThorConfig

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "jobs" / job).read_text())
    assert raw["data"]["source"] == "alfred"
    AlfredImportConfig.from_dict(raw["data"]["alfred"], source=job)
    ThorConfig.from_dict(raw["evaluation"]["env_settings"], source=job)
    from rayrg.evaluation.config import EvalConfig

    EvalConfig.from_dict(raw["evaluation"], source=job)
