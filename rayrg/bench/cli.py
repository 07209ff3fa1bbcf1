"""``rayrg reward-bench``."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("reward-bench", help="score every reward column the way the field does (VOC, "
                                            "success AUROC/F1, Kendall τ, mismatch, Table I), with intervals")
    # str, not Path: a storage URI (s3://…) stays one (Path would collapse it to s3:/…)
    p.add_argument("--dataset", required=True, help="labelled (evaluation) dataset (a path or URI)")
    p.add_argument("--out", required=True, help="directory for bench.json, bench.md, bench.png (a path or URI)")
    p.add_argument("--columns", nargs="+", default=None, help="columns to score (default: every reward_*/progress_* column)")
    p.add_argument("--assume-success", action="store_true",
                   help="treat every episode as a successful demonstration (datasets that record no "
                        "success, e.g. most LeRobot sets): VOC is scored, success metrics are skipped")
    p.add_argument("--config", help="BenchConfig YAML: resamples, seed, validation_fraction, threshold")
    add_stage_args(p, _bench, allow_unfinished="score", overwrite=True)


def _bench(args: argparse.Namespace) -> int:
    from rayrg.bench.bench import BenchConfig, reward_bench
    from rayrg.storage import resolve

    config = BenchConfig.from_yaml(args.config) if args.config else BenchConfig()
    reward_bench(args.dataset, args.out, args.columns, args.assume_success, config, address=args.address,
                 on_change="redo" if args.overwrite else "refuse", allow_unfinished=args.allow_unfinished)
    out = resolve(args.out)
    print((out / "bench.md").read_text(), end="")
    print(f"bench: {out / 'bench.json'}")
    return 0
