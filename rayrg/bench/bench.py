"""``rayrg reward-bench``: every reward column of a labelled dataset scored the way the field does.

Per column (``bench.json`` ``columns.<column>``), each metric ``{value, ci95, n}`` (bootstrap
over episodes, :mod:`rayrg.bench.metrics`):

* ``voc`` — GVL/OpenGVL's value-order correlation: mean over successful original episodes of
  Spearman(time, v) with ``v`` the column (``voc_on: value``, progress-like columns) or its
  running sum (``voc_on: cumulative``, per-transition rewards); constant episodes count 0 and
  are counted (``constant_episodes``);
* ``success_auroc`` / ``success_f1`` — the episode score (last value, or summed reward) against
  success over all episodes; F1's threshold is chosen on a validation split of episodes
  (original and negatives of one source episode stay together) and F1 is scored on the rest;
* ``rank_tau`` — Robometer's policy ranking: Kendall τ-b of episode scores vs true final progress;
* ``mismatch_auroc`` — P(score(original) > score(its instruction-swapped twin)), ties ½;
* ``accuracy`` / ``precision`` / ``recall`` — the Table-I analogue (:mod:`rayrg.rewards.report`)
  on rows whose truth exists (not progress columns, not kinds lacking it);
* ``coverage`` (NaN rewards are never dropped silently: episodes with a NaN leave the episode
  metrics, rows with one the per-transition ones, and both counts are stated), ``cost_usd_per_1k_frames``
  and ``seconds_per_1k_frames`` from the labels' own summary, ``pipeline_check`` for tiny
  random checkpoints, and ``skipped: {metric: reason}``.

Shards are read on Ray Data, one task each (episodes never span shards), and reduced to one
small row per episode; memory grows with the number of episodes only by those rows.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from rayrg.bench import metrics as M
from rayrg.config import StageConfig
from rayrg.contracts.bench import read_bench, write_bench
from rayrg.contracts.progress_answers import chunk_disagreement
from rayrg.data.access import Dataset, iter_episodes, read_shard_checked
from rayrg.data.evalset import EVALSET_KIND, PROGRESS_TRUE, SEP, kinds_lacking
from rayrg.data.schema import DatasetError
from rayrg.pipeline_check import pipeline_check_caveat, provenance_is_tiny_random
from rayrg.provenance import OnChange, claim, dataset_fingerprint
from rayrg.rewards.report import TRUTH_NEEDS, binary_metrics
from rayrg.rewards.truth import good_actions
from rayrg.storage import Location, native, resolve

METRICS = ("voc", "success_auroc", "success_f1", "rank_tau", "mismatch_auroc", "accuracy", "precision", "recall")
BASE = ("episode_id", "step", "success", "action", "expert_action", "subtasks_completed", "num_subtasks")


class BenchConfig(StageConfig):
    """``rayrg reward-bench`` settings (keyed in the output's fingerprint)."""

    resamples: int = Field(1000, ge=0, description="Bootstrap resamples of episodes for ci95.")
    seed: int = Field(0, description="Seed of the bootstrap and of the validation split.")
    validation_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="Episodes that choose F1's threshold.")
    threshold: float = Field(0.5, description="Table-I: reward >= threshold predicts a good transition.")


def column_kind(column: str, dataset: Dataset | None = None) -> str:
    """``progress`` (a value per frame) or ``reward`` (per transition), as the dataset contract
    records it (``DatasetMetadata.kind_of``; the oracle ``progress_true`` is progress-like)."""
    from rayrg.contracts import columns

    kind = dataset.metadata.kind_of(column) if dataset is not None else columns.column_kind(column)
    return "progress" if kind in ("progress", "evalset") else "reward"


def scoreable_columns(dataset: Dataset) -> list[str]:
    from rayrg.contracts import columns

    return [c for c in dataset.names if columns.column_kind(c) in ("reward", "progress") or c == PROGRESS_TRUE]


def _episode_rows(shard: str, columns: dict[str, str], kinds: dict[str, str], has_kind: bool,
                  has_progress: bool, table_truth: bool, threshold: float) -> list[dict[str, Any]]:
    read = [*BASE, *([EVALSET_KIND] if has_kind else []),
            *([PROGRESS_TRUE] if has_progress and PROGRESS_TRUE not in columns else []), *columns]
    table = read_shard_checked(shard, read)
    rows = []
    for ep in iter_episodes(table):
        eid = ep.column("episode_id")[0].as_py()
        kind = ep.column(EVALSET_KIND)[0].as_py() if has_kind else "original"
        row: dict[str, Any] = {"episode_id": eid, "base": eid.split(SEP)[0], "kind": kind,
                               "success": bool(ep.column("success")[0].as_py()), "rows": ep.num_rows}
        if has_progress:
            row["final_progress"] = float(ep.column(PROGRESS_TRUE)[-1].as_py())
        else:
            row["final_progress"] = (ep.column("subtasks_completed")[-1].as_py()
                                     / max(1, ep.column("num_subtasks")[0].as_py()))
        truth = good_actions(ep) if table_truth and kind not in kinds else None
        for c in columns:
            v = np.asarray(ep.column(c).to_numpy(zero_copy_only=False), dtype=np.float64)
            nan = np.isnan(v)
            progress = columns[c] == "progress"
            seq = v if progress else np.cumsum(v)
            voc, const = M.episode_voc(seq) if not nan.any() else (float("nan"), False)
            row[f"{c}|score"] = float(v[-1] if progress else v.sum()) if not nan.any() else float("nan")
            row[f"{c}|voc"], row[f"{c}|const"] = voc, const
            row[f"{c}|nan"] = int(nan.sum())
            conf = [0, 0, 0, 0]
            if truth is not None and not progress:
                ok = ~nan
                cm = binary_metrics(v[ok] >= threshold, truth[ok])["confusion"]
                conf = [cm["tp"], cm["fp"], cm["fn"], cm["tn"]]
            row[f"{c}|tp"], row[f"{c}|fp"], row[f"{c}|fn"], row[f"{c}|tn"] = conf
        rows.append(row)
    return rows


def _skip(reason: str) -> dict[str, Any]:
    return {"value": None, "ci95": None, "n": 0, "skipped": reason}


def bench_column(c: str, kind: str, ep: dict[str, np.ndarray], config: BenchConfig, assume_success: bool,
                 truth_reason: str | None, lacking_kinds: dict[str, str], prov: dict[str, Any]) -> dict[str, Any]:
    seed, B = config.seed, config.resamples
    score, voc, const, nans = ep[f"{c}|score"], ep[f"{c}|voc"], ep[f"{c}|const"], ep[f"{c}|nan"]
    ok = nans == 0
    kinds, success = ep["kind"], ep["success"]
    originals = (kinds == "original") & (success | assume_success) & ok
    out: dict[str, Any] = {"kind": kind, "voc_on": "value" if kind == "progress" else "cumulative"}
    out["voc"] = {**M.mean_metric(voc[originals], B, seed), "constant_episodes": int(const[originals].sum())}
    if assume_success:
        why = "--assume-success: every episode is taken as a successful demonstration, so success is not scored"
        out["success_auroc"], out["success_f1"] = _skip(why), _skip(why)
    else:
        out["success_auroc"] = M.auroc_metric(score[ok], success[ok], B, seed)
        val = ep["validation"][ok]
        out["success_f1"] = M.f1_metric(score[ok], success[ok], val, B, seed)
    fp = ep["final_progress"]
    has = ok & np.isfinite(fp)
    out["rank_tau"] = (M.tau_metric(score[has], fp[has], B, seed) if has.sum() >= 2
                       else _skip("no true final progress for two or more episodes"))
    index = {e: i for i, e in enumerate(ep["episode_id"])}
    pairs = [(index[b], i) for i, (k, b) in enumerate(zip(kinds, ep["base"], strict=True))
             if k == "swapped" and b in index and ok[i] and ok[index[b]]]
    if pairs:
        a, s = np.array(pairs).T
        out["mismatch_auroc"] = M.paired_metric(score[a], score[s], B, seed)
    else:
        swapped = int((kinds == "swapped").sum())
        out["mismatch_auroc"] = _skip(
            "no instruction-swapped episodes (build the set with `rayrg evalset`)" if not swapped else
            f"the {swapped} swapped episodes have NaN rewards in this column"
            + (f" ({lacking_kinds['swapped']})" if "swapped" in prov.get("skipped_kinds", {}) else ""))
    if kind == "progress":
        reason = "a progress column is not a per-transition label"
    else:
        reason = truth_reason
    if reason:
        for m in ("accuracy", "precision", "recall"):
            out[m] = _skip(reason)
    else:
        conf = np.stack([ep[f"{c}|{k}"] for k in ("tp", "fp", "fn", "tn")], axis=1)
        scored = conf.sum(axis=1) > 0
        out.update(M.confusion_metric(conf[scored], B, seed))
        if lacking_kinds:
            for m in ("accuracy", "precision", "recall"):
                out[m]["excluded_kinds"] = dict(lacking_kinds)
    rows = ep["rows"]
    out["coverage"] = {"transitions": float(1 - nans.sum() / rows.sum()) if rows.sum() else None,
                       "episodes": float(ok.mean()) if len(ok) else None,
                       "episodes_with_nan": int((~ok).sum())}
    if prov.get("skipped_kinds"):
        out["coverage"]["skipped_kinds"] = prov["skipped_kinds"]
    summary = prov.get("summary") or {}
    labelled = summary.get("transitions_labelled")
    per_1k = (lambda v: None if v is None or not labelled else 1000.0 * v / labelled)  # noqa: E731
    out["cost_usd_per_1k_frames"] = per_1k(summary.get("cost_usd"))
    out["seconds_per_1k_frames"] = per_1k(summary.get("wall_s"))
    # The labeller's own noise where it records one (GVL: how much overlapping chunks disagreed
    # before they were stitched); omitted for columns that record none.
    noise = chunk_disagreement(prov)
    if noise is not None:
        out["chunk_disagreement"] = noise
    out["pipeline_check"] = provenance_is_tiny_random(prov)
    out["method"] = prov.get("method") or ("oracle" if c == PROGRESS_TRUE else None)
    out["model"] = prov.get("model")
    out["skipped"] = {m: out[m]["skipped"] for m in METRICS if out[m].get("skipped")}
    return out


def bench_inputs(dataset: Path | Location, columns: Sequence[str], assume_success: bool, config: BenchConfig) -> dict[str, Any]:
    return {"dataset": dataset_fingerprint(dataset), "columns": list(columns),
            "assume_success": assume_success, "config": config.to_dict()}


def reward_bench(dataset: str | Path | Location, out: str | Path | Location, columns: Sequence[str] | None = None,
                 assume_success: bool = False, config: BenchConfig | None = None,
                 address: str | None = None, on_change: OnChange = "refuse",
                 allow_unfinished: bool = False) -> dict[str, Any]:
    """Score ``columns`` (default: every reward/progress column) of ``dataset``; write ``out``.

    Unfinished labels (failed windows) are refused unless ``allow_unfinished``: their NaN
    rows would pass as windows the method cannot label and lower its coverage."""
    import ray

    from rayrg.data.access import require_finished
    from rayrg.errors import stage_errors
    from rayrg.runtime import init_ray

    config = config or BenchConfig()
    # Paths or storage URIs (rayrg.storage): a local one stays a Path, a URI its Location.
    dataset, out = native(resolve(dataset)), native(resolve(out))
    require_finished(dataset, "reward-bench", allow=allow_unfinished)
    source = Dataset.open(dataset)
    present = scoreable_columns(source)
    if columns:
        unknown = [c for c in columns if c not in present]
        if unknown:
            raise DatasetError(f"{dataset}: no column {', '.join(unknown)}; reward columns present: "
                               f"{', '.join(present) or 'none'}")
        wanted = list(columns)
    else:
        wanted = present
    if not wanted:
        raise DatasetError(f"{dataset}: no reward columns to score (label it first: `rayrg label`)")
    missing = source.missing_ground_truth
    if "success" in missing and not assume_success:
        raise DatasetError(f"{dataset}: no way to tell success ({missing['success']}); pass --assume-success "
                           "to treat every episode as a successful demonstration (success metrics are then skipped)")
    has_kind = EVALSET_KIND in source.names
    has_progress = PROGRESS_TRUE in source.names
    lacking_truth = {k: v for k, v in missing.items() if k in TRUTH_NEEDS}
    truth_reason = ("no ground truth: " + "; ".join(f"{k}: {v}" for k, v in lacking_truth.items())
                    if lacking_truth else None)
    lacking_kinds = kinds_lacking(dataset, ["expert_action", "subtasks"]) if has_kind else {}
    claimed = claim(out, "reward-bench", bench_inputs(dataset, wanted, assume_success, config),
                    on_change=on_change)
    if claimed.done:
        return read_bench(out)
    init_ray(address)
    shards = [str(s) for s in source.shards]
    args = ({c: column_kind(c, source) for c in wanted}, lacking_kinds, has_kind, has_progress, truth_reason is None, config.threshold)
    with stage_errors():
        items = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
        rows = items.flat_map(lambda r: _episode_rows(r["shard"], *args), num_cpus=0.5).take_all()
    episodes = {k: np.asarray([r[k] for r in rows]) for k in rows[0]} if rows else {}
    n_success = int((episodes["success"] & (episodes["kind"] == "original")).sum()) if rows else 0
    if not assume_success and n_success == 0:
        raise DatasetError(f"{dataset}: no successful episode (VOC needs successful demonstrations); "
                           "build an evaluation set from a dataset with some (`rayrg evalset`), or pass "
                           "--assume-success if every episode is one")
    episodes["validation"] = np.array([zlib.crc32(f"{config.seed}:{b}".encode()) % 1000
                                       < config.validation_fraction * 1000 for b in episodes["base"]])
    prov = source.provenance
    result = {
        "dataset": str(dataset), "fingerprint": claimed.fingerprint, "assume_success": assume_success,
        "episodes": {k: int((episodes["kind"] == k).sum()) for k in sorted(set(episodes["kind"]))},
        "config": config.to_dict(),
        "columns": {c: bench_column(c, column_kind(c, source), episodes, config, assume_success, truth_reason,
                                    lacking_kinds, prov.get(c, {})) for c in wanted},
    }
    write_bench(out, result)
    (out / "bench.md").write_text(format_markdown(result))
    plot(result, out / "bench.png")
    claimed.finish(bench=str(out / "bench.json"))
    return result


def _fmt(m: dict[str, Any]) -> str:
    v = m.get("value")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "skipped" if m.get("skipped") else "-"
    ci = m.get("ci95")
    return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.3f}"


def _noise(r: dict[str, Any]) -> str:
    noise = r.get("chunk_disagreement")
    return "n/a" if not noise else f"{noise['mean']:.3f} (n={noise['n']})"


def format_markdown(result: dict[str, Any]) -> str:
    head = ["column", "kind", *METRICS, "coverage", "$/1k frames", "chunk disagreement"]
    lines = [f"# Reward bench: {result['dataset']}", "",
             "episodes: " + ", ".join(f"{k} {v}" for k, v in result["episodes"].items()), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, r in result["columns"].items():
        name = c + (" (RANDOM WEIGHTS)" if r["pipeline_check"] else "") + (" (oracle)" if c == PROGRESS_TRUE else "")
        cost = r["cost_usd_per_1k_frames"]
        lines.append("| " + " | ".join([name, f"{r['kind']} ({r['voc_on']})", *(_fmt(r[m]) for m in METRICS),
                                        f"{r['coverage']['transitions']:.2f}" if r["coverage"]["transitions"] is not None else "-",
                                        "-" if cost is None else f"{cost:.4f}", _noise(r)]) + " |")
    notes = [f"- {c}: {m} skipped: {why}" for c, r in result["columns"].items() for m, why in r["skipped"].items()]
    notes += [f"- {c}: constant episodes (VOC 0): {r['voc']['constant_episodes']}" for c, r in result["columns"].items()
              if r["voc"].get("constant_episodes")]
    text = "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "")
    caveat = pipeline_check_caveat([{"column": c, "tiny_random_weights": r["pipeline_check"], "model": r["model"]}
                                    for c, r in result["columns"].items()], what="the columns marked RANDOM WEIGHTS were")
    return text + (f"\n\n{caveat}" if caveat else "") + "\n"


def plot(result: dict[str, Any], path: Path | Location) -> Path | Location:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("voc", "success_auroc", "mismatch_auroc", "rank_tau")
    cols = list(result["columns"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(cols) * len(shown) / 2))
    height = 0.8 / len(shown)
    for j, m in enumerate(shown):
        ys, xs, errs = [], [], [[], []]
        for i, c in enumerate(cols):
            r = result["columns"][c][m]
            if r.get("value") is None:
                continue
            ys.append(i + j * height)
            xs.append(r["value"])
            lo, hi = r["ci95"] or [r["value"], r["value"]]
            errs[0].append(max(0.0, r["value"] - lo))
            errs[1].append(max(0.0, hi - r["value"]))
        ax.barh(ys, xs, height=height, xerr=errs, label=m, capsize=2)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(cols))], cols)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_xlim(-1, 1.05)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title("reward bench (95 % bootstrap intervals)")
    fig.tight_layout()
    image = io.BytesIO()  # one write through Location: a local file or an object store alike
    fig.savefig(image, format="png", dpi=100)
    plt.close(fig)
    resolve(path).write_bytes(image.getvalue())
    return path


