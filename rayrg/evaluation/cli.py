"""``rayrg evaluate``."""

from __future__ import annotations

import argparse
import json


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("evaluate", help="evaluate a policy on held-out tasks (fixed and randomized starts)")
    p.add_argument("--policy", required=True, help="'expert', 'random' or an IQL checkpoint directory")
    p.add_argument("--tasks", type=str, help="evaluation tasks JSON (overrides the config's)")
    p.add_argument("--config", help="EvalConfig YAML")
    p.add_argument("--out", type=str, required=True, help="output directory (resumes if it has results)")
    p.add_argument("--num-actors", type=int, help="override: evaluation actors")
    add_stage_args(p, _evaluate, overwrite=True)


def _evaluate(args: argparse.Namespace) -> int:
    from rayrg.evaluation.config import EvalConfig
    from rayrg.evaluation.evaluate import evaluate

    overrides = {"tasks": str(args.tasks) if args.tasks else None, "num_actors": args.num_actors}
    config = (EvalConfig.from_yaml(args.config, **overrides) if args.config
              else EvalConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
    summary = evaluate(config, args.policy, args.out, address=args.address,
                       on_change="redo" if args.overwrite else "refuse")
    print(json.dumps(summary["modes"], indent=2))
    return 0
