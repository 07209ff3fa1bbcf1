"""``rayrg alfred-import``: the older spelling of ``rayrg import alfred ROOT`` (kept as an alias).

``--root`` is the import's source; the other flags (and ``--config``, an ALFRED options YAML
that may also hold ``root``) are the format's typed options
(:class:`~rayrg.data.alfred.AlfredImportOptions`).
"""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("alfred-import",
                       help="alias of `rayrg import alfred ROOT`: ALFRED traj_data.json + images as a trajectory dataset")
    p.add_argument("--root", type=str, help="ALFRED data root (<root>/<split>/<task>/<trial>/; a local folder)")
    p.add_argument("--split", help="split folder, e.g. train, valid_seen")
    p.add_argument("--out", type=str, required=True,
                   help="output directory (trajectories/, eval_tasks.json, import_report.json): "
                        "a local path or a storage URI")
    p.add_argument("--config", help="ALFRED import options YAML, may hold root (the flags override it)")
    p.add_argument("--instruction", choices=("task_desc", "high_descs"), help="instruction text")
    p.add_argument("--annotations", choices=("first", "all"), help="episodes per trial: first annotation or all")
    p.add_argument("--eval-split", help="split for eval_tasks.json (default: --split)")
    p.add_argument("--max-trials", type=int, help="import at most N trials")
    p.add_argument("--frame-size", type=int, help="resize frames to N x N")
    p.add_argument("--no-ray", action="store_true", help="convert in this process instead of Ray tasks")
    add_stage_args(p, _import, overwrite=True)


def _import(args: argparse.Namespace) -> int:
    from rayrg.config import ConfigError
    from rayrg.data.formats import get_format, import_options
    from rayrg.data.interchange_cli import parse_options, run_import

    opts = parse_options(None, args.config)
    flags = {"split": args.split, "instruction": args.instruction, "annotations": args.annotations,
             "eval_split": args.eval_split, "max_trials": args.max_trials, "frame_size": args.frame_size,
             "use_ray": False if args.no_ray else None}
    opts.update({k: v for k, v in flags.items() if v is not None})
    root = args.root or opts.pop("root", None)
    opts.pop("root", None)
    if root is None:
        raise ConfigError("alfred-import: give --root (the ALFRED data root) or root in --config")
    if "split" not in opts:
        raise ConfigError("alfred-import: give --split (e.g. train, valid_seen)")
    fmt = get_format("alfred")
    return run_import(fmt, str(root), args.out, import_options(fmt, opts, "alfred-import"), args.overwrite,
                      args.address, args.num_cpus, source_option="--root")
