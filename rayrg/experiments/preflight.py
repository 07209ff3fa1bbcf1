"""Before any work: does this machine have what the experiment config needs?

``rayrg run`` calls :func:`preflight` before it starts Ray or writes a file. It checks data
paths, what each label method declares it needs (:class:`rayrg.rewards.declarations.Need`:
model weights by :mod:`rayrg.models.weights`' rule — a local path, or a hub id already in the
Hugging Face cache; nothing is downloaded here —, API keys in the environment, reachable
services, files), GPUs / CPUs asked for against what there is, and the evaluation
environment's declarations (:mod:`rayrg.envs.registry`): the reference policies asked for
against those it has, and its needs (THOR's Unity build). It returns one line per missing
thing naming the config key to change. :func:`plan` says what
the run will do (stages, sizes, expected model calls); ``rayrg run --dry-run`` prints it
alone.

On a cluster (``--address``) weights, GPUs and the environment's needs live on the workers,
not here: those checks are left to the workers and the plan says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayrg.config import ConfigError
from rayrg.experiments.config import AUTO_BACKEND, ExperimentConfig


class PreflightError(ConfigError):
    """What the config needs and this machine lacks: one line per missing thing."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Needs:
    gpus: list[tuple[str, float]] = field(default_factory=list)  # (config key, GPUs)
    cpus: list[tuple[str, float]] = field(default_factory=list)  # (config key, CPUs at once)


def _label_needs(i: int, label: Any, needs: Needs, problems: list[str], local: bool) -> None:
    """The label method's declared needs (:class:`~rayrg.rewards.declarations.Need`), each
    checked by the one rule for its kind; GPUs go to the machine-wide count."""
    from rayrg.rewards.declarations import need_problems
    from rayrg.rewards.registry import method_of

    key = f"labels[{i}]."
    if isinstance(label, dict):  # auto_backend: resolved from the environment, always satisfiable
        return
    declared = method_of(label).needs_of(label)
    problems.extend(need_problems([n for n in declared if n.kind != "gpus"], key, local))
    needs.gpus.extend((f"{key}{n.key}", float(n.value)) for n in declared if n.kind == "gpus")


def experiment_env_name(config: ExperimentConfig) -> str | None:
    """The environment the experiment evaluates in, when known before any work: BabyAI's
    for generated data, THOR's for ALFRED, the tasks file's for ``source: path`` (None: not
    known before the data stage, or the tasks file is missing, which is reported already)."""
    data = config.data
    if data.source == "babyai":
        from rayrg.envs.babyai import ENV_NAME as BABYAI

        return BABYAI
    if data.source == "alfred":
        from rayrg.envs.thor_config import ENV_NAME as THOR

        return THOR
    if data.source == "path" and data.eval_tasks and Path(data.eval_tasks).is_file():
        from rayrg.evaluation.evaluate import load_eval_tasks

        try:
            names = {t.env_name for t in load_eval_tasks(data.eval_tasks)}
        except (ConfigError, ValueError, TypeError, KeyError):  # a bad tasks file: evaluate reports it
            return None
        return next(iter(names)) if len(names) == 1 else None
    return None


def _environment_needs(config: ExperimentConfig, problems: list[str], local: bool) -> None:
    """The evaluation environment has the reference policies asked for, and this machine has
    what the environment needs (on a cluster the evaluating workers have it, not this one)."""
    from rayrg.envs.registry import missing_needs, reference_policies

    env = experiment_env_name(config)
    if env is None:
        return
    try:
        has = reference_policies(env)
    except ConfigError as exc:  # not registered: nothing here can evaluate in it
        problems.append(f"data.eval_tasks: {exc}")
        return
    it_has = f"(it has: {', '.join(has) or 'none'})"
    for policy in config.reference_policies or ():
        if policy not in has:
            problems.append(f"reference_policies: {env} has no {policy!r} policy {it_has}; "
                            "drop it, or leave reference_policies unset for the environment's own")
    if config.reference_policies is None:  # the environment's own; comparisons may name others
        named = [n for pair in (config.comparisons or []) for n in pair]
        named += list(config.claims.to_dict().values()) if config.claims else []
        for name in dict.fromkeys(n for n in named if n not in config.methods and n not in has):
            problems.append(f"comparisons/claims: {env} has no {name!r} policy {it_has}")
    if local:
        try:
            lines = missing_needs(env, config.evaluation.env_settings)
        except ConfigError as exc:  # env_settings the environment's config type refuses: one line
            lines = [" ".join(part.strip() for part in str(exc).splitlines())]
        problems.extend(f"evaluation.env_settings: {env} cannot run here: {line}" for line in lines)


def _local_resources() -> tuple[int, int]:
    cpus = os.cpu_count() or 1
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        gpus = 0
    return cpus, gpus


def _input_problem(key: str, value: str, problems: list[str]) -> None:
    """A local path or a URI that must exist (a bad URI, a missing bucket: its one line)."""
    from rayrg.storage import StorageError, resolve

    try:
        if not resolve(value).exists():
            problems.append(f"{key}: {value} does not exist")
    except StorageError as exc:
        problems.append(f"{key}: {exc}")


def _out_problem(config: ExperimentConfig, problems: list[str]) -> None:
    """A URI ``out`` is written to and deleted from once (:func:`rayrg.storage.check_writable`):
    a typo, missing credentials, a missing bucket or no permission is one line here, before
    any work. A local ``out`` is made by the run itself, as before."""
    from rayrg.experiments.runner import out_location
    from rayrg.storage import STORAGE_ENV, StorageError, check_writable, is_uri, storage_root

    # Name the setting the user gave: a relative out lands under storage: (or $RAYRG_STORAGE).
    key = "out"
    if not is_uri(config.out) and not Path(config.out).is_absolute() and storage_root(config.storage):
        key = f"{'storage' if config.storage else STORAGE_ENV} (out: {config.out})"
    try:
        location = out_location(config)
        if not location.is_local:
            check_writable(location)
    except StorageError as exc:
        problems.append(f"{key}: {exc}")


def preflight(config: ExperimentConfig, address: str | None = None, num_cpus: int | None = None) -> list[str]:
    """Problems that would stop the run later, one line each (empty: good to go)."""
    local = address in (None, "", "local")
    problems: list[str] = []
    needs = Needs()
    data = config.data
    if data.source == "path":
        for key, value in (("data.trajectories", data.trajectories), ("data.eval_tasks", data.eval_tasks)):
            if value:
                _input_problem(key, value, problems)
    elif data.source != "babyai":  # a dataset format: does what it imports exist?
        from rayrg.data.formats import get_format

        source, _, key = data.import_args()
        check = getattr(get_format(data.source), "source_problem", None)
        problem = check(source) if check is not None else None
        if problem:
            problems.append(f"{key}: {problem}")
        if data.eval_tasks:
            _input_problem("data.eval_tasks", data.eval_tasks, problems)
    _out_problem(config, problems)
    for i, label in enumerate(config.labels):
        _label_needs(i, label, needs, problems, local)
    if data.source == "path" and data.trajectories and Path(data.trajectories).is_dir():
        # The dataset exists already: what each method needs of it (named actions for prompts
        # that show them). Labels chain on it, so its actions are every step's actions.
        from rayrg.rewards.registry import method_of

        for i, label in enumerate(config.labels):
            if not isinstance(label, dict):
                problems.extend(f"labels[{i}]: {line}"
                                for line in method_of(label).dataset_problems(label, data.trajectories))
    _environment_needs(config, problems, local)
    for name in config.methods:
        train = config.train_config(name, config.seeds[0] if config.seeds else 0)
        key = "train" if not config.methods[name].train else f"methods.{name}.train"
        needs.cpus.append((f"{key}.num_workers × max(cpus_per_worker, torch_threads)",
                           train.num_workers * train.worker_cpus()))
        if train.use_gpu:
            needs.gpus.append((f"{key}.use_gpu", float(train.num_workers)))
    ev = config.evaluation
    needs.cpus.append(("evaluation.cpus_per_actor", ev.cpus_per_actor))
    if ev.gpus_per_actor:
        needs.gpus.append(("evaluation.gpus_per_actor", ev.gpus_per_actor))
    if local:
        cpus, gpus = _local_resources()
        cpus = num_cpus or cpus
        for key, wanted in needs.gpus:
            if wanted > gpus:
                problems.append(f"{key}: needs {wanted:g} GPU(s), this machine has {gpus}")
        for key, wanted in needs.cpus:
            if wanted > cpus:
                problems.append(f"{key}: needs {wanted:g} CPUs at once, this machine has {cpus}")
    return problems


def plan(config: ExperimentConfig, address: str | None = None) -> str:
    """What the run will do, before it does it."""
    lines = [f"plan of '{config.name}' → {config.out}"]
    data = config.data
    if data.source == "babyai":
        g = data.generate
        sessions = g.episodes_per_count * len(g.subtask_counts)
        if g.protocol == "missions":
            made, episodes = f"missions of {g.subtask_counts} sub-tasks, {sessions} episodes", sessions
        else:
            # A session of k sub-tasks gives k skill episodes and min(chains, k(k-1)/2) relabelled
            # chains (rayrg.data.generate.chain_windows); at most: a cut session keeps fewer.
            skills = g.episodes_per_count * sum(g.subtask_counts)
            chains = g.episodes_per_count * sum(min(g.chains_per_session, k * (k - 1) // 2) for k in g.subtask_counts)
            made = (f"skills cut from {sessions} sessions of {g.subtask_counts} sub-tasks: ≤ {skills} skill "
                    f"episodes + ≤ {chains} relabelled chains")
            episodes = skills + chains
        lines.append(f"  generate: BabyAI, {made} (ε={g.noise}), "
                     f"{g.eval_tasks_per_count * len(g.subtask_counts)} held-out tasks")
    elif data.source == "path":
        lines.append(f"  data: {data.trajectories} (tasks {data.eval_tasks})")
        episodes = None
    else:
        source, options, _ = data.import_args()
        lines.append(f"  import {data.source}: {source} ({options.to_public_dict()})")
        episodes = None
    from rayrg.rewards.registry import get_method, method_of

    for i, label in enumerate(config.labels):
        if isinstance(label, dict) and label.get(AUTO_BACKEND):
            method = get_method(str(label["method"]))
            lines.append(f"  label[{i}] {method.name}: configured from the environment ({method.from_env_doc})")
            continue
        method = method_of(label)
        what = method.describe(label) if method.describe is not None else "no model"
        lines.append(f"  label[{i}] {method.name}: {what}")
        if method.estimate is not None and data.source == "path" and data.trajectories \
                and Path(data.trajectories).is_dir():
            # The dataset exists already: the method's full estimate (requests, tokens, cost, wall time).
            try:
                lines.extend(f"    {line.strip()}" for line in method.estimate_of(label, data.trajectories).lines()[1:])
            except Exception as exc:  # the plan is advice; the run itself reports a bad dataset
                lines.append(f"    (no estimate: {exc})")
    if episodes is not None:
        lines.append(f"    (windows ≈ episodes × mean episode length / 8; {episodes} episodes)")
    if config.evalset is not None and config.bench is not None:
        mix = config.evalset.mix
        lines.append(f"  evalset: the successful episodes + negatives (rewound {mix.rewound}, truncated "
                     f"{mix.truncated}, swapped {mix.swapped}; seed {config.evalset.seed}), labelled by "
                     f"label[0..{len(config.labels) - 1}] again (paid methods: more requests)")
        lines.append(f"  reward-bench: {', '.join(config.bench.columns or ['every reward column'])} "
                     f"({config.bench.resamples} bootstrap resamples)")
    steps = {name: config.train_config(name, 0).num_steps for name in config.methods}
    lines.append(f"  train: {len(config.methods)} methods × {len(config.seeds)} seeds "
                 f"({', '.join(f'{k}: {v} steps' for k, v in steps.items())})")
    ev = config.evaluation
    env = experiment_env_name(config)
    refs: Any = config.reference_policies
    if refs is None:
        refs = config.resolved_reference_policies(env) if env else "(the environment's own)"
    lines.append(f"  evaluate: {len(config.methods) * len(config.seeds)} policies + reference "
                 f"{refs}" + (f" in {env}" if env else "") + f", modes {ev.modes}, seeds {ev.seeds}")
    lines.append("  report: <out>/report/report.md")
    if address not in (None, "", "local"):
        lines.append("  (on a cluster: weights, GPUs and the environment's needs are checked by the "
                     "workers that use them)")
    return "\n".join(lines)
