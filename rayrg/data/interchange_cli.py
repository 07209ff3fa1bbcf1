"""``rayrg import <format>`` and ``rayrg export <format>``: other dataset formats in and out.

The formats are the registered ones of :mod:`rayrg.data.formats` (ALFRED, LeRobot, Minari).
A format's settings are its typed options (``import_options`` / ``export_options``), given
as ``--options FILE.yaml`` (a mapping) and/or ``--option KEY=VALUE`` (repeatable, values
parsed as YAML; they override the file). An unknown key is refused in one line listing the
valid ones; ``--overwrite`` redoes an output made from other inputs.

rayrg's side (an import's ``--out``, the dataset an export reads) is a local path or a
storage URI (:mod:`rayrg.storage`: checked writable before any work, a relative path under
``RAYRG_STORAGE``); the format's own side (an import's SOURCE, an export's ``--out``) is a
local folder its library opens, and a URI there is refused in one line naming the option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError, read_yaml_mapping
from rayrg.data.formats import FORMATS, export_options, get_format, import_options

__all__ = ["FORMATS", "add_commands", "parse_options"]


def parse_options(items: list[str] | None, file: str | Path | None = None) -> dict[str, Any]:
    """``--options FILE`` then ``--option KEY=VALUE`` items, as one mapping (not yet typed)."""
    import yaml

    opts: dict[str, Any] = {}
    if file is not None:
        opts.update(read_yaml_mapping(file, "--options file"))
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return opts


def _add_option_args(p: argparse.ArgumentParser, name: str, what: str) -> None:
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help=f"one of {name}'s {what} options (repeatable; an unknown key lists the valid ones)")
    p.add_argument("--options", type=Path, metavar="FILE.yaml", help=f"{name}'s {what} options as a YAML mapping")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    imp = sub.add_parser("import", help="import another dataset format as a trajectory dataset")
    imp_sub = imp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    exp = sub.add_parser("export", help="export a labelled dataset back to its original format")
    exp_sub = exp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name in FORMATS:
        p = imp_sub.add_parser(name, help=f"{name} dataset -> rayrg trajectory dataset")
        p.add_argument("source", type=str, help=f"the {name} dataset (a local folder)")
        p.add_argument("--out", type=str, required=True,
                       help="directory to write the trajectory dataset under (a local path or a storage URI)")
        _add_option_args(p, name, "import")
        add_stage_args(p, _import, overwrite=True)
        p = exp_sub.add_parser(name, help=f"labelled dataset -> {name} with reward features")
        p.add_argument("dataset", type=str, help=f"labelled dataset (imported from {name}, then labelled; "
                                                 "a local path or a storage URI)")
        p.add_argument("--out", type=str, required=True, help=f"{name} dataset directory to write (a local folder)")
        p.add_argument("--reward", help="reward column for the format's reward field (reward_<variant> or "
                                        "<variant>; needed when there are several)")
        _add_option_args(p, name, "export")
        add_stage_args(p, _export, allow_unfinished="export", overwrite=True, ray=False)


def _local_reason(fmt: Any) -> str:
    """Why the format's side is a local folder (its module's ``LOCAL_REASON``)."""
    import sys

    return getattr(sys.modules.get(type(fmt).__module__), "LOCAL_REASON",
                   f"the {fmt.name} format reads and writes local folders only")


def run_import(fmt: Any, source: str | Path, out: str | Path, options: Any, overwrite: bool,
               address: str | None, num_cpus: int | None, source_option: str = "SOURCE") -> int:
    """Import and print what was written (shared by ``rayrg import`` and ``rayrg alfred-import``).

    Before any work: the source must be local (a URI is refused in one line naming
    ``source_option``), and ``out`` is checked (:func:`rayrg.storage.prepare_output`: a URI
    writable, a local path not scattered over a cluster's nodes)."""
    from rayrg.storage import local_only, native, prepare_output

    source = local_only(source, f"import {fmt.name} {source_option}", _local_reason(fmt))
    uses_ray = bool(getattr(options, "use_ray", False))
    if uses_ray and address not in (None, "", "local"):
        from rayrg.runtime import init_ray

        init_ray(address)  # joined first, so prepare_output sees the cluster's shape
    out = native(prepare_output(out))
    if num_cpus and not address and uses_ray:
        from rayrg.runtime import init_ray

        init_ray(None, num_cpus=num_cpus)
    imported = fmt.import_(source, out, options, on_change="redo" if overwrite else "refuse", address=address)
    print("\n".join(imported.lines or [f"dataset: {imported.trajectories}"]))
    return 0


def _import(args: argparse.Namespace) -> int:
    fmt = get_format(args.format)
    options = import_options(fmt, parse_options(args.option, args.options), f"import {args.format}")
    return run_import(fmt, args.source, args.out, options, args.overwrite, args.address, args.num_cpus)


def _export(args: argparse.Namespace) -> int:
    fmt = get_format(args.format)
    options = export_options(fmt, parse_options(args.option, args.options), f"export {args.format}")
    from rayrg.storage import local_only, native, open_input

    # the format's side first: a URI there is refused before the dataset is even opened
    out_dir = local_only(args.out, f"export {args.format} --out", _local_reason(fmt), output=True)
    dataset = native(open_input(args.dataset, what="dataset"))
    out = fmt.export(dataset, out_dir, args.reward, options, on_change="redo" if args.overwrite else "refuse",
                     allow_unfinished=args.allow_unfinished)
    # The path and id to hand the format's own reader (a relative --out is not what it takes).
    hint = getattr(fmt, "load_hint", None)
    print(f"{args.format} dataset: {hint(out) if hint else out}")
    return 0
