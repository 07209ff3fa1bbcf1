"""``rayrg import <format>`` and ``rayrg export <format>``: other dataset formats in and out.

The formats are the registered ones of :mod:`rayrg.data.formats` (ALFRED, LeRobot, Minari).
A format's settings are its typed options (``import_options`` / ``export_options``), given
as ``--options FILE.yaml`` (a mapping) and/or ``--option KEY=VALUE`` (repeatable, values
parsed as YAML; they override the file). An unknown key is refused in one line listing the
valid ones; ``--overwrite`` redoes an output made from other inputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError, read_yaml_mapping
from rayrg.data.formats import FORMATS, export_options, get_format, import_options

__all__ = ["FORMATS", "add_commands", "parse_options"]


def parse_options(items: list[str] | None, file: Path | None = None) -> dict[str, Any]:
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
        p.add_argument("source", type=Path, help=f"the {name} dataset")
        p.add_argument("--out", type=str, required=True, help="directory to write the trajectory dataset under")
        _add_option_args(p, name, "import")
        add_stage_args(p, _import, overwrite=True)
        p = exp_sub.add_parser(name, help=f"labelled dataset -> {name} with reward features")
        p.add_argument("dataset", type=str, help=f"labelled dataset (imported from {name}, then labelled)")
        p.add_argument("--out", type=str, required=True, help=f"{name} dataset directory to write")
        p.add_argument("--reward", help="reward column for the format's reward field (reward_<variant> or "
                                        "<variant>; needed when there are several)")
        _add_option_args(p, name, "export")
        add_stage_args(p, _export, allow_unfinished="export", overwrite=True, ray=False)


def local_output(out: str | Path, what: str) -> Path:
    """``out`` checked before any work (:func:`rayrg.storage.prepare_output`); the importers
    and exporters write local paths only so far, so a URI is refused in one line (never a
    local folder named ``s3:``)."""
    from rayrg.storage import StorageError, native, prepare_output

    location = prepare_output(out)
    if not location.is_local:
        raise StorageError(f"{location}: {what} writes to a local path or shared mount only "
                           "(storage URIs: not yet)")
    return Path(native(location))


def run_import(fmt: Any, source: Path, out: str | Path, options: Any, overwrite: bool, address: str | None,
               num_cpus: int | None) -> int:
    """Import and print what was written (shared by ``rayrg import`` and ``rayrg alfred-import``)."""
    out = local_output(out, f"import {getattr(fmt, 'name', '')}".strip())
    if num_cpus and not address and getattr(options, "use_ray", False):
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
    out = fmt.export(args.dataset, local_output(args.out, f"export {args.format}"), args.reward, options, on_change="redo" if args.overwrite else "refuse",
                     allow_unfinished=args.allow_unfinished)
    # The path and id to hand the format's own reader (a relative --out is not what it takes).
    hint = getattr(fmt, "load_hint", None)
    print(f"{args.format} dataset: {hint(out) if hint else out}")
    return 0
