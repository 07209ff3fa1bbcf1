"""Evaluation on Ray: a pool of actors, each with its environments and ONE policy copy.

Work items are (task, mode, seed). An actor runs up to ``envs_per_actor`` items in lockstep
so a learned policy is called once per step for all of them (batched; on GPU when the actor
has one). Each actor holds two chunks, so it starts the next while the driver takes the last
one's rows; a chunk grows to about a second of work when episodes are short. Finished rows are
written as Parquet files under ``<out>/episodes/`` (:mod:`rayrg.contracts.episodes`) every few
seconds, and when the stage ends or fails; a re-run reads them and runs only the missing items
(an interrupted evaluation resumes).
``<out>/summary.json`` holds the aggregate with 95 % CIs.

``out``, the policy checkpoint and the tasks file may each be a storage URI (``s3://…``).
The actors only return rows; the driver writes every file, so no actor writes to its
node's disk (hence no :func:`rayrg.storage.assert_shared` in the actors).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError
from rayrg.contracts.episodes import EPISODES_DIR, read_episodes, write_episodes
from rayrg.contracts.episodes import SCHEMA as EPISODES_SCHEMA
from rayrg.contracts.episodes import episodes_dir as episodes_path
from rayrg.contracts.tasks import read_eval_tasks
from rayrg.envs.base import EvalTask
from rayrg.errors import stage_errors_iter
from rayrg.evaluation.config import EvalConfig
from rayrg.evaluation.metrics import aggregate, episode_return
from rayrg.provenance import OnChange
from rayrg.storage import Location

log = logging.getLogger(__name__)

RESULT_SCHEMA = EPISODES_SCHEMA  # the episodes contract (rayrg.contracts.episodes)


def load_eval_tasks(path: str | os.PathLike[str]) -> list[EvalTask]:
    """The tasks of an ``eval_tasks.json`` (read through :mod:`rayrg.contracts.tasks`)."""
    return [EvalTask(**spec.model_dump()) for spec in read_eval_tasks(path)]


def item_key(task_id: str, mode: str, seed: int) -> str:
    return f"{task_id}|{mode}|{seed}"


def run_items(envs: list[Any], policy: Any, items: list[tuple[EvalTask, str, int]],
              config: EvalConfig) -> list[dict[str, Any]]:
    """Run episodes in lockstep, ``items[i]`` in ``envs[i]``; one result row per item."""
    import numpy as np

    envs = envs[:len(items)]
    obs, budgets, results, subtask_instructions = [], [], [], []
    for slot, (env, (task, mode, seed)) in enumerate(zip(envs, items, strict=True)):
        o = env.reset(task, mode, rng_seed=seed)
        if config.instruction == "one_at_a_time" and len(o.subtask_instructions) != task.num_subtasks:
            raise ValueError(f"task {task.task_id}: instruction one_at_a_time needs its {task.num_subtasks} "
                             f"sub-tasks' own instructions; {task.env_name} gave {len(o.subtask_instructions)}")
        subtask_instructions.append(o.subtask_instructions)
        policy.reset(slot, env, seed)
        obs.append(o)
        budgets.append(task.step_budget(config.budget_multiplier, config.min_budget))
        results.append({"task_id": task.task_id, "env_name": task.env_name, "num_subtasks": task.num_subtasks,
                        "mode": mode, "seed": seed, "subtasks_completed": 0, "success": False, "steps": 0,
                        "budget": budgets[-1], "start_pos": list(o.info.get("agent_pos", ())),
                        "start_dir": int(o.info.get("agent_dir", -1))})
    def shown(i: int) -> str:
        """The instruction the policy sees: the mission's, or (one_at_a_time) the current sub-task's."""
        if config.instruction == "full":
            return obs[i].instruction
        subs = subtask_instructions[i]
        return subs[min(results[i]["subtasks_completed"], len(subs) - 1)]

    active = list(range(len(items)))
    prev: list[int | None] = [None] * len(items)
    while active:
        frames = np.stack([obs[i].frame for i in active])
        actions = policy.act(active, [envs[i] for i in active], frames, [shown(i) for i in active],
                             [prev[i] for i in active])
        still = []
        for i, action in zip(active, actions, strict=True):
            o = envs[i].step(int(action))
            obs[i], prev[i] = o, int(action)
            r = results[i]
            r["steps"] += 1
            r["subtasks_completed"] = max(r["subtasks_completed"], o.subtasks_completed)
            r["success"] = bool(o.info.get("success", False))
            if not o.done and r["steps"] < budgets[i]:
                still.append(i)
        active = still
    for r in results:
        r["return"] = episode_return(r["subtasks_completed"], r["num_subtasks"])
    return results


class EvalActor:
    """Holds one policy copy (loaded once) and runs chunks of work items."""

    def __init__(self, policy_spec: str, config_dict: dict[str, Any], num_actions: int) -> None:
        from rayrg.evaluation.policies import load_episode_policy

        self.config = EvalConfig.from_dict(config_dict)
        self.policy = load_episode_policy(policy_spec, num_actions, self.config.policy_device)
        # Environments live as long as the actor: a simulator such as THOR starts once per env.
        self.envs: list[Any] = []
        self.finished: list[dict[str, Any]] = []  # rows of a chunk that failed part-way

    def run(self, items: list[tuple[EvalTask, str, int]]) -> tuple[list[dict[str, Any]], float]:
        """Rows of ``items``, run ``envs_per_actor`` at a time in lockstep, and the seconds taken.
        If a group fails, the rows of the groups before it wait in ``finished`` for the driver."""
        from rayrg.envs.registry import make_task_env

        start, group, rows = time.perf_counter(), self.config.envs_per_actor, []
        while len(self.envs) < min(group, len(items)):
            self.envs.append(make_task_env(items[0][0].env_name, self.config.env_settings))
        try:
            for i in range(0, len(items), group):
                rows.extend(run_items(self.envs, self.policy, items[i:i + group], self.config))
        except BaseException:
            self.finished = rows
            raise
        return rows, time.perf_counter() - start

    def take_finished(self) -> list[dict[str, Any]]:
        rows, self.finished = self.finished, []
        return rows

    def close(self) -> None:
        for env in self.envs:
            env.close()  # simulator subprocesses must not outlive the actor
        self.envs = []


# Finished episodes reach <out>/episodes/ within this many seconds (or rows) of finishing.
FLUSH_SECONDS = 5.0
FLUSH_ROWS = 512
# Chunks queued on each actor: it starts the next while the driver takes the last one's rows
# (ray.util.ActorPool holds one per actor, which left the actors idle on every hand-off).
CHUNKS_IN_FLIGHT = 2
# A chunk grows (in lockstep groups of envs_per_actor items, up to MAX_GROUPS) until it takes
# about CHUNK_SECONDS: with episodes of a millisecond (a cheap simulator), Ray's cost per call
# and per result was what two actors shared, not the episodes; long episodes keep chunks of one
# group, so a progress bar and a crash never wait on more than one group per actor.
CHUNK_SECONDS = 1.0
MAX_GROUPS = 16


def _chunk_results(actors: list[Any], todo: list[tuple[EvalTask, str, int]],
                   group: int) -> Iterator[list[dict[str, Any]]]:
    """Rows of every item of ``todo``, a chunk at a time in the order chunks finish, with
    CHUNKS_IN_FLIGHT chunks per actor. A chunk that fails yields the rows its actor finished
    before the failure, then raises it."""
    import ray

    position, groups = 0, 1
    pending: dict[Any, Any] = {}

    def submit(actor: Any) -> None:
        nonlocal position
        if position < len(todo):
            # never so big that one actor still runs the tail while the others are idle
            share = -(-(len(todo) - position) // (4 * len(actors)))
            size = group * max(1, min(groups, -(-share // group)))
            pending[actor.run.remote(todo[position:position + size])] = actor
            position += size

    for _ in range(CHUNKS_IN_FLIGHT):
        for actor in actors:
            submit(actor)
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        actor = pending.pop(ref)
        try:
            rows, seconds = ray.get(ref)
        except Exception:
            try:
                finished = ray.get(actor.take_finished.remote())
            except Exception:  # the actor itself is gone: nothing of that chunk survives
                finished = []
            if finished:
                yield finished
            raise
        per_group = seconds / max(1, -(-len(rows) // group))
        groups = max(1, min(MAX_GROUPS, int(CHUNK_SECONDS / max(per_group, 1e-6))))
        submit(actor)
        yield rows


def check_policy(policy_spec: str) -> None:
    """Load the policy once on the driver, so a missing or incompatible checkpoint is one line
    here, before anything is written, rather than an actor dying in its constructor."""
    if policy_spec in ("expert", "random"):
        return
    from rayrg.evaluation.policies import load_episode_policy

    try:
        load_episode_policy(policy_spec, num_actions=0, device="cpu")
    except (FileNotFoundError, ConfigError):
        raise
    except Exception as exc:  # torch/pickle/shape errors of a checkpoint from elsewhere
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"policy '{policy_spec}': not a checkpoint this rayrg can load "
                          f"({type(exc).__name__}: {first})") from exc


def check_reference_policy(policy_spec: str, env_names: set[str]) -> None:
    """'expert' / 'random' only where the environment declares it (:mod:`rayrg.envs.registry`):
    one line here rather than an actor failing on its first episode."""
    from rayrg.envs.registry import REFERENCE_POLICIES, reference_policies

    if policy_spec not in REFERENCE_POLICIES:
        return
    for env in sorted(env_names):
        has = reference_policies(env)
        if policy_spec not in has:
            raise ConfigError(f"policy '{policy_spec}': {env} has no such policy (it has: {', '.join(has) or 'none'})")


def policy_fingerprint(policy_spec: str) -> str:
    """'expert' / 'random' by name; a checkpoint (checked by :func:`check_policy`) by the hash
    of its files, whatever made it."""
    from rayrg.provenance import file_fingerprint

    return policy_spec if policy_spec in ("expert", "random") else file_fingerprint(policy_spec)


# EvalConfig fields that change how an evaluation runs, not its episodes' results. Modes and
# seeds are left out too: they select work items, and more of them extends the results.
RUNTIME_FIELDS = ("tasks", "modes", "seeds", "num_actors", "cpus_per_actor", "gpus_per_actor",
                  "envs_per_actor", "policy_device")


def eval_inputs(config: EvalConfig, policy_spec: str, tasks: list[EvalTask]) -> dict[str, Any]:
    """What an evaluation is keyed to: the policy, the tasks, the result-relevant settings and
    the versions of each task environment's simulator (a new minigrid or ai2thor plays other
    episodes, so finished episodes of the old one are not mixed in)."""
    from rayrg.envs.registry import env_versions
    from rayrg.provenance import fingerprint

    return {"policy": policy_fingerprint(policy_spec),
            "tasks": fingerprint({"tasks": [asdict(t) for t in tasks]}),
            # "instruction" enters only when not the default, so evaluations made before the
            # field existed keep their key (they were all "full").
            "config": {k: v for k, v in config.to_dict().items()
                       if k not in RUNTIME_FIELDS and not (k == "instruction" and v == "full")},
            "versions": {name: env_versions(name) for name in sorted({t.env_name for t in tasks})}}


def evaluate(config: EvalConfig, policy_spec: str, out: str | os.PathLike[str] | Location, address: str | None = None,
             tasks: list[EvalTask] | None = None, progress: bool = True,
             on_change: OnChange = "refuse") -> dict[str, Any]:
    """Evaluate ``policy_spec`` ('expert', 'random' or a checkpoint dir); returns the summary.

    ``out`` is keyed to the policy's fingerprint, the tasks and the result-relevant settings
    (:mod:`rayrg.provenance`): finished episodes of the same inputs are kept and only missing
    (task, mode, seed) items run; episodes of another policy or other tasks are never reused.
    """
    import ray
    from tqdm import tqdm

    from rayrg.envs.registry import action_names
    from rayrg.provenance import claim
    from rayrg.runtime import init_ray
    from rayrg.storage import prepare_output

    location = prepare_output(out)
    # what provenance and the episodes contract take: the Path as always, or the URI
    out = Path(location.uri) if location.is_local else location.uri
    if tasks is None:
        if not config.tasks:
            raise ConfigError("EvalConfig.tasks is not set (the evaluation tasks JSON)")
        tasks = load_eval_tasks(config.tasks)
    check_policy(policy_spec)
    check_reference_policy(policy_spec, {t.env_name for t in tasks})
    from rayrg.envs.registry import has_subtask_instructions

    lacking = sorted({t.env_name for t in tasks if config.instruction == "one_at_a_time"
                      and not has_subtask_instructions(t.env_name)})
    if lacking:
        raise ConfigError(f"evaluation.instruction: one_at_a_time feeds each sub-task's own instruction, which "
                          f"{', '.join(lacking)} does not give (no subtask_instructions declared); use full")
    inputs = eval_inputs(config, policy_spec, tasks)
    claimed = claim(out, "evaluate", inputs, on_change=on_change, quiet=True)
    episodes_dir = episodes_path(out)
    if location.is_local:
        Path(location.path, EPISODES_DIR).mkdir(parents=True, exist_ok=True)
    config.to_yaml(location / "eval_config.yaml")  # a Location: local or a URI
    if config.max_tasks_per_count:
        kept: dict[int, int] = {}
        selected = []
        for t in tasks:
            if kept.get(t.num_subtasks, 0) < config.max_tasks_per_count:
                kept[t.num_subtasks] = kept.get(t.num_subtasks, 0) + 1
                selected.append(t)
        tasks = selected
    env_names = {t.env_name for t in tasks}
    if len(env_names) != 1:
        raise ConfigError(f"one environment per evaluation, got {sorted(env_names)}")

    done_rows = read_episodes(episodes_dir)
    done = {item_key(r["task_id"], r["mode"], r["seed"]) for r in done_rows}
    todo = [(t, m, s) for t in tasks for m in config.modes for s in config.seeds
            if item_key(t.task_id, m, s) not in done]
    if done and progress:
        print(f"[rayrg] evaluate: {len(done)} episodes done earlier in {out}; {len(todo)} to run", flush=True)
    if todo:
        init_ray(address)
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        # placement_group=None: never inherit a caller's placement group (a Tune trial or a Train
        # controller evaluating a checkpoint), whose bundles have no room for these actors.
        actor_cls = ray.remote(num_cpus=config.cpus_per_actor, num_gpus=config.gpus_per_actor)(EvalActor).options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
        num_actions = len(action_names(next(iter(env_names))))
        actors = [actor_cls.remote(policy_spec, config.to_dict(), num_actions)
                  for _ in range(min(config.num_actors, -(-len(todo) // config.envs_per_actor)))]
        bar = tqdm(total=len(todo) + len(done), initial=len(done), desc="evaluate", unit="episode",
                   disable=not progress)
        unwritten: list[dict[str, Any]] = []

        def flush() -> None:
            if unwritten:
                name = hashlib.sha256("".join(item_key(r["task_id"], r["mode"], r["seed"]) for r in unwritten)
                                      .encode()).hexdigest()[:16]
                write_episodes(episodes_dir, name, unwritten)
                unwritten.clear()

        # An actor that fails (its policy, env or tasks) fails the stage as one user line;
        # episodes finished before it are written first.
        last_flush = time.monotonic()
        try:
            for rows in stage_errors_iter(_chunk_results(actors, todo, config.envs_per_actor)):
                unwritten.extend(rows)
                done_rows.extend(rows)
                bar.update(len(rows))
                # One file per chunk cost the driver more than a short episode (a Parquet write
                # each, many small objects on S3): write every FLUSH_SECONDS or FLUSH_ROWS.
                if len(unwritten) >= FLUSH_ROWS or time.monotonic() - last_flush >= FLUSH_SECONDS:
                    flush()
                    last_flush = time.monotonic()
        finally:
            flush()
        bar.close()
        ray.get([actor.close.remote() for actor in actors])
        for actor in actors:
            ray.kill(actor)
    wanted = {item_key(t.task_id, m, s) for t in tasks for m in config.modes for s in config.seeds}
    results = [r for r in done_rows if item_key(r["task_id"], r["mode"], r["seed"]) in wanted]
    summary = {"policy": policy_spec, "instruction": config.instruction, "episodes": len(results),
               "modes": aggregate(results),
               "tasks": [asdict(t)["task_id"] for t in tasks]}
    (location / "summary.json").write_text(json.dumps(summary, indent=2))
    claimed.finish(episodes=len(results))
    return summary
