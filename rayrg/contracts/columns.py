"""Column families of the labelled dataset: the columns a stage may add to a trajectory dataset.

A trajectory dataset's own columns are fixed (:mod:`rayrg.data.schema`); labelling stages add
columns, and readers accept exactly the families registered here:

* ``reward_*`` — kind ``reward``: a float per transition (``reward_sparse``, ``reward_rgvlm`` ...),
  what IQL trains on;
* ``progress_*`` — kind ``progress``: a float per frame in [0, 1] (task progress of the
  row's frame), NaN where unknown;
* the evaluation-set columns ``evalset_kind`` (which evaluation set a row belongs to) and
  ``progress_true`` (the true progress of that frame, in [0, 1]) — named columns of the family
  ``evalset``.

Each added column's kind is recorded in the dataset's metadata (``column_kinds`` of
:class:`~rayrg.contracts.datasets.DatasetMetadata`): the reward bench reads it to know whether
a column is progress-like or a per-transition reward. Later issues add families or columns
with :func:`register_family` / :func:`register_column`; nothing else decides what a reader accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

Kind = Literal["reward", "progress", "evalset"]
KINDS: tuple[str, ...] = ("reward", "progress", "evalset")


@dataclass(frozen=True)
class ColumnFamily:
    """Columns named ``<prefix><name>`` (a prefix ending in ``_``) or exactly ``name``."""

    name: str
    kind: Kind
    description: str
    prefix: str | None = None  # a prefix family: any column starting with it
    columns: tuple[str, ...] = ()  # a named family: these columns only
    type_check: Callable[[pa.DataType], bool] = pa.types.is_floating
    expected_type: str = "a float type"
    value_range: tuple[float, float] | None = None  # documented bounds (NaN allowed: unknown)

    def matches(self, column: str) -> bool:
        if column in self.columns:
            return True
        return self.prefix is not None and column.startswith(self.prefix) and column != self.prefix


_FAMILIES: dict[str, ColumnFamily] = {}


def register_family(family: ColumnFamily) -> ColumnFamily:
    """Add a family (or replace one of the same name); a prefix or column already claimed by
    another family is a ValueError, so a column always has exactly one kind."""
    if family.kind not in KINDS:
        raise ValueError(f"column family {family.name!r}: kind {family.kind!r} is not one of {KINDS}")
    if (family.prefix is None) == (not family.columns):
        raise ValueError(f"column family {family.name!r}: give a prefix or columns, not both or neither")
    for other in _FAMILIES.values():
        if other.name == family.name:
            continue
        # A named column may sit under another family's prefix (named columns win).
        clash = [c for c in family.columns if c in other.columns]
        if family.prefix and (other.prefix and (other.prefix.startswith(family.prefix)
                                                or family.prefix.startswith(other.prefix))):
            clash.append(family.prefix + "*")
        if clash:
            raise ValueError(f"column family {family.name!r}: {clash} already belong to family {other.name!r}")
    _FAMILIES[family.name] = family
    return family


def register_column(family: str, column: str) -> None:
    """Add one named column to a named family (e.g. a new evaluation-set column)."""
    current = _FAMILIES[family]
    if column not in current.columns:
        _FAMILIES[family] = ColumnFamily(**{**current.__dict__, "columns": (*current.columns, column)})


def families() -> tuple[ColumnFamily, ...]:
    return tuple(_FAMILIES.values())


def family_of(column: str) -> ColumnFamily | None:
    """The family ``column`` belongs to, None when no registered family accepts it.

    Named columns win over prefixes (``progress_true`` is an evaluation-set column, not a
    ``progress_*`` one)."""
    named = [f for f in _FAMILIES.values() if column in f.columns]
    if named:
        return named[0]
    return next((f for f in _FAMILIES.values() if f.matches(column)), None)


def column_kind(column: str) -> str | None:
    family = family_of(column)
    return family.kind if family else None


def added_columns(names: Iterable[str], kind: str | None = None) -> list[str]:
    """The columns of ``names`` a registered family accepts (of ``kind`` only, if given), in order."""
    out = []
    for n in names:
        family = family_of(n)
        if family is not None and (kind is None or family.kind == kind):
            out.append(n)
    return out


def check_column_type(column: str, dtype: pa.DataType) -> str | None:
    """Why ``column`` of type ``dtype`` is not a valid member of its family (None: it is)."""
    family = family_of(column)
    if family is None:
        return f"column '{column}' belongs to no registered column family"
    if not family.type_check(dtype):
        return f"{family.kind} column '{column}' has type {dtype}, expected {family.expected_type}"
    return None


def describe() -> str:
    """``'reward_*', 'progress_*', 'evalset_kind', ...``: for error messages."""
    parts: list[str] = []
    for f in _FAMILIES.values():
        parts.extend([f"'{f.prefix}*'"] if f.prefix else [f"'{c}'" for c in f.columns])
    return ", ".join(parts)


REWARD_PREFIX = "reward_"
PROGRESS_PREFIX = "progress_"
EVALSET_KIND = "evalset_kind"
PROGRESS_TRUE = "progress_true"

REWARD = register_family(ColumnFamily(
    "reward", "reward", "a reward per transition (o_t, a_t, o_t+1); NaN where unlabelled",
    prefix=REWARD_PREFIX))
EVALSET = register_family(ColumnFamily(
    "evalset", "evalset", "evaluation-set columns: which set a row belongs to, and its true progress",
    columns=(PROGRESS_TRUE,), value_range=(0.0, 1.0)))
register_family(ColumnFamily(
    "evalset_kind", "evalset", "which evaluation set a row belongs to (a string)",
    columns=(EVALSET_KIND,), type_check=lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
    or pa.types.is_dictionary(t), expected_type="a string type"))
PROGRESS = register_family(ColumnFamily(
    "progress", "progress", "task progress of the row's frame, in [0, 1]; NaN where unknown",
    prefix=PROGRESS_PREFIX, value_range=(0.0, 1.0)))
