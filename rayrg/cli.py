"""The ``rayrg`` command. Each stage adds its sub-commands from its own ``cli`` module.

Stage modules are imported lazily so ``rayrg --help`` stays fast and a missing optional
dependency of one stage never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

# Modules that define ``add_commands(subparsers)``; each sub-command sets ``func``.
COMMAND_MODULES = (
    "rayrg.data.cli",
    "rayrg.data.alfred_cli",
    "rayrg.data.interchange_cli",
    "rayrg.windows.cli",
    "rayrg.rewards.cli",
    "rayrg.rewards.similarity.cli",
    "rayrg.rl.cli",
    "rayrg.evaluation.cli",
    "rayrg.experiments.cli",
    "rayrg.report.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayrg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and Ray's INFO logs (hidden by default; warnings and errors always show)")
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


def add_allow_unfinished_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--allow-unfinished``: use labels whose failed windows were not retried yet."""
    parser.add_argument(
        "--allow-unfinished", action="store_true",
        help=f"{what} a labelled dataset whose failed windows were not retried yet (NaN rewards "
             "there); without it such a dataset is refused with the command that retries them. "
             "The output is keyed to the missing windows, so it is redone once the retry fills them")


def add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: redo a stage whose output directory was made from other inputs."""
    parser.add_argument(
        "--overwrite", action="store_true",
        help="if --out holds outputs made from other inputs (another config or dataset), delete "
             "them and redo the stage; without it such a re-run is refused (same inputs: skipped)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from rayrg.runtime import set_verbose

    set_verbose(args.verbose)
    from rayrg.errors import unwrap_user_error

    try:
        # --num-cpus sizes the local cluster every stage's init_ray then joins; `run` starts it
        # itself, after its preflight (nothing may start before that).
        if (getattr(args, "num_cpus", None) is not None and getattr(args, "address", None) is None
                and args.command not in ("run", "quickstart")):
            from rayrg.runtime import init_ray

            init_ray(None, num_cpus=args.num_cpus)
        return int(args.func(args) or 0)
    except Exception as exc:
        # Errors the user can fix are one line, whichever process raised them (a reader in
        # a Ray Data task, a Train worker, an actor): Ray's wrappers are peeled off here.
        found = unwrap_user_error(exc)
        if found is None:
            raise
        if args.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"rayrg {args.command}: error: {one_line(found)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """The message on one line (a multi-line message is joined; Ray's tracebacks are not in it)."""
    text = str(exc) if not isinstance(exc, OSError) or not exc.filename else (
        f"{exc.filename}: {exc.strerror}" if exc.strerror else str(exc))
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
