"""``rayrg generate`` and ``rayrg inspect``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_overwrite_arg, add_ray_args

    p = sub.add_parser("generate", help="generate a BabyAI offline dataset (+ held-out eval tasks)")
    p.add_argument("--config", type=Path, help="GenerateConfig YAML (defaults if omitted)")
    p.add_argument("--out", type=str, required=True, help="output directory")
    p.add_argument("--episodes-per-count", type=int, help="override: episodes per sub-task count")
    p.add_argument("--eval-tasks-per-count", type=int, help="override: eval tasks per sub-task count")
    p.add_argument("--noise", type=float, help="override: ε of random actions")
    p.add_argument("--seed", type=int, help="override: base seed")
    add_overwrite_arg(p)
    add_ray_args(p)
    p.set_defaults(func=_generate)

    p = sub.add_parser("inspect", help="summarise a trajectory or labelled dataset")
    p.add_argument("dataset", type=str, help="dataset directory (with metadata.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--validate-images", action="store_true", help="decode every frame too")
    p.set_defaults(func=_inspect)


def _generate(args: argparse.Namespace) -> int:
    from rayrg.data.generate import GenerateConfig, generate

    overrides = {"episodes_per_count": args.episodes_per_count,
                 "eval_tasks_per_count": args.eval_tasks_per_count,
                 "noise": args.noise, "seed": args.seed}
    if args.config:
        config = GenerateConfig.from_yaml(args.config, **overrides)
    else:
        config = GenerateConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    out = generate(config, args.out, address=args.address, on_change="redo" if args.overwrite else "refuse")
    print(f"dataset: {out / 'trajectories'}\neval tasks: {out / 'eval_tasks.json'}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rayrg.data.inspect import format_summary, summarize

    summary = summarize(args.dataset, validate_images=args.validate_images)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
