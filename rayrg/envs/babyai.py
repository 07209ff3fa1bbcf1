"""BabyAI (minigrid) missions of 1 to 6 sub-tasks, the embedded default environment.

Built-in BabyAI levels stop at 4 sub-tasks (``SeqInstr`` refuses deeper nesting), so
:class:`SubtaskChainLevel` chains N action instructions (go to / pick up / open / put
next to — BabyAI's own classes) with :class:`ChainInstr`, a ``BeforeInstr`` that accepts a
nested chain as its second part. BabyAI's verifier and ``BabyAIBot`` both recurse into
``BeforeInstr``, so the mission is verified and solved by the unmodified library code.

The layout is 2×2 rooms of 6×6 with open connections and a few distractors: small enough
that an expert solves 6 sub-tasks in ~100 steps, large enough that navigation matters.
"""

from __future__ import annotations

import contextlib
import io
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

ACTION_NAMES: tuple[str, ...] = (
    "turn left",
    "turn right",
    "move forward",
    "pick up",
    "drop",
    "toggle",
)
# BabyAI's 7th action ("done") is never needed: missions end when the verifier succeeds.
NUM_ACTIONS = len(ACTION_NAMES)
MIN_SUBTASKS, MAX_SUBTASKS = 1, 6
ENV_NAME = "babyai-chain"
ALL_ACTION_KINDS: tuple[str, ...] = ("goto", "pickup", "open", "putnext")


@dataclass(frozen=True)
class BabyAIEnvConfig:
    """How missions are laid out and rendered (shared by generation and evaluation)."""

    room_size: int = 6
    num_rows: int = 2
    num_cols: int = 2
    num_distractors: int = 6
    tile_size: int = 8  # RGB partial view of 7x7 cells -> 56x56 px frames
    action_kinds: tuple[str, ...] = ALL_ACTION_KINDS


def _levelgen_classes() -> tuple[Any, Any]:
    from minigrid.envs.babyai.core.levelgen import LevelGen
    from minigrid.envs.babyai.core.verifier import BeforeInstr

    class ChainInstr(BeforeInstr):
        """``a, then b`` where ``b`` may itself be a chain (BabyAI's SeqInstr forbids it)."""

        def __init__(self, instr_a: Any, instr_b: Any) -> None:
            # Skip SeqInstr.__init__'s assertion that both parts are single actions.
            self.instr_a, self.instr_b, self.strict = instr_a, instr_b, False

    class SubtaskChainLevel(LevelGen):
        """A mission of exactly ``num_subtasks`` action instructions done in order."""

        def __init__(self, num_subtasks: int, env_config: BabyAIEnvConfig,
                     off_target_kinds: tuple[str, ...] = (), off_target_fraction: float = 0.0,
                     **kwargs: Any) -> None:
            if not MIN_SUBTASKS <= num_subtasks <= MAX_SUBTASKS:
                raise ValueError(f"num_subtasks must be in {MIN_SUBTASKS}..{MAX_SUBTASKS}")
            self.num_subtasks = num_subtasks
            self.off_target_kinds = tuple(off_target_kinds)
            self.off_target_fraction = float(off_target_fraction)
            super().__init__(
                room_size=env_config.room_size,
                num_rows=env_config.num_rows,
                num_cols=env_config.num_cols,
                num_dists=env_config.num_distractors,
                locked_room_prob=0.0,
                locations=False,
                unblocking=False,
                implicit_unlock=False,
                action_kinds=env_config.action_kinds,
                instr_kinds=("action",),
                **kwargs,
            )

        def gen_mission(self) -> None:
            super().gen_mission()  # rooms, doors, distractors, agent, one instruction
            if self.off_target_kinds:
                # Skill sessions (rayrg.data.generate, protocol=skills): each leaf's kind is
                # off-target with probability off_target_fraction, drawn from the level's RNG.
                leaves = [self.rand_instr(action_kinds=list(
                    self.off_target_kinds if self._rand_float(0, 1) < self.off_target_fraction
                    else self.action_kinds), instr_kinds=["action"]) for _ in range(self.num_subtasks)]
            else:
                leaves = [self.instrs] + [
                    self.rand_instr(action_kinds=self.action_kinds, instr_kinds=["action"])
                    for _ in range(self.num_subtasks - 1)
                ]
            chain = leaves[-1]
            for leaf in reversed(leaves[:-1]):
                chain = ChainInstr(leaf, chain)
            self.instrs = chain

    return ChainInstr, SubtaskChainLevel


def make_env(num_subtasks: int, env_config: BabyAIEnvConfig | None = None,
             max_steps: int | None = None, off_target_kinds: tuple[str, ...] = (),
             off_target_fraction: float = 0.0) -> Any:
    """A ``SubtaskChainLevel`` wrapped to render RGB partial-view frames (``obs["image"]``).

    ``off_target_kinds`` (skill sessions only): each sub-task's kind is drawn from them with
    probability ``off_target_fraction``, else from ``env_config.action_kinds``."""
    from minigrid.wrappers import RGBImgPartialObsWrapper

    env_config = env_config or BabyAIEnvConfig()
    _, level_cls = _levelgen_classes()
    env = level_cls(num_subtasks, env_config, off_target_kinds=off_target_kinds,
                    off_target_fraction=off_target_fraction, max_steps=max_steps)
    return RGBImgPartialObsWrapper(env, tile_size=env_config.tile_size)

_KIND_OF_CLASS = {"GoToInstr": "goto", "PickupInstr": "pickup", "OpenInstr": "open", "PutNextInstr": "putnext"}


def chain_leaves(env: Any) -> list[Any]:
    """The mission's sub-task instructions in order (the leaves of its ``ChainInstr``)."""
    from minigrid.envs.babyai.core.verifier import BeforeInstr

    instr, leaves = env.unwrapped.instrs, []
    while isinstance(instr, BeforeInstr):
        leaves.append(instr.instr_a)
        instr = instr.instr_b
    return [*leaves, instr]


def instruction_kind(instr: Any) -> str:
    """goto / pickup / open / putnext: the BabyAI action kind of one sub-task instruction."""
    return _KIND_OF_CLASS[type(instr).__name__]


def make_goto_bot(env: Any, obj: Any) -> Any:
    """A ``BabyAIBot`` heading for ``obj`` ("go to the <colour> <type>"), on the same env: an
    abandoned attempt's decoy. The env's own mission and verifier are left as they were."""
    from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc
    from minigrid.utils.baby_ai_bot import BabyAIBot

    base = env.unwrapped
    decoy = GoToInstr(ObjDesc(obj.type, obj.color))
    decoy.reset_verifier(base)
    saved = base.instrs
    base.instrs = decoy  # the bot parses its plan from env.instrs, once, in __init__
    try:
        return BabyAIBot(base)
    finally:
        base.instrs = saved


def grid_objects(env: Any) -> list[Any]:
    """The objects on the grid (balls, boxes, keys, doors), in grid order."""
    return [obj for obj in env.unwrapped.grid.grid if obj is not None and obj.type in ("ball", "box", "key", "door")]


def reset_env(env: Any, seed: int) -> tuple[np.ndarray, str]:
    """Deterministic reset; returns (first frame, instruction). Silences level-gen prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        obs, _ = env.reset(seed=int(seed))
    return obs["image"], env.unwrapped.mission


STATE_SHAPE = (7, 7, 3)  # BabyAI's egocentric view: (object, colour, state) index per cell


def symbolic_state(env: Any) -> np.ndarray:
    """BabyAI's symbolic egocentric grid of the current state (what ``gen_obs`` shows an agent)."""
    return np.ascontiguousarray(env.unwrapped.gen_obs()["image"], dtype=np.uint8)


def completed_subtasks(env: Any) -> int:
    """Sub-tasks completed so far, read from the mission verifier's state (monotone)."""
    from minigrid.envs.babyai.core.verifier import BeforeInstr

    instr = env.unwrapped.instrs
    count = 0
    while isinstance(instr, BeforeInstr):
        if instr.a_done != "success":
            return count
        count += 1
        if not isinstance(instr.instr_b, BeforeInstr):
            return count + int(instr.b_done == "success")
        instr = instr.instr_b
    # A single-instruction mission keeps no state: success is the episode's end.
    return int(getattr(env.unwrapped, "_rayrg_success", False))


def step_env(env: Any, action: int) -> tuple[np.ndarray, int, bool, bool]:
    """Step; returns (frame, sub-tasks completed, terminal, truncated)."""
    obs, reward, terminated, truncated, _ = env.step(int(action))
    if terminated and reward > 0:
        env.unwrapped._rayrg_success = True
    return obs["image"], completed_subtasks(env), bool(terminated), bool(truncated)


def mission_succeeded(env: Any) -> bool:
    return bool(getattr(env.unwrapped, "_rayrg_success", False))


def reachable_cells(env: Any) -> list[tuple[int, int]]:
    """Empty cells reachable from the agent through open floor and unlocked doors."""
    base = env.unwrapped
    grid = base.grid
    start = tuple(int(v) for v in base.agent_pos)
    seen = {start}
    queue = deque([start])
    cells = []
    while queue:
        x, y = queue.popleft()
        cell = grid.get(x, y)
        if cell is None:
            cells.append((x, y))
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if (nx, ny) in seen or not (0 <= nx < grid.width and 0 <= ny < grid.height):
                continue
            nxt = grid.get(nx, ny)
            passable = nxt is None or (nxt.type == "door" and not nxt.is_locked)
            if passable:
                seen.add((nx, ny))
                queue.append((nx, ny))
    return cells


def randomize_agent(env: Any, rng: np.random.Generator) -> np.ndarray:
    """Move the agent to a random reachable empty cell and heading; the mission (and its
    verifier, bound at reset) stays the same. Returns the new frame."""
    base = env.unwrapped
    current = tuple(int(v) for v in base.agent_pos)
    cells = [c for c in reachable_cells(env) if c != current] or [current]
    x, y = cells[int(rng.integers(len(cells)))]
    base.agent_pos = np.array((x, y))
    base.agent_dir = int(rng.integers(4))
    return env.observation(base.gen_obs())["image"]


def make_bot(env: Any) -> Any:
    from minigrid.utils.baby_ai_bot import BabyAIBot

    return BabyAIBot(env.unwrapped)


def expert_steps(num_subtasks: int, seed: int, env_config: BabyAIEnvConfig | None = None,
                 max_steps: int = 1000) -> int | None:
    """Length of the noise-free expert solution from the seed's start (None if it fails)."""
    env = make_env(num_subtasks, env_config)
    reset_env(env, seed)
    bot = make_bot(env)
    action = None
    for t in range(max_steps):
        try:
            action = bot.replan(action)
        except Exception:
            return None
        if action >= NUM_ACTIONS:
            return None
        _, _, terminal, truncated = step_env(env, action)
        if terminal:
            return t + 1 if mission_succeeded(env) else None
        if truncated:
            return None
    return None
