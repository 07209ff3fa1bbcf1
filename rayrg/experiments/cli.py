"""``rayrg run``, ``rayrg quickstart``, ``rayrg report`` and ``rayrg tune``."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("run", help="run an experiment config: data, labels, IQL, evaluation, report")
    p.add_argument("config", help="experiment YAML (see jobs/)")
    p.add_argument("--out", type=str, help="override the config's output directory")
    p.add_argument("--dry-run", action="store_true", help="check what the config needs and print the plan; run nothing")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.num_steps=200 --set seeds=[0,1] "
                        f"(YAML values; also read from ${SET_ENV}, separated by ';')")
    add_stage_args(p, _run)

    p = sub.add_parser("quickstart", help="the whole pipeline on a small BabyAI slice, local mode")
    p.add_argument("--out", type=str, default="runs/quickstart", help="output directory")
    p.add_argument("--dry-run", action="store_true", help="check what the run needs and print the plan; run nothing")
    add_stage_args(p, _quickstart)

    p = sub.add_parser("report", help="(re)build the report of an experiment output directory")
    p.add_argument("out", type=str, help="the experiment's output directory")
    p.set_defaults(func=_report)

    p = sub.add_parser("tune", help="Ray Tune sweep of expectile and beta (ASHA), ranked by evaluation return")
    p.add_argument("--config", help="SweepConfig YAML (see jobs/tune_demo.yaml, jobs/tune_babyai_full.yaml)")
    p.add_argument("--dataset", type=str, required=True)
    p.add_argument("--val-tasks", "--eval-tasks", dest="eval_tasks", type=str,
                   help="override eval.tasks: the VALIDATION tasks, val_tasks.json of `rayrg generate` "
                        "(a test set, eval_tasks.json, is refused: tuning never sees it)")
    p.add_argument("--out", type=str, required=True)
    add_stage_args(p, _tune)


SET_ENV = "RAYRG_SET"


def apply_overrides(data: dict, assignments: list[str]) -> dict:
    """``a.b.c=value`` (value parsed as YAML) into a nested mapping, in place."""
    import yaml

    from rayrg.config import ConfigError

    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.num_steps=200")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {assignment!r}: '{part}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def _run(args: argparse.Namespace) -> int:
    import os

    from rayrg.config import read_yaml_mapping
    from rayrg.experiments.config import ExperimentConfig

    data = read_yaml_mapping(args.config)
    sets = [s for s in os.environ.get(SET_ENV, "").split(";") if s.strip()] + args.set
    if sets:
        print(f"[rayrg] run: overrides {sets}", flush=True)
    config = ExperimentConfig.from_dict(apply_overrides(data, sets), source=str(args.config))
    args.retry = ["rayrg", "run", str(args.config), *(["--out", str(args.out)] if args.out else []),
                  *(f"--set={s}" for s in args.set)]
    return _checked_run(config.with_out(args.out), args)


def _quickstart(args: argparse.Namespace) -> int:
    from rayrg.experiments.config import ExperimentConfig

    args.retry = ["rayrg", "quickstart", "--out", str(args.out)]
    return _checked_run(ExperimentConfig().with_out(args.out), args)


def _checked_run(config, args: argparse.Namespace) -> int:
    """Preflight (before Ray starts or a file is written), the plan, then the run."""
    import sys

    from rayrg.experiments.preflight import plan, preflight
    from rayrg.experiments.runner import run_experiment

    problems = preflight(config, address=args.address, num_cpus=args.num_cpus)
    for problem in problems:
        print(f"rayrg {args.command}: error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(plan(config, address=args.address), flush=True)
    if args.dry_run:
        return 0
    if args.num_cpus is not None and args.address is None:
        from rayrg.runtime import init_ray

        init_ray(None, num_cpus=args.num_cpus)
    import shlex

    retry = [*args.retry, *(["--address", args.address] if args.address else [])]
    run_experiment(config, address=args.address, command=shlex.join(retry))
    return 0


def _report(args: argparse.Namespace) -> int:
    from rayrg.report.build import build_report

    print(f"report: {build_report(args.out)}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from rayrg.experiments.sweep import SweepConfig, sweep

    config = SweepConfig.from_yaml(args.config) if args.config else SweepConfig()
    if args.eval_tasks:
        config = config.model_copy(update={"eval": config.eval.model_copy(update={"tasks": str(args.eval_tasks)})})
    table = sweep(config, args.dataset, args.out, address=args.address)
    print(table)
    return 0
