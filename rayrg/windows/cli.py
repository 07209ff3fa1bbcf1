"""``rayrg windows`` and ``rayrg preview-window``."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("windows", help="cut a trajectory dataset into W-step windows (grid images)")
    p.add_argument("--dataset", type=str, required=True, help="trajectory dataset directory")
    p.add_argument("--out", type=str, required=True, help="windows output directory")
    p.add_argument("--config", help="WindowConfig YAML")
    p.add_argument("--window-size", type=int, help="override: W")
    p.add_argument("--stride", type=int, help="override: stride")
    p.add_argument("--last-window", choices=["shorter", "drop"], help="override: partial last window")
    add_stage_args(p, _windows, overwrite=True)

    p = sub.add_parser("preview-window", help="write a PNG of one window: grid + instruction + actions")
    p.add_argument("--windows", type=str, required=True, help="windows dataset directory")
    p.add_argument("--out", type=str, required=True, help="PNG to write")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--window-id", help="e.g. babyai-chain-n3-s3000001:8")
    which.add_argument("--index", type=int, default=0, help="row index in the windows dataset (default 0)")
    p.set_defaults(func=_preview)


def _windows(args: argparse.Namespace) -> int:
    import json

    from rayrg.contracts.windows import read_summary
    from rayrg.windows.build import WindowConfig, make_windows

    overrides = {"window_size": args.window_size, "stride": args.stride, "last_window": args.last_window}
    config = (WindowConfig.from_yaml(args.config, **overrides) if args.config
              else WindowConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
    out = make_windows(args.dataset, args.out, config, address=args.address,
                       on_change="redo" if args.overwrite else "refuse")
    print(json.dumps(read_summary(out), indent=2))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from rayrg.windows.preview import write_preview

    path = write_preview(args.windows, args.out, window_id=args.window_id, index=args.index)
    print(f"preview: {path}")
    return 0
