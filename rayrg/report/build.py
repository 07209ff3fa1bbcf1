"""``rayrg report``: the experiment's markdown/HTML report with its plots.

Its inputs are ``<out>/manifest.json`` (:mod:`rayrg.contracts.manifest`) and the outputs that
manifest lists, each read through its contract or accessor: evaluation episodes
(:mod:`rayrg.contracts.episodes`), the labelled dataset (:mod:`rayrg.data.access`), and each
label step's side outputs, given to its method's declared report and browser sections
(:mod:`rayrg.rewards.declarations`). No folder is looked for.

Contents (what exists is reported; what is missing is named, never invented):

* Figure-4 analogue: return per number of sub-tasks, per method, fixed vs randomized start,
  with 95 % confidence intervals over training seeds × evaluation seeds × tasks;
* the relative drop of return under randomized start per method, and the paired comparisons
  the config asks for;
* the reward bench of the run's evaluation set (``evalset:`` + ``bench:``), right after the
  returns, read from the ``bench.json`` the manifest lists (:mod:`rayrg.contracts.bench`);
* Table-I analogue: reward accuracy against the ground truth per labeller;
* each label method's own section (e.g. a labelled window with the model's answer) and its
  browser page, and the reward curves along one episode for every reward column.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rayrg.contracts.episodes import read_episodes
from rayrg.contracts.manifest import MANIFEST_FILE, Manifest, read_manifest
from rayrg.report import plots
from rayrg.report import sections as report_sections
from rayrg.storage import Location

log = logging.getLogger(__name__)


def load_episode_results(manifest: Manifest) -> list[dict[str, Any]]:
    """Per-episode evaluation results of every evaluation the manifest lists, read from the
    episodes folder it records for each (:mod:`rayrg.contracts.episodes`)."""
    rows: list[dict[str, Any]] = []
    for entry in manifest.evaluations:
        if entry.split != "test":  # the report measures on the test split only
            continue
        seed = entry.seed if entry.seed is not None else 0
        for row in read_episodes(entry.episodes):
            rows.append({"method": entry.method, "train_seed": int(seed), "mode": row["mode"],
                         "num_subtasks": int(row["num_subtasks"]), "task_id": row["task_id"],
                         "eval_seed": int(row["seed"]), "return": float(row["return"])})
    return rows


def _display_names(manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]:
    """method key -> display name and -> note (learned methods and reference policies)."""
    labels = {name: m.display_name or name for name, m in manifest.methods.items()}
    notes = {name: m.note for name, m in manifest.methods.items() if m.note}
    for entry in manifest.evaluations:
        if entry.kind == "reference":
            labels[entry.method] = entry.display_name or entry.method
    return labels, notes


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _figure4(results: list[dict[str, Any]], labels: dict[str, str], learned: Sequence[str],
             comparisons: Sequence[tuple[str, str]], claim_methods: dict[str, str] | None,
             report_dir: Path, instruction: str = "full") -> tuple[str, dict]:
    from rayrg.evaluation import stats
    from rayrg.report.sections import ROLE_EFFECTS, paper_reading

    # Greedy learned policies and the scripted expert ignore the evaluation seed from a fixed
    # start: their repeats are one episode (never the random policy, whose seed is its draw).
    deterministic = [m for m in (*learned, "expert") if m != "random"]
    try:
        results = stats.distinct_episodes(results, deterministic_methods=deterministic)
        collapsed = "; fixed-start repeats of a deterministic policy (greedy learned policies, expert) count once"
    except ValueError as exc:
        deterministic, collapsed = [], f"; every evaluation seed counted (not deterministic: {exc})"
    table = stats.by_mode_method_subtasks(results, deterministic_methods=deterministic)
    plots.return_by_subtasks(
        {mode: {m: {int(k): (c["mean"], *c["ci95"]) for k, c in by_k.items()} for m, by_k in t.items()}
         for mode, t in table.items()}, labels, report_dir / "return_by_subtasks.png")
    numbers: dict[str, Any] = {"by_mode_method_subtasks": table, "interval": "wilson (rayrg.evaluation.stats)",
                               "split": "test", "deterministic_methods": deterministic}

    overall: dict[str, dict[str, tuple[float, float, float]]] = defaultdict(dict)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        grouped[(r["method"], r["mode"])].append(r)
    for (method, mode), rows in grouped.items():
        overall[method][mode] = stats.return_interval([r["return"] for r in rows], [r["num_subtasks"] for r in rows])
    methods = [*learned, *sorted(m for m in overall if m not in learned)]

    def cell(m: str, mode: str) -> str:
        if mode not in overall.get(m, {}):
            return "—"
        mean, lo, hi = overall[m][mode]
        return f"{mean:.3f} [{lo:.2f}, {hi:.2f}]"

    rows = []
    for m in methods:
        fixed = overall.get(m, {}).get("fixed", (math.nan,) * 3)[0]
        rand = overall.get(m, {}).get("randomized", (math.nan,) * 3)[0]
        drop = (fixed - rand) / fixed if fixed > 0 and not math.isnan(rand) else math.nan
        rows.append([labels.get(m, m), cell(m, "fixed"), cell(m, "randomized"), drop])
    numbers["overall"] = {m: {mode: {"mean": v[0], "ci95": [v[1], v[2]]} for mode, v in by_mode.items()}
                          for m, by_mode in overall.items()}
    # The one-at-a-time mode is another evaluation, not the paper's: its heading says so.
    shown = "" if instruction == "full" else "; policies fed one sub-instruction at a time"
    md = [f"## Return per number of sub-tasks (Figure-4 analogue; test split{shown})", "",
          "![return by sub-tasks](return_by_subtasks.png)", "",
          "Return = fraction of the mission's sub-tasks completed within the step budget. Intervals "
          "are 95 % Wilson intervals on the sub-task successes, with the effective number of sub-tasks "
          "corrected for their correlation within an episode (`rayrg/evaluation/stats.py`); they stay "
          f"in [0, 1]{collapsed}. The expert (scripted bot) and random rows are references on the same "
          "tasks. All on the test split (`eval_tasks.json`).", "",
          _md_table(["method", "fixed start", "randomized start", "relative drop"], rows), ""]

    compared = []
    for a, b in comparisons:
        for mode in ("fixed", "randomized"):
            try:
                result = stats.compare_methods(results, a, b, mode)
            except ValueError:
                continue  # a method without results in this mode
            base = overall.get(b, {}).get(mode, (math.nan,))[0]
            roles = {v: k for k, v in (claim_methods or {}).items()}
            key = ROLE_EFFECTS.get((roles.get(a, ""), roles.get(b, "")))
            compared.append({"a": a, "b": b, "mode": mode, "split": "test", **result,
                             "mde80_relative": result["mde80"] / base if base > 0 else math.nan,
                             "paper": paper_reading(result, key, base)})
    numbers["comparisons"] = compared
    if compared:
        md += ["### Paired comparisons", "",
               "Difference of mean return on the same tasks and training seeds, with a Student-t "
               "interval from the two-way (seeds × tasks) random-effects variance; *significant* means "
               "the interval excludes 0; *MDE* is the smallest true difference this design detects "
               "with 80 % power (so a non-significant difference smaller than it was not detectable, "
               "and one with an interval inside ±MDE is ruled out at that size). *MDE / b* is the MDE "
               "relative to b's return, to set beside the paper's relative effects (+14 % from adding "
               "the success reward; 1.12–3.15× over the other VLM rewards); *paper effect* converts the paper's "
               "figure to return units where this comparison is the one the paper reports. Test split.", "",
               _md_table(["a", "b", "start", "a − b", "95 % CI", "significant", "MDE (80 %)", "MDE / b",
                          "paper effect", "covers"],
                         [[labels.get(c["a"], c["a"]), labels.get(c["b"], c["b"]), c["mode"],
                           f"{c['difference']:+.3f}", f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                           "yes" if c["significant"] else "no", f"±{c['mde80']:.3f}",
                           _pct(c["mde80_relative"]), _paper_cell(c["paper"]), c["covers"]]
                          for c in compared]), ""]
    if claim_methods:
        try:
            numbers["claims"] = stats.claims(results, **claim_methods)
        except ValueError as exc:
            numbers["claims"] = []
            md += [f"The paper's claims could not be tested: {exc}", ""]
        # Both of the paper's effects are relative to the dense method's fixed-start return (the
        # gain of adding the success reward to it; the gap of relative drops times the return they drop from).
        dense_fixed = overall.get(claim_methods["dense"], {}).get("fixed", (math.nan,))[0]
        for c in numbers["claims"]:
            c["paper"] = paper_reading(c, c["paper_effect"], dense_fixed)
        if numbers["claims"]:
            md += ["### The paper's claims, as found here (test split)", "",
                   _md_table(["claim", "finding", "MDE (80 %)", "paper effect"],
                             [[c["claim"], c["finding"], f"±{c['mde80']:.3f}", _paper_cell(c["paper"])]
                              for c in numbers["claims"]]), ""]
    return "\n".join(md), numbers


def _pct(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.0f} %"


def _paper_cell(paper: dict[str, Any] | None) -> str:
    if not paper:
        return "— (the paper reports none for this pair)"
    lo, hi = paper["absolute"]
    size = f"{lo:.3f}" if abs(hi - lo) < 1e-12 else f"{lo:.3f}–{hi:.3f}"
    return f"{paper['paper']} = {size} here: {paper['reading']}"


def _reward_table(labelled: Path | None, notes: Sequence[str]) -> tuple[str, list]:
    title = "## Reward accuracy (Table-I analogue)"
    if labelled is None:
        return f"{title}\n\nNo labelled dataset.\n", []
    from rayrg.rewards.report import format_table, reward_caveat, reward_report

    rows = reward_report([labelled])
    definition = ("A transition is *good* when its action is the expert's or it completes a sub-task "
                  "(`rayrg.rewards.truth`); a reward predicts *good* when it is >= 0.5 (a model's 0-10 "
                  "score >= 5). Accuracy, precision and recall are over labelled transitions; cover = "
                  "labelled / all. Definitions: `rayrg/rewards/report.py`.")
    md = [title, "", definition, "", "```", format_table(rows), "```", ""]
    rates = {r["column"]: r["positive_rate_truth"] for r in rows if not r.get("skipped")
             and r.get("positive_rate_truth") is not None and not math.isnan(r["positive_rate_truth"])}
    if rates:
        md += ["Good base rate (share of labelled transitions that are good; a labeller that always says "
               "'good' scores this accuracy): " + ", ".join(f"`{k}` {v:.3f}" for k, v in rates.items()), ""]
    # Decided from the labels' checkpoints (rayrg.rewards.report.reward_caveat), not config notes.
    caveat = reward_caveat(rows)
    if caveat:
        md += [f"**{caveat} Their accuracy only reflects how often the model says 'good' against "
               "the base rate of good actions.**", ""]
    return "\n".join(md), rows


def _reward_curves(labelled: Path | None, report_dir: Path) -> str:
    if labelled is None:
        return ""
    from rayrg.data.access import Dataset
    from rayrg.data.schema import SCALAR_COLUMNS
    from rayrg.rewards.truth import subtask_advanced

    source = Dataset.open(labelled)
    columns = source.reward_columns()
    table = source.read([*SCALAR_COLUMNS, *columns])
    firsts = table.filter(table.column("step").to_numpy() == 0).to_pylist()
    successes = [r for r in firsts if r["success"]] or firsts
    chosen = max(successes, key=lambda r: (r["num_subtasks"], -len(r["episode_id"])))
    mask = np.asarray(table.column("episode_id").to_pylist()) == chosen["episode_id"]
    episode = table.filter(mask)
    advanced = subtask_advanced(episode.column("episode_id"), episode.column("subtasks_completed"))
    steps = episode.column("step").to_pylist()
    plots.reward_curves(
        steps, {c.removeprefix("reward_"): np.nan_to_num(episode.column(c).to_numpy(zero_copy_only=False))
                for c in columns},
        [s for s, a in zip(steps, advanced, strict=True) if a],
        f"{chosen['episode_id']}: {chosen['instruction']}", report_dir / "reward_curves.png")
    return "\n".join(["## Rewards along one episode", "", "![reward curves](reward_curves.png)", ""])


def _method_sections(manifest: Manifest, report_dir: Path) -> str:
    """Each label method's own report section (and browser page, linked from it), for the last
    label step of that method: what the method declares (``report_section``,
    ``browser_section``), never a method named here."""
    from rayrg.config import ConfigError
    from rayrg.errors import user_error_types
    from rayrg.report.browse import PAGE_FILE, write_browser
    from rayrg.rewards.declarations import ReportInput
    from rayrg.rewards.registry import get_method

    last = {step.method: step for step in manifest.labels}
    parts: list[str] = []
    pages = 0
    for name, step in last.items():
        try:
            method = get_method(name)
        except (ConfigError, ImportError) as exc:  # a plugin method not importable here
            log.warning("report: no section for label method %s: %s", name, exc)
            continue
        sides = {k: v for k, v in (("windows", step.windows), ("labels", step.labels)) if v is not None}
        page = None
        if method.browser_section is not None:
            page = PAGE_FILE if pages == 0 else f"labels_browser_{name}.html"
            try:
                write_browser(step.path, report_dir / page, method=name, labels=step.labels, windows=step.windows)
                pages += 1
            except user_error_types() as exc:  # nothing to browse (e.g. no windows labelled)
                log.info("report: no browser page for %s: %s", name, exc)
                page = None
        if method.report_section is not None:
            md = method.report_section(ReportInput(method=name, path=step.path, side_outputs=sides,
                                                   report_dir=report_dir, browser_page=page))
            if md:
                parts.append(md)
    return "\n".join(parts)


def build_report(out: str | os.PathLike[str] | Location) -> Path | Location:
    """Write ``<out>/report/report.{md,html,json}`` from ``<out>/manifest.json`` alone.

    ``out`` may be a storage URI (``s3://…``): the report and its plots are made in a local
    temporary folder (matplotlib and the browser page write files) and then uploaded to
    ``<out>/report``; the returned ``report.md`` is then a :class:`~rayrg.storage.Location`.
    """
    from rayrg.storage import prepare_output

    location = prepare_output(out)
    if location.local_path is not None:
        report_dir = location.local_path / "report"
        report_dir.mkdir(parents=True, exist_ok=True)
        _build(read_manifest(location.local_path), report_dir, str(location.local_path / MANIFEST_FILE))
        return report_dir / "report.md"
    manifest = read_manifest(location.uri)
    target = location / "report"
    with tempfile.TemporaryDirectory(prefix="rayrg-report-") as tmp:
        _build(manifest, Path(tmp), str(location / MANIFEST_FILE))
        for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            (target / path.relative_to(tmp).as_posix()).write_bytes(path.read_bytes())
    return target / "report.md"


def _build(manifest: Manifest, report_dir: Path, manifest_name: str) -> None:
    """The report of ``manifest`` written into the local folder ``report_dir``."""
    labels, method_notes = _display_names(manifest)
    all_notes = list(manifest.notes)

    sections = [f"# rayrg report: {manifest.name}", ""]
    for note in all_notes:
        sections += [f"> **{note}**", ""]
    if method_notes:
        sections += ["Notes on methods:", ""] + [f"- {labels.get(k, k)}: {v}" for k, v in method_notes.items()] + [""]
    numbers: dict[str, Any] = {"notes": all_notes, "manifest": manifest_name}
    results = load_episode_results(manifest)
    md, numbers["design"] = report_sections.design(manifest, results)
    sections.append(md)
    terms_at = len(sections)  # the terms follow the design; written once the numbers are known
    if results:
        learned = list(manifest.methods)
        md, numbers["evaluation"] = _figure4(
            results, labels, learned, list(manifest.comparisons),
            manifest.claims.model_dump() if manifest.claims else None, report_dir,
            instruction=numbers["design"]["instruction"])
        md_rates, numbers["base_rates"] = report_sections.base_rates(results, labels)
        sections += [md_rates, md]
    else:
        sections += ["## Evaluation", "", "No evaluation results yet.", ""]
    # Right after the returns: which reward is best beside which policy is best.
    md, numbers["bench"] = report_sections.reward_bench(manifest, labels)
    sections.append(md)
    md, numbers["accuracy_sweep"] = report_sections.accuracy_sweep(manifest, results, labels, report_dir)
    sections.append(md)
    md, numbers["training_curves"] = report_sections.training_curves(manifest, labels, report_dir)
    sections.append(md)
    labelled = manifest.labelled
    md, numbers["rewards"] = _reward_table(labelled, all_notes)
    sections.append(md)
    sections.append(_method_sections(manifest, report_dir))
    sections.append(_reward_curves(labelled, report_dir))
    sections.insert(terms_at, report_sections.terms(numbers.get("evaluation", {}).get("overall", {}), labels))

    markdown = "\n".join(sections)
    (report_dir / "report.md").write_text(markdown)
    (report_dir / "report.json").write_text(json.dumps(numbers, indent=2, default=str))
    (report_dir / "report.html").write_text(_to_html(markdown, title=f"rayrg report: {manifest.name}"))


def _to_html(markdown: str, title: str) -> str:
    """The report's markdown as one HTML page: CommonMark with GFM tables (markdown-it-py), in a
    Jinja2 template that escapes the title. Report text is rayrg's own, so raw HTML stays off."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markdown_it import MarkdownIt
    from markupsafe import Markup

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    env = Environment(loader=PackageLoader("rayrg.report", "templates"), autoescape=select_autoescape())
    return env.get_template("report.html.jinja").render(title=title, body=Markup(body))
