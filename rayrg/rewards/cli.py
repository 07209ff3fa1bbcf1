"""``rayrg label`` (any registered method) and ``rayrg reward-report``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("label", help="label a trajectory dataset with rewards (method from the config)")
    p.add_argument("--config", required=True, help="label config YAML; its 'method' picks the labeller")
    p.add_argument("--dataset", type=str, required=True, help="trajectory or labelled dataset directory")
    p.add_argument("--out", type=str, required=True, help="labelled dataset to write")
    p.add_argument("--yes", action="store_true",
                   help="methods that cost money (e.g. paid API backends): skip the cost confirmation. Without it "
                        "the estimate is shown and, on a terminal, confirmation asked; when stdin is not "
                        "a terminal (jobs, pipes) the run proceeds after printing the estimate")
    add_stage_args(p, _label, allow_unfinished="label on top of", overwrite=True)

    p = sub.add_parser("estimate", help="requests, tokens, cost and wall time of a label config, before any call")
    p.add_argument("--config", required=True, help="label config YAML (a method that declares an estimate)")
    p.add_argument("--dataset", type=str, required=True, help="trajectory dataset directory")
    p.add_argument("--latency-s", type=float, default=None,
                   help="seconds per request, for the wall time (else --measure, else rate limits only)")
    p.add_argument("--measure", type=int, default=None, metavar="N",
                   help="label the first N windows for real (sent and paid for, into a temporary "
                        "directory) and use their latency, answer lengths and parse-retry rate")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    add_stage_args(p, _estimate)

    p = sub.add_parser("reward-report", help="reward quality against ground truth (the paper's Table I)")
    p.add_argument("--dataset", type=str, action="append", required=True,
                   help="labelled dataset directory (repeat for several)")
    p.add_argument("--column", action="append", default=None,
                   help="reward column(s) to score (default: every reward_* column)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="reward >= threshold counts as 'contributes' (0.5 = a 0-10 score >= 5)")
    p.add_argument("--out", type=str, help="write the report as JSON here")
    p.set_defaults(func=_report)


def _load(path: Path):
    from rayrg.config import read_yaml_mapping
    from rayrg.rewards.registry import load_label_config

    return load_label_config(read_yaml_mapping(path), source=str(path))


def _label(args: argparse.Namespace) -> int:
    import json
    import shlex
    import sys

    from rayrg.rewards.registry import run_label

    method, config = _load(args.config)
    lacks = method.dataset_problems(config, args.dataset)  # before the estimate is confirmed, not after
    if lacks:
        from rayrg.contracts.versions import DatasetError

        raise DatasetError("; ".join(lacks))
    if method.costs_money(config) and not args.yes:
        from rayrg.rewards.declarations import confirm

        if not confirm(method.estimate_of(config, args.dataset), sys.stdin, sys.stdout):
            print("not started", flush=True)
            return 1
    # What retries failed windows: this command again (the answers paid for come from the cache).
    retry = ["rayrg", "label", "--config", str(args.config), "--dataset", str(args.dataset), "--out", str(args.out)]
    retry += ["--address", args.address] if args.address else []
    retry += ["--yes"] if args.yes else []
    retry += ["--allow-unfinished"] if args.allow_unfinished else []
    out = run_label(method, config, args.dataset, args.out, address=args.address,
                    on_change="redo" if args.overwrite else "refuse", allow_unfinished=args.allow_unfinished,
                    retry=shlex.join(retry))
    from rayrg.contracts.labels import read_summary

    summary = read_summary(out, f"_{method.name}_summary.json")
    if summary is not None:
        print(json.dumps(summary, indent=2))
    print(f"labelled dataset: {out}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    import json

    from rayrg.config import ConfigError
    from rayrg.rewards.declarations import EstimateOptions

    method, config = _load(args.config)
    if method.estimate is None:
        raise ConfigError(f"{args.config}: method {method.name!r} declares no estimate (it makes no model calls "
                          "that are counted or paid for)")
    if args.latency_s is not None and args.latency_s <= 0:
        raise ConfigError("--latency-s must be positive")
    result = method.estimate_of(config, args.dataset, EstimateOptions(args.latency_s, args.measure, args.address))
    print(json.dumps(result.to_dict(), indent=2) if args.json else "\n".join(result.lines()), flush=True)
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from rayrg.rewards.report import format_table, reward_report

    rows = reward_report(args.dataset, columns=args.column, threshold=args.threshold)
    print(format_table(rows))
    if args.out:
        from rayrg.storage import prepare_output

        prepare_output(args.out).write_text(json.dumps({"threshold": args.threshold, "rows": rows}, indent=2))
        print(f"report: {args.out}")
    return 0
