"""Dataset formats: other datasets in (``rayrg import``), labelled datasets out (``rayrg export``).

Each format is one register line in :data:`FORMATS` (``"module:attribute"``, imported only
when used, so one format's optional dependency never breaks another) naming an object with

* ``name``;
* ``import_options``: a :class:`~rayrg.config.StageConfig` class (``extra="forbid"``), the
  format's import settings, typed; ``export_options`` likewise, or None for a format that
  only imports;
* ``makes_eval_tasks``: whether an import also writes evaluation tasks (ALFRED's trials are
  tasks for the THOR environment; a LeRobot or Minari dataset has no simulator to run in);
* ``import_(source, out, options, *, on_change, address) -> Imported``: ``source`` (a path,
  or an id the format resolves locally) as a rayrg trajectory dataset under ``out``;
* ``export(dataset, out, reward_column, options, *, on_change, allow_unfinished) -> Path``: a
  labelled dataset back in the format (only with ``export_options``; unfinished labels are
  refused unless ``allow_unfinished``);
* rayrg's side (an import's ``out``, an export's ``dataset``) is a local path or a storage
  URI (:mod:`rayrg.storage`); the format's side (``source``, an export's ``out``) is a local
  folder its library opens: a URI there is refused in one line
  (:func:`rayrg.storage.local_only`), before anything is made;
* optionally ``load_hint(out) -> str`` (how to open an export with the format's own reader)
  and ``source_problem(source) -> str | None`` (a missing source, for ``rayrg run``'s
  preflight).

The same format serves ``rayrg import <name> SOURCE``, and an experiment's
``data.source: <name>`` with ``data.input`` and ``data.options``
(:mod:`rayrg.experiments.config`). :func:`typed_options` turns a mapping into the typed
options, refusing an unknown key in one line that lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rayrg.config import ConfigError, StageConfig
from rayrg.registry import Registry

if TYPE_CHECKING:
    from rayrg.storage import Location

Opts = TypeVar("Opts", bound=StageConfig)


@dataclass(frozen=True)
class Imported:
    """What an import wrote: the trajectory dataset, and its evaluation tasks if it makes any."""

    trajectories: Path | Location  # a Location where the import's --out was a storage URI
    eval_tasks: Path | Location | None = None
    lines: list[str] = field(default_factory=list)  # what `rayrg import` prints (default: the dataset)


def _check_format(name: str, fmt: Any) -> None:
    missing = [a for a in ("import_options", "export_options", "makes_eval_tasks", "import_")
               if not hasattr(fmt, a)]
    if missing:
        raise ConfigError(f"dataset format {name!r} lacks {missing} (see rayrg.data.formats)")


FORMATS: Registry[Any] = Registry("dataset format", {
    "alfred": "rayrg.data.alfred:ALFRED",
    "lerobot": "rayrg.data.lerobot:LEROBOT",
    "minari": "rayrg.data.minari:MINARI",
}, check=_check_format)


def get_format(name: str) -> Any:
    return FORMATS.load(name)


def typed_options(cls: type[Opts], values: Mapping[str, Any] | StageConfig | None, where: str) -> Opts:
    """``values`` as ``cls``; an unknown key is one line listing the valid ones."""
    if isinstance(values, cls):
        return values
    if isinstance(values, StageConfig):
        raise ConfigError(f"{where}: expected {cls.__name__} options, got {type(values).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in (values or {}).items()}
    unknown = sorted(set(data) - set(cls.model_fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"valid: {', '.join(cls.model_fields) or 'none'}")
    return cls.from_dict(data, source=where)


def import_options(fmt: Any, values: Mapping[str, Any] | StageConfig | None, where: str) -> StageConfig:
    return typed_options(fmt.import_options, values, where)


def export_options(fmt: Any, values: Mapping[str, Any] | StageConfig | None, where: str) -> StageConfig:
    if fmt.export_options is None:
        raise ConfigError(f"{where}: the {fmt.name} format imports only; it has no export")
    return typed_options(fmt.export_options, values, where)
