"""Arguments shared by the stage CLIs (core: every stage's ``cli`` module may import it).

The ``rayrg`` entry point (:mod:`rayrg.cli`) sits above every stage and imports their
``add_commands``; the helpers they share live here so no stage imports back up to it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """``--address`` / ``--num-cpus``: local single-node mode unless an address is given."""
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. 'auto' inside `ray job submit`); default: a fresh local cluster",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local cluster")


def add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: redo a stage whose output directory was made from other inputs."""
    parser.add_argument(
        "--overwrite", action="store_true",
        help="if --out holds outputs made from other inputs (another config or dataset), delete "
             "them and redo the stage; without it such a re-run is refused (same inputs: skipped)")


def add_allow_unfinished_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--allow-unfinished``: use labels whose failed windows were not retried yet."""
    parser.add_argument(
        "--allow-unfinished", action="store_true",
        help=f"{what} a labelled dataset whose failed windows were not retried yet (NaN rewards "
             "there); without it such a dataset is refused with the command that retries them. "
             "The output is keyed to the missing windows, so it is redone once the retry fills them")


def add_stage_args(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int], *,
                   allow_unfinished: str | None = None, overwrite: bool = False, ray: bool = True) -> None:
    """The options a stage command ends with, always in this order: ``--allow-unfinished``
    (where ``allow_unfinished`` says what the command does with such a dataset),
    ``--overwrite``, ``--address`` / ``--num-cpus`` (``ray``); and ``func``, what it runs."""
    if allow_unfinished is not None:
        add_allow_unfinished_arg(parser, allow_unfinished)
    if overwrite:
        add_overwrite_arg(parser)
    if ray:
        add_ray_args(parser)
    parser.set_defaults(func=func)
