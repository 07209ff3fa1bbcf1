"""Labelling methods by name: the ``method`` key of a label config picks one.

Each entry names ``module:attribute`` of a :class:`LabelMethod`; modules are imported only
when their method is used, so a missing optional dependency of one method (an SDK, a
model family) never breaks another.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rayrg.config import ConfigError, StageConfig

# method name -> "module:attribute" of a LabelMethod
LABEL_METHODS: dict[str, str] = {
    "sparse": "rayrg.rewards.simple:SPARSE",
    "simulated": "rayrg.rewards.simple:SIMULATED",
    "rgvlm": "rayrg.rewards.rgvlm:RGVLM",
    "clip": "rayrg.rewards.similarity.clip:CLIP",
    "vlmrm": "rayrg.rewards.similarity.vlmrm:VLMRM",
    "blip2": "rayrg.rewards.similarity.blip2:BLIP2",
    "roboclip": "rayrg.rewards.similarity.roboclip:ROBOCLIP",
}


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


def get_method(name: str) -> LabelMethod:
    if name not in LABEL_METHODS:
        raise ConfigError(f"unknown label method {name!r}; known: {sorted(LABEL_METHODS)}")
    module_name, attr = LABEL_METHODS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def load_label_config(data: dict[str, Any], source: str = "<dict>") -> tuple[LabelMethod, StageConfig]:
    if "method" not in data:
        raise ConfigError(f"{source}: label config needs a 'method' key, one of {sorted(LABEL_METHODS)}")
    method = get_method(str(data["method"]))
    return method, method.config_cls.from_dict(data, source=source)


# Settings that change how fast or where a labeller runs, never what it answers: left out of
# an output's fingerprint, so changing them never invalidates labels already made.
RUNTIME_FIELDS = frozenset({
    "cache_dir", "labels_dir", "num_actors", "max_in_flight", "max_retries", "retry_backoff_s",
    "timeout_s", "requests_per_minute", "tokens_per_minute", "num_cpus", "num_gpus", "batch_size",
    "concurrency", "api_key_env", "price_input_per_mtok", "price_output_per_mtok",
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


def run_label(method: LabelMethod, config: StageConfig, dataset: str | Path, out: str | Path, *,
              address: str | None = None, on_change: str = "refuse") -> Path:
    """Label ``dataset`` into ``out`` unless ``out`` already holds labels of the same inputs.

    The labelled dataset's ``metadata.json`` carries the fingerprint, so training keys on it.
    """
    import json

    from rayrg.contracts.datasets import set_fingerprint
    from rayrg.provenance import claim

    dataset, out = Path(dataset), Path(out)
    if dataset.resolve() == out.resolve():
        raise ConfigError(f"label: --out must differ from --dataset ({out}); a labelled dataset is a new one")
    claimed = claim(out, f"label {method.name}", label_inputs(method, config, dataset),
                    on_change=on_change, keep=method.keep_on_redo)  # type: ignore[arg-type]
    if claimed.done:
        return out
    result = Path(method.run(config, dataset, out, address=address))
    set_fingerprint(result, claimed.fingerprint)
    summary = result / f"_{method.name}_summary.json"
    failed = json.loads(summary.read_text()).get("failed", 0) if summary.exists() else 0
    if failed:
        # Not complete: the same command again retries only the failed windows (answers
        # already paid for come from the cache); the dataset is usable meanwhile, with NaN
        # rewards where windows failed.
        print(f"[rayrg] label {method.name}: {failed} windows failed (reasons in {summary.name}); "
              "run the same command again to retry only those", flush=True)
        return result
    claimed.finish(dataset=str(result))
    return result
