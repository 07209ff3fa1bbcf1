"""A stand-in for ``ai2thor.controller.Controller`` that speaks ai2thor 5.x's event format.

Events have ``.metadata`` (``agent`` position/rotation/cameraHorizon, ``cameraPosition``,
``objects`` with objectId/objectType/name/visible/pickupable/isPickedUp/receptacle/
openable/isOpen/toggleable/isToggled/sliceable/isSliced/parentReceptacles/position,
``inventoryObjects``, ``lastAction``, ``lastActionSuccess``, ``errorMessage``,
``actionReturn``) and ``.frame`` (HxWx3 uint8 that changes with the pose). Physics is a
grid: MoveAhead moves 0.25 m if the target is reachable, visibility = within 1.5 m and
60 degrees of the heading.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

AGENT_Y = 0.9


def obj(kind: str, x: float, z: float, y: float = 0.9, **flags: Any) -> dict[str, Any]:
    return {"objectId": f"{kind}|{x:+.2f}|{y:+.2f}|{z:+.2f}", "objectType": kind, "name": f"{kind}_1",
            "position": {"x": x, "y": y, "z": z}, "visible": False, "isPickedUp": False,
            "parentReceptacles": [], **flags}


def kitchen() -> list[dict[str, Any]]:
    """Agent starts at (0, 0) facing +z: apple and counter ahead, microwave right, fridge left."""
    return [
        obj("Apple", 0.0, 1.0, pickupable=True, sliceable=True, isSliced=False),
        obj("Tomato", 0.7, 1.0, pickupable=True),
        obj("CounterTop", 0.0, 1.25, y=0.8, receptacle=True),
        obj("Microwave", 1.0, 0.0, receptacle=True, openable=True, isOpen=False, toggleable=True, isToggled=False),
        obj("Fridge", -1.0, 0.0, receptacle=True, openable=True, isOpen=False),
        obj("DeskLamp", 0.0, -1.0, toggleable=True, isToggled=False),
    ]


class FakeEvent:
    def __init__(self, metadata: dict[str, Any], frame: np.ndarray) -> None:
        self.metadata = metadata
        self.frame = frame


class FakeController:
    def __init__(self, objects: list[dict[str, Any]] | None = None, width: int = 32) -> None:
        self.template = objects if objects is not None else kitchen()
        self.width = width
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reachable = [{"x": x * 0.25, "y": AGENT_Y, "z": z * 0.25} for x in range(-2, 3) for z in range(-2, 3)]
        self.stopped = False
        self.last_event: FakeEvent | None = None

    # -- ai2thor API ------------------------------------------------------------------------
    def reset(self, scene: str, **init: Any) -> FakeEvent:
        self.calls.append(("reset", {"scene": scene, **init}))
        self.objects = copy.deepcopy(self.template)
        self.pos = {"x": 0.0, "y": AGENT_Y, "z": 0.0}
        self.yaw, self.horizon = 0.0, 0.0
        return self._event("Initialize", True)

    def stop(self) -> None:
        self.stopped = True

    def step(self, action: str | None = None, **kw: Any) -> FakeEvent:
        self.calls.append((action, kw))
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            return self._event(action, False, f"unknown action {action}")
        result = handler(**kw)
        ok, error, ret = (*result, None)[:3] if isinstance(result, tuple) else (result, "", None)
        return self._event(action, ok, error, ret)

    # -- actions ----------------------------------------------------------------------------
    def _reachable(self, x: float, z: float) -> bool:
        return any(abs(p["x"] - x) < 1e-6 and abs(p["z"] - z) < 1e-6 for p in self.reachable)

    def _do_MoveAhead(self, moveMagnitude: float = 0.25) -> tuple:
        x = round(self.pos["x"] + moveMagnitude * math.sin(math.radians(self.yaw)), 4)
        z = round(self.pos["z"] + moveMagnitude * math.cos(math.radians(self.yaw)), 4)
        if not self._reachable(x, z):
            return False, "blocked"
        self.pos.update(x=x, z=z)
        return True, ""

    def _do_RotateLeft(self, degrees: float = 90) -> bool:
        self.yaw = (self.yaw - degrees) % 360
        return True

    def _do_RotateRight(self, degrees: float = 90) -> bool:
        self.yaw = (self.yaw + degrees) % 360
        return True

    def _do_LookDown(self, degrees: float = 30) -> bool:
        self.horizon += degrees
        return True

    def _do_LookUp(self, degrees: float = 30) -> bool:
        self.horizon -= degrees
        return True

    def _do_GetReachablePositions(self) -> tuple:
        return True, "", copy.deepcopy(self.reachable)

    def _do_TeleportFull(self, x: float, y: float, z: float, rotation: dict, horizon: float,
                         standing: bool = True, forceAction: bool = False) -> tuple:
        if abs(y - AGENT_Y) > 1e-6:
            return False, f"y={y} is not on the floor"
        if not self._reachable(x, z):
            return False, "not reachable"
        self.pos = {"x": x, "y": y, "z": z}
        self.yaw, self.horizon = float(rotation["y"]) % 360, float(horizon)
        return True, ""

    def _do_SetObjectPoses(self, objectPoses: list[dict]) -> bool:
        by_name = {o["name"]: o for o in self.objects}
        for pose in objectPoses:
            by_name[pose["objectName"]]["position"] = dict(pose["position"])
        return True

    def _find(self, objectId: str) -> dict[str, Any] | None:
        return next((o for o in self.objects if o["objectId"] == objectId), None)

    def _held(self) -> dict[str, Any] | None:
        return next((o for o in self.objects if o["isPickedUp"]), None)

    def _interact(self, objectId: str, flag: str, need: str) -> tuple:
        o = self._find(objectId)
        if o is None or not o["visible"] or not o.get(need):
            return False, f"cannot act on {objectId}"
        o[flag] = not o[flag]
        return True, ""

    def _do_PickupObject(self, objectId: str, forceAction: bool = False) -> tuple:
        o = self._find(objectId)
        if o is None or not o["visible"] or not o.get("pickupable") or self._held():
            return False, "cannot pick up"
        o["isPickedUp"], o["parentReceptacles"] = True, []
        return True, ""

    def _do_PutObject(self, objectId: str, forceAction: bool = False) -> tuple:
        held, recep = self._held(), self._find(objectId)
        if held is None or recep is None or not recep.get("receptacle") or not recep["visible"]:
            return False, "cannot put"
        if recep.get("openable") and not recep["isOpen"]:
            return False, "receptacle closed"
        held["isPickedUp"], held["parentReceptacles"] = False, [objectId]
        held["position"] = dict(recep["position"])
        return True, ""

    def _do_OpenObject(self, objectId: str, forceAction: bool = False) -> tuple:
        return self._interact(objectId, "isOpen", "openable")

    def _do_CloseObject(self, objectId: str, forceAction: bool = False) -> tuple:
        return self._interact(objectId, "isOpen", "openable")

    def _do_ToggleObjectOn(self, objectId: str, forceAction: bool = False) -> tuple:
        return self._interact(objectId, "isToggled", "toggleable")

    def _do_ToggleObjectOff(self, objectId: str, forceAction: bool = False) -> tuple:
        return self._interact(objectId, "isToggled", "toggleable")

    def _do_SliceObject(self, objectId: str, forceAction: bool = False) -> tuple:
        return self._interact(objectId, "isSliced", "sliceable")

    # -- events -----------------------------------------------------------------------------
    def _event(self, action: str, ok: bool, error: str = "", ret: Any = None) -> FakeEvent:
        held = self._held()
        for o in self.objects:
            if o["isPickedUp"]:
                o["visible"] = True
                continue
            dx, dz = o["position"]["x"] - self.pos["x"], o["position"]["z"] - self.pos["z"]
            yaw = math.degrees(math.atan2(dx, dz))
            off = (yaw - self.yaw + 180) % 360 - 180
            o["visible"] = math.hypot(dx, dz) <= 1.5 and abs(off) <= 60
        metadata = {
            "agent": {"position": dict(self.pos), "rotation": {"x": 0.0, "y": self.yaw, "z": 0.0},
                      "cameraHorizon": self.horizon},
            "cameraPosition": dict(self.pos),
            "objects": copy.deepcopy(self.objects),
            "inventoryObjects": [{"objectId": held["objectId"], "objectType": held["objectType"]}] if held else [],
            "lastAction": action, "lastActionSuccess": ok, "errorMessage": error, "actionReturn": ret,
            "sceneName": "FloorPlan1", "screenWidth": self.width, "screenHeight": self.width,
        }
        shade = int(self.pos["x"] * 40 + self.pos["z"] * 80 + self.yaw / 3 + self.horizon) % 256
        frame = np.full((self.width, self.width, 3), shade, np.uint8)
        self.last_event = FakeEvent(metadata, frame)
        return self.last_event
