"""GVL's and TOPReward's browser section (their ``browser_section`` declaration): one card per
episode with the frames the model was shown, what it answered for each, and the progress
derived from them.

* GVL: each chunk's sampled frames in the order the model saw them (shuffled; frame 0 first,
  fixed at 0 %), each with its step and the percentage answered for it; a failed chunk shows
  its reason.
* TOPReward: each sampled frame with its completion probability; a frame whose affirmative
  token was not among the top log-probabilities (the bound was used) is marked.
* Both: the per-step progress column (``progress_<method>``) as an inline SVG curve, the
  answered points on it.

Sources: the labelled dataset (frames and ``progress_<method>``, read through
:class:`rayrg.data.access.Dataset`) and the run's answer records
(:mod:`rayrg.contracts.progress_answers`). Self-contained: images are ``data:``
URIs (capped to ``image_side``), no script, no network. ``max_windows`` caps the episodes shown.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from rayrg.rewards.declarations import BrowseOptions, HtmlSection

_HEAD = """<style>
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
article{border:1px solid #ccc;border-radius:4px;margin:1em 0;padding:.6em 1em}
article.failed{border-color:#c33;background:#fff6f6}
.frames{display:flex;flex-wrap:wrap;gap:.5em}
figure{margin:0;text-align:center;font-size:.8em}figure img{width:96px;image-rendering:pixelated;border:1px solid #ddd}
figure.bounded figcaption{color:#a60}.error{color:#a00;font-weight:bold}
svg{border:1px solid #eee;background:#fafafa}
</style>"""


def _img(png: bytes, side: int | None) -> str:
    from rayrg.rewards.rgvlm.pipeline import cap_image

    data = cap_image(png, side) if side else png
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def _curve(progress: np.ndarray, points: list[tuple[int, float]]) -> str:
    """Progress per step (a polyline; NaN breaks it) and the answered points, 0–1 upwards."""
    w, h, n = 320, 80, max(len(progress) - 1, 1)

    def xy(step: float, value: float) -> str:
        return f"{4 + (w - 8) * step / n:.1f},{h - 4 - (h - 8) * value:.1f}"

    line = " ".join(xy(s, float(v)) for s, v in enumerate(progress) if np.isfinite(v))
    dots = "".join(f'<circle cx="{xy(s, v).split(",")[0]}" cy="{xy(s, v).split(",")[1]}" r="3" fill="#c33"/>'
                   for s, v in points if np.isfinite(v))
    return (f'<svg width="{w}" height="{h}" role="img" aria-label="progress per step">'
            f'<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{line}"/>{dots}</svg>')


def _episode_card(method: str, episode_id: str, instruction: str, frames: list[bytes], progress: np.ndarray,
                  answers: list[dict[str, Any]], side: int | None) -> str:
    parts, points, failed = [], [], False
    for a in sorted(answers, key=lambda r: (r["chunk_start"], r["steps"][0] if r["steps"] else 0)):
        steps, values = list(a["steps"] or []), a["values"]
        if a["status"] != "ok":
            failed = True
            parts.append(f'<p class="error">query {html.escape(a["query_id"])} failed: '
                         f'{html.escape(str(a["error"]))}</p>')
        if method == "gvl":
            order = list(a["order"] or range(len(steps)))  # shown position -> index into steps
            figures = []
            for shown, k in enumerate(order):
                step = steps[k]
                value = f"{100 * values[k]:.0f} %" if values else "—"
                if values:
                    points.append((step, float(values[k])))
                src = _img(frames[step], side) if step < len(frames) else ""
                figures.append(f'<figure><img src="{src}" alt="step {step}"><figcaption>shown #{shown} · '
                               f't={step} · {value}</figcaption></figure>')
            parts.append(f'<p>chunk [{a["chunk_start"]}, {a["chunk_stop"]}): frames in the order shown</p>'
                         f'<div class="frames">{"".join(figures)}</div>')
        else:  # topreward: one query per sampled frame (the frames up to it were shown)
            step = steps[-1] if steps else 0
            value = f"p(complete) {values[0]:.3f}" if values else "—"
            if values:
                points.append((step, float(values[0])))
            bounded = " bounded" if a.get("bounded") else ""
            src = _img(frames[step], side) if step < len(frames) else ""
            parts.append(f'<figure class="{bounded.strip()}"><img src="{src}" alt="step {step}"><figcaption>'
                         f't={step} · {value}{" (bound: not in top-k)" if bounded else ""}</figcaption></figure>')
    body = "".join(parts)
    if method != "gvl":
        body = f'<div class="frames">{body}</div>'
    return (f'<article class="{"failed" if failed else "ok"}" data-episode="{html.escape(episode_id)}">'
            f'<h3>{html.escape(episode_id)} — {html.escape(instruction)}</h3>{_curve(progress, points)}{body}'
            "</article>")


def browser_section(method: str, labelled: str | Path, options: BrowseOptions) -> HtmlSection:
    from rayrg.contracts.progress_answers import read_answers
    from rayrg.data.access import Dataset, episode_frames, iter_episodes

    labelled = Path(labelled)
    by_episode: dict[str, list[dict[str, Any]]] = {}
    for record in read_answers(labelled, method):
        by_episode.setdefault(record["episode_id"], []).append(record)
    data = Dataset.open(labelled)
    column = f"progress_{method}"
    columns = ["episode_id", "step", "instruction", "frame", column] + \
        (["final_frame"] if "final_frame" in data.names else [])
    cards, shown = [], 0
    for shard in data.shards:
        for ep in iter_episodes(data.read_shard(shard, columns=columns)):
            episode_id = ep.column("episode_id")[0].as_py()
            if episode_id not in by_episode:
                continue  # beyond max_episodes: not labelled
            if shown >= options.max_windows:
                break
            shown += 1
            frames = episode_frames(ep)
            progress = np.asarray(ep.column(column).to_numpy(zero_copy_only=False), dtype=float)
            cards.append(_episode_card(method, episode_id, ep.column("instruction")[0].as_py(), frames, progress,
                                       by_episode[episode_id], options.image_side))
    failed = sum(r["status"] != "ok" for rs in by_episode.values() for r in rs)
    title = f"rayrg {method} progress: {labelled.name}"
    header = (f"<header><h1>{html.escape(title)}</h1><p>{len(by_episode)} episodes labelled, {shown} shown; "
              f"{sum(map(len, by_episode.values()))} queries, {failed} failed</p></header>")
    return HtmlSection(title=title, body=header + "<main>" + "".join(cards) + "</main>", head=_HEAD)
