"""Evaluation throughput: episodes/s with N actors divided by episodes/s with 1 actor.

Same tasks, modes and seeds on both sides (random policy, so every episode runs its full
step budget); Ray is started before timing; each side's actors start inside its timer,
as they do in a real evaluation. Goal: ≥ 0.8·N up to the core count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rayrg.data.generate import GenerateConfig, make_eval_task
from rayrg.evaluation.config import EvalConfig
from rayrg.evaluation.evaluate import evaluate
from rayrg.runtime import init_ray


def episodes_per_second(tasks, num_actors: int, seeds: list[int]) -> float:
    config = EvalConfig(modes=["fixed", "randomized"], seeds=seeds, num_actors=num_actors, envs_per_actor=4,
                        cpus_per_actor=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = evaluate(config, "random", tmp, tasks=tasks, progress=False)
        return summary["episodes"] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, default=2, help="N (default: 2, the cores here)")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
