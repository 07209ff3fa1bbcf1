"""``rayrg import <format>`` and ``rayrg export <format>``: other dataset formats in and out.

Each format is one register line in :data:`FORMATS` (``"module:attribute"``, imported only
when used, so one format's optional dependency never breaks another) naming an object with

* ``import_(source, out, **opts) -> Path``: the source as a rayrg trajectory dataset at ``out``;
* ``export(dataset, out, reward_column, **opts) -> Path``: a labelled dataset, back in the format.

Format-specific settings travel as ``--option KEY=VALUE`` (values parsed as YAML); ``on_change``
(``--overwrite``) is passed to formats whose functions accept it.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError
from rayrg.registry import Registry

FORMATS: Registry[Any] = Registry("dataset format", {
    "lerobot": "rayrg.data.lerobot:LEROBOT",
    "minari": "rayrg.data.minari:MINARI",
})


def get_format(name: str) -> Any:
    return FORMATS.load(name)


def parse_options(items: list[str] | None) -> dict[str, Any]:
    import yaml

    opts: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return opts


def _with_on_change(fn: Any, opts: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    takes = "on_change" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {**opts, "on_change": "redo" if overwrite else "refuse"} if takes else opts


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_allow_unfinished_arg, add_overwrite_arg

    option_help = "format setting KEY=VALUE (repeatable; e.g. lerobot: camera=observation.image, max_episodes=10)"
    imp = sub.add_parser("import", help="import another dataset format as a trajectory dataset")
    imp_sub = imp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    exp = sub.add_parser("export", help="export a labelled dataset back to its original format")
    exp_sub = exp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name in FORMATS:
        p = imp_sub.add_parser(name, help=f"{name} dataset -> rayrg trajectory dataset")
        p.add_argument("source", type=Path, help=f"the {name} dataset")
        p.add_argument("--out", type=Path, required=True, help="trajectory dataset directory to write")
        p.add_argument("--option", action="append", metavar="KEY=VALUE", help=option_help)
        add_overwrite_arg(p)
        p.set_defaults(func=_import)
        p = exp_sub.add_parser(name, help=f"labelled dataset -> {name} with reward features")
        p.add_argument("dataset", type=Path, help=f"labelled dataset (imported from {name}, then labelled)")
        p.add_argument("--out", type=Path, required=True, help=f"{name} dataset directory to write")
        p.add_argument("--reward", help="reward column for the format's reward field (reward_<variant> or "
                                        "<variant>; needed when there are several)")
        p.add_argument("--option", action="append", metavar="KEY=VALUE", help=option_help)
        add_allow_unfinished_arg(p, "export")
        add_overwrite_arg(p)
        p.set_defaults(func=_export)


def _import(args: argparse.Namespace) -> int:
    fmt = get_format(args.format)
    opts = _with_on_change(fmt.import_, parse_options(args.option), args.overwrite)
    out = fmt.import_(args.source, args.out, **opts)
    print(f"dataset: {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    fmt = get_format(args.format)
    opts = _with_on_change(fmt.export, parse_options(args.option), args.overwrite)
    if args.allow_unfinished:
        opts["allow_unfinished"] = True
    out = fmt.export(args.dataset, args.out, args.reward, **opts)
    # The path and id to hand the format's own reader (a relative --out is not what it takes).
    hint = getattr(fmt, "load_hint", None)
    print(f"{args.format} dataset: {hint(out) if hint else out}")
    return 0
