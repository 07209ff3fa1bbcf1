"""Labelling methods by name: the ``method`` key of a label config picks one.

Each entry names ``module:attribute`` of a :class:`LabelMethod`; modules are imported only
when their method is used, so a missing optional dependency of one method (an SDK, a
model family) never breaks another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rayrg.config import ConfigError, StageConfig
from rayrg.registry import Registry
from rayrg.rewards.declarations import (
    BrowseOptions,
    Estimate,
    EstimateOptions,
    FromEnv,
    HtmlSection,
    Need,
    OutputColumn,
    ReportInput,
)

# method name -> "module:attribute" of a LabelMethod (one lazy registry: rayrg/registry.py)
# (``plugins=True``: a method registered by a module named in RAYRG_PLUGINS is found by name in
# Ray workers and subprocesses too.)
LABEL_METHODS: Registry[LabelMethod] = Registry("label method", plugins=True, entries={
    "sparse": "rayrg.rewards.simple:SPARSE",
    "simulated": "rayrg.rewards.simple:SIMULATED",
    "shape": "rayrg.rewards.shaped:SHAPE",
    "rgvlm": "rayrg.rewards.rgvlm:RGVLM",
    "clip": "rayrg.rewards.similarity.clip:CLIP",
    "vlmrm": "rayrg.rewards.similarity.vlmrm:VLMRM",
    "blip2": "rayrg.rewards.similarity.blip2:BLIP2",
    "roboclip": "rayrg.rewards.similarity.roboclip:ROBOCLIP",
    "gvl": "rayrg.rewards.progress.gvl:GVL",
    "topreward": "rayrg.rewards.progress.topreward:TOPREWARD",
})


class LabelFn(Protocol):
    def __call__(
        self, config: Any, dataset: Path, out: Path, *, address: str | None = None
    ) -> Path: ...


@dataclass(frozen=True)
class LabelMethod:
    """A labelling method: its typed config and the function that labels a dataset.

    ``run(config, dataset, out, address=...)`` reads the trajectory (or labelled) dataset
    at ``dataset``, writes a labelled dataset (same schema + ``reward_*`` columns) at
    ``out`` and returns ``out``; method-specific side outputs (label tables, caches,
    summaries) go under ``out`` or paths named in the config.
    """

    name: str
    config_cls: type[StageConfig]
    run: LabelFn
    # What else fixes the result besides the config and the input dataset (e.g. the text of
    # the prompt templates); part of the output's fingerprint.
    extra_inputs: Callable[[Any], dict[str, Any]] | None = None
    # Names inside the output that survive a redo because they key themselves by content
    # (RG-VLM's answer cache: an answer paid for is never thrown away).
    keep_on_redo: tuple[str, ...] = ()
    # Where the method writes side outputs that other stages read, given its config and
    # ``out`` (RG-VLM: {"windows": ..., "labels": ...}); the runner records them in the manifest.
    side_outputs: Callable[[Any, Path], dict[str, Path]] | None = None

    # -- declarations (rayrg.rewards.declarations): what the generic loops ask ------------
    # Preflight, plan, estimate, cost confirmation, report and browser read only these; none
    # of them names a method. Every one is optional: None means "nothing to declare".
    # What the method needs before it runs (weights, GPUs, API-key variables, services, files).
    needs: Callable[[Any], Sequence[Need]] | None = None
    # What it needs of the dataset itself (:data:`~rayrg.rewards.declarations.DatasetNeed`:
    # "action_names" when its prompts show the actions), checked by ``dataset_problems``.
    dataset_needs: Callable[[Any], Sequence[str]] | None = None
    # Whether labelling with ``config`` costs money (then ``estimate`` is required: the
    # estimate is printed, and confirmed on a terminal, before the first paid request).
    paid: Callable[[Any], bool] | None = None
    # ``estimate(config, dataset, options)``: requests, tokens, cost, wall time, before any call.
    estimate: Callable[[Any, Path, EstimateOptions], Estimate] | None = None
    # The columns the method adds, each a reward (per transition) or progress (per frame).
    outputs: Callable[[Any], Sequence[OutputColumn]] | None = None
    # One line for the plan (``rayrg run --dry-run``): the model and what it is asked.
    describe: Callable[[Any], str] | None = None
    # The report's markdown section for one label step ("" or None: none).
    report_section: Callable[[ReportInput], str] | None = None
    # The label browser's section for a dataset this method labelled (None: no browser).
    browser_section: Callable[[Path, BrowseOptions], HtmlSection] | None = None
    # ``from_env(raw, models_dir)``: the label config completed from the environment, for an
    # experiment's ``auto_backend: true`` entry; ``from_env_doc`` says what it looks at (plan).
    from_env: Callable[[dict[str, Any], Path], FromEnv] | None = None
    from_env_doc: str = ""

    def costs_money(self, config: Any) -> bool:
        return bool(self.paid is not None and self.paid(config))

    def needs_of(self, config: Any) -> list[Need]:
        return list(self.needs(config)) if self.needs is not None else []

    def dataset_problems(self, config: Any, dataset: str | Path) -> list[str]:
        """What ``dataset`` lacks of :attr:`dataset_needs`, one line each (empty: nothing)."""
        from rayrg.rewards.declarations import dataset_problems

        needs = list(self.dataset_needs(config)) if self.dataset_needs is not None else []
        return dataset_problems(self.name, needs, dataset) if needs else []

    def outputs_of(self, config: Any) -> list[OutputColumn]:
        """The declared output columns, each checked against its column family's kind."""
        from rayrg.rewards.declarations import check_outputs

        columns = list(self.outputs(config)) if self.outputs is not None else []
        check_outputs(self.name, columns)
        return columns

    def estimate_of(self, config: Any, dataset: str | Path, options: EstimateOptions | None = None) -> Estimate:
        if self.estimate is None:
            raise ConfigError(f"label method {self.name!r} declares no estimate (it makes no paid or "
                              "counted model calls)")
        return self.estimate(config, Path(dataset), options or EstimateOptions())


def get_method(name: str) -> LabelMethod:
    return LABEL_METHODS.load(name)


def method_of(config: Any) -> LabelMethod:
    """The method a typed label config belongs to (its ``method`` field)."""
    return get_method(str(config.method))


def load_label_config(data: dict[str, Any], source: str = "<dict>") -> tuple[LabelMethod, StageConfig]:
    if "method" not in data:
        raise ConfigError(f"{source}: label config needs a 'method' key, one of {sorted(LABEL_METHODS)}")
    method = get_method(str(data["method"]))
    config = method.config_cls.from_dict(data, source=source)
    method.outputs_of(config)  # its declared columns belong to families of their kinds
    return method, config


# Settings that change how fast or where a labeller runs, never what it answers: left out of
# an output's fingerprint, so changing them never invalidates labels already made. Parallelism
# (actor counts, concurrency) and inference batch sizes are among them for every method. A
# batch size can change floating-point results on a GPU (other kernels, other summation
# order); it is left out on purpose: those differences are far below a label's resolution,
# and re-labelling a dataset because a batch was resized would cost more than it could fix.
# The device (CPU or GPU) is left out for the same reason, as RG-VLM's backends leave it out.
RUNTIME_FIELDS = frozenset({
    "device",
    "cache_dir", "labels_dir", "num_actors", "max_actors", "max_in_flight", "max_retries",
    "retry_backoff_s", "timeout_s", "requests_per_minute", "tokens_per_minute", "num_cpus", "num_gpus",
    "batch_size", "concurrency", "api_key_env", "price_input_per_mtok", "price_output_per_mtok",
    # RG-VLM's permission to show continuous actions as vectors: the vectors themselves are in
    # the dataset (its fingerprint), so allowing them changes no label of a dataset it accepted.
    "continuous_actions",
})


def _without_runtime(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_runtime(v) for k, v in value.items() if k not in RUNTIME_FIELDS}
    return value


def label_inputs(method: LabelMethod, config: StageConfig, dataset: Path) -> dict[str, Any]:
    """What a labelled dataset is keyed to: method, input dataset, result-relevant config."""
    from rayrg.provenance import dataset_fingerprint, fingerprint, public

    inputs: dict[str, Any] = {"method": method.name, "dataset": dataset_fingerprint(dataset),
                              "config": _without_runtime(public(config))}
    answer_settings = getattr(config, "answer_settings", None)
    if callable(answer_settings):
        # A model labeller: what changes its answers is classified field by field on its
        # config (rgvlm/config.py); those enter as a hash — free-form fields such as
        # extra_body are redacted whole in the public config, so their values would
        # otherwise be lost, and must not be written in clear text.
        inputs["answers"] = fingerprint(answer_settings())
        inputs["config"] = {k: v for k, v in inputs["config"].items() if k not in config.ANSWER_FIELDS}
    windows_dir = getattr(config, "windows_dir", None)
    if windows_dir:
        inputs["windows"] = dataset_fingerprint(windows_dir)
    if method.extra_inputs is not None:
        inputs.update(method.extra_inputs(config))
    return inputs


def _readable(value: Any) -> Any:
    """Answer settings as recorded for explaining a change: secret-bearing fields
    (:data:`~rayrg.config.OPAQUE_FIELDS`: headers, extra_body) only as digests."""
    from rayrg.config import OPAQUE_FIELDS
    from rayrg.provenance import opaque

    if isinstance(value, dict):
        return {k: opaque(v) if k in OPAQUE_FIELDS else _readable(v) for k, v in value.items()}
    return value


def label_explanation(config: StageConfig) -> dict[str, Any]:
    """Readable forms of what :func:`label_inputs` hashes, recorded beside the fingerprint (not
    in it) so a refusal names the setting that changed: ``answers.decoding.temperature: 0.0 →
    0.7``, or ``answers.backend.headers: changed (value not shown)``."""
    answer_settings = getattr(config, "answer_settings", None)
    return {"answers": _readable(answer_settings())} if callable(answer_settings) else {}


def retry_command(dataset: str | Path, out: str | Path, config_path: str | Path | None = None) -> str:
    """The ``rayrg label`` command that retries the failed windows of ``out``."""
    import shlex

    return shlex.join(["rayrg", "label", "--config", str(config_path or "<your label config>"),
                       "--dataset", str(dataset), "--out", str(out)])


def _failed_windows(result: Path, method: LabelMethod) -> tuple[int, int, str]:
    """(failed, windows, digest of the failed window ids) from the method's summary."""
    from rayrg.contracts.labels import read_summary

    info = read_summary(result, f"_{method.name}_summary.json") or {}
    return int(info.get("failed", 0)), int(info.get("windows", 0)), str(info.get("failed_windows_sha", ""))


def run_label(method: LabelMethod, config: StageConfig, dataset: Any, out: Any, *,
              address: str | None = None, on_change: str = "refuse", allow_unfinished: bool = False,
              retry: str | None = None) -> Any:
    """Label ``dataset`` into ``out`` unless ``out`` already holds labels of the same inputs.

    The labelled dataset's ``metadata.json`` carries the fingerprint, so training keys on it.
    When windows failed it carries none: it is marked unfinished (``extra["unfinished"]``:
    the failed count, ``retry`` — the command that retries them — and a key naming the
    failed windows), and every consumer refuses it unless told otherwise
    (:func:`rayrg.data.access.require_finished`). ``allow_unfinished``: label on top of an
    unfinished ``dataset`` anyway (the output stays marked unfinished).
    """

    from rayrg.contracts.datasets import read_metadata, write_metadata
    from rayrg.data.access import UNFINISHED_KEY, require_finished
    from rayrg.provenance import claim
    from rayrg.storage import open_input, prepare_output, resolve
    from rayrg.windows.staging import as_arg

    # Paths or URIs (rayrg.storage): a local one stays a Path, as before. Nothing is created
    # at ``out`` until the input is accepted.
    dataset_loc, out_loc = open_input(dataset), resolve(out)
    dataset = as_arg(dataset_loc)
    if dataset_loc.fs.equals(out_loc.fs) and dataset_loc.path.rstrip("/") == out_loc.path.rstrip("/"):
        raise ConfigError(f"label: --out must differ from --dataset ({out}); a labelled dataset is a new one")
    require_finished(dataset, f"label {method.name}", allow=allow_unfinished)
    from rayrg.contracts.versions import DatasetError

    lacks = method.dataset_problems(config, dataset)  # e.g. unnamed actions for a prompt that shows them
    if lacks:
        raise DatasetError("; ".join(lacks))
    out = as_arg(prepare_output(out_loc))
    claimed = claim(out, f"label {method.name}", label_inputs(method, config, dataset),
                    on_change=on_change, keep=method.keep_on_redo,  # type: ignore[arg-type]
                    explain=label_explanation(config))
    if claimed.done:
        return out
    result = method.run(config, dataset, out, address=address)
    failed, windows, missing = _failed_windows(result, method)
    meta = read_metadata(result)
    extra = meta.extra
    inherited = extra.get(UNFINISHED_KEY)  # labelled on top of unfinished labels (allowed)
    if failed:
        extra[UNFINISHED_KEY] = {"method": method.name, "failed": failed, "windows": windows,
                                 "missing": missing, "retry": retry or retry_command(dataset, out),
                                 "key": f"unfinished:{claimed.fingerprint}:{missing}"}
    elif inherited:
        # This stage's fingerprint already contains the upstream's unfinished key; the
        # upstream's retry command stays the one to run.
        extra[UNFINISHED_KEY] = {**inherited, "key": f"unfinished:{claimed.fingerprint}"}
    # Unfinished labels carry no final fingerprint (a consumer keys on the unfinished key).
    meta.fingerprint = None if extra.get(UNFINISHED_KEY) else claimed.fingerprint
    write_metadata(meta, result)
    if failed:
        # Not complete: the same command again retries only the failed windows (answers
        # already paid for come from the cache); consumers refuse the dataset meanwhile.
        print(f"[rayrg] label {method.name}: {failed} of {windows} windows failed (reasons in "
              f"_{method.name}_summary.json); the labels are unfinished: retry only those with "
              f"`{extra[UNFINISHED_KEY]['retry']}`", flush=True)
        return result
    claimed.finish(dataset=str(result))
    return result
