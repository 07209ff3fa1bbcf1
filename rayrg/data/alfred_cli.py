"""``rayrg alfred-import``: an ALFRED split as a rayrg trajectory dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_overwrite_arg, add_ray_args

    p = sub.add_parser("alfred-import",
                       help="import ALFRED traj_data.json + images as a trajectory dataset")
    p.add_argument("--root", type=Path, required=True, help="ALFRED data root (<root>/<split>/<task>/<trial>/)")
    p.add_argument("--split", required=True, help="split folder, e.g. train, valid_seen")
    p.add_argument("--out", type=Path, required=True,
                   help="output directory (trajectories/, eval_tasks.json, import_report.json)")
    p.add_argument("--config", type=Path, help="AlfredImportConfig YAML (the flags override it)")
    p.add_argument("--instruction", choices=("task_desc", "high_descs"), help="instruction text")
    p.add_argument("--annotations", choices=("first", "all"), help="episodes per trial: first annotation or all")
    p.add_argument("--eval-split", help="split for eval_tasks.json (default: --split)")
    p.add_argument("--max-trials", type=int, help="import at most N trials")
    p.add_argument("--frame-size", type=int, help="resize frames to N x N")
    p.add_argument("--no-ray", action="store_true", help="convert in this process instead of Ray tasks")
    add_overwrite_arg(p)
    add_ray_args(p)
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from rayrg.data.alfred import REPORT_FILE, AlfredImportConfig, import_alfred

    overrides = {"root": str(args.root), "split": args.split, "instruction": args.instruction,
                 "annotations": args.annotations, "eval_split": args.eval_split,
                 "max_trials": args.max_trials, "frame_size": args.frame_size,
                 "use_ray": False if args.no_ray else None}
    if args.config:
        config = AlfredImportConfig.from_yaml(args.config, **overrides)
    else:
        config = AlfredImportConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if args.num_cpus and config.use_ray and not args.address:
        from rayrg.runtime import init_ray

        init_ray(None, num_cpus=args.num_cpus)
    out = import_alfred(config, args.out, address=args.address,
                       on_change="redo" if args.overwrite else "refuse")
    report = json.loads((out / REPORT_FILE).read_text())
    print(f"dataset: {out / 'trajectories'} ({report['episodes']} episodes, "
          f"{report['transitions']} transitions)\neval tasks: {out / 'eval_tasks.json'} "
          f"({report['eval_tasks']})\nskipped trials: {len(report['broken'])} "
          f"(reasons in {out / REPORT_FILE})")
    return 0
