"""``rayrg report``: the experiment's markdown/HTML report with its plots.

Its inputs are ``<out>/manifest.json`` (:mod:`rayrg.contracts.manifest`) and the outputs that
manifest lists, each read through its contract or accessor: evaluation episodes
(:mod:`rayrg.contracts.episodes`), the labelled dataset (:mod:`rayrg.data.access`), the RG-VLM
labels and windows of the label step it records. No folder is looked for.

Contents (what exists is reported; what is missing is named, never invented):

* Figure-4 analogue: return per number of sub-tasks, per method, fixed vs randomized start,
  with 95 % confidence intervals over training seeds × evaluation seeds × tasks;
* the relative drop of return under randomized start per method, and the gain of
  sparse + RG-VLM over RG-VLM alone;
* Table-I analogue: reward accuracy against the ground truth per labeller;
* pictures: one window grid with the model's scores and turn-1 analysis beside it, and
  the reward curves along one episode for every reward column.
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
from rayrg.storage import Location

log = logging.getLogger(__name__)


def load_episode_results(manifest: Manifest) -> list[dict[str, Any]]:
    """Per-episode evaluation results of every evaluation the manifest lists, read from the
    episodes folder it records for each (:mod:`rayrg.contracts.episodes`)."""
    rows: list[dict[str, Any]] = []
    for entry in manifest.evaluations:
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
             report_dir: Path) -> tuple[str, dict]:
    from rayrg.evaluation import stats

    table = stats.by_mode_method_subtasks(results)
    plots.return_by_subtasks(
        {mode: {m: {int(k): (c["mean"], *c["ci95"]) for k, c in by_k.items()} for m, by_k in t.items()}
         for mode, t in table.items()}, labels, report_dir / "return_by_subtasks.png")
    numbers: dict[str, Any] = {"by_mode_method_subtasks": table, "interval": "wilson (rayrg.evaluation.stats)"}

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
    md = ["## Return per number of sub-tasks (Figure-4 analogue)", "",
          "![return by sub-tasks](return_by_subtasks.png)", "",
          "Return = fraction of the mission's sub-tasks completed within the step budget. Intervals "
          "are 95 % Wilson intervals on the sub-task successes, with the effective number of sub-tasks "
          "corrected for their correlation within an episode (`rayrg/evaluation/stats.py`); they stay "
          "in [0, 1]. The expert (scripted bot) and random rows are references on the same tasks.", "",
          _md_table(["method", "fixed start", "randomized start", "relative drop"], rows), ""]

    compared = []
    for a, b in comparisons:
        for mode in ("fixed", "randomized"):
            try:
                result = stats.compare_methods(results, a, b, mode)
            except ValueError:
                continue  # a method without results in this mode
            compared.append({"a": a, "b": b, "mode": mode, **result})
    numbers["comparisons"] = compared
    if compared:
        md += ["### Paired comparisons", "",
               "Difference of mean return on the same tasks and training seeds, with a Student-t "
               "interval from the two-way (seeds × tasks) random-effects variance; *significant* means "
               "the interval excludes 0; *MDE* is the smallest true difference this design detects "
               "with 80 % power (so a non-significant difference smaller than it was not detectable, "
               "and one with an interval inside ±MDE is ruled out at that size).", "",
               _md_table(["a", "b", "start", "a − b", "95 % CI", "significant", "MDE (80 %)", "covers"],
                         [[labels.get(c["a"], c["a"]), labels.get(c["b"], c["b"]), c["mode"],
                           f"{c['difference']:+.3f}", f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                           "yes" if c["significant"] else "no", f"±{c['mde80']:.3f}", c["covers"]]
                          for c in compared]), ""]
    if claim_methods:
        try:
            numbers["claims"] = stats.claims(results, **claim_methods)
        except ValueError as exc:
            numbers["claims"] = []
            md += [f"The paper's claims could not be tested: {exc}", ""]
        if numbers["claims"]:
            md += ["### The paper's claims, as found here", "",
                   _md_table(["claim", "finding"], [[c["claim"], c["finding"]] for c in numbers["claims"]]), ""]
    return "\n".join(md), numbers


def _reward_table(labelled: Path | None, notes: Sequence[str]) -> tuple[str, list]:
    title = "## Reward accuracy (Table-I analogue)"
    if labelled is None:
        return f"{title}\n\nNo labelled dataset.\n", []
    from rayrg.rewards.report import format_table, reward_caveat, reward_report

    rows = reward_report([labelled])
    definition = ("A transition is *good* when its action is the expert's or it completes a sub-task "
                  "(`rayrg.rewards.truth`); a reward predicts *good* when it is >= 0.5 (an RG-VLM score "
                  ">= 5/10). Accuracy, precision and recall are over labelled transitions; cover = "
                  "labelled / all. Definitions: `rayrg/rewards/report.py`.")
    md = [title, "", definition, "", "```", format_table(rows), "```", ""]
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


def _window_picture(manifest: Manifest, report_dir: Path) -> str:
    from rayrg.rewards.report import label_rows

    steps = [e for e in manifest.labels if e.method == "rgvlm" and e.labels and e.windows]
    if not steps:
        return ""
    step = steps[-1]
    assert step.labels is not None and step.windows is not None
    labels = label_rows(step.labels)
    if not labels:
        return ""
    windows_dir = step.windows
    from rayrg.report.browse import PAGE_FILE, write_browser

    # Every window (up to the browser's default cap), failed ones too: `rayrg browse` on the step.
    write_browser(step.path, report_dir / PAGE_FILE, labels=step.labels, windows=windows_dir)
    browse = f"[Browse every labelled window]({PAGE_FILE}) (`rayrg browse {step.path}`)"
    scored = [r for r in labels if r.get("status") == "ok" and r.get("scores")]
    if not scored:
        return f"## A labelled window\n\nNo window was labelled successfully.\n\n{browse}\n"
    row = max(scored, key=lambda r: (len(r["scores"]), r["window_id"]))
    from rayrg.windows.preview import write_preview

    text = f"scores: {row['scores']}\n\nturn 1 (analysis):\n{(row.get('turn1_text') or '')[:900]}"
    write_preview(windows_dir, report_dir / "window_scores.png", window_id=row["window_id"], text=text)
    return "\n".join(["## A labelled window", "", f"Model `{row.get('model')}` ({row.get('backend')}), "
                      f"window `{row['window_id']}`.", "", "![window with scores](window_scores.png)", "",
                      browse, ""])


def build_report(out: str | os.PathLike[str] | Location) -> Path | Location:
    """Write ``<out>/report/report.{md,html,json}`` from ``<out>/manifest.json`` alone.

    ``out`` may be a storage URI (``s3://…``): the report and its plots are made in a local
    temporary folder (matplotlib and the browser page write files) and then uploaded to
    ``<out>/report``; the returned ``report.md`` is then a :class:`~rayrg.storage.Location`.
    """
    from rayrg._storage_shim_q3 import prepare_output

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
    if results:
        learned = list(manifest.methods)
        md, numbers["evaluation"] = _figure4(
            results, labels, learned, list(manifest.comparisons),
            manifest.claims.model_dump() if manifest.claims else None, report_dir)
        sections.append(md)
    else:
        sections += ["## Evaluation", "", "No evaluation results yet.", ""]
    labelled = manifest.labelled
    md, numbers["rewards"] = _reward_table(labelled, all_notes)
    sections.append(md)
    sections.append(_window_picture(manifest, report_dir))
    sections.append(_reward_curves(labelled, report_dir))

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
