"""The experiment manifest, ``<out>/manifest.json``: what ``rayrg run`` made, from what.

Written by the runner (:mod:`rayrg.experiments.runner`) after every stage; read by the
report, which takes every input from the paths listed here and from nothing else (no
folder is probed: the runner records where each stage's outputs are).

``VERSION`` 1 is the first versioned manifest. Fields added since with defaults (the
validation tasks, each evaluation's ``split``, each training run's ``curve``) keep older
version-1 manifests readable: an evaluation without a split played the test set.
``VERSION`` 2 adds the reward-bench stages: ``evalset`` (the evaluation set built from the
experiment's trajectories, and its label chain) and ``bench`` (where ``bench.json`` is, read
with :mod:`rayrg.contracts.bench`). A version-1 manifest still reads (it has neither: no
bench was run). An unversioned one (written before) or one of another version is refused in
one line; ``rayrg run`` on the same config rewrites it (finished stages are skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from rayrg.config import ConfigError
from rayrg.contracts.versions import read_json_object
from rayrg.storage import Location, native, resolve

VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: before the bench stages (no evalset, no bench)
MANIFEST_FILE = "manifest.json"


def _where(value: Any) -> Any:
    return native(resolve(value))


# A recorded output: a local Path (as before) or, for a storage URI, its Location (a plain Path
# would collapse ``s3://b/x`` to ``s3:/b/x``); both join with ``/``. Written as its string.
Where = Annotated[Any, BeforeValidator(_where), PlainSerializer(str, return_type=str)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageRun(_Entry):
    """One stage as the runner ran it."""

    stage: str
    path: Where
    fingerprint: str | None = None
    status: Literal["ran", "skipped"]  # skipped: complete earlier with the same inputs
    seconds: float = 0.0


class DataEntry(_Entry):
    trajectories: Where
    eval_tasks: Where  # the TEST tasks, read with rayrg.contracts.tasks
    val_tasks: Where | None = None  # the VALIDATION tasks (selection only; None: the data made none)
    fingerprint: str | None = None


class LabelStep(_Entry):
    """One label step of the chain; ``path`` is the labelled dataset after it."""

    index: int
    method: str
    path: Where
    fingerprint: str | None = None
    # Side outputs other stages read, where the method says it writes them (RG-VLM only).
    windows: Where | None = None
    labels: Where | None = None


class TrainRun(_Entry):
    method: str
    seed: int
    checkpoint: Where
    fingerprint: str | None = None
    # Its training curve (rayrg.contracts.curves); None for checkpoints made before curves existed.
    curve: Where | None = None


class Evaluation(_Entry):
    method: str
    kind: Literal["learned", "reference"]
    seed: int | None = None  # the training seed; None for a reference policy
    policy: str
    path: Where
    episodes: Where  # read with rayrg.contracts.episodes
    display_name: str
    fingerprint: str | None = None
    # Which task set it played (rayrg.contracts.tasks): the report measures on "test" only.
    split: Literal["validation", "test"] = "test"


class EvalsetEntry(_Entry):
    """The evaluation set the bench scored (``rayrg evalset`` on the run's trajectories) and
    the run's label steps applied to it; ``labelled`` is the chain's last step."""

    path: Where
    source: Where  # the trajectory dataset it was built from
    fingerprint: str | None = None
    labels: list[LabelStep] = Field(default_factory=list)
    labelled: Where | None = None


class BenchEntry(_Entry):
    """The reward bench of the labelled evaluation set: ``<path>/bench.json`` (read with
    :func:`rayrg.contracts.bench.read_bench`), ``bench.md`` and ``bench.png`` beside it."""

    dataset: Where
    path: Where
    fingerprint: str | None = None


class MethodEntry(_Entry):
    display_name: str
    note: str | None = None
    reward_column: str | None = None
    slug: str | None = None


class Claims(_Entry):
    """Which methods play which part in the paper's claims (ExperimentConfig.claims)."""

    sparse: str
    dense: str
    dense_plus_sparse: str


class Manifest(_Entry):
    version: int = VERSION
    name: str
    config: dict[str, Any] = Field(default_factory=dict)  # the experiment config, credentials scrubbed
    stages: list[StageRun] = Field(default_factory=list)
    data: DataEntry | None = None
    labels: list[LabelStep] = Field(default_factory=list)
    labelled: Where | None = None  # the labelled dataset training read (the chain's last step)
    train: list[TrainRun] = Field(default_factory=list)
    evaluations: list[Evaluation] = Field(default_factory=list)
    methods: dict[str, MethodEntry] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    comparisons: list[tuple[str, str]] = Field(default_factory=list)
    claims: Claims | None = None
    evalset: EvalsetEntry | None = None  # version 2: the bench stages (None: not configured)
    bench: BenchEntry | None = None


def manifest_path(out: str | Path | Location) -> Path | Location:
    """``<out>/manifest.json``: a local Path, or a Location for a storage URI."""
    return native(resolve(out) / MANIFEST_FILE)


def write_manifest(out: str | Path | Location, manifest: Manifest) -> Path | Location:
    """Write ``<out>/manifest.json`` atomically (one upload on object stores), stamped with ``VERSION``."""
    stamped = manifest.model_copy(update={"version": VERSION})
    (resolve(out) / MANIFEST_FILE).write_text(json.dumps(stamped.model_dump(mode="json"), indent=2))
    return manifest_path(out)


def read_manifest(out: str | Path) -> Manifest:
    """``<out>/manifest.json`` as ``rayrg run`` wrote it; one-line ConfigError otherwise."""
    path = resolve(out) / MANIFEST_FILE
    if not path.exists():
        raise ConfigError(f"{out}: no manifest.json (the report reads what `rayrg run` recorded there)")
    raw = read_json_object(path, "manifest", ConfigError)
    version = raw.get("version")
    if version not in READABLE_VERSIONS:
        found = "no version (written before manifests were versioned)" if version is None else f"version {version!r}"
        raise ConfigError(f"{path}: manifest {found}; this rayrg reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}: "
                          "run `rayrg run` on the experiment again to rewrite it (finished stages are skipped)")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None
