"""Report sections a reviewer needs to read the numbers without the code.

* :func:`design` — what ran: tasks per length and split, seeds, updates, data size, the
  reward variant, all from the manifest (its config and the dataset metadata it lists);
* :func:`terms` — every term the report uses, defined (with the random policy's actual
  relative drop when it is there, so a value such as −1.05 is explained, not puzzling);
* :func:`base_rates` — the random policy's return and the success rate of every policy,
  the floor a learned policy must clear;
* :func:`training_curves` — the Ray Train metrics of every training run (``report_every``
  steps), read through the manifest's train entries (:mod:`rayrg.contracts.curves`);
* :func:`reward_bench` — the reward bench of the run's evaluation set, per reward column,
  beside the returns (read from the manifest's ``bench`` entry through the bench contract);
* :func:`accuracy_sweep` — return against the accuracy a labeller was set to, with the
  slope and its interval over training seeds (:func:`rayrg.evaluation.stats.accuracy_slope`);
* :func:`paper_reading` — a comparison's MDE set beside the paper's effect
  (:data:`rayrg.evaluation.stats.PAPER_EFFECTS`), so "not significant" reads as "ruled out"
  or "could not have detected it".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rayrg.contracts.manifest import Manifest

# Which of the paper's effects a comparison a − b of these claim roles reproduces.
ROLE_EFFECTS = {("dense_plus_sparse", "dense"): "adding_sparse"}


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def reward_variant(config: Mapping[str, Any], method: str | None = None) -> str:
    """Which reward variant ran: ``raw`` unless the config names a shaping (a ``reward_variant``
    or ``shaping`` key in the shared train config, a method's train overrides or a label step)."""
    found: list[str] = []
    sources = [_get(config, "train")] + ([_get(config, "methods", method, "train")] if method else [])
    sources += list(config.get("labels") or []) if method is None else []
    for source in sources:
        if isinstance(source, Mapping):
            for key in ("reward_variant", "shaping", "variant"):
                if source.get(key):
                    found.append(str(source[key]))
    return ", ".join(dict.fromkeys(found)) or "raw"


def _tasks_per_length(results: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    tasks: dict[int, set[str]] = defaultdict(set)
    for r in results:
        tasks[int(r["num_subtasks"])].add(str(r["task_id"]))
    return {k: len(v) for k, v in sorted(tasks.items())}


def design(manifest: Manifest, results: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The design that ran (markdown, numbers)."""
    config = manifest.config or {}
    gen = _get(config, "data", "generate") if _get(config, "data", "source") in (None, "babyai") else None
    train = _get(config, "train") or {}
    evaluation = _get(config, "evaluation") or {}
    seeds = (sorted({t.seed for t in manifest.train})
             or sorted({e.seed for e in manifest.evaluations if e.kind == "learned" and e.seed is not None})
             or list(config.get("seeds") or []))
    per_length = _tasks_per_length(results)
    splits = sorted({e.split for e in manifest.evaluations}) or ["test"]
    numbers: dict[str, Any] = {
        "evaluated_split": splits, "test_tasks_per_length": per_length,
        "test_tasks": sum(per_length.values()), "training_seeds": seeds,
        "updates": train.get("num_steps"), "batch_size": train.get("batch_size"),
        "eval_modes": evaluation.get("modes"), "eval_seeds": evaluation.get("seeds"),
        "instruction": evaluation.get("instruction") or "full",
        "reward_variant": reward_variant(config)}
    if gen:
        numbers.update({"training_episodes_per_length": gen.get("episodes_per_count"),
                        "validation_tasks_per_length": gen.get("val_tasks_per_count"),
                        "random_action_fraction": gen.get("noise"),
                        "protocol": gen.get("protocol") or "missions"})
        if numbers["protocol"] == "skills":  # how suboptimal the skills are, beside ε
            numbers.update({k: gen.get(k) for k in ("abandon_prob", "detour_prob") if gen.get(k) is not None})
    if manifest.data is not None:
        try:
            from rayrg.contracts.datasets import read_metadata
            from rayrg.contracts.versions import DatasetError

            meta = read_metadata(manifest.data.trajectories)
            numbers.update({"training_episodes": meta.num_episodes, "training_transitions": meta.num_transitions})
        except (DatasetError, OSError):  # a missing dataset leaves the size out ("—" below)
            numbers["training_episodes"] = None
    lengths = ", ".join(f"{k}: {n}" for k, n in per_length.items()) or "none evaluated"
    rows = [
        ["evaluated on", f"the **{' and '.join(splits)}** split (`eval_tasks.json`); every number in this "
                         "report is from it"],
        ["test tasks per number of sub-tasks", lengths],
        ["validation tasks per number of sub-tasks",
         (f"{numbers['validation_tasks_per_length']} (`val_tasks.json`: for `rayrg tune` only; no number "
          "here comes from them)") if numbers.get("validation_tasks_per_length") is not None else "—"],
        ["training seeds (independently trained policies per method)", f"{len(seeds)} ({seeds})"],
        ["IQL updates per training run (batch size)", f"{numbers['updates']} ({numbers['batch_size']})"],
        ["training data", (f"{numbers['training_episodes']} episodes, {numbers['training_transitions']} "
                           "transitions" if numbers.get("training_episodes") is not None else "—")
         + (f" ({numbers['training_episodes_per_length']} per mission length, "
            f"{100 * float(numbers['random_action_fraction']):.0f} % random actions"
            + "".join(f", {label} {float(numbers[key]):g}" for key, label in
                      (("abandon_prob", "skills abandoned first with p"), ("detour_prob", "detours with p per step"))
                      if key in numbers)
            + ")" if numbers.get("training_episodes_per_length") is not None else "")],
        ["evaluation starts × evaluation seeds", f"{numbers['eval_modes']} × {numbers['eval_seeds']}"],
        ["instruction a learned policy sees", "the chained mission's full instruction (`evaluation.instruction: "
                                              "full`)" if numbers["instruction"] == "full" else
         "**one sub-instruction at a time** (`evaluation.instruction: one_at_a_time`: the current sub-task's "
         "own instruction, the next once it is done) — a separate evaluation mode, not the full-instruction one"],
        ["reward variant", f"{numbers['reward_variant']} (raw: each reward column as labelled, no centring "
                           "or potential-based shaping)" if numbers["reward_variant"] == "raw"
         else numbers["reward_variant"]],
        ["model selection", "none: each run's final checkpoint is evaluated (tuning, where used, ranks on "
                            "the validation split only)"],
    ]
    md = ["## Design", "", _table(["", "value"], rows), ""]
    return "\n".join(md), numbers


def terms(overall: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """Definitions of every term the report uses."""
    random_drop = None
    r = overall.get("random", {})
    if "fixed" in r and "randomized" in r and r["fixed"]["mean"] > 0:
        random_drop = (r["fixed"]["mean"] - r["randomized"]["mean"]) / r["fixed"]["mean"]
    drop_note = (f" The random policy's is {random_drop:+.2f}: it completes more from a random start "
                 f"({r['randomized']['mean']:.3f}) than from the fixed one ({r['fixed']['mean']:.3f}), so "
                 "its 'drop' is negative; with returns this small the ratio is mostly noise."
                 if random_drop is not None else "")
    items = [
        ("return", "fraction of the mission's sub-tasks completed within the step budget (2× the "
                   "expert's steps), in [0, 1]; *success* = all of them."),
        ("fixed / randomized start", "the dataset's start state / a random reachable agent position with "
                                     "the same mission."),
        ("relative drop", "(return from fixed start − return from randomized start) / return from fixed "
                          "start: the share of return lost when the start is randomized. Negative when a "
                          "policy does better from random starts." + drop_note),
        ("95 % CI", "95 % confidence interval (Wilson for a mean return; two-way random-effects t for a "
                    "difference)."),
        ("significant", "the 95 % interval of a difference excludes 0."),
        ("MDE (80 %)", "minimum detectable effect: the smallest true difference this design (seeds × "
                       "tasks, measured variances) detects with 80 % power at α = 0.05."),
        ("paper effect", "the effect the RG-VLM paper reports for the same comparison, converted to return "
                         "units at the baseline measured here. *ruled out*: the interval lies below it; "
                         "*undetectable*: the MDE exceeds it, so 'not significant' says nothing about it."),
        ("acc / prec / recall / F1", "of 'reward ≥ 0.5' as a prediction of a *good* transition (the "
                                     "expert's action or a sub-task completed)."),
        ("good base rate", "the share of transitions that are good: a labeller that always says 'good' "
                           "scores this accuracy."),
        ("cover", "labelled transitions / all transitions."),
        ("s/query", "mean seconds per model query."),
        ("tok/1k tr", "model tokens (prompt + answer) spent per 1,000 labelled transitions."),
        ("$/1k tr", "API cost in US dollars per 1,000 labelled transitions (- when free or local)."),
        ("invalid", "share of model answers that could not be parsed into scores (those windows get no "
                    "label and are retried)."),
        ("dense + sparse (fused) reward", "the dense reward in [0, 1] plus the sparse reward (1 when a "
                                          "sub-task completes, else 0), so a step pays up to 2."),
        ("validation / test", "two disjoint task sets (by environment, mission and seed): selection reads "
                              "validation only; this report measures test only."),
    ]
    return "\n".join(["## Terms", "", *[f"- **{k}**: {v}" for k, v in items], ""])


def base_rates(results: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """Success and return base rates per policy and start (the random policy's first)."""
    from rayrg.evaluation import stats

    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(str(r["method"]), str(r["mode"]))].append(r)
    numbers: dict[str, Any] = {}
    rows = []
    order = sorted(groups, key=lambda k: (k[0] != "random", k[0], k[1]))
    for method, mode in order:
        rows_ = groups[(method, mode)]
        success = [float(r["return"]) >= 1.0 for r in rows_]
        lo, hi = stats.wilson_interval(sum(success), len(success))
        ret = sum(float(r["return"]) for r in rows_) / len(rows_)
        numbers.setdefault(method, {})[mode] = {"success_rate": sum(success) / len(success),
                                                "success_ci95": [lo, hi], "return_mean": ret,
                                                "episodes": len(rows_)}
        rows.append([labels.get(method, method), mode, f"{ret:.3f}",
                     f"{sum(success) / len(success):.3f} [{lo:.2f}, {hi:.2f}]", len(rows_)])
    floor = numbers.get("random", {})
    lead = ("The random policy is the floor: a learned policy's return means something only above it "
            + ", ".join(f"({mode}: return {v['return_mean']:.3f}, success {v['success_rate']:.3f})"
                        for mode, v in floor.items()) + "."
            if floor else "No random-policy evaluation ran, so there is no floor to compare with.")
    md = ["## Base rates", "", lead, "Success = every sub-task of the mission completed (episodes pooled "
          "over training and evaluation seeds; Wilson 95 % interval).", "",
          _table(["policy", "start", "mean return", "success rate [95 % CI]", "episodes"], rows), ""]
    return "\n".join(md), numbers


def training_curves(manifest: Manifest, labels: Mapping[str, str], report_dir: Path) -> tuple[str, dict[str, Any]]:
    """Training metrics per method (mean over seeds) from each run's curve file."""
    from rayrg.contracts.curves import read_curve
    from rayrg.report import plots

    per_run: dict[str, dict[int, list[dict[str, float]]]] = defaultdict(dict)
    for run in manifest.train:
        records = read_curve(run.curve) if run.curve is not None else []
        if records:
            per_run[run.method][run.seed] = records
    title = "## Training curves"
    if not per_run:
        missing = len(manifest.train)
        return (f"{title}\n\nNo training curves recorded ({missing} training run(s) listed without one: "
                "checkpoints written before curves existed).\n", {})
    metrics = ["loss/q", "loss/value", "loss/policy", "adv/weight_saturation"]
    numbers = {m: {str(s): recs for s, recs in seeds.items()} for m, seeds in per_run.items()}
    plots.training_curves(per_run, [m for m in metrics if any(m in r for s in per_run.values()
                                                                for recs in s.values() for r in recs)],
                          labels, report_dir / "training_curves.png")
    last = []
    for method, seeds in per_run.items():
        finals = [recs[-1] for recs in seeds.values()]
        first = [recs[0] for recs in seeds.values()]
        last.append([labels.get(method, method), len(seeds), int(finals[0]["step"]),
                     *(f"{_mean(first, m):.3g} → {_mean(finals, m):.3g}" for m in metrics[:3])])
    md = [title, "", "![training curves](training_curves.png)", "",
          "Ray Train's metrics every `report_every` updates, mean over training seeds (shaded: min–max). "
          "Losses are not comparable across β or τ (the policy loss is weighted by exp(β·A)); they show "
          "whether a run converged, not how good its policy is.", "",
          _table(["method", "seeds", "updates", "Q loss first → last", "V loss first → last",
                  "policy loss first → last"], last), ""]
    return "\n".join(md), numbers


def _mean(records: Sequence[Mapping[str, float]], key: str) -> float:
    values = [r[key] for r in records if key in r]
    return sum(values) / len(values) if values else math.nan


def paper_reading(result: Mapping[str, Any], key: str | None, base_return: float) -> dict[str, Any] | None:
    """The paper's effect ``key`` beside a comparison's MDE: ``{key, paper, what, absolute:
    [lo, hi], reading}`` in return units at ``base_return``; None without a paper effect."""
    from rayrg.evaluation import stats

    if key is None or key not in stats.PAPER_EFFECTS or not math.isfinite(base_return):
        return None
    lo, hi = stats.absolute_effect(key, base_return)
    mde, ci = float(result["mde80"]), result["ci95"]
    if result["significant"]:
        reading = "detected (the interval excludes 0)"
    elif ci[1] < lo:
        reading = f"ruled out: the interval's upper end {ci[1]:+.3f} is below the paper's effect {lo:+.3f}"
    elif math.isfinite(mde) and mde > hi:
        reading = (f"undetectable here: MDE {mde:.3f} exceeds the paper's effect ({lo:.3f}–{hi:.3f}), so "
                   "'not significant' says nothing about it")
    elif math.isfinite(mde) and mde <= lo:
        reading = (f"detectable (MDE {mde:.3f} ≤ {lo:.3f}) but not found: the paper's effect is "
                   "unlikely at this size")
    else:
        reading = f"partly detectable (MDE {mde:.3f} within the paper's range {lo:.3f}–{hi:.3f})"
    effect = stats.PAPER_EFFECTS[key]
    return {"key": key, "paper": effect["paper"], "what": effect["what"], "base_return": base_return,
            "absolute": [lo, hi], "reading": reading}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


BENCH_METRICS = (("voc", "VOC"), ("success_auroc", "success AUROC"), ("success_f1", "success F1"),
                 ("rank_tau", "rank τ"), ("mismatch_auroc", "mismatch AUROC"))


def _bench_cell(metric: Mapping[str, Any] | None) -> str:
    if not metric:
        return "—"
    value = metric.get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "skipped" if metric.get("skipped") else "—"
    ci = metric.get("ci95")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{value:.3f}{interval} (n={metric.get('n', 0)})"


def reward_bench(manifest: Manifest, labels: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The reward bench of the run's evaluation set (markdown, numbers): per reward column its
    VOC, success AUROC/F1, rank τ and mismatch AUROC with ci95 and n, the labeller's chunk
    disagreement where it records one, the pipeline-check flag, and the policies trained on
    that column — so which reward is best sits beside which policy is best. Read from the
    ``bench.json`` the manifest lists, through :mod:`rayrg.contracts.bench`; nothing when the
    run has no bench."""
    if manifest.bench is None:
        return "", {}
    from rayrg.config import ConfigError
    from rayrg.contracts.bench import read_bench

    title = "## Which reward is best: reward bench (evaluation set of this run's data)"
    try:
        result = read_bench(manifest.bench.path)
    except ConfigError as exc:  # listed but not (yet) written: said, not invented
        return f"{title}\n\nNo bench results: {exc}\n", {}
    trained = defaultdict(list)
    for name, method in manifest.methods.items():
        if method.reward_column:
            trained[method.reward_column].append(labels.get(name, name))
    rows = []
    for column, r in result["columns"].items():
        noise = r.get("chunk_disagreement")
        rows.append([f"`{column}`" + (" (oracle)" if r.get("method") == "oracle" else ""),
                     f"{r.get('kind')} ({r.get('voc_on')})",
                     *(_bench_cell(r.get(m)) for m, _ in BENCH_METRICS),
                     "n/a" if not noise else f"{noise['mean']:.3f} (n={noise['n']})",
                     "**RANDOM WEIGHTS**" if r.get("pipeline_check") else "no",
                     ", ".join(trained.get(column, [])) or "—"])
    episodes = ", ".join(f"{k} {v}" for k, v in result.get("episodes", {}).items())
    skipped = [f"- `{c}`: {m} skipped: {why}" for c, r in result["columns"].items()
               for m, why in (r.get("skipped") or {}).items() if m in dict(BENCH_METRICS)]
    md = [title, "",
          f"Episodes: {episodes}. Each cell: value [95 % bootstrap interval over episodes] (n). *VOC*: "
          "Spearman of the value (or running sum of rewards) vs time on successful originals (GVL); "
          "*success AUROC/F1*: episode score vs success (F1's threshold from a validation split); "
          "*rank τ*: Kendall τ of episode scores vs true final progress (Robometer); *mismatch "
          "AUROC*: the original scored above its instruction-swapped twin; *chunk disagreement*: "
          "the labeller's own noise (mean absolute difference of overlapping chunks, over n episodes). "
          "The oracle row scores the true progress: VOC and AUROC 1 check the set itself. "
          "*Trained policy* names the policies of the returns table trained on that column.", "",
          _table(["column", "kind", *(t for _, t in BENCH_METRICS), "chunk disagreement", "pipeline check",
                  "trained policy"], rows), ""]
    if skipped:
        md += [*skipped, ""]
    return "\n".join(md), {"path": str(manifest.bench.path), "columns": result["columns"],
                           "episodes": result.get("episodes", {})}


def accuracy_sweep(manifest: Manifest, results: Sequence[Mapping[str, Any]], labels: Mapping[str, str],
                   report_dir: Path) -> tuple[str, dict[str, Any]]:
    """Return against label accuracy, with the slope and its interval (issue: does a better
    labeller buy a better policy?). A method is a point when its reward column's provenance
    states the accuracy its labeller was set to (``accuracy``); columns fused with the sparse
    reward (``fusion``) and dense-only ones are separate series. Learned methods without a
    stated accuracy (sparse alone) and the random policy are reference lines. Empty where
    no method's column states one."""
    from rayrg.contracts.datasets import read_metadata
    from rayrg.data.access import PROVENANCE_KEY
    from rayrg.evaluation import stats
    from rayrg.report import plots

    if manifest.labelled is None or not results:
        return "", {}
    provenance = read_metadata(manifest.labelled).extra.get(PROVENANCE_KEY) or {}
    modes = sorted({str(r["mode"]) for r in results}, key=lambda m: (m != "fixed", m))
    mode = modes[0]
    per_seed: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["mode"] == mode:
            per_seed[str(r["method"])][int(r["train_seed"])].append(float(r["return"]))
    points: dict[str, list[tuple[float, int, float]]] = defaultdict(list)  # series -> (acc, seed, return)
    reference: dict[str, float] = {}
    for method, spec in manifest.methods.items():
        seeds = per_seed.get(method)
        if not seeds:
            continue
        means = {seed: sum(v) / len(v) for seed, v in seeds.items()}
        column = provenance.get(spec.reward_column) or {}
        accuracy = column.get("accuracy")
        if isinstance(accuracy, int | float) and not isinstance(accuracy, bool):
            series = "dense + sparse" if column.get("fusion") else "dense only"
            points[series] += [(float(accuracy), seed, ret) for seed, ret in means.items()]
        else:
            reference[labels.get(method, method)] = sum(means.values()) / len(means)
    if not points:
        return "", {}
    if "random" in per_seed:
        floor = [x for v in per_seed["random"].values() for x in v]
        reference["random policy"] = sum(floor) / len(floor)
    numbers: dict[str, Any] = {"mode": mode, "series": {}, "reference": reference}
    rows, plotted = [], {}
    for series, pts in sorted(points.items()):
        by_acc: dict[float, list[float]] = defaultdict(list)
        for acc, _, ret in pts:
            by_acc[acc].append(ret)
        summary = []
        for acc, rets in sorted(by_acc.items()):
            mean = sum(rets) / len(rets)
            lo, hi = stats.mean_interval(rets)
            summary.append((acc, mean, lo, hi))
        plotted[series] = summary
        entry: dict[str, Any] = {"points": [{"accuracy": a, "return_mean": m, "ci95": [lo, hi],
                                             "seeds": len(by_acc[a])} for a, m, lo, hi in summary]}
        if len(by_acc) >= 2:
            slope = stats.accuracy_slope([p[0] for p in pts], [p[2] for p in pts], [p[1] for p in pts])
            entry["slope"] = slope
            lo, hi = slope["ci"]
            rows.append([series, ", ".join(f"{a:.1%}" for a in sorted(by_acc)), slope["points"],
                         f"{slope['slope']:+.3f} [{lo:+.3f}, {hi:+.3f}]", slope["covers"]])
        else:
            rows.append([series, ", ".join(f"{a:.1%}" for a in sorted(by_acc)), len(pts),
                         "— (a slope needs two accuracies)", ""])
        numbers["series"][series] = entry
    plots.accuracy_sweep(plotted, reference, report_dir / "accuracy_sweep.png")
    md = ["## Return against label accuracy", "",
          f"Does a better labeller buy a better policy? Each point is a policy trained on a reward whose "
          f"labeller was set to that accuracy (mean return over the test tasks, {mode} starts; error "
          f"bars: the training seeds' 95 % t-interval). The slope is return per unit of accuracy "
          f"(+0.1 at slope 1.0 means 10 points more accuracy buy 0.1 more return): least squares over "
          f"every (accuracy, seed) point; its interval is a t-interval over each seed's own slope. "
          f"Dashed: " + (", ".join(f"{k} {v:.3f}" for k, v in reference.items()) or "none") + ".", "",
          "![return against label accuracy](accuracy_sweep.png)", "",
          _table(["series", "accuracies", "points", "slope [95 % CI]", "interval covers"], rows), ""]
    return "\n".join(md), numbers
