"""ALFRED's discrete action vocabulary and the THOR adapter's config (no ai2thor import).

Shared by the ALFRED reader (``rayrg.data.alfred``: dataset action ids) and the THOR
environment (``rayrg.envs.thor``: the same ids at evaluation), so a policy trained on
imported ALFRED data acts in the adapter with the same action indices.

Action vocabulary (ALFRED's 12 low-level actions; ALFRED's ``<<stop>>`` token is not an
action here: an episode ends when every sub-goal is done or the step budget runs out)::

    id  name              ai2thor 5.x call
    0   MoveAhead_25      MoveAhead(moveMagnitude=0.25)
    1   RotateLeft_90     RotateLeft(degrees=90)
    2   RotateRight_90    RotateRight(degrees=90)
    3   LookDown_15       LookDown(degrees=15)
    4   LookUp_15         LookUp(degrees=15)
    5   PickupObject      PickupObject(objectId=<target>)
    6   PutObject         PutObject(objectId=<target receptacle>)   (the held object is implicit)
    7   OpenObject        OpenObject(objectId=<target>)
    8   CloseObject       CloseObject(objectId=<target>)
    9   ToggleObjectOn    ToggleObjectOn(objectId=<target>)
    10  ToggleObjectOff   ToggleObjectOff(objectId=<target>)
    11  SliceObject       SliceObject(objectId=<target>)

In the dataset, ``action_name`` of an interaction also names the target's object type
(``PickupObject(AlarmClock)``) so window prompts show what was acted on; ``action`` is the
id above.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from rayrg.config import StageConfig

ENV_NAME = "alfred-thor"  # its name in rayrg.envs.registry

NAV_ACTIONS: tuple[str, ...] = (
    "MoveAhead_25", "RotateLeft_90", "RotateRight_90", "LookDown_15", "LookUp_15",
)
INTERACT_ACTIONS: tuple[str, ...] = (
    "PickupObject", "PutObject", "OpenObject", "CloseObject",
    "ToggleObjectOn", "ToggleObjectOff", "SliceObject",
)
ACTION_NAMES: tuple[str, ...] = NAV_ACTIONS + INTERACT_ACTIONS
ACTION_IDS: dict[str, int] = {name: i for i, name in enumerate(ACTION_NAMES)}

# ai2thor action and arguments for each navigation action (ALFRED's step sizes).
NAV_API: dict[str, dict[str, float | str]] = {
    "MoveAhead_25": {"action": "MoveAhead", "moveMagnitude": 0.25},
    "RotateLeft_90": {"action": "RotateLeft", "degrees": 90},
    "RotateRight_90": {"action": "RotateRight", "degrees": 90},
    "LookDown_15": {"action": "LookDown", "degrees": 15},
    "LookUp_15": {"action": "LookUp", "degrees": 15},
}
# ALFRED files carry the discrete name ("MoveAhead_25"); some tools write the API name.
ACTION_ALIASES: dict[str, str] = {
    "MoveAhead": "MoveAhead_25", "RotateLeft": "RotateLeft_90", "RotateRight": "RotateRight_90",
    "LookDown": "LookDown_15", "LookUp": "LookUp_15",
}

# Environment variable read when ``local_executable_path`` is not set in the config.
EXECUTABLE_ENV = "RAYRG_THOR_EXECUTABLE"


def action_id(name: str) -> int:
    """Vocabulary id of an ALFRED action name (discrete or API spelling); KeyError if unknown."""
    return ACTION_IDS[ACTION_ALIASES.get(name, name)]


def object_type(object_id: str) -> str:
    """``"Apple|-01.2|+00.9|+01.0"`` -> ``Apple``; slices (``...|AppleSliced_1``) -> ``AppleSliced``."""
    parts = object_id.split("|")
    if len(parts) > 4:
        return parts[-1].split("_")[0]
    return parts[0]


class ThorConfig(StageConfig):
    """How the THOR adapter starts AI2-THOR and scores an ALFRED task."""

    platform: Literal["auto", "CloudRendering", "Linux64"] = Field(
        "auto", description="CloudRendering = headless Vulkan; Linux64 = an X display. "
        "auto: Linux64 when an X display is set (x_display or $DISPLAY), else CloudRendering.")
    x_display: str | None = Field(None, description="X display for Linux64, e.g. ':0'.")
    local_executable_path: str | None = Field(
        default_factory=lambda: os.environ.get(EXECUTABLE_ENV) or None,
        description=f"A pre-placed Unity executable (default: ${EXECUTABLE_ENV}). ai2thor "
        "runs such a build with the X-display platform.")
    allow_download: bool = Field(
        True, description="Let ai2thor download its build (~800 MB) when none is pre-placed; "
        "the bucket is probed first with a short timeout so an offline machine fails at once.")
    download_probe_timeout_s: float = Field(5.0, gt=0)
    server_start_timeout_s: float = Field(120.0, gt=0, description="Unity start-up limit.")
    server_timeout_s: float = Field(60.0, gt=0, description="Limit for one controller step.")
    gpu_device: int | None = Field(None, ge=0, description="GPU index for CloudRendering.")
    width: int = Field(300, ge=64, description="Frame width (ALFRED frames are 300x300).")
    height: int = Field(300, ge=64)
    quality: str | None = Field(None, description="ai2thor quality name (None: its default).")
    grid_size: float = Field(0.25, gt=0, description="ALFRED's navigation grid (metres).")
    visibility_distance: float = Field(1.5, gt=0, description="ALFRED's interaction range (m).")
    step_budget_multiplier: float = Field(2.0, gt=0, description="Budget = this x expert steps.")
    step_budget_minimum: int = Field(16, ge=1)
    goto_radius: float = Field(
        1.0, gt=0, description="GotoLocation is done within this planar distance (m) of the "
        "expert's goal pose and 90 degrees of its heading, or when the next sub-goal's object "
        "is visible.")
    randomize_max_tries: int = Field(20, ge=1, description="Teleport attempts in randomized mode.")
    strict_setup: bool = Field(
        False, description="Raise when the scene set-up (object poses/toggles) does not apply "
        "cleanly; otherwise report it in Observation.info['setup'].")
