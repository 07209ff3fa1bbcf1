"""One YAML describes a whole experiment matrix: data, labels, methods, IQL, seeds, evaluation.

Its sections are the stages' own config types, validated once when the file is loaded (a
typo fails before any work starts): ``data.generate`` is a
:class:`~rayrg.data.generate.GenerateConfig`; with ``data.source`` a registered dataset
format (:mod:`rayrg.data.formats`: alfred, lerobot, minari, ...), ``data.options`` is that
format's typed import options (``data.alfred``, an
:class:`~rayrg.data.alfred.AlfredImportConfig`, is the older spelling of ``source: alfred``);
every entry of ``labels`` the config class
its ``method`` registers, ``train`` a :class:`~rayrg.rl.config.TrainConfig` (a method's
``train`` holds overrides of it), ``evaluation`` an
:class:`~rayrg.evaluation.config.EvalConfig` (its ``tasks`` come from the data stage).
The defaults are the quickstart: a small BabyAI slice that runs on a 2-core laptop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rayrg.bench.bench import BenchConfig
from rayrg.config import ConfigError, StageConfig
from rayrg.data.alfred import AlfredImportConfig
from rayrg.data.evalset import EvalsetConfig
from rayrg.data.formats import FORMATS, get_format, import_options
from rayrg.data.generate import GenerateConfig
from rayrg.envs.registry import REFERENCE_POLICIES
from rayrg.evaluation.config import EvalConfig
from rayrg.rl.config import TrainConfig
from rayrg.storage import Location, resolve

# data.source values that are not dataset formats: the BabyAI generator and an existing dataset.
BUILTIN_SOURCES = ("babyai", "path")
# A label whose backend is picked from the environment at run time (its method's ``from_env``
# declaration): the only label entry that stays a mapping until then.
AUTO_BACKEND = "auto_backend"


class DataSection(StageConfig):
    """Where trajectories and evaluation tasks come from."""

    source: str = Field("babyai", description="babyai (the generator), path (an existing dataset), or a "
                                              "registered dataset format to import (alfred, lerobot, minari, ...).")
    generate: GenerateConfig = Field(
        # 64 episodes per length: with 16, the learned policies did no better than the random
        # one on held-out missions (they fitted their 48 training missions and no more); with
        # 64 (sparse rewards, 1,500 updates) they completed 0.42 [0.24, 0.61] of the 1-sub-task
        # and 0.23 [0.13, 0.37] of the 2-sub-task held-out missions from fixed starts, against
        # 0.04 and 0.06 for the random policy (24 tasks per length); 96 per length gave
        # 0.46 / 0.21, no better. 24 held-out tasks per length keep the intervals that narrow.
        default_factory=lambda: GenerateConfig(subtask_counts=[1, 2, 3], episodes_per_count=64,
                                               eval_tasks_per_count=24, noise=0.2),
        description="source=babyai: the generator's config.")
    input: str | None = Field(None, description="source=<format>: what it imports (the ALFRED root, a "
                                                "LeRobot dataset directory, a Minari path or id).")
    options: Any = Field(None, description="source=<format>: the format's import options (typed by the format).")
    alfred: AlfredImportConfig | None = Field(
        None, description="source=alfred, older spelling: root + the import options in one mapping.")
    trajectories: str | None = Field(None, description="source=path: an existing trajectory dataset.")
    eval_tasks: str | None = Field(None, description="source=path: its evaluation tasks JSON (also for a "
                                                     "format whose import makes none).")

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        if source not in BUILTIN_SOURCES and source not in FORMATS:
            raise ValueError(f"unknown data.source {source!r}; known: "
                             f"{', '.join([*BUILTIN_SOURCES, *sorted(FORMATS)])}")
        return source

    @field_validator("options")
    @classmethod
    def _typed_options(cls, options: Any, info: ValidationInfo) -> Any:
        source = info.data.get("source")
        if options is None or source is None:
            return options
        if source in BUILTIN_SOURCES:
            raise ValueError(f"data.options applies to a dataset format, not source={source}")
        try:
            return import_options(get_format(source), options, f"data.options ({source})")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _source_has_what_it_needs(self) -> DataSection:
        if self.source == "path" and not (self.trajectories and self.eval_tasks):
            raise ValueError("data.source=path needs data.trajectories and data.eval_tasks")
        if self.alfred is not None and (self.source != "alfred" or self.input or self.options is not None):
            raise ValueError("data.alfred is the older spelling of source: alfred with data.input and "
                             "data.options; give one of the two")
        if self.source in BUILTIN_SOURCES:
            return self
        if self.input is None and self.alfred is None:
            raise ValueError(f"data.source={self.source} needs data.input (what to import)"
                             + (" or data.alfred (with at least 'root')" if self.source == "alfred" else ""))
        if not get_format(self.source).makes_eval_tasks and not self.eval_tasks:
            raise ValueError(f"data.source={self.source} makes no evaluation tasks; set data.eval_tasks")
        return self

    def import_args(self) -> tuple[str, StageConfig, str]:
        """source=<format>: (what to import, its typed options, the config key naming it)."""
        if self.alfred is not None:
            return self.alfred.root, self.alfred.options(), "data.alfred.root"
        fmt = get_format(self.source)
        return str(self.input), import_options(fmt, self.options, f"data.options ({self.source})"), "data.input"


class MethodSpec(StageConfig):
    """A policy-training variant: which reward column IQL learns from."""

    reward_column: str
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig overrides for this method.")
    display_name: str | None = Field(None, description="Name in the report (default: the method key).")
    note: str | None = Field(None, description="Shown in the report, e.g. 'pipeline check, untrained model'.")

    @model_validator(mode="before")
    @classmethod
    def _older_label_key(cls, data: Any) -> Any:
        # "label" was this field's older name; the word now means reward labels only.
        if isinstance(data, dict) and "label" in data:
            if "display_name" in data:
                raise ValueError("give display_name or its older name label, not both")
            data = {**{k: v for k, v in data.items() if k != "label"}, "display_name": data["label"]}
        return data


class BenchSection(BenchConfig):
    """``bench:``: the reward bench's own config, plus which columns it scores."""

    columns: list[str] | None = Field(None, description="Columns to score (default: every reward_*/progress_* "
                                                        "column of the labelled evaluation set, and the oracle).")

    def bench_config(self) -> BenchConfig:
        return BenchConfig(**{k: v for k, v in self.to_dict().items() if k != "columns"})


def _default_labels() -> list[Any]:
    return [{"method": "sparse"},
            {"method": "simulated", "accuracy": 0.934, "name": "acc934"},
            {"method": "rgvlm", AUTO_BACKEND: True}]


def _default_methods() -> dict[str, MethodSpec]:
    return {
        "sparse": MethodSpec(reward_column="reward_sparse", display_name="sparse"),
        "simulated-93.4%+sparse": MethodSpec(
            reward_column="reward_simulated_acc934_sparse", display_name="simulated 93.4% + sparse",
            note="SIMULATED labels: ground truth corrupted to 93.4% accuracy (Gemini 1.5 Pro, Table I)"),
        "rgvlm+sparse": MethodSpec(reward_column="reward_rgvlm_sparse", display_name="RG-VLM + sparse"),
    }


def _default_train() -> TrainConfig:
    # lr 1e-3: at this budget it learned far better than SPRINT's 1e-4 on BabyAI (1,500 steps:
    # 0.75 vs 0.33 of the 1-sub-task training missions solved, 0.75 vs 0.00 of the 2-sub-task).
    return TrainConfig(num_steps=1500, batch_size=64, lr=1e-3, num_workers=1, torch_threads=2,
                       checkpoint_every=500, report_every=250)


def _default_evaluation() -> EvalConfig:
    return EvalConfig(num_actors=2, envs_per_actor=8)


class ClaimsSpec(StageConfig):
    """Which methods play which part in the paper's three claims (tested in the report)."""

    sparse: str = Field(..., description="The sparse-reward method.")
    dense: str = Field(..., description="The dense-reward method alone.")
    dense_plus_sparse: str = Field(..., description="Dense + sparse.")


class ExperimentConfig(StageConfig):
    """``rayrg run <config>``: every stage of the paper's pipeline, resumable."""

    name: str = "quickstart"
    out: str = Field("runs/quickstart", description="Output root; every stage writes under it: a "
                     "local path or a storage URI (s3://bucket/run); relative: under `storage`.")
    storage: str | None = Field(
        None, description="Storage root that a relative `out` resolves against (e.g. s3://bucket/rayrg, "
                          "or a mount shared by every node); default: $RAYRG_STORAGE, else the cwd.")
    data: DataSection = Field(default_factory=DataSection)
    labels: list[Any] = Field(
        default_factory=_default_labels, validate_default=True,
        description="Label configs applied in order onto one labelled dataset; each entry's "
                    "'method' picks its config type. {method: rgvlm, auto_backend: true} picks "
                    "the backend from the environment at run time.")
    methods: dict[str, MethodSpec] = Field(default_factory=_default_methods)
    train: TrainConfig = Field(default_factory=_default_train,
                               description="IQL config shared by every method (methods override fields).")
    seeds: list[int] = Field(default_factory=lambda: [0], description="Training seeds (paper: 5).")
    evaluation: EvalConfig = Field(default_factory=_default_evaluation,
                                   description="Evaluation config; its tasks come from the data stage.")
    # Default: the environment's declared ones (rayrg.envs.registry), not a fixed list: only
    # BabyAI has an expert, and a fixed [expert, random] made every THOR run fail at evaluation,
    # after its labels and training were paid for. Listed explicitly, each is checked by
    # preflight against what the environment has.
    reference_policies: list[Literal["expert", "random"]] | None = Field(
        None, description="Policies evaluated beside the learned ones, as reference rows of the "
                          "report (default: every one the environment has: BabyAI expert and "
                          "random, THOR random).")

    comparisons: list[tuple[str, str]] | None = Field(
        None, description="Paired comparisons (a, b) in the report, as a − b over the same tasks "
                          "and training seeds (default: every method against the first).")
    claims: ClaimsSpec | None = Field(None, description="Test the paper's claims with these methods.")
    evalset: EvalsetConfig | None = Field(
        None, description="Build an evaluation set (`rayrg evalset`) from the run's trajectories and label it "
                          "with `labels` (needs `bench`); unset: no reward bench.")
    bench: BenchSection | None = Field(
        None, description="Score every reward column of the labelled evaluation set (`rayrg reward-bench`); "
                          "the report shows the table beside the returns. Needs `evalset` (`{}` for its defaults).")

    @model_validator(mode="before")
    @classmethod
    def _shaping_gamma_from_train(cls, data: Any) -> Any:
        """A label step that shapes with a discount (``gamma``: the progress methods, ``shape``)
        and does not set one takes the run's ``train.gamma``: potential-based shaping keeps the
        optimal policy only with the learner's own γ, so one number sets both."""
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            return data
        from rayrg.rewards.registry import get_method

        train = data.get("train")
        if isinstance(train, TrainConfig):
            gamma = train.gamma
        elif train is None or isinstance(train, dict):
            gamma = (train or {}).get("gamma", _default_train().gamma)
        else:
            return data  # not a train section: its own validation says so
        labels = []
        for label in data["labels"]:
            if isinstance(label, dict) and "gamma" not in label and "method" in label:
                try:
                    fields = get_method(str(label["method"])).config_cls.model_fields
                except ConfigError:
                    fields = {}  # unknown method: _typed_labels says so in one line
                if "gamma" in fields:
                    label = {**label, "gamma": gamma}
            labels.append(label)
        return {**data, "labels": labels}

    @field_validator("labels", mode="before")
    @classmethod
    def _typed_labels(cls, labels: Any) -> list[Any]:
        from rayrg.rewards.registry import get_method, load_label_config

        if not isinstance(labels, list):
            raise ValueError("labels must be a list of label configs")
        typed: list[Any] = []
        for i, label in enumerate(labels):
            if isinstance(label, StageConfig):
                typed.append(label)
                continue
            if not isinstance(label, dict) or "method" not in label:
                raise ValueError(f"labels[{i}] has no 'method'")
            if label.get(AUTO_BACKEND):
                try:
                    from_env = get_method(str(label["method"])).from_env
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
                if from_env is None:
                    raise ValueError(f"labels[{i}]: auto_backend applies to methods built from the environment "
                                     f"(a from_env declaration); {label['method']!r} has none")
                typed.append(dict(label))  # resolved at run time from the environment
                continue
            try:
                typed.append(load_label_config(label, source=f"labels[{i}]")[1])
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return typed

    @model_validator(mode="after")
    def _methods_resolve(self) -> ExperimentConfig:
        if not self.methods:
            raise ValueError("no methods to train")
        # Unset: any reference policy may be the environment's (preflight checks which it has).
        references = REFERENCE_POLICIES if self.reference_policies is None else self.reference_policies
        clash = set(self.methods) & set(references)
        if clash:
            raise ValueError(f"methods {sorted(clash)} share a name with a reference policy")
        named = [n for pair in (self.comparisons or []) for n in pair]
        named += list(self.claims.to_dict().values()) if self.claims else []
        unknown = [n for n in named if n not in self.methods and n not in references]
        if unknown:
            raise ValueError(f"comparisons/claims name unknown methods {unknown}; methods: {sorted(self.methods)}")
        for name in self.methods:
            self.train_config(name, self.seeds[0] if self.seeds else 0)
        self._check_shaping_gamma()
        if (self.evalset is None) != (self.bench is None):
            raise ValueError("evalset and bench go together: the bench scores the labelled evaluation set "
                             "(give both; `{}` takes a section's defaults)")
        return self

    def _check_shaping_gamma(self) -> None:
        """Refuse, before anything is labelled, a method trained with another γ than its reward
        column was shaped with (training would refuse it after the labels were paid for)."""
        from rayrg.rewards.registry import method_of

        trained_gamma = {name: self.train_config(name, 0).gamma for name in self.methods}
        for i, label in enumerate(self.labels):
            gamma = getattr(label, "gamma", None)
            method = method_of(label) if isinstance(label, StageConfig) and gamma is not None else None
            if method is None or method.outputs is None:
                continue
            made = {c.name for c in method.outputs(label)}
            for name, spec in self.methods.items():
                trained = trained_gamma[name]
                if spec.reward_column in made and abs(trained - gamma) > 1e-9:
                    raise ValueError(f"methods.{name} trains on {spec.reward_column} with gamma {trained}, but "
                                     f"labels[{i}] ({label.method}) shapes it with gamma {gamma}; potential-based "
                                     "shaping keeps the optimal policy only with the learner's own gamma: "
                                     "set one gamma for both (unset in the label step, it follows train.gamma)")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def out_location(self) -> Location:
        """Where the run writes: ``out`` resolved against ``storage`` (else ``$RAYRG_STORAGE``);
        no I/O (:func:`rayrg.storage.prepare_output` checks it before any work)."""
        return resolve(self.out, root=self.storage)

    def with_out(self, out: str | Path | None) -> ExperimentConfig:
        return self if out is None else self.model_copy(update={"out": str(out)})

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The one place a method's TrainConfig is resolved: shared config + its overrides."""
        spec = self.methods[method]
        return TrainConfig.from_dict({**self.train.to_dict(), **spec.train, "reward_column": spec.reward_column,
                                      "seed": seed}, source=f"{self.name}: methods.{method}.train")

    def resolved_reference_policies(self, env_name: str) -> list[str]:
        """The reference policies evaluated: those listed, else every one ``env_name`` has."""
        if self.reference_policies is not None:
            return list(self.reference_policies)
        from rayrg.envs.registry import reference_policies

        return list(reference_policies(env_name))

    def eval_config(self, tasks: str | Path) -> EvalConfig:
        return self.evaluation.model_copy(update={"tasks": str(tasks)})

    def resolved_comparisons(self) -> list[tuple[str, str]]:
        if self.comparisons is not None:
            return list(self.comparisons)
        first, *rest = list(self.methods)
        return [(m, first) for m in rest]

    def display_name(self, method: str) -> str:
        """The method's name in the report."""
        return self.methods[method].display_name or method
