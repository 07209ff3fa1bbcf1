"""RG-VLM's browser section (its ``browser_section`` declaration, which ``rayrg browse`` and
the report's browser page call): every labelled window, paged through in one self-contained
HTML page.

The page needs no server and no network: CSS and JavaScript are inline and each window's
grid image is a ``data:`` URI. Every embedded window is in the file (a JSON block); the
JavaScript shows one page of them at a time and filters by

* status: ``ok`` (scores parsed) or ``failed`` (with the labeller's reason);
* agreement with the ground truth: a transition *agrees* when ``score/10 >= threshold``
  (the reward report's prediction, default 0.5 = a score >= 5 of 10) equals its truth
  ``good(t)`` — the action is the expert's, or a sub-task was completed at that step
  (:mod:`rayrg.rewards.truth`, here from the truth lists carried in the labels table).
  A window *agrees* when all its scored transitions do, *disagrees* when at least one
  does not; a failed window has no agreement;
* episode.

The filters are also read from the URL (``page.html?status=failed&episode=ep-3``, or the
same after ``#``), so a filtered view can be linked to, and tests can drive the page.

Sources, read through their contracts: the labels table (:mod:`rayrg.contracts.labels`,
``<dataset>/_labels`` unless the run set ``labels_dir``) and the windows dataset
(:mod:`rayrg.contracts.windows`, ``<dataset>/_windows`` unless ``windows_dir``) of
:func:`rayrg.rewards.rgvlm.pipeline.label_rgvlm`. Size: every window is embedded, so the
file grows with the windows (grid PNGs, capped to ``image_side`` pixels); beyond
``max_windows`` only the first ones (by episode, then start step) are embedded, and the
page says so.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rayrg.contracts import labels as labels_contract
from rayrg.contracts.versions import DatasetError
from rayrg.contracts.windows import read_windows, window_files
from rayrg.rewards.declarations import BrowseOptions, HtmlSection
from rayrg.rewards.truth import window_good_actions

log = logging.getLogger(__name__)

# Label columns the page shows (the rest of the labels table is cost and cache bookkeeping).
_LABEL_COLUMNS = [*labels_contract.WINDOW_KEY_COLUMNS, *labels_contract.ANSWER_COLUMNS,
                  *labels_contract.TRUTH_COLUMNS]


@dataclass(frozen=True)
class BrowseSources:
    labels: Path
    windows: Path


def find_sources(labelled: str | Path, labels: str | Path | None = None,
                 windows: str | Path | None = None) -> BrowseSources:
    """Where a labelled dataset's RG-VLM labels and windows are; one-line error if it has none."""
    labelled = Path(labelled)
    if not labelled.is_dir():
        raise FileNotFoundError(f"{labelled}: no such labelled dataset directory")
    summary = labels_contract.read_summary(labelled) or {}
    labels_dir = Path(labels) if labels else Path(summary.get("labels_dir") or labelled / labels_contract.DEFAULT_DIR)
    if not labels_contract.label_files(labels_dir):
        raise DatasetError(
            f"{labelled}: no RG-VLM labels ({labels_dir} has no Parquet files); `rayrg browse` shows the "
            "windows of an rgvlm label run (`rayrg label` with method rgvlm), or pass --labels")
    if windows:
        windows_dir = Path(windows)
    else:
        windows_dir = labelled / "_windows"
        config_file = labelled / "_rgvlm.yaml"
        if config_file.is_file():  # a run given ``windows_dir`` built none under the dataset
            import yaml

            configured = (yaml.safe_load(config_file.read_text()) or {}).get("windows_dir")
            windows_dir = Path(configured) if configured else windows_dir
    try:
        window_files(windows_dir)
    except DatasetError as exc:
        raise DatasetError(f"{labelled}: no windows dataset for its RG-VLM labels ({exc}); pass --windows") from exc
    return BrowseSources(labels_dir, windows_dir)


def read_labels(labels_dir: Path) -> pa.Table:
    """The labels table, columns the page needs, sorted by episode then start step."""
    table = labels_contract.read_labels(labels_dir, _LABEL_COLUMNS)
    return table.sort_by([("episode_id", "ascending"), ("start_step", "ascending")])


def transition_truth(actions: list[int], expert: list[int], before: int, completed: list[int]) -> list[bool]:
    """``good(t)`` per step of one window: the rule of :mod:`rayrg.rewards.truth`, not a copy."""
    return window_good_actions(actions, expert, before, completed)


def window_agreement(scores: list[int] | None, truth: list[bool], threshold: float) -> tuple[str, list[bool] | None]:
    """``("agree" | "disagree" | "n/a", per-step agreement)``; n/a for a window without scores."""
    if not scores:
        return "n/a", None
    steps = [(s / 10 >= threshold) == good for s, good in zip(scores, truth, strict=False)]
    return ("agree" if all(steps) else "disagree"), steps


def _action_names(labelled: Path) -> tuple[str, ...]:
    """The environment's action names (windows carry their own; this is for windows without)."""
    try:
        from rayrg.contracts.datasets import read_metadata
        from rayrg.envs.registry import action_names

        return action_names(read_metadata(labelled).env_name)
    except Exception:  # an unregistered env or no metadata: the page shows action ids instead
        return ()


def _window_images(windows_dir: Path, window_ids: list[str], image_side: int | None) -> dict[str, dict[str, Any]]:
    from rayrg.rewards.rgvlm.pipeline import cap_image

    table = read_windows(windows_dir, ["window_id", "image", "action_names"],
                         filter=pc.field("window_id").isin(window_ids))
    out = {}
    for row in table.to_pylist():
        png = cap_image(row["image"], image_side)
        out[row["window_id"]] = {"src": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                                 "names": row.get("action_names")}
    return out


def window_records(labels: pa.Table, windows_dir: Path, *, threshold: float, image_side: int | None,
                   names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One JSON-able record per labels row: what a window's card shows."""
    rows = labels.to_pylist()
    images = _window_images(windows_dir, [r["window_id"] for r in rows], image_side)

    def name(action: int, own: list[str] | None = None, i: int = 0) -> str:
        if own is not None and i < len(own):
            return own[i]
        return names[action] if 0 <= action < len(names) else str(action)

    records = []
    for r in rows:
        image = images.get(r["window_id"], {})
        own = image.get("names")
        actions, expert = r["actions"] or [], r["expert_actions"] or []
        truth = transition_truth(actions, expert, r["subtasks_before"] or 0, r["subtasks_completed"] or [])
        agreement, steps = window_agreement(r["scores"], truth, threshold)
        records.append({
            "id": r["window_id"], "episode": r["episode_id"], "start": r["start_step"], "n": r["num_steps"],
            "instruction": r["instruction"], "status": r["status"], "error": r["error"],
            "scores": r["scores"], "agreement": agreement, "step_agrees": steps, "truth": truth,
            "actions": [name(a, own, i) for i, a in enumerate(actions)],
            # the windows carry only the taken actions' names; the expert's come from the registry
            "expert": [name(a) for a in expert],
            "turn1": r["turn1_text"] or "", "turn2": r["turn2_text"] or "",
            "image": image.get("src"),
        })
    return records


def browser_section(labelled: Path, options: BrowseOptions) -> HtmlSection:
    """The windows page of ``labelled`` (an rgvlm label run's output), as a browser section."""
    if options.max_windows < 1 or options.page_size < 1:
        raise DatasetError(f"--max-windows ({options.max_windows}) and --page-size ({options.page_size}) must be >= 1")
    labelled = Path(labelled)
    sources = find_sources(labelled, options.labels, options.windows)
    table = read_labels(sources.labels)
    total = table.num_rows
    statuses = Counter(table.column("status").to_pylist())
    reasons = Counter(e for e in table.column("error").to_pylist() if e)
    shown = table.slice(0, options.max_windows)
    records = window_records(shown, sources.windows, threshold=options.threshold, image_side=options.image_side,
                             names=_action_names(labelled))
    first = table.slice(0, 1).to_pylist()[0] if total else {}
    meta = {
        "dataset": str(labelled), "labels": str(sources.labels), "windows": str(sources.windows),
        "total": total, "embedded": len(records), "max_windows": options.max_windows,
        "page_size": options.page_size, "threshold": options.threshold, "ok": statuses.get("ok", 0),
        "failed": statuses.get("failed", 0), "reasons": reasons.most_common(10), "model": first.get("model"),
        "backend": first.get("backend"), "prompt_version": first.get("prompt_version"),
    }
    log.info("browse: %d of %d windows embedded", len(records), total)
    return render_section(meta, records)


def _json_for_script(value: Any) -> str:
    # Inside <script> a "</script>" in a model's answer would end the block: escape every "<".
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def render_section(meta: dict[str, Any], records: list[dict[str, Any]]) -> HtmlSection:
    title = f"rayrg labels: {Path(meta['dataset']).name}"
    parts = {"TITLE": html.escape(title), "META": _json_for_script(meta), "WINDOWS": _json_for_script(records)}
    # One pass, so a placeholder-like string inside the data is never substituted again.
    body = re.sub(r"__(TITLE|META|WINDOWS)__", lambda m: parts[m.group(1)], _BODY)
    return HtmlSection(title=title, body=body, head=_HEAD)


_HEAD = """<style>
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
header p{margin:.3em 0}.note{background:#fff4d6;border:1px solid #e0c060;padding:.4em .6em}
#controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}
#controls label{margin-right:1em}
article{border:1px solid #ccc;border-radius:4px;margin:1em 0;padding:.6em 1em;display:grid;
 grid-template-columns:minmax(200px,45%) 1fr;gap:1em}
article.failed{border-color:#c33;background:#fff6f6}
article h3{grid-column:1/-1;margin:0;font-size:1em}
article img{width:100%;image-rendering:pixelated;border:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:1px 6px;text-align:left}
td.no{background:#fdd}td.yes{background:#dfd}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.4em;max-height:18em;overflow:auto;font-size:.85em}
.error{color:#a00;font-weight:bold}.tag{font-size:.8em;padding:0 .4em;border-radius:3px;background:#eee}
</style>"""

# The page's body (the browser page's <body> carries data-ready="0" until the script ran).
_BODY = """<header><h1>__TITLE__</h1><div id="summary"></div></header>
<div id="controls">
<label>status <select id="status"><option value="all">all</option><option value="ok">ok</option>
<option value="failed">failed</option></select></label>
<label>agreement with truth <select id="agree"><option value="all">all</option>
<option value="agree">all steps agree</option><option value="disagree">some steps disagree</option></select></label>
<label>episode <select id="episode"><option value="all">all</option></select></label>
<button id="prev">&larr; prev</button> <span id="pageinfo"></span> <button id="next">next &rarr;</button>
</div>
<main id="windows"></main>
<script id="meta" type="application/json">__META__</script>
<script id="data" type="application/json">__WINDOWS__</script>
<script>
"use strict";
const META = JSON.parse(document.getElementById("meta").textContent);
const WINDOWS = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);  // strings become text nodes: model text is never HTML
  return e;
}
const state = {status: "all", agree: "all", episode: "all", page: 1};
function readUrl() {
  for (const part of [location.search.slice(1), location.hash.slice(1)]) {
    const q = new URLSearchParams(part);
    for (const k of ["status", "agree", "episode"]) if (q.has(k)) state[k] = q.get(k);
    if (q.has("page")) state.page = Math.max(1, parseInt(q.get("page"), 10) || 1);
  }
}
function writeUrl() {
  const q = new URLSearchParams();
  for (const k of ["status", "agree", "episode"]) if (state[k] !== "all") q.set(k, state[k]);
  if (state.page > 1) q.set("page", state.page);
  history.replaceState(null, "", location.pathname + location.search + (q.toString() ? "#" + q : ""));
}
function matches(w) {
  return (state.status === "all" || w.status === state.status)
    && (state.agree === "all" || w.agreement === state.agree)
    && (state.episode === "all" || w.episode === state.episode);
}
function summary() {
  const m = META, s = $("summary");
  s.append(el("p", {}, `Model ${m.model} (${m.backend}, prompt ${m.prompt_version}); ${m.total} windows: `
    + `${m.ok} ok, ${m.failed} failed. Dataset: ${m.dataset}`));
  if (m.reasons.length) s.append(el("p", {}, "Failure reasons: "
    + m.reasons.map(([r, n]) => `${r} (${n})`).join("; ")));
  const n = (a) => WINDOWS.filter((w) => w.agreement === a).length;
  s.append(el("p", {}, `Of the embedded ok windows, ${n("agree")} agree with the truth at every step and `
    + `${n("disagree")} disagree at some step.`));
  s.append(el("p", {}, `Agreement: a transition agrees when (score/10 >= ${m.threshold}) equals its truth `
    + "(the action is the expert's, or it completed a sub-task); a window agrees when all its steps do."));
  s.append(el("p", {id: "embedded", "data-total": m.total, "data-embedded": m.embedded,
    class: m.embedded < m.total ? "note" : ""}, m.embedded < m.total
    ? `This page embeds the first ${m.embedded} of ${m.total} windows (by episode, then start step; `
      + "--max-windows sets the limit): filters and counts cover those only."
    : `All ${m.total} windows are embedded in this file (images inline), ${m.page_size} per page.`));
}
function card(w) {
  const a = el("article", {class: w.status, "data-window-id": w.id, "data-status": w.status,
    "data-episode": w.episode, "data-agreement": w.agreement});
  a.append(el("h3", {}, `${w.id} `, el("span", {class: "tag"}, w.status),
    " ", el("span", {class: "tag"}, `truth: ${w.agreement}`)));
  const left = el("div", {});
  if (w.image) {
    const img = el("img", {alt: `grid of window ${w.id}`, "data-natural-width": "0"});
    img.onload = () => img.setAttribute("data-natural-width", img.naturalWidth);
    img.onerror = () => img.setAttribute("data-natural-width", "-1");
    img.src = w.image;
    left.append(img);
  } else left.append(el("p", {class: "error"}, "image not found in the windows dataset"));
  left.append(el("p", {}, el("b", {}, "Instruction: "), w.instruction));
  const right = el("div", {});
  if (w.status === "failed") right.append(el("p", {class: "error"}, `Failed: ${w.error || "no reason given"}`));
  const t = el("table", {}, el("tr", {}, ...["step", "action", "expert", "truth good", "score", "agrees"]
    .map((h) => el("th", {}, h))));
  w.actions.forEach((name, i) => {
    const agrees = w.step_agrees ? w.step_agrees[i] : null;
    t.append(el("tr", {}, el("td", {}, String(w.start + i)), el("td", {}, name), el("td", {}, w.expert[i] ?? ""),
      el("td", {}, w.truth[i] ? "yes" : "no"), el("td", {}, w.scores ? String(w.scores[i] ?? "") : "-"),
      el("td", {class: agrees === null ? "" : agrees ? "yes" : "no"},
        agrees === null ? "-" : agrees ? "yes" : "no")));
  });
  right.append(t);
  right.append(el("p", {}, el("b", {}, "Turn 1 (analysis):")), el("pre", {}, w.turn1 || "(none)"));
  if (w.turn2) right.append(el("details", {}, el("summary", {}, "Turn 2 (scores answer)"), el("pre", {}, w.turn2)));
  a.append(left, right);
  return a;
}
function render() {
  const shown = WINDOWS.filter(matches);
  const pages = Math.max(1, Math.ceil(shown.length / META.page_size));
  state.page = Math.min(state.page, pages);
  const start = (state.page - 1) * META.page_size;
  const main = $("windows");
  main.replaceChildren(...shown.slice(start, start + META.page_size).map(card));
  if (!shown.length) main.append(el("p", {}, "No window matches these filters."));
  $("pageinfo").textContent = `page ${state.page} of ${pages} (${shown.length} matching windows)`;
  document.body.setAttribute("data-matching", shown.length);
  for (const k of ["status", "agree", "episode"]) $(k).value = state[k];
  writeUrl();
}
function init() {
  readUrl();
  summary();
  const episodes = [...new Set(WINDOWS.map((w) => w.episode))];
  if (state.episode !== "all" && !episodes.includes(state.episode)) episodes.push(state.episode);
  for (const ep of episodes) $("episode").append(el("option", {value: ep}, ep));
  for (const k of ["status", "agree", "episode"])
    $(k).addEventListener("change", () => { state[k] = $(k).value; state.page = 1; render(); });
  $("prev").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); render(); });
  $("next").addEventListener("click", () => { state.page += 1; render(); });
  render();
  document.body.setAttribute("data-ready", "1");
}
init();
</script>
"""
