"""Evaluation throughput: episodes/s with N actors divided by episodes/s with 1 actor.

Same tasks, modes and seeds on both sides (random policy, so every episode runs its full
step budget); Ray is started before timing; each side's actors start inside its timer,
as they do in a real evaluation. Goal: ≥ 0.8·N up to the core count. Measured twice:

- BabyAI (``babyai-chain``, the simulator in the actor);
- THOR (``alfred-thor``'s adapter, :class:`rayrg.envs.thor.ThorEnv`, on ALFRED-format tasks)
  with the tests' stand-in controller (``tests/envs/_thor_fake.py``) instead of the Unity
  build: what is measured is the actor path of the THOR environment — scene set-up,
  teleports, sub-goal tracking, frames, policy — not the simulator. The stand-in is
  registered as ``alfred-thor-fake`` by this module, which the Ray workers import through
  ``RAYRG_PLUGINS``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import os
from dataclasses import replace
from typing import Any

from rayrg.data.generate import GenerateConfig, make_eval_task
from rayrg.envs.registry import register_environment
from rayrg.evaluation.config import EvalConfig
from rayrg.evaluation.evaluate import evaluate
from rayrg.runtime import init_ray

THOR_FAKE = "alfred-thor-fake"
# a budget long enough that actors, not Ray's hand-offs, are what the episodes cost
THOR_SETTINGS = {"step_budget_minimum": 64}


def make_fake_thor_env(settings: dict[str, Any]):
    """``alfred-thor``'s factory with the stand-in controller (runs in the eval actors)."""
    from rayrg.envs.thor import make_thor_env
    from tests.envs._thor_fake import FakeController

    return make_thor_env(settings, controller_factory=lambda cfg: FakeController())


register_environment(THOR_FAKE, actions="rayrg.envs.thor_config:ACTION_NAMES", factory=make_fake_thor_env)


def thor_tasks(root: Path, count: int) -> list:
    """ALFRED-format tasks on the stand-in's kitchen (the THOR tests' synthetic trial)."""
    from rayrg.data.alfred import AlfredImportConfig, trial_eval_tasks
    from tests.data._alfred_synth import traj_data, write_trial

    folder = write_trial(root, "valid_seen", "pick_apple", "trial_A", traj_data())
    task = trial_eval_tasks(folder, AlfredImportConfig(root=str(root), split="valid_seen"))[0]
    return [replace(task, task_id=f"{task.task_id}#{i}", env_name=THOR_FAKE, seed=i) for i in range(count)]


def episodes_per_second(tasks, num_actors: int, seeds: list[int], env_settings: dict[str, Any] | None = None) -> float:
    config = EvalConfig(modes=["fixed", "randomized"], seeds=seeds, num_actors=num_actors, envs_per_actor=4,
                        cpus_per_actor=0.5, env_settings=env_settings or {})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = evaluate(config, "random", tmp, tasks=tasks, progress=False)
        return summary["episodes"] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, default=2, help="N (default: 2, the cores here)")
    parser.add_argument("--seeds", type=int, default=16, help="BabyAI: 12 tasks x 2 modes x seeds episodes")
    # The stand-in controller makes a THOR episode ~1 ms of actor work: with 12 tasks (192
    # episodes) the actors' start-up inside the timer was the whole measurement (1.05x), and with
    # 240 (3,840 episodes, ~3 s) still a quarter of it; 480 tasks x 16 seeds run ~15 s on one actor.
    parser.add_argument("--thor-tasks", type=int, default=480, help="THOR tasks (x 2 modes x seeds episodes)")
    args = parser.parse_args()
    # local Ray workers inherit these: they import this module (the THOR stand-in's registration)
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    plugins = [p for p in os.environ.get("RAYRG_PLUGINS", "").split(",") if p]
    os.environ["RAYRG_PLUGINS"] = ",".join([*plugins, "benchmarks.bench_eval"])
    init_ray(None)
    config = GenerateConfig()
    tasks = [t for n in range(1, 7) for i in range(2) if (t := make_eval_task(config, n, i))]
    seeds = list(range(args.seeds))
    episodes_per_second(tasks[:2], 1, [0])  # warm-up: worker processes, imports
    one = episodes_per_second(tasks, 1, seeds)
    many = episodes_per_second(tasks, args.actors, seeds)
    print(f"episodes: {len(tasks) * 2 * len(seeds)} (random policy, full step budgets)")
    print(f"1 actor: {one:.1f} episodes/s; {args.actors} actors: {many:.1f} episodes/s")
    print(f"evaluation scaling, {args.actors} actors vs 1: {many / one:.2f}x (goal >= {0.8 * args.actors:.1f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        thor = thor_tasks(Path(tmp), args.thor_tasks)
    episodes_per_second(thor[:2], 1, [0], THOR_SETTINGS)  # warm-up
    one = episodes_per_second(thor, 1, seeds, THOR_SETTINGS)
    many = episodes_per_second(thor, args.actors, seeds, THOR_SETTINGS)
    print(f"THOR episodes (stand-in controller): {len(thor) * 2 * len(seeds)}; 1 actor: {one:.1f} episodes/s; "
          f"{args.actors} actors: {many:.1f} episodes/s")
    print(f"evaluation scaling, THOR adapter (stand-in controller), {args.actors} actors vs 1: {many / one:.2f}x "
          f"(goal >= {0.8 * args.actors:.1f}x)")


if __name__ == "__main__":
    main()
