"""THOR adapter: action mapping, targets, sub-goal accounting, budget and initial states
against a controller stand-in in ai2thor 5.x's event format; the build check; the real
controller (``thor`` marker, skipped without a build)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rayrg.data.alfred import AlfredImportConfig, trial_eval_tasks
from rayrg.envs.base import EvalTask
from rayrg.envs.thor import (
    HEADINGS,
    SubgoalTracker,
    ThorEnv,
    ThorUnavailableError,
    check_thor_build,
    choose_target,
    make_thor_env,
    start_controller,
)
from rayrg.envs.thor_config import ACTION_IDS, ACTION_NAMES, ThorConfig
from tests.data._alfred_synth import traj_data, write_trial
from tests.envs._thor_fake import AGENT_Y, FakeController, obj


@pytest.fixture()
def task(tmp_path: Path) -> EvalTask:
    folder = write_trial(tmp_path, "valid_seen", "pick_apple", "trial_A", traj_data())
    cfg = AlfredImportConfig(root=str(tmp_path), split="valid_seen")
    return trial_eval_tasks(folder, cfg)[0]


def make_env(**config) -> tuple[ThorEnv, FakeController]:
    fake = FakeController()
    env = make_thor_env({"step_budget_minimum": 1, **config}, controller_factory=lambda cfg: fake)
    return env, fake


def act(env: ThorEnv, name: str):
    return env.step(ACTION_IDS[name])


def test_fixed_start_replays_the_trials_setup(task: EvalTask) -> None:
    env, fake = make_env()
    obs = env.reset(task, "fixed")
    names = [c[0] for c in fake.calls]
    assert names == ["reset", "SetObjectPoses", "TeleportFull", "TeleportFull"]
    assert fake.calls[0][1] == {"scene": "FloorPlan1", "gridSize": 0.25, "visibilityDistance": 1.5}
    assert [p["objectName"] for p in fake.calls[1][1]["objectPoses"]] == ["Apple_1"]
    assert obs.info["setup"]["object_poses"] == {"given": 2, "applied": 1, "unknown_names": ["Ghost_9"]}
    # ALFRED's y (0.9009, ai2thor 2.1) is refused, the retry keeps the scene's own floor height
    assert fake.calls[2][1]["y"] == pytest.approx(0.9009) and fake.calls[3][1]["y"] == AGENT_Y
    assert obs.info["setup"]["failed"] == []
    assert obs.info["start"] == {"x": 0.0, "y": AGENT_Y, "z": 0.0, "rotation": 0.0, "horizon": 30.0}
    assert obs.frame.shape == (32, 32, 3) and obs.instruction == task.instruction
    assert obs.subtasks_completed == 0 and not obs.done
    assert obs.info["step_budget"] == 2 * task.expert_steps


def test_strict_setup_raises_on_failed_setup(task: EvalTask) -> None:
    env, fake = make_env(strict_setup=True)
    fake.reachable = [p for p in fake.reachable if (p["x"], p["z"]) != (0.0, 0.0)]
    with pytest.raises(RuntimeError, match="init_action TeleportFull"):
        env.reset(task)


def test_navigation_actions_map_to_ai2thor_calls(task: EvalTask) -> None:
    env, fake = make_env()
    env.reset(task)
    expected = {
        "MoveAhead_25": ("MoveAhead", {"moveMagnitude": 0.25}),
        "RotateLeft_90": ("RotateLeft", {"degrees": 90}),
        "RotateRight_90": ("RotateRight", {"degrees": 90}),
        "LookDown_15": ("LookDown", {"degrees": 15}),
        "LookUp_15": ("LookUp", {"degrees": 15}),
    }
    for name, call in expected.items():
        obs = act(env, name)
        assert fake.calls[-1] == call and obs.info["action_success"] and obs.info["target"] is None
    assert env.num_actions == len(ACTION_NAMES) == 12
    with pytest.raises(ValueError):
        env.step(12)


def test_interaction_without_a_target_fails_without_a_thor_call(task: EvalTask) -> None:
    env, fake = make_env()
    env.reset(task)
    before = len(fake.calls)
    obs = act(env, "ToggleObjectOn")  # lamp behind, microwave to the right: none in view
    assert len(fake.calls) == before and not obs.info["action_success"]
    assert "no visible object affords ToggleObjectOn" in obs.info["error"] and obs.info["steps"] == 1


def test_target_is_the_affording_object_nearest_the_view_centre() -> None:
    agent = {"position": {"x": 0.0, "y": 0.9, "z": 0.0}, "rotation": {"y": 0.0}, "cameraHorizon": 0.0}
    centre = obj("Apple", 0.0, 1.0, pickupable=True, visible=True)
    side = obj("Tomato", 0.6, 1.0, pickupable=True, visible=True)
    hidden = obj("Egg", 0.0, 0.5, pickupable=True, visible=False)
    table = obj("DiningTable", 0.05, 1.0, receptacle=True, visible=True)
    meta = {"agent": agent, "objects": [side, centre, hidden, table]}
    assert choose_target(meta, "PickupObject") == centre["objectId"]
    assert choose_target(meta, "PutObject") is None  # nothing held
    centre["isPickedUp"] = True
    assert choose_target(meta, "PickupObject") == side["objectId"]
    assert choose_target(meta, "PutObject") == table["objectId"]  # never the held object
    agent["rotation"]["y"] = 30.0  # turning right brings the tomato to the centre
    centre["isPickedUp"] = False
    assert choose_target(meta, "PickupObject") == side["objectId"]
    assert choose_target(meta, "OpenObject") is None


def test_expert_like_episode_completes_every_subgoal(task: EvalTask) -> None:
    env, _ = make_env()
    env.reset(task)
    obs = act(env, "LookDown_15")
    assert obs.subtasks_completed == 1  # GotoLocation(apple): the apple is in view
    obs = act(env, "PickupObject")
    assert obs.info["target"].startswith("Apple|") and obs.subtasks_completed == 2
    obs = act(env, "PutObject")
    assert obs.info["target"].startswith("CounterTop|") and obs.subtasks_completed == 3
    assert obs.done and obs.info["success"] and obs.info["return"] == 1.0 and not obs.info["truncated"]
    with pytest.raises(RuntimeError, match="episode ended"):
        act(env, "LookUp_15")


def test_step_budget_truncates_at_twice_the_expert(task: EvalTask) -> None:
    env, _ = make_env()
    obs = env.reset(task)
    budget = obs.info["step_budget"]
    assert budget == 2 * task.expert_steps == 12
    for t in range(1, budget + 1):
        obs = act(env, "LookUp_15")
        assert obs.done == (t == budget)
    assert obs.info["truncated"] and not obs.info["success"]
    assert obs.subtasks_completed == 1 and obs.info["return"] == pytest.approx(1 / 3)
    # the default minimum budget (16 steps) applies to short tasks
    env2, _ = make_env(step_budget_minimum=16)
    assert env2.reset(task).info["step_budget"] == 16


def test_randomized_start_moves_the_agent_and_keeps_the_task(task: EvalTask) -> None:
    env, fake = make_env()
    fixed = env.reset(task, "fixed").info["start"]
    starts = []
    for seed in range(6):
        obs = env.reset(task, "randomized", rng_seed=seed)
        start = obs.info["start"]
        assert (start["x"], start["z"]) != (fixed["x"], fixed["z"])
        assert any(p["x"] == start["x"] and p["z"] == start["z"] for p in fake.reachable)
        assert start["rotation"] in HEADINGS and start["horizon"] == 30.0
        assert obs.info["agent_dir"] == int(start["rotation"]) // 90
        assert obs.instruction == task.instruction and obs.subtasks_completed == 0
        assert env.tracker.subgoals == task.extra["subgoals"]
        starts.append((start["x"], start["z"], start["rotation"]))
    assert len(set(starts)) > 1
    again = env.reset(task, "randomized", rng_seed=3).info["start"]
    assert (again["x"], again["z"], again["rotation"]) == starts[3]
    with pytest.raises(ValueError):
        env.reset(task, "sideways")


def test_randomized_start_gives_up_with_an_error(task: EvalTask) -> None:
    env, fake = make_env(randomize_max_tries=3)
    env.reset(task)
    fake._do_TeleportFull = lambda **kw: (False, "always refused")
    with pytest.raises(RuntimeError, match="no teleport succeeded in 3 tries"):
        env.reset(task, "randomized")


def _meta(objects, x=0.0, z=0.0, yaw=0.0):
    return {"agent": {"position": {"x": x, "y": 0.9, "z": z}, "rotation": {"y": yaw}, "cameraHorizon": 0.0},
            "objects": objects}


def test_subgoal_tracker_heat_clean_cool_slice_toggle_in_order() -> None:
    subgoals = [{"action": a, "args": args, "planner_action": {}} for a, args in [
        ("HeatObject", ["potato"]), ("CleanObject", ["mug"]), ("CoolObject", ["apple"]),
        ("SliceObject", ["bread"]), ("ToggleObject", ["desklamp"])]]
    tracker = SubgoalTracker(subgoals)
    micro, sink, fridge = "Microwave|1|1|1", "SinkBasin|2|1|2", "Fridge|3|1|3"
    potato = obj("Potato", 1, 1, parentReceptacles=[micro])
    mug = obj("Mug", 2, 2, parentReceptacles=[sink])
    apple = obj("Apple", 3, 3, parentReceptacles=[fridge])
    bread = obj("Bread", 0, 1, isSliced=False)
    lamp = obj("DeskLamp", 0, 2, isToggled=False)
    objects = [potato, mug, apple, bread, lamp]
    tracker.observe_initial(_meta(objects))
    # later sub-goals already true do not count before the earlier ones
    lamp["isToggled"] = True
    assert tracker.update(_meta(objects), "ToggleObjectOn", micro, success=True) == 0  # heated, not held
    potato["isPickedUp"], potato["parentReceptacles"] = True, []
    assert tracker.update(_meta(objects)) == 1
    tracker.update(_meta(objects), "ToggleObjectOn", "Faucet|2|1|2", success=True)
    mug["isPickedUp"] = True
    assert tracker.update(_meta(objects)) == 2
    tracker.update(_meta(objects), "CloseObject", fridge, success=False)  # a failed close cools nothing
    apple["isPickedUp"] = True
    assert tracker.update(_meta(objects)) == 2
    apple["temperature"] = "Cold"  # THOR's own temperature also counts
    assert tracker.update(_meta(objects)) == 3
    bread["objectType"] = "BreadSliced"  # the pieces after slicing
    assert tracker.update(_meta(objects)) == 5 and tracker.all_done
    with pytest.raises(ValueError, match="unknown ALFRED sub-goal"):
        SubgoalTracker([{"action": "Dance", "args": []}])


def test_goto_location_by_pose_or_visible_destination() -> None:
    goal = [{"action": "GotoLocation", "args": ["sofa"], "planner_action": {"location": "loc|4|8|1|30"}}]
    sofa = obj("Sofa", 5.0, 5.0, visible=False)
    tracker = SubgoalTracker(goal, grid_size=0.25, goto_radius=1.0)
    assert tracker.update(_meta([sofa], x=0.0, z=0.0)) == 0
    assert tracker.update(_meta([sofa], x=1.0, z=2.5, yaw=270.0)) == 0  # close, facing away
    assert tracker.update(_meta([sofa], x=1.0, z=2.5, yaw=60.0)) == 1  # goal (1, 2) facing 90
    tracker2 = SubgoalTracker(goal)
    sofa["visible"] = True
    assert tracker2.update(_meta([sofa], x=-3.0, z=-3.0)) == 1


def test_ai2thor_event_class_is_compatible() -> None:
    server = pytest.importorskip("ai2thor.server")
    fake = FakeController()
    fake.reset("FloorPlan1")
    event = server.Event(fake.last_event.metadata)  # the real Event wraps the same metadata
    assert choose_target(event.metadata, "PickupObject").startswith("Apple|")


# -- builds ---------------------------------------------------------------------------------------
@pytest.fixture()
def no_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.ai2thor/releases is empty
    monkeypatch.delenv("RAYRG_THOR_EXECUTABLE", raising=False)
    return tmp_path


def test_unavailable_build_fails_fast_with_how_to(no_builds: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ThorUnavailableError) as info:
        make_thor_env({"allow_download": False, "platform": "CloudRendering"})
    assert time.perf_counter() - start < 5
    message = str(info.value)
    try:
        import ai2thor  # noqa: F401
    except ImportError:
        assert "pip install 'rayrg[thor]'" in message
        return
    assert "no pre-placed build" in message and "allow_download is off" in message
    assert str(no_builds / ".ai2thor" / "releases") in message
    assert "local_executable_path" in message and "RAYRG_THOR_EXECUTABLE" in message


def test_download_probe_failure_is_unavailable(no_builds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai2thor")
    import rayrg.envs.thor_build as thor_build

    monkeypatch.setattr(thor_build, "probe_download", lambda url, timeout: f"{url} is unreachable (test)")
    with pytest.raises(ThorUnavailableError, match="cannot be downloaded"):
        check_thor_build(ThorConfig(platform="Linux64", x_display=":99"))
    monkeypatch.setattr(thor_build, "probe_download", lambda url, timeout: None)
    assert check_thor_build(ThorConfig(platform="Linux64", x_display=":99"))["kind"] == "download"


def test_pre_placed_build_and_local_executable(no_builds: Path) -> None:
    ai2thor_build = pytest.importorskip("ai2thor.build")
    (no_builds / ".ai2thor" / "releases" / f"thor-Linux64-{ai2thor_build.COMMIT_ID}").mkdir(parents=True)
    info = check_thor_build(ThorConfig(platform="Linux64", x_display=":0", allow_download=False))
    assert info["kind"] == "pre_placed"
    with pytest.raises(ThorUnavailableError, match="not an executable file"):
        check_thor_build(ThorConfig(local_executable_path=str(no_builds / "missing")))
    exe = no_builds / "thor.x86_64"
    exe.write_text("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    assert check_thor_build(ThorConfig(local_executable_path=str(exe)))["kind"] == "local_executable"


def test_controller_start_failure_is_wrapped(no_builds: Path) -> None:
    pytest.importorskip("ai2thor")
    exe = no_builds / "thor.x86_64"
    exe.write_text("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    seen = {}

    def refusing_controller(**kwargs):
        seen.update(kwargs)
        raise ValueError("Invalid commit_id: abc - no build exists for arch=Linux platforms=Linux64")

    with pytest.raises(ThorUnavailableError, match="Controller did not start.*Invalid commit_id"):
        start_controller(ThorConfig(local_executable_path=str(exe)), controller_cls=refusing_controller)
    assert seen["local_executable_path"] == str(exe) and seen["width"] == 300
    assert seen["gridSize"] == 0.25 and seen["visibilityDistance"] == 1.5


def _build_or_reason() -> str | None:
    try:
        check_thor_build(ThorConfig(allow_download=False))
    except ThorUnavailableError as exc:
        return "; ".join(line.strip(" -") for line in str(exc).splitlines() if line.startswith("  - "))
    return None


@pytest.mark.thor
@pytest.mark.skipif(_build_or_reason() is not None,
                    reason=f"no AI2-THOR build on this machine: {_build_or_reason()}")
def test_real_controller_runs_an_alfred_task(task: EvalTask) -> None:
    env = make_thor_env({"allow_download": False})
    try:
        obs = env.reset(task, "fixed")
        assert obs.frame.shape == (300, 300, 3) and obs.frame.dtype.name == "uint8"
        for name in ("LookDown_15", "MoveAhead_25", "RotateLeft_90", "PickupObject"):
            obs = act(env, name)
            assert 0 <= obs.subtasks_completed <= task.num_subtasks
        moved = env.reset(task, "randomized", rng_seed=1).info["start"]
        assert moved["rotation"] in HEADINGS
    finally:
        env.close()
