"""``rayrg generate``, ``rayrg inspect`` and ``rayrg evalset``."""

from __future__ import annotations

import argparse
import json


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("generate", help="generate a BabyAI offline dataset (+ held-out eval tasks)")
    p.add_argument("--config", help="GenerateConfig YAML (defaults if omitted)")
    p.add_argument("--out", type=str, required=True, help="output directory")
    p.add_argument("--episodes-per-count", type=int, help="override: episodes per sub-task count")
    p.add_argument("--eval-tasks-per-count", type=int, help="override: test tasks per sub-task count")
    p.add_argument("--val-tasks-per-count", type=int, help="override: validation tasks per sub-task count")
    p.add_argument("--noise", type=float, help="override: ε of random actions")
    p.add_argument("--seed", type=int, help="override: base seed")
    add_stage_args(p, _generate, overwrite=True)

    p = sub.add_parser("inspect", help="summarise a trajectory or labelled dataset")
    p.add_argument("dataset", type=str, help="dataset directory (with metadata.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--validate-images", action="store_true", help="decode every frame too")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("evalset", help="an evaluation set for reward models: successful episodes plus "
                                       "rewound, truncated and instruction-swapped negatives")
    # str, not Path: a storage URI (s3://…) stays one (Path would collapse it to s3:/…)
    p.add_argument("--dataset", required=True, help="trajectory dataset that marks success (a path or URI)")
    p.add_argument("--out", required=True, help="evaluation set (a trajectory dataset) to write (a path or URI)")
    p.add_argument("--config", help="EvalsetConfig YAML: seed, mix (defaults if omitted)")
    p.add_argument("--seed", type=int, help="override: seed of every draw")
    add_stage_args(p, _evalset, overwrite=True)


def _generate(args: argparse.Namespace) -> int:
    from rayrg.data.generate import GenerateConfig, generate

    overrides = {"episodes_per_count": args.episodes_per_count,
                 "eval_tasks_per_count": args.eval_tasks_per_count,
                 "val_tasks_per_count": args.val_tasks_per_count,
                 "noise": args.noise, "seed": args.seed}
    if args.config:
        config = GenerateConfig.from_yaml(args.config, **overrides)
    else:
        config = GenerateConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    out = generate(config, args.out, address=args.address, on_change="redo" if args.overwrite else "refuse")
    print(f"dataset: {out / 'trajectories'}\ntest tasks: {out / 'eval_tasks.json'} (the report's)\n"
          f"validation tasks: {out / 'val_tasks.json'} (for `rayrg tune`)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rayrg.data.inspect import format_summary, summarize

    summary = summarize(args.dataset, validate_images=args.validate_images)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _evalset(args: argparse.Namespace) -> int:
    from rayrg.data.evalset import EvalsetConfig, build_evalset

    overrides = {"seed": args.seed}
    if args.config:
        config = EvalsetConfig.from_yaml(args.config, **overrides)
    else:
        config = EvalsetConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    out = build_evalset(args.dataset, args.out, config, address=args.address,
                        on_change="redo" if args.overwrite else "refuse")
    print(f"evaluation set: {out}")
    return 0
