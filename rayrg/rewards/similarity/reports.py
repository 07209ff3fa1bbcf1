"""Reward-quality reports of similarity rewards: PR curves, model-size scaling, prompt variants.

Ground truth per transition (one definition, shared with :mod:`rayrg.rewards.truth`):

* ``goal`` — the goal is achieved: the episode succeeded and this is its last transition;
* ``subtask`` — a sub-task advanced: ``subtasks_completed`` increased at this transition.

A reward column is a score; its quality is the precision–recall curve of ``score >= t``
over all thresholds ``t`` against each truth, summarised by average precision (PR-AUC;
Baumli et al. 2023, Fig. 4). Columns given only at episode ends (RoboCLIP, provenance
``granularity: episode_end``) are scored on last transitions only. NaN rewards (not
labelled) are left out and counted. Every report writes PNG plots and a JSON file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rayrg.data.access import Dataset, episode_ends
from rayrg.data.schema import SCALAR_COLUMNS, DatasetError
from rayrg.pipeline_check import is_tiny_random, pipeline_check_caveat, provenance_is_tiny_random
from rayrg.rewards.similarity.math import pr_summary
from rayrg.rewards.similarity.method import SimilarityMethod
from rayrg.rewards.truth import subtask_advanced
from rayrg.runtime import agg_pyplot

log = logging.getLogger(__name__)

TRUTHS = ("goal", "subtask")
# Prompt variants of the default prompt report: terse to descriptive (Baumli et al. find
# descriptive prompts give better rewards).
DEFAULT_TEMPLATES: dict[str, str] = {
    "bare": "{instruction}",
    "photo": "a picture of {instruction}",
    "descriptive": "a top-down view of a grid world in which the agent has just managed to {instruction}",
}


def last_steps(episode_id: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return episode_ends(episode_id)


def ground_truth(keys: pa.Table) -> dict[str, np.ndarray]:
    """``goal`` and ``subtask`` truth per row (rows grouped by episode, in step order)."""
    success = np.asarray(keys.column("success").to_numpy(zero_copy_only=False), dtype=bool)
    return {"goal": success & last_steps(keys.column("episode_id")),
            "subtask": subtask_advanced(keys.column("episode_id"), keys.column("subtasks_completed"))}


def score_against_truth(score: np.ndarray, keys: pa.Table, granularity: str = "transition") -> dict[str, Any]:
    """PR summaries of one score column against each truth."""
    truth = ground_truth(keys)
    rows = last_steps(keys.column("episode_id")) if granularity == "episode_end" else np.ones(len(score), bool)
    return {name: pr_summary(np.asarray(score)[rows], t[rows]) for name, t in truth.items()}


def plot_pr_curves(curves: dict[str, dict[str, dict[str, Any]]], path: Path, title: str) -> Path:
    """``curves[label][truth]`` = :func:`pr_summary` output; one panel per truth."""
    plt = agg_pyplot()
    fig, axes = plt.subplots(1, len(TRUTHS), figsize=(5.5 * len(TRUTHS), 4.5), squeeze=False)
    for ax, truth in zip(axes[0], TRUTHS, strict=True):
        base = None
        for label, by_truth in curves.items():
            s = by_truth[truth]
            if s["curve"]["recall"] and not np.isnan(s["average_precision"]):
                ax.step(s["curve"]["recall"], s["curve"]["precision"], where="post",
                        label=f"{label} (AP {s['average_precision']:.3f})")
            base = s["base_rate"]
        if base is not None and not np.isnan(base):
            ax.axhline(base, ls="--", c="grey", lw=1, label=f"base rate {base:.3f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
               title={"goal": "goal achieved", "subtask": "sub-task advanced"}[truth])
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _json_safe(value: Any) -> Any:
    """NaN -> null (strict JSON), NumPy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _write_json(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False))
    return path


def pr_report(datasets: Sequence[str | Path], out: str | Path, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """PR curves of reward columns of labelled datasets -> ``pr_curves.png`` + ``pr_report.json``."""
    out = Path(out)
    entries: list[dict[str, Any]] = []
    curves: dict[str, dict[str, Any]] = {}
    for dataset in map(Path, datasets):
        source = Dataset.open(dataset)
        wanted = source.reward_columns(columns)
        if not wanted:
            raise DatasetError(f"{dataset}: no reward columns to score (has {source.reward_columns()}, "
                               f"asked {columns})")
        table = source.read([*SCALAR_COLUMNS, *wanted])
        provenance = source.provenance
        for column in wanted:
            prov = provenance.get(column, {})
            granularity = prov.get("granularity", "transition")
            values = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)
            result = score_against_truth(values, table, granularity)
            label = column if len(datasets) == 1 else f"{dataset.name}:{column}"
            curves[label] = result
            entries.append({"dataset": str(dataset), "column": column, "method": prov.get("method"),
                            "model": prov.get("model"), "template": prov.get("template"),
                            "tiny_random_weights": provenance_is_tiny_random(prov),
                            "granularity": granularity, "truth": result})
    plot = plot_pr_curves(curves, out / "pr_curves.png", "Reward precision–recall" + _tiny_note(entries))
    report = {"truth": {"goal": "success and last transition of the episode",
                        "subtask": "subtasks_completed increased at this transition"},
              "columns": entries, "plots": [str(plot)]}
    caveat = pipeline_check_caveat(entries)
    if caveat:
        report["caveat"] = caveat
    _write_json(report, out / "pr_report.json")
    return report


def _tiny_note(rows: Sequence[dict[str, Any]]) -> str:
    return "\n(tiny random checkpoints: plumbing check, not quality)" if any(
        r.get("tiny_random_weights") for r in rows) else ""


def _sweep(base: dict[str, Any], variants: Sequence[tuple[str, dict[str, Any]]], dataset: Path,
           address: str | None) -> list[dict[str, Any]]:
    """Score ``dataset`` with every variant (``base`` updated with its overrides) in one pass."""
    from rayrg.rewards.similarity.stages import score_variants

    method = similarity_method(base)
    configs = [method.config_cls.from_dict({**base, **overrides}) for _, overrides in variants]
    scores = score_variants(method, configs, dataset, address=address)  # type: ignore[arg-type]
    rows = []
    for (label, _), config, scored in zip(variants, configs, scores, strict=True):
        rows.append({"label": label, "model": config.model, "template": config.template,
                     "num_parameters": scored.num_parameters, "pass_wall_s": round(scored.wall_s, 3),
                     "tiny_random_weights": is_tiny_random(config.model),
                     "truth": score_against_truth(scored.score, scored.keys, scored.granularity)})
        log.info("%s: AP goal %.3f, sub-task %.3f", label, rows[-1]["truth"]["goal"]["average_precision"],
                 rows[-1]["truth"]["subtask"]["average_precision"])
    return rows


def similarity_method(base: dict[str, Any]) -> SimilarityMethod:
    """The registered similarity method a label config names; one-line error for any other."""
    from rayrg.rewards.registry import LABEL_METHODS, get_method

    name = base.get("method")
    method = get_method(name) if name in LABEL_METHODS else None
    if not isinstance(method, SimilarityMethod):
        raise DatasetError(f"a similarity label config is needed (a method of rayrg.rewards.similarity), "
                           f"got method {name!r}")
    return method


def _check_method(base: dict[str, Any]) -> None:
    similarity_method(base)


def scaling_report(base: dict[str, Any], models: Sequence[tuple[str, str]], dataset: str | Path,
                   out: str | Path, *, address: str | None = None) -> dict[str, Any]:
    """PR-AUC per checkpoint of one model family -> ``scaling.png``, ``scaling_pr_curves.png``, JSON."""
    _check_method(base)
    out, dataset = Path(out), Path(dataset)
    rows = _sweep(base, [(label, {"model": model}) for label, model in models], dataset, address)
    rows.sort(key=lambda r: r["num_parameters"] or 0)
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    params = [r["num_parameters"] for r in rows]
    for truth in TRUTHS:
        ax.plot(params, [r["truth"][truth]["average_precision"] for r in rows], "o-",
                label={"goal": "goal achieved", "subtask": "sub-task advanced"}[truth])
    for r in rows:
        ax.annotate(r["label"], (r["num_parameters"], r["truth"]["goal"]["average_precision"]), fontsize=8)
    ax.set(xscale="log", xlabel="parameters", ylabel="PR-AUC (average precision)")
    ax.set_title(f"{base['method']} reward quality vs model size{_tiny_note(rows)}", fontsize=9)
    return _save_sweep(fig, base, rows, dataset, out, "scaling", "models", "model size", "scaling_report.json")


def prompt_report(base: dict[str, Any], templates: Sequence[tuple[str, str]], dataset: str | Path,
                  out: str | Path, *, address: str | None = None) -> dict[str, Any]:
    """PR-AUC per prompt template -> ``prompts.png``, ``prompts_pr_curves.png``, JSON."""
    _check_method(base)
    out, dataset = Path(out), Path(dataset)
    rows = _sweep(base, [(label, {"template": t}) for label, t in templates], dataset, address)
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows)), 4.5))
    x = np.arange(len(rows))
    for k, truth in enumerate(TRUTHS):
        bars = ax.bar(x + (k - 0.5) * 0.38, [r["truth"][truth]["average_precision"] for r in rows], 0.38,
                      label={"goal": "goal achieved", "subtask": "sub-task advanced"}[truth])
        ax.axhline(rows[0]["truth"][truth]["base_rate"], ls="--", lw=1, c=bars.patches[0].get_facecolor(),
                   label=f"base rate ({truth})")
    ax.set_xticks(x, [r["label"] for r in rows], fontsize=8)
    ax.set(ylabel="PR-AUC (average precision)", ylim=(0, 1))
    ax.set_title(f"{base['method']}: prompt variants{_tiny_note(rows)}", fontsize=9)
    return _save_sweep(fig, base, rows, dataset, out, "prompts", "templates", "prompt", "prompt_report.json")


def _save_sweep(fig: Any, base: dict[str, Any], rows: list[dict[str, Any]], dataset: Path, out: Path, stem: str,
                rows_key: str, per: str, report_file: str) -> dict[str, Any]:
    """Write a sweep's summary plot ``<stem>.png``, its PR curves and its JSON ``report_file``."""
    plt = agg_pyplot()
    fig.axes[0].legend()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", dpi=110)
    plt.close(fig)
    plot_pr_curves({r["label"]: r["truth"] for r in rows}, out / f"{stem}_pr_curves.png",
                   f"{base['method']}: precision–recall per {per}{_tiny_note(rows)}")
    report = {"method": base["method"], "dataset": str(dataset), "base_config": base, rows_key: rows,
              "plots": [str(out / f"{stem}.png"), str(out / f"{stem}_pr_curves.png")]}
    _write_json(report, out / report_file)
    return report
