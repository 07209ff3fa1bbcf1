"""``rayrg pr-report``, ``rayrg scaling-report``, ``rayrg prompt-report``.

Labelling itself is ``rayrg label --config X.yaml`` (the config's ``method`` picks clip,
vlmrm, blip2 or roboclip); these commands score rewards against ground truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("pr-report", help="precision-recall of reward columns vs goal / sub-task truth (PNG + JSON)")
    p.add_argument("--dataset", type=str, action="append", required=True,
                   help="labelled dataset directory (repeat for several)")
    p.add_argument("--column", action="append", default=None, help="reward column(s) (default: all reward_*)")
    p.add_argument("--out", type=str, required=True, help="report directory")
    p.set_defaults(func=_pr)

    # The two sweeps of one similarity config differ only in what they vary.
    for name, help_, (option, varied), func in (
        ("scaling-report", "PR-AUC per checkpoint of one model family, in one run",
         ("--model", {"required": True, "help": "LABEL=MODEL or MODEL (hub id or directory); repeat per size"}),
         _scaling),
        ("prompt-report", "PR-AUC per prompt template",
         ("--template", {"default": None, "help": "LABEL::TEMPLATE or TEMPLATE with '{instruction}'; repeat "
                                                  "(default: a built-in set)"}),
         _prompts),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True,
                       help="label config YAML of a similarity method (clip, vlmrm, blip2, roboclip, ...)")
        p.add_argument(option, action="append", **varied)
        p.add_argument("--dataset", type=str, required=True, help="trajectory dataset directory")
        p.add_argument("--out", type=str, required=True, help="report directory")
        add_stage_args(p, func)




def _init(args: argparse.Namespace) -> None:
    if args.address is None and args.num_cpus is not None:
        from rayrg.runtime import init_ray

        init_ray(None, num_cpus=args.num_cpus)


def _print(report: dict, key: str, out: Path) -> None:
    for row in report[key]:
        ap = {t: row["truth"][t]["average_precision"] for t in ("goal", "subtask")}
        name = row.get("label") or row.get("column")
        print(f"{name:<28} params={row.get('num_parameters') or '-':<10} "
              f"AP goal={ap['goal']:.3f}  AP sub-task={ap['subtask']:.3f}")
    print(f"report: {out}")


def _pr(args: argparse.Namespace) -> int:
    from rayrg.rewards.similarity.reports import pr_report

    report = pr_report(args.dataset, args.out, columns=args.column)
    _print(report, "columns", args.out)
    if report.get("caveat"):
        print(report["caveat"])
    return 0


def _scaling(args: argparse.Namespace) -> int:
    from rayrg.config import read_yaml_mapping
    from rayrg.rewards.similarity.reports import scaling_report

    models = [tuple(m.split("=", 1)) if "=" in m else (Path(m).name or m, m) for m in args.model]
    _init(args)
    report = scaling_report(read_yaml_mapping(args.config), models, args.dataset, args.out, address=args.address)
    _print(report, "models", args.out)
    return 0


def _prompts(args: argparse.Namespace) -> int:
    from rayrg.config import read_yaml_mapping
    from rayrg.rewards.similarity.reports import DEFAULT_TEMPLATES, prompt_report

    if args.template:
        templates = [tuple(t.split("::", 1)) if "::" in t else (f"t{i}", t) for i, t in enumerate(args.template)]
    else:
        templates = list(DEFAULT_TEMPLATES.items())
    _init(args)
    report = prompt_report(read_yaml_mapping(args.config), templates, args.dataset, args.out, address=args.address)
    _print(report, "templates", args.out)
    return 0
