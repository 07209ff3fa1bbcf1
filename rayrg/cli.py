"""The ``rayrg`` command. Each stage adds its sub-commands from its own ``cli`` module.

Stage modules are imported lazily so ``rayrg --help`` stays fast and a missing optional
dependency of one stage never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
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
    "rayrg.bench.cli",
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


def main(argv: list[str] | None = None) -> int:
    argv_given = argv  # None: run as the process's command (console script, python -m)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from rayrg.runtime import set_verbose

    set_verbose(args.verbose)
    try:
        return _run(args, argv)
    finally:
        if argv_given is None:
            # The command is over (its outputs published or its line printed); what is left is
            # the interpreter's exit, where Ray's atexit shutdown runs. A Ctrl-C landing there
            # printed a KeyboardInterrupt traceback from that hook and could crash Ray's
            # teardown (SIGSEGV): a command run from a shell ignores the first one from here on,
            # and a second ends the process at once (a teardown that hangs can still be left).
            signal.signal(signal.SIGINT, lambda *_: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from rayrg.errors import root_cause, unwrap_user_error, write_error_log

    try:
        # --num-cpus sizes the local cluster every stage's init_ray then joins; `run` starts it
        # itself, after its preflight (nothing may start before that).
        if (getattr(args, "num_cpus", None) is not None and getattr(args, "address", None) is None
                and args.command not in ("run", "quickstart")):
            from rayrg.runtime import init_ray

            init_ray(None, num_cpus=args.num_cpus)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Every stage keeps what it finished (claimed outputs, answer caches, checkpoints) and
        # skips it on a re-run: the traceback of where Ctrl-C landed helps nobody.
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"rayrg {args.command}: interrupted; run the same command again to resume "
              "(finished work is kept)", file=sys.stderr)
        return 130
    except Exception as exc:
        # Errors the user can fix are one line, whichever process raised them (a reader in
        # a Ray Data task, a Train worker, an actor): Ray's wrappers are peeled off here.
        found = unwrap_user_error(exc)
        if args.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        if found is not None:
            print(f"rayrg {args.command}: error: {one_line(found)}", file=sys.stderr)
            return 2
        # A bug (ours, a plugin's, a library's): one line naming the original error, not Ray's
        # wrapper, and a log file with the whole traceback (worker's and driver's) to report.
        name, message = root_cause(exc)
        try:
            where = f"full traceback: {write_error_log(args.command, argv, exc)}"
        except OSError as log_error:
            where = f"no log file ({log_error.strerror}); rerun with -v for the traceback"
        text = one_line(Exception(message)) if message.strip() else ""
        print(f"rayrg {args.command}: error: {name}{': ' + text if text else ''} ({where})", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """The message on one line (a multi-line message is joined; Ray's tracebacks are not in it)."""
    text = str(exc) if not isinstance(exc, OSError) or not exc.filename else (
        f"{exc.filename}: {exc.strerror}" if exc.strerror else str(exc))
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
