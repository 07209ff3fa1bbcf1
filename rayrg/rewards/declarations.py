"""What a label method (and an RG-VLM backend) declares about itself, for the generic loops.

Preflight, ``rayrg run --dry-run``'s plan, ``rayrg estimate``, the cost confirmation of
``rayrg label`` / ``rayrg run``, the report and ``rayrg browse`` never name a method or a
backend: they ask the method's :class:`~rayrg.rewards.registry.LabelMethod` fields, typed
here. A new method is one module (its config, its ``run`` and these declarations) plus its
register line (:data:`~rayrg.rewards.registry.LABEL_METHODS`, or ``RAYRG_PLUGINS``).

* :class:`Need` — one thing the method needs before it can run (weights, GPUs, an API-key
  variable, a reachable service, a file); :func:`need_problem` is the one check of each.
* :class:`Estimate` — what an estimate answers (requests, tokens, cost, wall time);
  :class:`SimpleEstimate` is a ready one. :func:`confirm` is the one cost confirmation.
* :class:`OutputColumn` — a column the method adds and its kind (``reward``: per transition,
  ``progress``: per frame); :func:`check_outputs` holds it to :mod:`rayrg.contracts.columns`.
* :data:`DatasetNeed` — what a method needs of the dataset itself (``"action_names"``: named
  discrete actions, for prompts that show actions); :func:`dataset_problems` is its one check.
* :class:`ReportInput` / :class:`HtmlSection` — what a report section and a browser section get
  and give.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

NeedKind = Literal["weights", "gpus", "env", "service", "file", "capability"]
ColumnKind = Literal["reward", "progress"]
# What a method needs of the dataset it labels. "action_names": named discrete actions (its
# prompts show them; an unnamed Minari id or a LeRobot vector would reach the model as numbers);
# "action_names_or_vectors": those, or continuous actions whose vector rendering the method's
# config states it accepts.
DatasetNeed = Literal["action_names", "action_names_or_vectors"]


@dataclass(frozen=True)
class Need:
    """One thing a method or backend needs before it can run.

    ``key`` is the config key that asks for it, relative to the label config
    (``"model"``, ``"backend.api_key_env"``); preflight prefixes ``labels[i].``. ``value``:
    the model id or path (weights), the GPU count (gpus), the variable's NAME (env), the URL
    (service), the path (file), what the configured component lacks or "" (capability, e.g. a
    backend without log-probabilities). ``why`` ends the refusal (``"the gemini backend needs its API
    key"``). ``workers``: True when the workers need it (weights, GPUs, services, files: only
    checked on the driver for a local cluster, whose workers are this machine); False when the
    driver itself needs it (a key the driver sends with).
    """

    kind: NeedKind
    key: str
    value: str | float
    why: str = ""
    workers: bool = True


def _reachable(url: str, timeout_s: float = 2.0) -> str | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return f"'{url}' is not a URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{port} is not reachable ({type(exc).__name__})"


def need_problem(need: Need, prefix: str = "") -> str | None:
    """The one line saying why ``need`` is not met here (None: it is). GPUs are counted by
    the caller against what the machine has, across stages; this says None for them."""
    key = f"{prefix}{need.key}"
    why = f" ({need.why})" if need.why else ""
    if need.kind == "weights":
        from rayrg.models.weights import weights_problem

        return weights_problem(str(need.value), key)
    if need.kind == "env":
        return None if os.environ.get(str(need.value)) else \
            f"{key}: environment variable {need.value} is not set{why}"
    if need.kind == "file":
        return None if Path(str(need.value)).expanduser().exists() else f"{key}: {need.value} does not exist{why}"
    if need.kind == "service":
        problem = _reachable(str(need.value))
        return f"{key}: {problem}{why}" if problem else None
    if need.kind == "capability":  # ``value``: what the configured component lacks ("" when nothing)
        return f"{key}: {need.value}{why}" if need.value else None
    return None


def need_problems(needs: Sequence[Need], prefix: str = "", local: bool = True) -> list[str]:
    """:func:`need_problem` of each need this machine can check (workers' needs only when
    ``local``: on a cluster they are the workers' to check)."""
    lines = []
    for need in needs:
        if need.workers and not local:
            continue
        problem = need_problem(need, prefix)
        if problem:
            lines.append(problem)
    return lines


def dataset_problems(method: str, needs: Sequence[str], dataset: str | Path) -> list[str]:
    """Why ``dataset`` lacks what ``method`` needs of it, one line each (empty: it has it).
    Reads ``metadata.json`` only; ``rayrg label`` and ``rayrg run``'s preflight refuse on
    these, before any work."""
    lines = []
    for need in needs:
        if need in ("action_names", "action_names_or_vectors"):
            from rayrg.data.actions import read_action_naming

            naming = read_action_naming(dataset)
            if naming.problem and not (need == "action_names_or_vectors" and naming.kind == "continuous"):
                lines.append(f"{dataset}: {method} shows the actions in its prompts, but {naming.problem}")
        else:
            raise ValueError(f"label method {method!r}: unknown dataset need {need!r} (known: action_names, action_names_or_vectors)")
    return lines


@runtime_checkable
class Estimate(Protocol):
    """What a method's estimate answers, before any call. Fields every estimate has:
    ``requests``, ``input_tokens``, ``output_tokens``, ``cost_usd`` (None: unknown) and
    ``wall_s`` (None: unknown); ``lines()`` is its printout, ``to_dict()`` its JSON."""

    requests: float
    input_tokens: float
    output_tokens: float
    cost_usd: float
    wall_s: float | None

    def lines(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class SimpleEstimate:
    """An :class:`Estimate` for a method with no more to say than its totals."""

    method: str
    requests: float
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0
    wall_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        wall = "unknown" if self.wall_s is None else f"{self.wall_s:.1f} s"
        return [f"estimate: {self.method}", f"  requests: {self.requests:,.0f}",
                f"  input tokens: {self.input_tokens:,.0f}", f"  output tokens: {self.output_tokens:,.0f}",
                f"  cost: ${self.cost_usd:,.4f}", f"  wall time: {wall}", *(f"  {n}" for n in self.notes)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EstimateOptions:
    """``rayrg estimate``'s options: seconds per request (for the wall time), windows to label
    for real (``--measure N``; sent and paid for) and the Ray address for that."""

    latency_s: float | None = None
    measure: int | None = None
    address: str | None = None


def confirm(estimate: Estimate, stdin: Any, stdout: Any) -> bool:
    """Before a paid run: print the estimate; on a terminal ask, elsewhere proceed.

    Not on a terminal (``ray job submit``, ``rayrg run``, cron, pipes) nobody can answer, and
    a job that waits for an answer hangs until it is killed; so the estimate goes to the log
    and the run proceeds, as it would with ``--yes``."""
    print("\n".join(estimate.lines()), file=stdout, flush=True)
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        print("[rayrg] stdin is not a terminal: proceeding without confirmation (--yes skips this estimate)",
              file=stdout, flush=True)
        return True
    print(f"Proceed and spend about ${estimate.cost_usd:,.2f}? [y/N] ", end="", file=stdout, flush=True)
    answer = stdin.readline().strip().lower()
    return answer in ("y", "yes")


@dataclass(frozen=True)
class OutputColumn:
    """A column a method adds to the labelled dataset: ``reward`` (a float per transition) or
    ``progress`` (a float per frame in [0, 1]); its family in :mod:`rayrg.contracts.columns`
    must be of that kind."""

    name: str
    kind: ColumnKind
    description: str = ""


def check_outputs(method: str, columns: Sequence[OutputColumn]) -> None:
    """Each declared column belongs to a registered family of its declared kind (a method that
    adds a new kind of column registers its family first: :func:`~rayrg.contracts.columns.register_family`)."""
    from rayrg.config import ConfigError
    from rayrg.contracts.columns import describe, family_of

    for column in columns:
        family = family_of(column.name)
        if family is None:
            raise ConfigError(f"label method {method!r}: output column {column.name!r} belongs to no registered "
                              f"column family ({describe()})")
        if family.kind != column.kind:
            raise ConfigError(f"label method {method!r}: output column {column.name!r} is declared "
                              f"{column.kind} but its family {family.name!r} is {family.kind}")


@dataclass(frozen=True)
class ReportInput:
    """What a method's report section is given: its label step (the labelled dataset after it,
    the side outputs it declared), the report folder to write pictures into, and the name of
    its browser page there when it has one (``None``: no browser section)."""

    method: str
    path: Path
    side_outputs: dict[str, Path]
    report_dir: Path
    browser_page: str | None = None


@dataclass(frozen=True)
class BrowseOptions:
    """``rayrg browse``'s options, given to a method's browser section."""

    labels: Path | None = None
    windows: Path | None = None
    max_windows: int = 2000
    page_size: int = 20
    threshold: float = 0.5
    image_side: int | None = 640


@dataclass(frozen=True)
class HtmlSection:
    """A method's part of the browser page: ``head`` goes into ``<head>`` (its ``<style>``),
    ``body`` into ``<body>`` (markup and its own ``<script>``); all self-contained, no network."""

    title: str
    body: str
    head: str = ""


@dataclass(frozen=True)
class FromEnv:
    """A config part built from the environment: the fields to merge into the label config
    and a note (None, or a loud caveat the run prints and the report carries)."""

    config: dict[str, Any]
    note: str | None = None
