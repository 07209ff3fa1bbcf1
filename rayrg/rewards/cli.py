"""``rayrg label`` (any registered method) and ``rayrg reward-report``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli import add_overwrite_arg, add_ray_args

    p = sub.add_parser("label", help="label a trajectory dataset with rewards (method from the config)")
    p.add_argument("--config", type=Path, required=True, help="label config YAML; its 'method' picks the labeller")
    p.add_argument("--dataset", type=Path, required=True, help="trajectory or labelled dataset directory")
    p.add_argument("--out", type=Path, required=True, help="labelled dataset to write")
    add_overwrite_arg(p)
    add_ray_args(p)
    p.set_defaults(func=_label)

    p = sub.add_parser("reward-report", help="reward quality against ground truth (the paper's Table I)")
    p.add_argument("--dataset", type=Path, action="append", required=True,
                   help="labelled dataset directory (repeat for several)")
    p.add_argument("--column", action="append", default=None,
                   help="reward column(s) to score (default: every reward_* column)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="reward >= threshold counts as 'contributes' (0.5 = RG-VLM score >= 5)")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    p.set_defaults(func=_report)


def _label(args: argparse.Namespace) -> int:
    import json

    import yaml

    from rayrg.config import ConfigError
    from rayrg.rewards.registry import load_label_config, run_label

    if not args.config.exists():
        raise ConfigError(f"config file not found: {args.config}")
    data = yaml.safe_load(args.config.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{args.config}: expected a mapping at top level")
    method, config = load_label_config(data, source=str(args.config))
    out = run_label(method, config, args.dataset, args.out, address=args.address,
                    on_change="redo" if args.overwrite else "refuse")
    summary = Path(out) / f"_{method.name}_summary.json"
    if summary.exists():
        print(json.dumps(json.loads(summary.read_text()), indent=2))
    print(f"labelled dataset: {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from rayrg.rewards.report import format_table, reward_report

    rows = reward_report(args.dataset, columns=args.column, threshold=args.threshold)
    print(format_table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threshold": args.threshold, "rows": rows}, indent=2))
        print(f"report: {args.out}")
    return 0
