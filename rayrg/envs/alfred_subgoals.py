"""ALFRED's sub-goal rules on ai2thor 5.x metadata (pure: no ai2thor import).

**Sub-goals** are checked in order after every step (+1 each; return = fraction done),
mirroring ALFRED's checks on ai2thor 5.x metadata: ``GotoLocation`` — an object of the
destination's type is visible, or the agent is within ``goto_radius`` of the expert's
goal pose and 90° of its heading; ``PickupObject`` — an object of the type is held;
``PutObject`` — one lies (not held) in a receptacle of the type; ``Heat/Cool/CleanObject``
— the object was heated (microwave switched on with it inside, or THOR says Hot/cooked),
cooled (fridge closed with it inside, or Cold), cleaned (faucet switched on with it in
the sink, or it stopped being dirty), and it is held again; ``SliceObject`` — it is
sliced; ``ToggleObject`` — one of the type is on. Types match case-insensitively, and a
sliced piece (``AppleSliced``) counts as its whole (``apple``).
"""

from __future__ import annotations

import math
from typing import Any

from rayrg.envs.thor_config import object_type


def wrap_degrees(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def type_matches(obj_type: str, arg: str) -> bool:
    t, a = obj_type.lower(), arg.lower()
    return t == a or t == f"{a}sliced"


SUBGOAL_TYPES = ("GotoLocation", "PickupObject", "PutObject", "HeatObject", "CoolObject",
                 "CleanObject", "SliceObject", "ToggleObject")


class SubgoalTracker:
    """ALFRED sub-goals completed so far, checked in order on THOR metadata (never decreases)."""

    def __init__(self, subgoals: list[dict[str, Any]], grid_size: float = 0.25, goto_radius: float = 1.0) -> None:
        unknown = [s["action"] for s in subgoals if s["action"] not in SUBGOAL_TYPES]
        if unknown:
            raise ValueError(f"unknown ALFRED sub-goal type(s) {unknown}; known: {SUBGOAL_TYPES}")
        self.subgoals = subgoals
        self.grid_size = grid_size
        self.goto_radius = goto_radius
        self.completed = 0
        self.heated: set[str] = set()
        self.cooled: set[str] = set()
        self.cleaned: set[str] = set()
        self._dirty: set[str] = set()

    @property
    def num_subtasks(self) -> int:
        return len(self.subgoals)

    @property
    def all_done(self) -> bool:
        return self.completed >= self.num_subtasks

    def observe_initial(self, metadata: dict[str, Any]) -> None:
        """Remember the start's state (dirty objects), without scoring anything."""
        self._dirty = {o["objectId"] for o in metadata.get("objects", []) if o.get("isDirty")}

    def update(self, metadata: dict[str, Any], action: str | None = None,
               target: str | None = None, success: bool = False) -> int:
        self._latch(metadata, action, target, success)
        while not self.all_done and self._done(self.completed, metadata):
            self.completed += 1
        return self.completed

    def _latch(self, metadata: dict[str, Any], action: str | None, target: str | None, success: bool) -> None:
        objects = metadata.get("objects", [])
        for o in objects:
            if o.get("temperature") == "Hot" or o.get("isCooked"):
                self.heated.add(o["objectId"])
            if o.get("temperature") == "Cold":
                self.cooled.add(o["objectId"])
            if o["objectId"] in self._dirty and not o.get("isDirty"):
                self.cleaned.add(o["objectId"])
        self._dirty = {o["objectId"] for o in objects if o.get("isDirty")}
        if not (success and target):
            return
        # ALFRED's env: heat = microwave switched on, cool = fridge closed, clean = faucet on,
        # applied to the objects inside / in the sink at that moment.
        kind = object_type(target)
        if action == "ToggleObjectOn" and kind == "Microwave":
            self.heated |= self._inside(objects, ("Microwave",))
        elif action == "CloseObject" and kind == "Fridge":
            self.cooled |= self._inside(objects, ("Fridge",))
        elif action == "ToggleObjectOn" and kind == "Faucet":
            self.cleaned |= self._inside(objects, ("SinkBasin", "Sink", "BathtubBasin"))

    @staticmethod
    def _inside(objects: list[dict[str, Any]], kinds: tuple[str, ...]) -> set[str]:
        return {o["objectId"] for o in objects
                if any(object_type(p) in kinds for p in o.get("parentReceptacles") or [])}

    def _done(self, index: int, metadata: dict[str, Any]) -> bool:
        goal = self.subgoals[index]
        kind, args = goal["action"], [str(a) for a in goal.get("args", [])]
        objects = metadata.get("objects", [])

        def of(arg: str) -> list[dict[str, Any]]:
            return [o for o in objects if type_matches(o["objectType"], arg)]

        if kind == "GotoLocation":
            return self._near_goal(goal, metadata) or any(o.get("visible") for a in args[:1] for o in of(a))
        if kind == "PickupObject":
            return any(o.get("isPickedUp") for o in of(args[0]))
        if kind == "PutObject":
            return any(not o.get("isPickedUp") and any(
                type_matches(object_type(p), args[1]) for p in o.get("parentReceptacles") or [])
                for o in of(args[0]))
        if kind in ("HeatObject", "CoolObject", "CleanObject"):
            done = {"HeatObject": self.heated, "CoolObject": self.cooled, "CleanObject": self.cleaned}[kind]
            return any(o["objectId"] in done and o.get("isPickedUp") for o in of(args[0]))
        if kind == "SliceObject":
            return any(o.get("isSliced") for o in of(args[0])) or any(
                o["objectType"].lower() == f"{args[0].lower()}sliced" for o in objects)
        if kind == "ToggleObject":
            return any(o.get("isToggled") for o in of(args[0]))
        return False

    def _near_goal(self, goal: dict[str, Any], metadata: dict[str, Any]) -> bool:
        location = (goal.get("planner_action") or {}).get("location")
        if not location:
            return False
        try:  # "loc|x|z|rotation|horizon": x, z in grid steps, rotation in quarter turns
            _, x, z, rot, _ = location.split("|")
            gx, gz, heading = int(x) * self.grid_size, int(z) * self.grid_size, int(rot) * 90.0
        except ValueError:
            return False
        agent = metadata["agent"]
        dist = math.hypot(agent["position"]["x"] - gx, agent["position"]["z"] - gz)
        return dist <= self.goto_radius and abs(wrap_degrees(agent["rotation"]["y"] - heading)) <= 90.0

