"""``rayrg reward-bench`` at scale: a synthetic labelled evaluation set of 100k frames.

Prints ``reward-bench on 100k frames: X s (goal < 120 s on 2 cores)`` and the driver's peak
RSS at two sizes (25k and 100k frames): the bench reduces each shard to one small row per
episode on Ray Data, so the driver's memory should barely grow with the number of episodes.
Each size runs in a fresh process (its own local Ray cluster, ``--num-cpus``).

    PYTHONPATH=. python benchmarks/bench_reward_bench.py [--num-cpus 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

EPISODE_LEN = 50
EPISODES_PER_SHARD = 100


def make_set(out: Path, frames: int, seed: int = 0) -> Path:
    """A valid labelled evaluation set: 4 kinds, 3 reward columns, progress_true (tiny frames)."""
    from rayrg.data.evalset import EVALSET_KIND, KINDS, PROGRESS_TRUE
    from rayrg.data.schema import TRANSITION_SCHEMA, DatasetMetadata, encode_png, write_shard

    rng = np.random.default_rng(seed)
    png = encode_png(np.zeros((8, 8, 3), dtype=np.uint8))
    episodes = frames // EPISODE_LEN
    out.mkdir(parents=True, exist_ok=True)
    for s in range(0, episodes, EPISODES_PER_SHARD):
        cols: dict[str, list] = {f.name: [] for f in TRANSITION_SCHEMA}
        extra: dict[str, list] = {EVALSET_KIND: [], PROGRESS_TRUE: [], "reward_a": [], "reward_b": [],
                                  "reward_sparse": []}
        for e in range(s, min(s + EPISODES_PER_SHARD, episodes)):
            kind = KINDS[e % 4]
            base = e - e % 4
            eid = f"ep{base}" if kind == "original" else f"ep{base}~{kind}"
            T = EPISODE_LEN
            progress = (np.arange(T) + 1) / T if kind == "original" else rng.random(T) * 0.9
            success = kind == "original"
            for t in range(T):
                row = {"episode_id": eid, "step": t, "task_id": f"task{base}", "instruction": "go",
                       "num_subtasks": 1, "env_name": "synthetic", "seed": base, "frame": png,
                       "final_frame": png if t == T - 1 else None, "action": int(rng.integers(6)),
                       "action_name": "a", "expert_action": int(rng.integers(6)), "is_random_action": False,
                       "terminal": success and t == T - 1, "truncated": (not success) and t == T - 1,
                       "subtasks_completed": int(success and t == T - 1), "success": success}
                for k, v in row.items():
                    cols[k].append(v)
            extra[EVALSET_KIND] += [kind] * T
            extra[PROGRESS_TRUE] += list(progress)
            extra["reward_a"] += list(np.diff(np.concatenate([[0], progress])) + rng.normal(0, 0.02, T))
            extra["reward_b"] += list(rng.random(T))
            extra["reward_sparse"] += [0.0] * (T - 1) + [float(success)]
        table = pa.table({**{f.name: pa.array(cols[f.name], f.type) for f in TRANSITION_SCHEMA},
                          EVALSET_KIND: pa.array(extra[EVALSET_KIND], pa.string()),
                          **{k: pa.array(v, pa.float32()) for k, v in extra.items() if k != EVALSET_KIND}})
        write_shard(table, out / f"part-{s // EPISODES_PER_SHARD:05d}.parquet")
    DatasetMetadata(generator="benchmarks.synthetic", env_name="synthetic", num_episodes=episodes,
                    num_transitions=episodes * EPISODE_LEN).write(out)
    return out


def child(frames: int, num_cpus: int) -> None:
    import resource

    from rayrg.bench.bench import reward_bench
    from rayrg.runtime import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        data = make_set(Path(tmp) / "set", frames)
        init_ray(num_cpus=num_cpus)
        start = time.perf_counter()
        reward_bench(data, Path(tmp) / "out")
        took = time.perf_counter() - start
    print(json.dumps({"frames": frames, "seconds": took,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--child", type=int, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.num_cpus)
        return
    results = {}
    for frames in (25_000, 100_000):
        run = subprocess.run([sys.executable, __file__, "--child", str(frames), "--num-cpus", str(args.num_cpus)],
                             capture_output=True, text=True, check=True)
        results[frames] = json.loads(run.stdout.strip().splitlines()[-1])
    big, small = results[100_000], results[25_000]
    print(f"reward-bench on 100k frames: {big['seconds']:.1f} s (goal < 120 s on {args.num_cpus} cores)")
    print(f"driver peak RSS: {small['peak_rss_mb']:.0f} MB at 25k frames, {big['peak_rss_mb']:.0f} MB at 100k "
          f"frames (ratio {big['peak_rss_mb'] / small['peak_rss_mb']:.2f} for 4x the episodes)")


if __name__ == "__main__":
    main()
