"""AI2-THOR (ai2thor 5.x) as a :class:`~rayrg.envs.base.TaskEnv` for ALFRED tasks.

One :class:`ThorEnv` owns one ai2thor ``Controller`` (one Unity process); evaluation actors
hold one each. Tasks are :class:`EvalTask` objects built by ``rayrg.data.alfred`` whose
``extra`` carries the trial's ``scene`` set-up and its ``subgoals``.

**Set-up** (``mode="fixed"``, ALFRED's own order): ``reset(floor_plan)`` with ALFRED's grid
(0.25 m) and interaction range (1.5 m); object toggles (``ToggleObjectOn/Off`` with
``forceAction`` per listed type); ``SetStateOfAllObjects`` for ``dirty_and_empty`` trials;
``SetObjectPoses`` with the poses whose ``objectName`` exists in the scene; then the
trial's ``init_action`` as ``TeleportFull``. ALFRED was recorded with ai2thor 2.1.0;
scenes of 5.x can differ, so whatever does not apply (unknown object names, a failed
action) is reported in ``Observation.info["setup"]`` (or raised with ``strict_setup``).
``mode="randomized"`` then teleports the agent to a random position of
``GetReachablePositions`` with a random heading (0/90/180/270°) and the start's camera
horizon; the task and its sub-goal tracker are unchanged.

**Actions**: :data:`~rayrg.envs.thor_config.ACTION_NAMES`. An interaction's target is
chosen without segmentation masks: among objects THOR reports ``visible`` (in view and
within the interaction range) that afford the action in their current state (pickupable
and not held; a receptacle other than the held object; openable and closed / open;
toggleable and off / on; sliceable and not sliced), the one whose centre is angularly
closest to the centre of the view (yaw from the agent's heading, pitch from the camera
horizon). No candidate: the action fails without a THOR call (the step still counts).

**Sub-goals** are checked in order after every step (+1 each; return = fraction done) by
:class:`~rayrg.envs.alfred_subgoals.SubgoalTracker` (ALFRED's rules on THOR metadata).

**Budget**: ``task.step_budget(step_budget_multiplier, step_budget_minimum)`` (2x the
expert's steps by default); the episode ends at success or at the budget
(``info["truncated"]``).

**Builds**: :mod:`rayrg.envs.thor_build` finds the Unity build (or raises
:class:`ThorUnavailableError` saying how to provide one) before any Controller is made.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rayrg.envs.alfred_subgoals import SUBGOAL_TYPES, SubgoalTracker, type_matches
from rayrg.envs.alfred_subgoals import wrap_degrees as _wrap_degrees
from rayrg.envs.base import EvalTask, InitMode, Observation, TaskEnv
from rayrg.envs.thor_build import (
    ThorUnavailableError,
    check_thor_build,
    how_to,
    probe_download,
    releases_dir,
    resolve_platform,
)
from rayrg.envs.thor_config import ACTION_NAMES, NAV_API, ThorConfig

# Callers import these from here too (this module was once all three).
__all__ = ["HEADINGS", "SUBGOAL_TYPES", "SubgoalTracker", "ThorEnv", "ThorUnavailableError", "check_thor_build",
           "choose_target", "make_thor_env", "probe_download", "releases_dir", "resolve_platform",
           "start_controller", "type_matches"]

log = logging.getLogger(__name__)

HEADINGS = (0.0, 90.0, 180.0, 270.0)
DEFAULT_HORIZON = 30.0  # ALFRED's init_action horizon


# -- the controller ---------------------------------------------------------------------------
def controller_kwargs(config: ThorConfig, build: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``ai2thor.controller.Controller`` (ALFRED's settings)."""
    kwargs: dict[str, Any] = {
        "width": config.width, "height": config.height,
        "gridSize": config.grid_size, "visibilityDistance": config.visibility_distance,
        "renderInstanceSegmentation": False, "renderDepthImage": False,
        "server_timeout": config.server_timeout_s,
        "server_start_timeout": config.server_start_timeout_s,
    }
    if config.quality:
        kwargs["quality"] = config.quality
    if config.gpu_device is not None:
        kwargs["gpu_device"] = config.gpu_device
    if config.x_display:
        kwargs["x_display"] = config.x_display
    if build["kind"] == "local_executable":
        kwargs["local_executable_path"] = build["path"]
    else:
        import ai2thor.platform

        kwargs["platform"] = ai2thor.platform.STR_PLATFORM_MAP[build["platform"]]
    return kwargs


def start_controller(config: ThorConfig, controller_cls: Callable[..., Any] | None = None) -> Any:
    """A started ai2thor Controller, or :class:`ThorUnavailableError` (checked first, then any
    failure of the Controller itself — a missing build, Unity crashing at start — wrapped)."""
    build = check_thor_build(config)
    if controller_cls is None:
        from ai2thor.controller import Controller as controller_cls
    try:
        controller = controller_cls(**controller_kwargs(config, build))
    except Exception as exc:
        commit = build.get("commit", "unknown")
        raise ThorUnavailableError(how_to(build["platform"], commit, build.get("url", "(see ai2thor.build)"), [
            f"the ai2thor Controller did not start ({build['kind']} build): {type(exc).__name__}: {exc}"])) from exc
    log.info("AI2-THOR started (%s build, platform %s)", build["kind"], build["platform"])
    return controller


# -- object targets ---------------------------------------------------------------------------
def _affords(obj: dict[str, Any], action: str, held_id: str | None) -> bool:
    if action == "PickupObject":
        return bool(obj.get("pickupable")) and not obj.get("isPickedUp")
    if action == "PutObject":
        return bool(obj.get("receptacle")) and held_id is not None and obj["objectId"] != held_id
    if action == "OpenObject":
        return bool(obj.get("openable")) and not obj.get("isOpen")
    if action == "CloseObject":
        return bool(obj.get("openable")) and bool(obj.get("isOpen"))
    if action == "ToggleObjectOn":
        return bool(obj.get("toggleable")) and not obj.get("isToggled")
    if action == "ToggleObjectOff":
        return bool(obj.get("toggleable")) and bool(obj.get("isToggled"))
    if action == "SliceObject":
        return bool(obj.get("sliceable")) and not obj.get("isSliced")
    raise ValueError(f"{action} is not an interaction action")


def view_offset(metadata: dict[str, Any], obj: dict[str, Any]) -> float:
    """Angular distance (degrees) of the object's centre from the centre of the view."""
    agent = metadata["agent"]
    camera = metadata.get("cameraPosition") or agent["position"]
    box = obj.get("axisAlignedBoundingBox") or {}
    centre = box.get("center") or obj["position"]
    dx, dy, dz = (centre["x"] - camera["x"], centre["y"] - camera["y"], centre["z"] - camera["z"])
    yaw = math.degrees(math.atan2(dx, dz))  # THOR: 0 deg faces +z, 90 deg faces +x
    pitch = math.degrees(math.atan2(-dy, math.hypot(dx, dz)))  # horizon > 0 looks down
    yaw_off = _wrap_degrees(yaw - float(agent["rotation"]["y"]))
    pitch_off = pitch - float(agent.get("cameraHorizon", 0.0))
    return math.hypot(yaw_off, pitch_off)


def held_object_id(metadata: dict[str, Any]) -> str | None:
    held = metadata.get("inventoryObjects") or []
    if held:
        return held[0]["objectId"]
    return next((o["objectId"] for o in metadata.get("objects", []) if o.get("isPickedUp")), None)


def choose_target(metadata: dict[str, Any], action: str) -> str | None:
    """The objectId an interaction acts on (see the module docstring), or None."""
    held = held_object_id(metadata)
    candidates = [o for o in metadata.get("objects", []) if o.get("visible") and _affords(o, action, held)]
    if not candidates:
        return None
    return min(candidates, key=lambda o: (view_offset(metadata, o), o["objectId"]))["objectId"]


# -- the environment --------------------------------------------------------------------------
def teleport_action(init: dict[str, Any], y: float | None = None) -> dict[str, Any]:
    """ALFRED's ``init_action`` (ai2thor 2.1 ``TeleportFull``) in ai2thor 5.x form."""
    rotation = init.get("rotation", 0.0)
    if not isinstance(rotation, dict):
        rotation = {"x": 0.0, "y": float(rotation), "z": 0.0}
    return {"action": "TeleportFull", "x": float(init["x"]), "y": float(init["y"] if y is None else y),
            "z": float(init["z"]), "rotation": rotation,
            "horizon": float(init.get("horizon", DEFAULT_HORIZON)), "standing": True, "forceAction": True}


def _frame(event: Any, config: ThorConfig) -> np.ndarray:
    frame = getattr(event, "frame", None)
    if frame is None:
        return np.zeros((config.height, config.width, 3), np.uint8)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _pose(metadata: dict[str, Any]) -> dict[str, float]:
    agent = metadata["agent"]
    return {"x": agent["position"]["x"], "y": agent["position"]["y"], "z": agent["position"]["z"],
            "rotation": agent["rotation"]["y"], "horizon": agent.get("cameraHorizon", 0.0)}


class ThorEnv(TaskEnv):
    """ALFRED tasks in AI2-THOR (see the module docstring). One controller per instance."""

    action_names = ACTION_NAMES

    def __init__(self, config: ThorConfig | None = None,
                 controller_factory: Callable[[ThorConfig], Any] | None = None) -> None:
        self.config = config or ThorConfig()
        self.controller = (controller_factory or start_controller)(self.config)
        self.task: EvalTask | None = None
        self.tracker: SubgoalTracker | None = None
        self.steps = 0
        self.budget = 0
        self.done = False

    def _step(self, action: dict[str, Any]) -> Any:
        action = dict(action)
        return self.controller.step(action=action.pop("action"), **action)

    # -- reset ------------------------------------------------------------------------------
    def _setup_scene(self, scene: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        cfg = self.config
        event = self.controller.reset(scene["floor_plan"], gridSize=cfg.grid_size,
                                      visibilityDistance=cfg.visibility_distance)
        report: dict[str, Any] = {"floor_plan": scene["floor_plan"], "failed": []}
        objects = event.metadata.get("objects", [])
        for toggle in scene.get("object_toggles") or []:
            want = bool(toggle.get("isOn"))
            for o in objects:
                if o["objectType"] == toggle.get("objectType") and o.get("toggleable") and bool(o.get("isToggled")) != want:
                    ev = self._step({"action": "ToggleObjectOn" if want else "ToggleObjectOff",
                                     "objectId": o["objectId"], "forceAction": True})
                    if not ev.metadata.get("lastActionSuccess"):
                        report["failed"].append(f"toggle {o['objectId']}: {ev.metadata.get('errorMessage')}")
        if scene.get("dirty_and_empty"):
            for change, force in (("CanBeDirty", True), ("CanBeFilled", False)):
                ev = self._step({"action": "SetStateOfAllObjects", "StateChange": change, "forceAction": force})
                if not ev.metadata.get("lastActionSuccess"):
                    report["failed"].append(f"SetStateOfAllObjects {change}: {ev.metadata.get('errorMessage')}")
        poses = scene.get("object_poses") or []
        names = {o.get("name") for o in self.controller.last_event.metadata.get("objects", [])}
        known = [p for p in poses if p.get("objectName") in names]
        report["object_poses"] = {"given": len(poses), "applied": len(known),
                                  "unknown_names": sorted(p.get("objectName") for p in poses if p not in known)[:20]}
        if known:  # an empty list would ask THOR to clear every movable object
            ev = self._step({"action": "SetObjectPoses", "objectPoses": known})
            if not ev.metadata.get("lastActionSuccess"):
                report["failed"].append(f"SetObjectPoses: {ev.metadata.get('errorMessage')}")
        init = scene.get("init_action")
        if init:
            ev = self._step(teleport_action(init))
            if not ev.metadata.get("lastActionSuccess"):
                # 2.1.0's agent height can differ from 5.x's: keep the scene's own y.
                y = self.controller.last_event.metadata["agent"]["position"]["y"]
                ev = self._step(teleport_action(init, y=y))
                if not ev.metadata.get("lastActionSuccess"):
                    report["failed"].append(f"init_action TeleportFull: {ev.metadata.get('errorMessage')}")
        if report["failed"] and cfg.strict_setup:
            raise RuntimeError(f"scene set-up of {scene['floor_plan']} did not apply: {report['failed']}")
        for problem in report["failed"]:
            log.warning("THOR set-up of %s: %s", scene["floor_plan"], problem)
        return self.controller.last_event, report

    def _randomize(self, rng: np.random.Generator, horizon: float) -> Any:
        event = self._step({"action": "GetReachablePositions"})
        positions = event.metadata.get("actionReturn") or []
        if not positions:
            raise RuntimeError("randomized start: GetReachablePositions returned no positions "
                               f"({event.metadata.get('errorMessage')})")
        start = self.controller.last_event.metadata["agent"]["position"]
        others = [p for p in positions
                  if math.hypot(p["x"] - start["x"], p["z"] - start["z"]) > self.config.grid_size / 2]
        positions = others or positions
        for _ in range(self.config.randomize_max_tries):
            p = positions[int(rng.integers(len(positions)))]
            heading = HEADINGS[int(rng.integers(len(HEADINGS)))]
            event = self._step({"action": "TeleportFull", "x": p["x"], "y": p["y"], "z": p["z"],
                                "rotation": {"x": 0.0, "y": heading, "z": 0.0}, "horizon": horizon,
                                "standing": True, "forceAction": True})
            if event.metadata.get("lastActionSuccess"):
                return event
        raise RuntimeError(f"randomized start: no teleport succeeded in {self.config.randomize_max_tries} tries")

    def reset(self, task: EvalTask, mode: InitMode = "fixed", rng_seed: int = 0) -> Observation:
        if mode not in ("fixed", "randomized"):
            raise ValueError(f"mode must be 'fixed' or 'randomized', got {mode!r}")
        try:
            scene, subgoals = task.extra["scene"], task.extra["subgoals"]
        except KeyError as exc:
            raise ValueError(f"task {task.task_id}: extra lacks {exc} (tasks come from rayrg.data.alfred)") from exc
        tracker = SubgoalTracker(subgoals, self.config.grid_size, self.config.goto_radius)
        event, setup = self._setup_scene(scene)
        if mode == "randomized":
            rng = np.random.default_rng([int(rng_seed), abs(int(task.seed))])
            horizon = float((scene.get("init_action") or {}).get("horizon", DEFAULT_HORIZON))
            event = self._randomize(rng, horizon)
        tracker.observe_initial(event.metadata)
        start = _pose(event.metadata)
        self.task, self.tracker = task, tracker
        self.steps, self.done = 0, False
        self.budget = task.step_budget(self.config.step_budget_multiplier, self.config.step_budget_minimum)
        return Observation(frame=_frame(event, self.config), instruction=task.instruction,
                           subtasks_completed=0, done=False,
                           info={"mode": mode, "setup": setup, "start": start,
                                 # the evaluation report's generic start fields (grid-like)
                                 "agent_pos": (start["x"], start["z"]),
                                 "agent_dir": round(start["rotation"] / 90.0) % 4,
                                 "step_budget": self.budget, "steps": 0, "return": 0.0})

    # -- step -------------------------------------------------------------------------------
    def step(self, action: int) -> Observation:
        if self.task is None or self.tracker is None:
            raise RuntimeError("ThorEnv.step before reset")
        if self.done:
            raise RuntimeError("ThorEnv.step after the episode ended; call reset")
        if not 0 <= int(action) < len(ACTION_NAMES):
            raise ValueError(f"action {action} outside 0..{len(ACTION_NAMES) - 1}")
        name = ACTION_NAMES[int(action)]
        target = None
        if name in NAV_API:
            event = self._step(NAV_API[name])
            success, error = bool(event.metadata.get("lastActionSuccess")), event.metadata.get("errorMessage", "")
        else:
            target = choose_target(self.controller.last_event.metadata, name)
            if target is None:
                event, success, error = self.controller.last_event, False, f"no visible object affords {name}"
            else:
                event = self._step({"action": name, "objectId": target})
                success, error = bool(event.metadata.get("lastActionSuccess")), event.metadata.get("errorMessage", "")
        self.steps += 1
        completed = self.tracker.update(event.metadata, name, target, success)
        truncated = self.steps >= self.budget and not self.tracker.all_done
        self.done = self.tracker.all_done or truncated
        return Observation(
            frame=_frame(event, self.config), instruction=self.task.instruction,
            subtasks_completed=completed, done=self.done,
            info={"action": name, "target": target, "action_success": success, "error": error or "",
                  "steps": self.steps, "step_budget": self.budget, "truncated": truncated,
                  "success": self.tracker.all_done, "return": completed / self.tracker.num_subtasks})

    def close(self) -> None:
        if self.controller is not None:
            try:
                self.controller.stop()
            finally:
                self.controller = None


def make_thor_env(config: ThorConfig | dict[str, Any] | None = None,
                  controller_factory: Callable[[ThorConfig], Any] | None = None) -> ThorEnv:
    """The factory evaluation actors call: a :class:`ThorEnv` with its controller started
    (or :class:`ThorUnavailableError` at once). ``controller_factory`` replaces ai2thor
    (tests pass a stand-in)."""
    if isinstance(config, dict):
        config = ThorConfig.from_dict(config, source="thor")
    return ThorEnv(config, controller_factory)
