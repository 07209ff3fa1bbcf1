"""IQL update throughput: the default BabyAI observation against today's frame path.

One run, same data, same batch size, same update code (one backward, one AdamW step):

* ``default``: ``TrainConfig()`` as shipped (symbolic state + history of 4, one state
  encoder per network, 128-wide heads, no conv);
* ``frame``: 56x56 RGB frames, one conv encoder per network (Q, target Q, V, policy), 256-wide
  heads (pinned, so a change of the defaults never moves the reference);
* ``frame-shared``: frames through one shared conv encoder (``shared_encoder: true``);
* the default's observation with a shared encoder (faster; not the default: it learned worse).

Each learner runs its fused update on device-resident data (the trainer's own path,
``IQLLearner.update`` + ``TransitionTensors.sample``) and is timed after a warm-up. The data
is generated in-process (no Ray is imported: the bench doubles as an update-only device check,
``--no-ray`` asserts it). The last line reads ``iql default vs frame path: N.N×``.

It then times whole ``--run-steps`` runs of the default (construction included) four ways:
each network building its own encoder input (the update before they were shared: the
reference), today's eager update (multi-hot and instruction word shares built once per batch), V(s) and V(s') in one call (``fused-value``; the twin Q heads are
already one matmul per layer, rayrg.rl.networks.MultiHeadMLP), and ``torch.compile``
(inductor on CPU, compilation included, as each Ray worker would pay it), printing each
variant's wall time over eager's (below 1: faster).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


FRAME_PATH = {"observation": "frame", "history": 1, "hidden": 256, "shared_encoder": False}


def make_dataset(directory: Path, episodes_per_count: int) -> Path:
    """A small BabyAI dataset rolled out in this process (the generator's own shard writer)."""
    from rayrg.data.generate import GenerateConfig, generate_shard
    from rayrg.data.schema import DatasetMetadata
    from rayrg.envs.babyai import ENV_NAME

    config = GenerateConfig(episodes_per_count=episodes_per_count, eval_tasks_per_count=0, subtask_counts=[1, 2, 3])
    jobs = [(n, config.train_seed(n, i)) for n in config.subtask_counts for i in range(episodes_per_count)]
    data = directory / "trajectories"
    stats = generate_shard(jobs, config.to_dict(), str(data / "part-00000.parquet"))
    DatasetMetadata(generator="benchmarks/bench_iql", env_name=ENV_NAME, num_episodes=stats["episodes"],
                    num_transitions=stats["transitions"]).write(data)
    return data


def updates_per_s(config, dataset: Path, device: str, steps: int) -> tuple[float, int]:
    import torch

    from rayrg.rl.checkpoint import network_spec
    from rayrg.rl.data import load_transitions
    from rayrg.rl.iql import IQLLearner

    data, featurizer, info = load_transitions(dataset, "reward_sparse", observation=config.observation,
                                              history=config.history)
    torch.manual_seed(0)
    learner = IQLLearner(config, network_spec(config, info, featurizer, int(data.text.shape[-1])), device=device)
    data = data.to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)

    def run(n: int) -> float:
        start = time.perf_counter()
        metrics = {}
        for _ in range(n):
            metrics = learner.update(data.sample(config.batch_size, generator))
        float(metrics["loss/q"])  # one host sync, as the trainer does once per report
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run(max(3, steps // 10))  # warm-up (allocator, first-call overheads)
    return steps / run(steps), len(data)


def _fused_value_learner() -> type:
    from rayrg.rl.iql import IQLLearner

    class FusedValueLearner(IQLLearner):
        """V(s) and V(s') in one call on the two batches concatenated (V(s') detached)."""

        def values(self, obs, next_obs, text, prepared=False):  # type: ignore[no-untyped-def]
            import torch

            both = self.v(torch.cat([obs, next_obs]), torch.cat([text, text]), prepared)
            return both[:obs.shape[0]], both[obs.shape[0]:].detach()

    return FusedValueLearner


def run_wall_s(config, dataset: Path, device: str, steps: int, variant: str) -> float:
    """Wall time of a whole ``steps``-update run of ``variant`` (eager, compile, fused-value, or
    per-network-inputs: each network builds its own encoder input, the update before it):
    learner construction and, for ``compile``, compilation included (each Ray worker compiles anew)."""
    import torch

    from rayrg.rl.checkpoint import network_spec
    from rayrg.rl.data import load_transitions
    from rayrg.rl.iql import IQLLearner

    data, featurizer, info = load_transitions(dataset, "reward_sparse", observation=config.observation,
                                              history=config.history)
    data = data.to(device)
    torch.manual_seed(0)
    start = time.perf_counter()
    cls = _fused_value_learner() if variant == "fused-value" else IQLLearner
    learner = cls(config, network_spec(config, info, featurizer, int(data.text.shape[-1])), device=device)
    learner._prepare_input = variant != "per-network-inputs"
    update = torch.compile(learner.update) if variant == "compile" else learner.update
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    metrics = {}
    for _ in range(steps):
        metrics = update(data.sample(config.batch_size, generator))
    float(metrics["loss/q"])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=400, help="timed updates of the default config")
    parser.add_argument("--frame-steps", type=int, default=40, help="timed updates of each frame variant")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--episodes-per-count", type=int, default=6)
    parser.add_argument("--no-ray", action="store_true", help="assert that Ray was never imported")
    parser.add_argument("--batch-size", type=int, default=None, help="every variant's batch (default: the config's)")
    parser.add_argument("--run-steps", type=int, default=1500,
                        help="updates of the whole-run comparison (eager, torch.compile, fused V); 0: skip it")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_iql: --device cuda, but torch sees no CUDA GPU on this machine", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from rayrg.rl.config import TrainConfig

    default = TrainConfig()
    variants = {
        f"default ({default.observation}, history {default.history})": (default, args.steps),
        # today's frame path, pinned: the heads' width and encoders as before the state default
        "frame (today's path: conv per network)": (TrainConfig(**FRAME_PATH), args.frame_steps),
        "frame, shared encoder": (TrainConfig(**{**FRAME_PATH, "shared_encoder": True}), args.frame_steps),
        # faster, but learned far worse on BabyAI (TrainConfig.shared_encoder): not the default
        f"{default.observation}, shared encoder": (
            TrainConfig(observation=default.observation, history=default.history, shared_encoder=True),
            args.steps),
    }
    if args.batch_size:  # e.g. 256 on a GPU (benchmarks/gpu_check.sh)
        variants = {k: (c.model_copy(update={"batch_size": args.batch_size}), n) for k, (c, n) in variants.items()}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp), args.episodes_per_count)
        rates = {}
        for name, (config, steps) in variants.items():
            rates[name], n = updates_per_s(config, dataset, args.device, steps)
            print(f"{name}: {rates[name]:.1f} updates/s ({steps} updates, {n} transitions, "
                  f"batch {config.batch_size}, {args.device}, {args.threads} threads)", flush=True)
        walls = {}
        for variant in ("per-network-inputs", "eager", "fused-value", "compile") if args.run_steps else ():
            walls[variant] = run_wall_s(default, dataset, args.device, args.run_steps, variant)
            print(f"{args.run_steps}-update run of the default, {variant}: {walls[variant]:.1f} s "
                  f"(construction{' and compilation' if variant == 'compile' else ''} included)", flush=True)
    if args.no_ray and "ray" in sys.modules:
        print("bench_iql: --no-ray, but ray was imported", file=sys.stderr)
        return 1
    values = list(rates.values())
    print(f"frame shared encoder vs frame path: {values[2] / values[1]:.1f}×")
    print(f"{default.observation} shared encoder vs frame path: {values[3] / values[1]:.1f}×")
    if walls:
        print(f"{args.run_steps}-update run, eager (inputs built once per batch) vs each network building "
              f"its own (wall time): {walls['eager'] / walls['per-network-inputs']:.2f}")
        print(f"{args.run_steps}-update run, default vs the update before inputs were shared (wall time): "
              f"{min(walls['eager'], walls['compile']) / walls['per-network-inputs']:.2f}")
        print(f"{args.run_steps}-update run, fused V(s), V(s') vs eager (wall time): "
              f"{walls['fused-value'] / walls['eager']:.2f}")
        print(f"{args.run_steps}-update run, torch.compile (compilation included) vs eager (wall time): "
              f"{walls['compile'] / walls['eager']:.2f}")
    print(f"iql default vs frame path: {values[0] / values[1]:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
