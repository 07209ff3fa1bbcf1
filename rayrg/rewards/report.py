"""Reward quality against ground truth: the RG-VLM paper's Table I, generalised.

Definitions (one place, used for every method):

* truth ``good(t)``: :func:`rayrg.rewards.truth.good_actions` — the action is the expert's
  action at ``s_t`` or it completed a sub-task.
* prediction: ``reward(t) >= threshold``; the default 0.5 is an RG-VLM score >= 5 of 10.
* accuracy = (TP + TN) / labelled transitions; precision = TP / (TP + FP); recall =
  TP / (TP + FN); F1; the confusion counts; coverage = labelled / all transitions.
  Transitions whose reward is NaN (a failed window) are left out of those ratios and
  counted in ``coverage``, never scored as 0.
* caveat: a column scored by a tiny randomly initialised checkpoint (decided from the
  checkpoint's marker via its provenance, :func:`rayrg.pipeline_check.provenance_is_tiny_random`)
  is flagged ``tiny_random_weights`` and the table ends with the pipeline-check caveat.
* cost: mean seconds per query, tokens and USD per 1,000 labelled transitions, from the
  labeller's provenance summary (methods that query no model report none).

One row per (dataset, reward column); the backend and model come from the column's
provenance. Fused columns (``*_sparse``) are scored with the same threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rayrg.data.access import Dataset
from rayrg.data.schema import SCALAR_COLUMNS, DatasetError
from rayrg.pipeline_check import pipeline_check_caveat, provenance_is_tiny_random
from rayrg.rewards.truth import good_actions

# What the truth good(t) is made of (rayrg.rewards.truth); a dataset lacking either is skipped.
TRUTH_NEEDS = ("expert_action", "subtasks")


def binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    pred, truth = pred.astype(bool), truth.astype(bool)
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    tn = int((~pred & ~truth).sum())
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else (0.0 if tp + fp + fn else float("nan"))
    return {"accuracy": (tp + tn) / n if n else float("nan"), "precision": precision, "recall": recall,
            "f1": f1, "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def _per_1000(value: float | int | None, transitions: int | None) -> float | None:
    if value is None or not transitions:
        return None
    return 1000.0 * value / transitions


def column_report(dataset: Path, column: str, values: np.ndarray, truth: np.ndarray,
                  prov: dict[str, Any], threshold: float) -> dict[str, Any]:
    valid = ~np.isnan(values)
    metrics = binary_metrics(values[valid] >= threshold, truth[valid])
    summary = prov.get("summary") or {}
    tokens = (summary.get("input_tokens", 0) + summary.get("output_tokens", 0)) if summary else None
    labelled = summary.get("transitions_labelled")
    return {
        "dataset": str(dataset), "column": column,
        "method": prov.get("method", "?"), "backend": prov.get("backend"), "model": prov.get("model"),
        "prompt_version": prov.get("prompt_version"), "simulated": bool(prov.get("simulated", False)),
        "tiny_random_weights": provenance_is_tiny_random(prov),
        "transitions": len(values), "labelled": int(valid.sum()),
        "coverage": float(valid.mean()) if len(values) else float("nan"),
        "positive_rate_truth": float(truth[valid].mean()) if valid.any() else float("nan"),
        **metrics,
        "mean_seconds_per_query": summary.get("mean_seconds_per_query"),
        "tokens_per_1000_transitions": _per_1000(tokens, labelled),
        "cost_usd_per_1000_transitions": _per_1000(summary.get("cost_usd"), labelled),
        "invalid_answer_rate": summary.get("invalid_answer_rate"),
    }


def reward_report(datasets: Iterable[str | Path], columns: Sequence[str] | None = None,
                  threshold: float = 0.5) -> list[dict[str, Any]]:
    rows = []
    for dataset in datasets:
        source = Dataset.open(dataset)
        wanted = source.reward_columns(columns)
        if columns and not wanted:
            raise DatasetError(f"{dataset}: none of the columns {list(columns)} (has {source.reward_columns()})")
        lacking = {k: v for k, v in source.missing_ground_truth.items() if k in TRUTH_NEEDS}
        if lacking:
            # An imported dataset without the truth good(t) needs: its placeholders (-1, 0)
            # would score as truth, so its columns are listed as skipped, with the reason.
            reason = "no ground truth: " + "; ".join(f"{k}: {v}" for k, v in lacking.items())
            rows.extend({"dataset": str(dataset), "column": column, "skipped": reason} for column in wanted)
            continue
        from rayrg.contracts.columns import EVALSET_KIND
        from rayrg.data.evalset import kinds_lacking

        has_kind = EVALSET_KIND in source.names
        table = source.read([*SCALAR_COLUMNS, *wanted, *([EVALSET_KIND] if has_kind else [])])
        skipped_kinds: dict[str, str] = {}
        if has_kind:
            # An evaluation set's rewound and swapped rows have no truth for good(t) (a reverse
            # row took no action; no expert saw the swapped mission): left out, with the reason.
            skipped_kinds = kinds_lacking(dataset, list(TRUTH_NEEDS))
            keep = ~np.isin(np.asarray(table.column(EVALSET_KIND).to_pylist(), dtype=object), list(skipped_kinds))
            table = table.filter(pa.array(keep))
        truth = good_actions(table)
        provenance = source.provenance
        for column in wanted:
            values = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)
            row = column_report(dataset, column, values, truth, provenance.get(column, {}), threshold)
            if skipped_kinds:
                row["skipped_kinds"] = skipped_kinds
            rows.append(row)
    return rows


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["column", "backend/model", "acc", "prec", "recall", "F1", "cover", "s/query",
              "tok/1k tr", "$/1k tr", "invalid"]
    lines = [header]
    skipped = [r for r in rows if r.get("skipped")]
    rows = [r for r in rows if not r.get("skipped")]
    for r in rows:
        who = "/".join(x for x in (r["backend"], r["model"]) if x) or r["method"]
        if r["simulated"]:
            who += " (SIMULATED)"
        if r.get("tiny_random_weights"):
            who += " (RANDOM WEIGHTS)"
        lines.append([r["column"], who, _fmt(r["accuracy"], ".3f"), _fmt(r["precision"], ".3f"),
                      _fmt(r["recall"], ".3f"), _fmt(r["f1"], ".3f"), _fmt(r["coverage"], ".2f"),
                      _fmt(r["mean_seconds_per_query"], ".2f"), _fmt(r["tokens_per_1000_transitions"], ".0f"),
                      _fmt(r["cost_usd_per_1000_transitions"], ".4f"), _fmt(r["invalid_answer_rate"], ".3f")])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines)
    table += "".join(f"\n{r['column']} ({r['dataset']}): skipped, {r['skipped']}" for r in skipped)
    caveat = reward_caveat(rows)
    return f"{table}\n\n{caveat}" if caveat else table


def reward_caveat(rows: Sequence[dict[str, Any]]) -> str | None:
    """The pipeline-check caveat for report rows (from :func:`reward_report`), or ``None``.

    ``rayrg report`` calls this too, so every report of these rows carries the same line.
    """
    return pipeline_check_caveat(rows, what="the rewards marked RANDOM WEIGHTS were")


def label_rows(labels_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of an RG-VLM labels table (``[]`` when the folder holds none): how the report
    reads labels, so that it opens no label file itself."""
    from rayrg.contracts.labels import read_labels

    return read_labels(labels_dir, missing_ok=True).to_pylist()
