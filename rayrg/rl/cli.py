"""``rayrg train`` and ``rayrg tune``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli import add_ray_args

    p = sub.add_parser("train", help="train discrete language-conditioned IQL on Ray Train")
    p.add_argument("--config", type=Path, help="TrainConfig YAML (see jobs/iql_babyai.yaml)")
    p.add_argument("--dataset", type=Path, required=True, help="labelled trajectory dataset")
    p.add_argument("--out", type=Path, required=True, help="run directory (resumes if it has checkpoints)")
    p.add_argument("--reward-column", help="override: reward_* column to learn from")
    p.add_argument("--num-steps", type=int, help="override: gradient steps")
    add_ray_args(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("tune", help="Ray Tune sweep of expectile and beta (ASHA)")
    p.add_argument("--config", type=Path, help="SweepConfig YAML (see jobs/tune_babyai.yaml)")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    add_ray_args(p)
    p.set_defaults(func=_tune)


def _train(args: argparse.Namespace) -> int:
    from rayrg.rl.config import TrainConfig
    from rayrg.rl.train import train

    overrides = {"reward_column": args.reward_column, "num_steps": args.num_steps}
    config = (TrainConfig.from_yaml(args.config, **overrides) if args.config
              else TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
    print(f"final checkpoint: {train(config, args.dataset, args.out, address=args.address)}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from rayrg.rl.config import SweepConfig
    from rayrg.rl.tune import sweep

    config = SweepConfig.from_yaml(args.config) if args.config else SweepConfig()
    table = sweep(config, args.dataset, args.out, address=args.address)
    print(table)
    return 0
