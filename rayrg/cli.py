"""The ``rayrg`` command. Each stage adds its sub-commands from its own ``cli`` module.

Stage modules are imported lazily so ``rayrg --help`` stays fast and a missing optional
dependency of one stage never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that define ``add_commands(subparsers)``; each sub-command sets ``func``.
COMMAND_MODULES = (
    "rayrg.data.cli",
    "rayrg.data.alfred_cli",
    "rayrg.windows.cli",
    "rayrg.rewards.cli",
    "rayrg.rewards.similarity.cli",
    "rayrg.rl.cli",
    "rayrg.evaluation.cli",
    "rayrg.experiments.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayrg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """``--address`` / ``--num-cpus``: local single-node mode unless an address is given."""
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. 'auto' inside `ray job submit`); default: a fresh local cluster",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local cluster")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from rayrg.config import ConfigError
    from rayrg.data.schema import DatasetError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, DatasetError, FileNotFoundError) as exc:
        print(f"rayrg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
