"""Training that shares a node: one IQL run alone, then two at once in one Ray cluster.

One run, same data and config (``TrainConfig()`` defaults unless ``--torch-threads``):

* in-process: ``IQLLearner.update`` in this process with the threads a worker would run;
* in a Ray Train worker: ``build_trainer(...).fit()`` alone on the local cluster;
* two concurrently: two ``fit()`` calls at once (each from a Ray task, as Tune runs trials).

Throughput is updates over wall time from the start of ``fit()`` to its end (worker start-up
included, the same for one run and for two): two runs' total is 2N over the span from the
first start to the last end, so runs that Ray serialises (each asking for every CPU, e.g.
``--torch-threads 2`` on 2 CPUs) count as what they are. The in-process reference times the
same updates without Ray; the worker's own rate is its last report's ``perf/steps_per_s``
(the window after warm-up). Prints
``two concurrent runs vs one alone (total updates/s): R`` (goal ≥ 0.8) and
``in Ray Train worker vs in-process: R`` (goal ≥ 0.9).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_iql import make_dataset, updates_per_s


def fit(config_dict: dict, dataset: str, out: str) -> tuple[float, float, float]:
    """(the worker's steady updates/s, wall-clock start, end) of one training run."""
    import time

    from rayrg.rl.config import TrainConfig
    from rayrg.rl.train import build_trainer

    start = time.time()
    result = build_trainer(TrainConfig.from_dict(config_dict), dataset, out).fit()
    return float(result.metrics["perf/steps_per_s"]), start, time.time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200, help="updates per run (4 reports)")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--episodes-per-count", type=int, default=6)
    args = parser.parse_args()

    import ray
    import torch

    from rayrg.rl.config import TrainConfig
    from rayrg.runtime import init_ray

    config = TrainConfig(num_steps=args.steps, report_every=args.steps // 4, checkpoint_every=args.steps,
                         torch_threads=args.torch_threads)
    threads = max(1, int(max(config.cpus_per_worker, config.torch_threads or 0)))
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp), args.episodes_per_count)
        torch.set_num_threads(threads)
        in_process, n = updates_per_s(config, dataset, "cpu", args.steps * 3 // 4)
        print(f"in-process: {in_process:.1f} updates/s ({n} transitions, {threads} threads)", flush=True)

        init_ray(num_cpus=args.num_cpus)
        worker, start, end = fit(config.to_dict(), str(dataset), str(Path(tmp) / "alone"))
        alone = args.steps / (end - start)
        print(f"in a Ray Train worker, alone: {worker:.1f} updates/s steady, {alone:.1f} over the whole fit",
              flush=True)
        remote = ray.remote(num_cpus=0)(fit)
        pair = ray.get([remote.remote(config.to_dict(), str(dataset), str(Path(tmp) / f"pair{i}"))
                        for i in range(2)])
        span = max(p[2] for p in pair) - min(p[1] for p in pair)
        overlap = max(0.0, min(p[2] for p in pair) - max(p[1] for p in pair)) / span
        total = 2 * args.steps / span
        print(f"two concurrent runs: {pair[0][0]:.1f} + {pair[1][0]:.1f} updates/s steady, {total:.1f} "
              f"together over the whole span ({overlap:.0%} of it with both running)", flush=True)
        ray.shutdown()
    print(f"two concurrent runs vs one alone (total updates/s): {total / alone:.2f}")
    print(f"in Ray Train worker vs in-process: {worker / in_process:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
