"""Offline BabyAI datasets: the ``BabyAIBot`` expert with ε-random actions, on Ray tasks.

Each episode is fully determined by its seed (mission, layout and the ε-noise draws), so a
dataset is reproducible from its config and episodes can be generated in any order, on any
worker. Episodes are grouped into chunks; each Ray task writes one Parquet shard and
returns its counts, and a shard that already exists is not generated again (an
interrupted generation resumes).

Outputs under ``out``::

    trajectories/        trajectory dataset (rayrg.data.schema)
    eval_tasks.json      held-out TEST tasks (rayrg.contracts.tasks; what the report measures)
    val_tasks.json       held-out VALIDATION tasks (what tuning and any selection read)

    generate_config.yaml this config

Training, test and validation seeds are disjoint by construction (``train_seed``,
``eval_seed``, ``val_seed``), and the two task sets are checked disjoint by content
(environment, mission, seed) before they are written.

**Protocols** (``protocol``). ``missions`` (the default): each training episode is a whole
chained mission of the lengths evaluation tests, played by the ε-noisy expert.

``skills`` (the RG-VLM paper's): training data are language-annotated *single-skill*
trajectories. A *session* is a chained mission of n sub-tasks (n in ``subtask_counts``,
``episodes_per_count`` sessions each) played by the expert with suboptimality, and cut at
every sub-task completion: each piece is one skill episode whose instruction is that
sub-task's instruction alone (``num_subtasks`` 1), ending on the step that completes it
(so it completes its instruction, not necessarily optimally). Knobs:

* ``noise`` (ε): each action is uniformly random with probability ε;
* ``abandon_prob`` / ``abandon_max_steps``: at the start of a skill, with probability
  ``abandon_prob``, the agent first heads for a random other object (BabyAI's bot on "go to
  <it>") for 1..``abandon_max_steps`` steps, then abandons it and does its skill (the
  expert's action is still recorded, so ``good(t)`` is 0 on the abandoned steps);
* ``detour_prob`` / ``detour_max_steps``: a detour mid-skill: at each of the agent's own
  steps, with probability ``detour_prob``, it heads for a random object for
  1..``detour_max_steps`` steps, then resumes its skill (the bot replans from where the
  detour left it; ``good(t)`` is 0 on the detour's steps that leave the expert's plan);
* ``off_target_fraction`` / ``off_target_kinds``: each sub-task is of an off-target kind
  (default ``putnext``) with this probability. Evaluation tasks are chains of the other
  kinds only, so off-target skills are tasks outside the evaluation targets.

A skill that does not finish (bot failure, step limit) is dropped, and so is the rest of
its session; when one step completes two sub-tasks at once (the second skill would have no
transitions) the session ends at the first.

**How a skill-trained policy meets a chain.** The policy is conditioned on the chained
mission's *full instruction* ("a, then b, then c"), as evaluation gives it. For that,
``chains_per_session`` chains per session (the whole session first, then distinct random
runs of ≥ 2 consecutive skills) are added as episodes by relabelling (SPRINT, Zhang et al.
2023): the consecutive skill episodes' transitions, unchanged (same frames, actions,
expert actions), under the instruction ``", then ".join(their instructions)`` — exactly
the surface BabyAI gives that chain — with ``subtasks_completed`` counted over the chain.
Evaluation is unchanged: held-out test chains of ``subtask_counts`` sub-tasks (validation
chains for selection), of the target kinds. Feeding sub-instructions one at a time is a
separate evaluation mode (``evaluation.instruction: one_at_a_time``; rayrg.evaluation), which
every report labels as such.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from rayrg.config import StageConfig
from rayrg.contracts.tasks import TASKS_FILE, VAL_TASKS_FILE, write_task_sets
from rayrg.data.schema import DatasetMetadata, encode_png, write_shard
from rayrg.envs.babyai import (
    ACTION_NAMES,
    ALL_ACTION_KINDS,
    ENV_NAME,
    MAX_SUBTASKS,
    MIN_SUBTASKS,
    NUM_ACTIONS,
    BabyAIEnvConfig,
    chain_leaves,
    expert_steps,
    grid_objects,
    instruction_kind,
    make_bot,
    make_env,
    make_goto_bot,
    mission_succeeded,
    reset_env,
    step_env,
    symbolic_state,
)
from rayrg.envs.base import EvalTask
from rayrg.provenance import OnChange, claim
from rayrg.storage import (
    Location,
    assert_shared,
    claim_shared,
    native,
    prepare_output,
    release_shared,
)

log = logging.getLogger(__name__)

# Seeds: train episode i of an n-sub-task mission uses seed_base + n * SEED_STRIDE + i, test
# tasks seed_base + n * SEED_STRIDE + EVAL_OFFSET + i, validation tasks ... + VAL_OFFSET + i:
# disjoint by construction (the field bounds below keep the ranges from overlapping).
SEED_STRIDE = 1_000_000
GENERATOR = "rayrg.data.generate:babyai-bot"
EVAL_OFFSET = 500_000
VAL_OFFSET = 750_000
# Fields that only the skills protocol reads: left out of a missions dataset's fingerprint,
# so datasets generated before the protocol existed keep theirs.
SKILL_FIELDS = ("off_target_fraction", "off_target_kinds", "abandon_prob", "abandon_max_steps",
                "chains_per_session", "detour_prob", "detour_max_steps")
# Added after the skills protocol: left out of its fingerprint while detours are off, so skills
# datasets generated before them keep theirs (with detour_prob 0 no random number is drawn for
# them: the data are the same).
DETOUR_FIELDS = ("detour_prob", "detour_max_steps")


class GenerateConfig(StageConfig):
    """``rayrg generate``: a BabyAI offline dataset and its held-out evaluation tasks."""

    seed: int = Field(0, ge=0, description="Base seed; every episode's seed derives from it.")
    subtask_counts: list[int] = Field(
        default_factory=lambda: list(range(MIN_SUBTASKS, MAX_SUBTASKS + 1)),
        description="Mission lengths (sub-tasks) to generate, each in 1..6.",
    )
    episodes_per_count: int = Field(20, ge=1, lt=EVAL_OFFSET, description="Training episodes per mission length.")
    eval_tasks_per_count: int = Field(10, ge=0, lt=VAL_OFFSET - EVAL_OFFSET,
                                      description="Held-out TEST tasks per mission length (the report's).")
    val_tasks_per_count: int = Field(
        8, ge=0, lt=SEED_STRIDE - VAL_OFFSET,
        description="Held-out VALIDATION tasks per mission length (what `rayrg tune` ranks trials on); "
                    "disjoint from the test tasks.")
    noise: float = Field(0.15, ge=0.0, le=1.0, description="ε: probability of a uniformly random action.")
    max_steps: int = Field(400, ge=1, description="Step limit per episode (truncation).")
    episodes_per_shard: int = Field(16, ge=1, description="Episodes per Ray task / Parquet shard.")
    protocol: Literal["missions", "skills"] = Field(
        "missions", description="missions: whole chained missions; skills: single-skill episodes plus "
                                "relabelled chains of consecutive skills (module docstring).")
    off_target_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="skills: probability that a sub-task is of an off-target kind.")
    off_target_kinds: list[str] = Field(
        default_factory=lambda: ["putnext"],
        description="skills: sub-task kinds that evaluation never asks for (its chains use the others).")
    abandon_prob: float = Field(0.0, ge=0.0, le=1.0,
                                description="skills: probability that a skill starts with an abandoned attempt.")
    abandon_max_steps: int = Field(8, ge=1, description="skills: longest abandoned attempt (steps).")
    chains_per_session: int = Field(
        1, ge=0, description="skills: chains relabelled per session (whole session first; 0: skills only).")
    detour_prob: float = Field(0.0, ge=0.0, le=1.0, description="skills: per own step, probability of a detour "
                               "mid-skill (heading for a random object, then resuming).")
    detour_max_steps: int = Field(4, ge=1, description="skills: longest detour (steps).")
    room_size: int = 6
    num_rows: int = 2
    num_cols: int = 2
    num_distractors: int = 6
    tile_size: int = Field(8, ge=4, description="Pixels per grid cell; frames are 7*tile_size square.")

    @field_validator("subtask_counts")
    @classmethod
    def _counts_in_range(cls, counts: list[int]) -> list[int]:
        bad = [c for c in counts if not MIN_SUBTASKS <= c <= MAX_SUBTASKS]
        if bad or not counts:
            raise ValueError(f"subtask_counts must be non-empty, each in {MIN_SUBTASKS}..{MAX_SUBTASKS}; got {counts}")
        return sorted(set(counts))

    @model_validator(mode="after")
    def _kinds_known(self) -> GenerateConfig:
        unknown = [k for k in self.off_target_kinds if k not in ALL_ACTION_KINDS]
        if unknown:
            raise ValueError(f"off_target_kinds {unknown} unknown; known: {list(ALL_ACTION_KINDS)}")
        if self.protocol == "skills" and not self.target_kinds:
            raise ValueError("off_target_kinds leaves no kind for the evaluation targets")
        if self.protocol == "missions":
            # A skills knob under missions would be silently ignored (and left out of the fingerprint).
            defaults = GenerateConfig.model_fields
            set_here = [f for f in SKILL_FIELDS if getattr(self, f) != defaults[f].get_default(call_default_factory=True)]
            if set_here:
                raise ValueError(f"{', '.join(set_here)} apply only with protocol: skills")
        return self

    @property
    def target_kinds(self) -> tuple[str, ...]:
        """Sub-task kinds of the evaluation chains (skills: all but the off-target ones)."""
        if self.protocol == "missions":
            return ALL_ACTION_KINDS
        return tuple(k for k in ALL_ACTION_KINDS if k not in self.off_target_kinds)

    @property
    def env_config(self) -> BabyAIEnvConfig:
        return BabyAIEnvConfig(
            room_size=self.room_size, num_rows=self.num_rows, num_cols=self.num_cols,
            num_distractors=self.num_distractors, tile_size=self.tile_size,
            action_kinds=self.target_kinds,
        )

    def train_seed(self, num_subtasks: int, index: int) -> int:
        return self.seed + num_subtasks * SEED_STRIDE + index

    def eval_seed(self, num_subtasks: int, index: int) -> int:
        return self.seed + num_subtasks * SEED_STRIDE + EVAL_OFFSET + index

    def val_seed(self, num_subtasks: int, index: int) -> int:
        return self.seed + num_subtasks * SEED_STRIDE + VAL_OFFSET + index


def rollout_episode(num_subtasks: int, seed: int, noise: float, max_steps: int,
                    env_config: BabyAIEnvConfig) -> tuple[list[dict[str, Any]], bool]:
    """One ε-noisy expert episode -> (rows in TRANSITION_SCHEMA, bot_failed).

    The expert's action is recorded at every state, whichever action was taken. If the bot
    raises (e.g. after a random toggle opened a box), the episode ends there as truncated
    and is counted as a bot failure; the transitions up to it are kept.
    """
    env = make_env(num_subtasks, env_config, max_steps=max_steps)
    frame, instruction = reset_env(env, seed)
    state = symbolic_state(env)
    bot = make_bot(env)
    noise_rng = np.random.default_rng([seed, 0xB0B])
    episode_id = f"{ENV_NAME}-n{num_subtasks}-s{seed}"
    rows: list[dict[str, Any]] = []
    prev_action: int | None = None
    bot_failed = False
    for t in range(max_steps):
        try:
            expert = int(bot.replan(prev_action))
        except Exception as exc:  # BabyAIBot raises several types when it gets lost
            log.debug("bot failed in %s at step %d: %s", episode_id, t, exc)
            bot_failed = True
            break
        if expert >= NUM_ACTIONS:  # the bot says 'done' although the mission is not
            bot_failed = True
            break
        is_random = bool(noise_rng.random() < noise)
        action = int(noise_rng.integers(NUM_ACTIONS)) if is_random else expert
        next_frame, completed, terminal, truncated = step_env(env, action)
        truncated = truncated or (t == max_steps - 1 and not terminal)
        rows.append({
            "episode_id": episode_id,
            "step": t,
            "task_id": f"{ENV_NAME}-n{num_subtasks}-s{seed}",
            "instruction": instruction,
            "num_subtasks": num_subtasks,
            "env_name": ENV_NAME,
            "seed": seed,
            "frame": encode_png(frame),
            "final_frame": None,
            "action": action,
            "action_name": ACTION_NAMES[action],
            "expert_action": expert,
            "is_random_action": is_random,
            "terminal": terminal,
            "truncated": truncated,
            "subtasks_completed": completed,
            "success": False,
            "state": state.tobytes(),
            "final_state": None,
        })
        frame, prev_action, state = next_frame, action, symbolic_state(env)
        if terminal or truncated:
            break
    if rows:
        rows[-1]["final_frame"] = encode_png(frame)
        rows[-1]["final_state"] = state.tobytes()
        if not (rows[-1]["terminal"] or rows[-1]["truncated"]):
            rows[-1]["truncated"] = True  # stopped by a bot failure
        success = mission_succeeded(env)
        for row in rows:
            row["success"] = success
    env.close()
    return rows, bot_failed


def _skill_step(frame: np.ndarray, action: int, expert: int, is_random: bool, state: np.ndarray) -> dict[str, Any]:
    return {"frame": encode_png(frame), "action": action, "expert_action": expert, "is_random_action": is_random,
            "state": state.tobytes()}


def _episode_rows(steps: list[dict[str, Any]], completed: list[int], final: tuple[bytes, bytes], *,
                  episode_id: str, task_id: str, instruction: str, num_subtasks: int,
                  seed: int) -> list[dict[str, Any]]:
    """Rows of one successful episode (a skill or a relabelled chain) from its steps;
    ``final`` = (frame, symbolic state) after its last action."""
    last = len(steps) - 1
    return [{
        "episode_id": episode_id, "step": t, "task_id": task_id, "instruction": instruction,
        "num_subtasks": num_subtasks, "env_name": ENV_NAME, "seed": seed, "frame": step["frame"],
        "final_frame": final[0] if t == last else None, "action": step["action"],
        "action_name": ACTION_NAMES[step["action"]], "expert_action": step["expert_action"],
        "is_random_action": step["is_random_action"], "terminal": t == last, "truncated": False,
        "subtasks_completed": completed[t], "success": True, "state": step["state"],
        "final_state": final[1] if t == last else None,
    } for t, step in enumerate(steps)]


def chain_windows(num_skills: int, count: int, seed: int) -> list[tuple[int, int]]:
    """Which runs ``(first, last)`` of ≥ 2 consecutive skills of a session are relabelled as
    chains: the whole session first, then distinct random runs (seeded), ``count`` at most."""
    runs = [(i, j) for i in range(num_skills) for j in range(i + 1, num_skills)]
    if count <= 0 or not runs:
        return []
    whole = (0, num_skills - 1)
    rest = [r for r in runs if r != whole]
    order = np.random.default_rng([seed, 0xC4A1]).permutation(len(rest))
    return [whole, *(rest[int(i)] for i in order[:count - 1])]


def rollout_session(num_subtasks: int, seed: int,
                    config: GenerateConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """protocol=skills: one session of ``num_subtasks`` sub-tasks -> (rows of its skill
    episodes, then of its relabelled chains; facts about it). See the module docstring.

    Facts: ``kinds``/``instructions`` of every sub-task, ``skills`` kept, ``abandoned``
    (steps of the abandoned attempt per kept skill), ``random_actions`` (per kept skill),
    ``bot_failed``, ``cut`` (two sub-tasks completed by one step), ``chains`` (windows)."""
    env = make_env(num_subtasks, config.env_config, max_steps=config.max_steps,
                   off_target_kinds=tuple(config.off_target_kinds),
                   off_target_fraction=config.off_target_fraction)
    frame, mission = reset_env(env, seed)
    leaves = chain_leaves(env)
    # Surfaces now, at reset, as BabyAI rendered the mission ("a"/"the" depend on the grid).
    instructions = [leaf.surface(env.unwrapped) for leaf in leaves]
    if ", then ".join(instructions) != mission:
        raise RuntimeError(f"session {seed}: sub-task instructions {instructions} do not make {mission!r}")
    rng = np.random.default_rng([seed, 0x5C11])
    bot = make_bot(env)
    state = symbolic_state(env)
    info: dict[str, Any] = {"kinds": [instruction_kind(leaf) for leaf in leaves], "instructions": instructions,
                            "bot_failed": False, "cut": False, "abandoned": [], "random_actions": [],
                            "detoured": []}
    segments: list[tuple[list[dict[str, Any]], tuple[bytes, bytes]]] = []
    current: list[dict[str, Any]] = []
    done = 0  # sub-tasks of the session completed so far
    prev_action: int | None = None

    def head_for_an_object(max_steps: int) -> tuple[Any, int]:
        """(decoy bot heading for a random object, its steps), or (None, 0) on an empty grid."""
        objects = grid_objects(env)
        if not objects:
            return None, 0
        target = objects[int(rng.integers(len(objects)))]
        return make_goto_bot(env, target), int(rng.integers(1, max_steps + 1))

    def start_skill() -> tuple[Any, int]:
        """(decoy bot, its steps) of an abandoned attempt at this skill's start, or (None, 0)."""
        if config.abandon_prob > 0 and rng.random() < config.abandon_prob:
            return head_for_an_object(config.abandon_max_steps)
        return None, 0

    decoy, decoy_left = start_skill()
    decoy_prev: int | None = None
    abandoned = detoured = 0
    on_detour = False  # the current decoy is a mid-skill detour (else an abandoned attempt)
    for t in range(config.max_steps):
        try:
            expert = int(bot.replan(prev_action))
        except Exception as exc:  # BabyAIBot raises several types when it gets lost
            log.debug("bot failed in session %s at step %d: %s", seed, t, exc)
            info["bot_failed"] = True
            break
        if expert >= NUM_ACTIONS:  # the bot says 'done' although the sub-task is not
            info["bot_failed"] = True
            break
        action, is_random, decoy_step = expert, False, False
        if decoy_left > 0:
            try:
                suggestion = int(decoy.replan(decoy_prev))
            except Exception:  # the decoy got lost: the attempt ends here
                suggestion = NUM_ACTIONS
            if suggestion < NUM_ACTIONS:
                action, decoy_prev, decoy_step = suggestion, suggestion, True
                decoy_left -= 1
                if on_detour:
                    detoured += 1
                else:
                    abandoned += 1
            else:
                decoy_left = 0
        if not decoy_step and config.detour_prob > 0 and rng.random() < config.detour_prob:
            decoy, decoy_left = head_for_an_object(config.detour_max_steps)  # from the next step
            decoy_prev, on_detour = None, True
        if not decoy_step:  # ε applies to the agent's own steps
            is_random = bool(rng.random() < config.noise)
            action = int(rng.integers(NUM_ACTIONS)) if is_random else expert
        current.append(_skill_step(frame, action, expert, is_random, state))
        frame, completed, terminal, truncated = step_env(env, action)
        prev_action, state = action, symbolic_state(env)
        if completed > done:
            segments.append((current, (encode_png(frame), state.tobytes())))
            info["abandoned"].append(abandoned)
            info["detoured"].append(detoured)
            info["random_actions"].append(sum(s["is_random_action"] for s in current))
            current, done = [], done + 1
            if completed > done:  # the same step completed the next sub-task: it has no transitions
                info["cut"] = True
                break
            if done == len(leaves):
                break
            (decoy, decoy_left), decoy_prev, abandoned, detoured, on_detour = start_skill(), None, 0, 0, False
        if terminal or truncated:
            break
    env.close()

    rows: list[dict[str, Any]] = []
    for k, (steps, final) in enumerate(segments):
        rows += _episode_rows(steps, [0] * (len(steps) - 1) + [1], final,
                              episode_id=f"{ENV_NAME}-skill-s{seed}-k{k}",
                              task_id=f"{ENV_NAME}-skill-{info['kinds'][k]}-s{seed}-k{k}",
                              instruction=instructions[k], num_subtasks=1, seed=seed)
    info["chains"] = chain_windows(len(segments), config.chains_per_session, seed)
    for first, last in info["chains"]:
        steps = [s for seg, _ in segments[first:last + 1] for s in seg]
        completed = [q - first + int(t == len(seg) - 1)
                     for q, (seg, _) in enumerate(segments[first:last + 1], start=first) for t in range(len(seg))]
        rows += _episode_rows(steps, completed, segments[last][1],
                              episode_id=f"{ENV_NAME}-relabel-s{seed}-k{first}-{last}",
                              task_id=f"{ENV_NAME}-relabel-n{last - first + 1}-s{seed}-k{first}",
                              instruction=", then ".join(instructions[first:last + 1]),
                              num_subtasks=last - first + 1, seed=seed)
    info["skills"] = len(segments)
    return rows, info


def generate_shard(jobs: list[tuple[int, int]], config_dict: dict[str, Any], path: str | Location,
                   shared: tuple[Location, str] | None = None) -> dict[str, Any]:
    """Roll out ``jobs`` = [(num_subtasks, seed)] and write them as one shard (a local path or
    a storage location). ``shared`` = (output, the driver's token): before any work, this
    node must see the driver's marker there (:func:`rayrg.storage.assert_shared`), else the
    stage fails in one line naming the node, instead of writing to a disk nobody reads."""
    if shared is not None:
        assert_shared(*shared)
    config = GenerateConfig.from_dict(config_dict)
    rows: list[dict[str, Any]] = []
    stats = {"episodes": 0, "transitions": 0, "successes": 0, "bot_failures": 0,
             "random_actions": 0, "dropped_empty": 0}
    if config.protocol == "skills":
        stats.update({"sessions": 0, "skill_episodes": 0, "chain_episodes": 0, "off_target_skills": 0,
                      "abandoned_attempts": 0, "abandoned_steps": 0, "detour_steps": 0, "sessions_cut": 0})
    for num_subtasks, seed in jobs:
        if config.protocol == "skills":
            session, info = rollout_session(num_subtasks, seed, config)
            rows.extend(session)
            kept = info["skills"]
            stats["sessions"] += 1
            stats["bot_failures"] += int(info["bot_failed"])
            stats["sessions_cut"] += int(info["cut"])
            stats["dropped_empty"] += int(kept == 0)
            stats["skill_episodes"] += kept
            stats["chain_episodes"] += len(info["chains"])
            stats["episodes"] += kept + len(info["chains"])
            stats["successes"] += kept + len(info["chains"])
            stats["transitions"] += len(session)
            stats["off_target_skills"] += sum(k in config.off_target_kinds for k in info["kinds"][:kept])
            stats["abandoned_attempts"] += sum(a > 0 for a in info["abandoned"])
            stats["abandoned_steps"] += sum(info["abandoned"])
            stats["detour_steps"] += sum(info["detoured"])
            stats["random_actions"] += sum(info["random_actions"])  # in skills; chains repeat them
            continue
        episode, bot_failed = rollout_episode(
            num_subtasks, seed, config.noise, config.max_steps, config.env_config)
        stats["bot_failures"] += int(bot_failed)
        if not episode:  # the bot failed before the first step: nothing to keep
            stats["dropped_empty"] += 1
            continue
        rows.extend(episode)
        stats["episodes"] += 1
        stats["transitions"] += len(episode)
        stats["successes"] += int(episode[0]["success"])
        stats["random_actions"] += sum(r["is_random_action"] for r in episode)
    if rows:
        write_shard(rows, path)
    return stats


def make_eval_task(config: GenerateConfig, num_subtasks: int, index: int,
                   split: str = "test") -> EvalTask | None:
    seed = config.val_seed(num_subtasks, index) if split == "validation" else config.eval_seed(num_subtasks, index)
    steps = expert_steps(num_subtasks, seed, config.env_config)
    if steps is None:
        return None
    env = make_env(num_subtasks, config.env_config)
    _, instruction = reset_env(env, seed)
    return EvalTask(
        task_id=f"{ENV_NAME}-n{num_subtasks}-s{seed}", env_name=ENV_NAME, instruction=instruction,
        num_subtasks=num_subtasks, seed=seed, expert_steps=steps,
        extra={"env_config": asdict(config.env_config)},
    )


def generate_inputs(config: GenerateConfig) -> dict[str, Any]:
    """What a generated dataset is keyed to: the generator, its config, and the versions of
    what plays the episodes (minigrid's levels and bot, the environment adapter)."""
    from rayrg.envs.registry import env_versions

    settings = config.to_dict()
    if config.protocol == "missions":  # as before the skills protocol existed (SKILL_FIELDS)
        settings = {k: v for k, v in settings.items() if k not in (*SKILL_FIELDS, "protocol")}
    elif config.detour_prob == 0:  # as before detours existed (DETOUR_FIELDS)
        settings = {k: v for k, v in settings.items() if k not in DETOUR_FIELDS}
    return {"generator": GENERATOR, "config": settings, "versions": env_versions(ENV_NAME)}


def generate(config: GenerateConfig, out: str | Path | Location, address: str | None = None,
             progress: bool = True, on_change: OnChange = "refuse") -> Path | Location:
    """Generate the dataset and evaluation tasks under ``out`` (see module docstring): a
    local path (returned as a ``Path``, as given) or a storage URI (returned as its
    :class:`~rayrg.storage.Location`); a relative one lands under the storage root.

    ``out`` is keyed to the config (:mod:`rayrg.provenance`): a finished dataset of the same
    config is kept, an interrupted one resumes, one of another config is refused
    (``on_change="refuse"``) or regenerated (``"redo"``).
    """
    import ray
    from tqdm import tqdm

    from rayrg.runtime import cancel_pending, init_ray

    if address not in (None, "", "local"):
        init_ray(address)  # joined first, so prepare_output sees the cluster's shape
    location = prepare_output(out)
    out = native(location)
    claimed = claim(location, "generate", generate_inputs(config), on_change=on_change)
    if claimed.done:
        return out
    data_dir = location / "trajectories"
    if data_dir.is_local:
        data_dir.mkdirs()
    config.to_yaml(location / "generate_config.yaml")

    jobs = [(n, config.train_seed(n, i)) for n in config.subtask_counts
            for i in range(config.episodes_per_count)]
    chunks = [jobs[i:i + config.episodes_per_shard] for i in range(0, len(jobs), config.episodes_per_shard)]
    init_ray(address)
    shard_task = ray.remote(num_cpus=0.5)(generate_shard)
    eval_task = ray.remote(num_cpus=0.5)(make_eval_task)

    existing = {child.name for child in data_dir.ls()}
    # A local output must be the one every writing task sees (a shared mount): the tasks
    # check the driver's marker before writing; a URI names the same objects everywhere.
    token = claim_shared(data_dir) if data_dir.is_local else None
    try:
        pending = {}
        for i, chunk in enumerate(chunks):
            name, stats_name = f"part-{i:05d}.parquet", f".part-{i:05d}.stats.json"
            if name in existing and stats_name in existing:
                continue  # finished by an earlier, interrupted run
            shared = (data_dir, token) if token is not None else None
            pending[shard_task.remote(chunk, config.to_dict(), data_dir / name, shared)] = data_dir / stats_name
        eval_refs = [eval_task.remote(config, n, i) for n in config.subtask_counts
                     for i in range(config.eval_tasks_per_count)]
        val_refs = [eval_task.remote(config, n, i, "validation") for n in config.subtask_counts
                    for i in range(config.val_tasks_per_count)]

        bar = tqdm(total=len(chunks), initial=len(chunks) - len(pending), desc="generate shards",
                   unit="shard", disable=not progress)
        remaining = list(pending)
        try:
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                stats = ray.get(done[0])
                pending[done[0]].write_text(json.dumps(stats))
                bar.update(1)
        except KeyboardInterrupt:
            cancel_pending([*remaining, *eval_refs, *val_refs])  # before the marker goes (finally)
            raise
        bar.close()
    finally:
        if token is not None:
            release_shared(data_dir, token)

    totals: dict[str, int] = {}
    for stats_path in data_dir.ls():
        if not (stats_path.name.startswith(".part-") and stats_path.name.endswith(".stats.json")):
            continue
        for key, value in json.loads(stats_path.read_text()).items():
            totals[key] = totals.get(key, 0) + value

    tasks = [t for t in ray.get(eval_refs) if t is not None]
    val_tasks = [t for t in ray.get(val_refs) if t is not None]
    skipped = len(eval_refs) - len(tasks) + len(val_refs) - len(val_tasks)
    write_task_sets(out, val_tasks, tasks)

    DatasetMetadata(
        generator=GENERATOR,
        fingerprint=claimed.fingerprint,
        env_name=ENV_NAME,
        num_episodes=totals.get("episodes", 0),
        num_transitions=totals.get("transitions", 0),
        seeds=[config.seed],
        noise=config.noise,
        extra={"config": config.to_dict(), "stats": totals, "eval_tasks": len(tasks), "val_tasks": len(val_tasks),
               "eval_tasks_without_expert_solution": skipped},
    ).write(data_dir)
    log.info("generated %s episodes (%s transitions, %s bot failures), %d test and %d validation tasks in %s",
             totals.get("episodes"), totals.get("transitions"), totals.get("bot_failures"),
             len(tasks), len(val_tasks), out)
    claimed.finish(trajectories=str(out / "trajectories"), eval_tasks=str(out / TASKS_FILE),
                   val_tasks=str(out / VAL_TASKS_FILE), episodes=totals.get("episodes", 0),
                   eval_task_count=len(tasks), val_task_count=len(val_tasks))
    return out
