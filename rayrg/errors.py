"""Errors a user can cause, and getting them out of Ray's wrappers as one line.

A reader that runs inside a Ray task or actor (Ray Data ``map_batches``, a Ray Train
worker, an evaluation actor) raises the same :class:`~rayrg.data.schema.DatasetError` /
:class:`~rayrg.config.ConfigError` / ``FileNotFoundError`` as on the driver, but the driver
sees it wrapped: ``RayTaskError`` (whose ``cause`` is the original), Ray Data's
``UserCodeException`` (original in ``__cause__``), Ray Train's ``WorkerGroupError``
(``worker_failures``) or ``ControllerError``. :func:`stage_errors` is used at each stage
boundary: it finds the user's error in that chain and re-raises it alone, so ``rayrg``
prints the same one line whichever side raised it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Base of errors caused by the user's input (files, configs); shown as one line."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types ``rayrg`` reports as one line (imported lazily: no cycles).

    Errors of higher layers (``rayrg.data.schema.DatasetError``) subclass :class:`UserError`,
    so this core module names none of them.
    """
    from rayrg.config import ConfigError

    return (UserError, ConfigError, FileNotFoundError, NotADirectoryError)


_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*): (?P<message>.+?)(?=\n\s*\n|\n\S|\Z)",
                   re.MULTILINE | re.DOTALL)


def _named_types() -> dict[str, type[BaseException]]:
    """Printed name (``rayrg.data.schema.DatasetError``, ``FileNotFoundError``) -> type."""
    names: dict[str, type[BaseException]] = {}
    todo = list(user_error_types())
    while todo:
        cls = todo.pop()
        module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
        names[f"{module}{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return names


def _from_text(text: str) -> BaseException | None:
    """The last user error printed in a worker's traceback text, rebuilt on the driver.

    Ray pickles the exception a Ray Data UDF or an actor's ``__init__`` raised *inside*
    its own (``UserCodeException``, ``ActorDiedError``), and pickling drops ``__cause__``:
    only the traceback text keeps the original, as ``<module>.<Class>: <message>``. The
    last such line is the outermost user error of the worker's chain.
    """
    names = _named_types()
    found = None
    for match in _LINE.finditer(text):
        cls = names.get(match.group("name"))
        if cls is not None:
            found = (cls, " ".join(match.group("message").split()))
    if found is None:
        return None
    cls, message = found
    try:
        return cls(message)
    except Exception:
        return None


def _children(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    cause = getattr(exc, "cause", None)  # RayTaskError (and its as_instanceof_cause classes)
    if isinstance(cause, BaseException):
        found.append(cause)
    for name in ("controller_failure",):  # Ray Train ControllerError
        value = getattr(exc, name, None)
        if isinstance(value, BaseException):
            found.append(value)
    failures = getattr(exc, "worker_failures", None)  # Ray Train WorkerGroupError
    if isinstance(failures, dict):
        found.extend(v for _, v in sorted(failures.items()) if isinstance(v, BaseException))
    group = getattr(exc, "exceptions", None)  # ExceptionGroup
    if isinstance(group, (list, tuple)):
        found.extend(e for e in group if isinstance(e, BaseException))
    if exc.__cause__ is not None:
        found.append(exc.__cause__)
    if exc.__context__ is not None and not exc.__suppress_context__:
        found.append(exc.__context__)
    if _is_ray_wrapper(exc) and not _has_user_error(found):
        rebuilt = _from_text(getattr(exc, "traceback_str", None) or str(exc))
        if rebuilt is not None:
            found.append(rebuilt)
    return found


def _has_user_error(excs: list[BaseException]) -> bool:
    types = user_error_types()
    return any(isinstance(e, types) and not _is_ray_wrapper(e) for e in excs)


def unwrap_user_error(exc: BaseException) -> BaseException | None:
    """The first user error (:func:`user_error_types`) in ``exc``'s wrapping chain, or None.

    Breadth-first, so the outermost user error wins: a DatasetError raised *from* a
    FileNotFoundError is reported as the DatasetError, whose message is the clearer one.
    Ray's own wrappers are never returned, even where they subclass a user type (a
    ``RayTaskError`` made ``as_instanceof_cause`` of a DatasetError is a DatasetError too):
    the original is, so its message is the user's line, not Ray's 90 lines.
    """
    types = user_error_types()
    return next((e for e in _chain(exc) if isinstance(e, types) and not _is_ray_wrapper(e)), None)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (:func:`_children`), breadth-first, each once."""
    queue, seen = [exc], set()
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        queue.extend(_children(current))


def _is_ray_wrapper(exc: BaseException) -> bool:
    """Ray's own exception types (core, Data, Train), incl. ``RayTaskError(DatasetError)``."""
    return any(cls.__module__ == "ray" or cls.__module__.startswith("ray.") for cls in type(exc).__mro__)


@contextmanager
def stage_errors() -> Iterator[None]:
    """Re-raise a user error found inside Ray's wrappers as itself (one line at the CLI).

    The wrapper stays chained (``__cause__``), so ``rayrg -v`` still shows the whole story.
    Anything that is not a user error propagates unchanged.
    """
    try:
        yield
    except Exception as exc:
        found = unwrap_user_error(exc)
        if found is None or found is exc:
            raise
        raise _copy(found) from exc


def stage_errors_iter(items: Iterable[T]) -> Iterator[T]:
    """:func:`stage_errors` around each step of an iterator of results (an ``ActorPool``'s)."""
    iterator = iter(items)
    while True:
        with stage_errors():
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _copy(exc: BaseException) -> BaseException:
    """A fresh instance of ``exc`` (same type and message) to raise on the driver."""
    try:
        return type(exc)(*exc.args)
    except Exception:
        return exc


# -- unexpected errors: one line on the console, the whole traceback in a log file ------------
LOG_DIR_ENV = "RAYRG_LOG_DIR"
# An exception line of a traceback text: ``module.Name: message`` at the start of a line.
_EXC_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Failure|Fault)"
                       r"|[A-Za-z_][\w.]*\.[A-Z]\w*): (?P<message>.*)$", re.MULTILINE)


def root_cause(exc: BaseException) -> tuple[str, str]:
    """``(type name, message)`` of the error that started ``exc``'s chain, not Ray's wrapper.

    Ray pickles a worker's exception inside its own (``RayTaskError``, Ray Data's
    ``UserCodeException``, Ray Train's ``WorkerGroupError``), and pickling may drop the
    original's ``__cause__``: then only the traceback text names it. The first non-Ray
    exception found breadth-first wins; else the first exception line of Ray's text that is
    not Ray's own; else ``exc`` itself.
    """
    for current in _chain(exc):
        if not _is_ray_wrapper(current) and current is not exc:
            return type(current).__name__, str(current)
    if _is_ray_wrapper(exc):
        text = getattr(exc, "traceback_str", None) or str(exc)
        for match in _EXC_LINE.finditer(text):
            name = match.group("name")
            if not name.startswith("ray."):
                return name.rsplit(".", 1)[-1], match.group("message")
    return type(exc).__name__, str(exc)


def log_dir() -> Path:
    """Where tracebacks of unexpected errors go: ``$RAYRG_LOG_DIR``, else
    ``$XDG_CACHE_HOME/rayrg/logs`` (``~/.cache/rayrg/logs``).

    Not the stage's ``--out``: not every command has one, a failed run may not have made it,
    and a stray file there would sit among fingerprinted outputs.
    """
    import os

    if os.environ.get(LOG_DIR_ENV):
        return Path(os.environ[LOG_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "rayrg" / "logs"


def scrub_text(text: str) -> str:
    """``text`` without credentials: values of secret-named environment variables (the keys
    backends read) and the userinfo/query of URLs (``?key=...``) are redacted."""
    import os

    from rayrg.config import REDACTED, is_secret_name, scrub_url

    for name, value in os.environ.items():
        if is_secret_name(name) and len(value) >= 6:
            text = text.replace(value, REDACTED)
    return re.sub(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", lambda m: scrub_url(m.group(0)), text)


def write_error_log(command: str, argv: list[str], exc: BaseException) -> Path:
    """Write ``exc``'s whole traceback (and the command line) to a new log file; its path."""
    import datetime
    import os
    import platform
    import traceback

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}-{command}-{os.getpid()}.log"
    text = "".join([
        f"rayrg {command} failed at {datetime.datetime.now().isoformat(timespec='seconds')}\n",
        f"command: rayrg {' '.join(argv)}\n",
        f"python {platform.python_version()} on {platform.platform()}\n\n",
        *traceback.format_exception(exc),
    ])
    path.write_text(scrub_text(text))
    return path
