"""A toy paid HTTP label method, defined entirely here (issue 27): its config, a ``run`` that
asks a loopback HTTP server one progress value per episode step, and every declaration
(needs, paid, estimate, output column, report and browser sections). Nothing else in rayrg
knows it: a test registers it with one line, ``LABEL_METHODS["toypaid"] = TOY_PAID`` (or
``RAYRG_PLUGINS=tests.rewards.toy_paid_method`` for other processes, via :func:`register`)."""

from __future__ import annotations

import html
import json
import os
import urllib.request
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from rayrg.config import StageConfig
from rayrg.rewards.declarations import (
    BrowseOptions,
    HtmlSection,
    Need,
    OutputColumn,
    ReportInput,
    SimpleEstimate,
)
from rayrg.rewards.registry import LABEL_METHODS, LabelMethod

COLUMN = "progress_toypaid"
SUMMARY = "_toypaid_summary.json"


class ToyPaidConfig(StageConfig):
    method: Literal["toypaid"] = "toypaid"
    base_url: str
    api_key_env: str = "TOYPAID_API_KEY"
    price_per_request: float = 0.25


def _episodes(dataset: Path) -> pa.Table:
    from rayrg.data.access import Dataset

    return Dataset.open(dataset).read(["episode_id", "step"])


def run(config: ToyPaidConfig, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    """One POST per episode: {"steps": n} -> {"progress": [n floats]} (a paid API's shape)."""
    from rayrg.rewards.base import write_labelled_dataset

    table = _episodes(dataset)
    ids = table.column("episode_id").to_pylist()
    steps = table.column("step").to_pylist()
    progress = np.full(len(ids), np.nan)
    requests = 0
    for episode in dict.fromkeys(ids):
        rows = [i for i, e in enumerate(ids) if e == episode]
        request = urllib.request.Request(
            config.base_url, data=json.dumps({"episode": episode, "steps": len(rows)}).encode(),
            headers={"Authorization": f"Bearer {os.environ[config.api_key_env]}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        requests += 1
        for i, value in zip(rows, answer["progress"], strict=True):
            progress[i] = value
    rewards = pa.table({"episode_id": ids, "step": steps, COLUMN: progress})
    result = write_labelled_dataset(dataset, rewards, out, provenance={COLUMN: {"method": "toypaid"}})
    (Path(out) / SUMMARY).write_text(json.dumps({"windows": requests, "failed": 0, "requests": requests,
                                                 "cost_usd": requests * config.price_per_request,
                                                 "version": 1}))
    return result


def needs(config: ToyPaidConfig) -> list[Need]:
    return [Need("env", "api_key_env", config.api_key_env, why="the toy paid API's key")]


def estimate(config: ToyPaidConfig, dataset: Path, options: Any) -> SimpleEstimate:
    episodes = len(set(_episodes(dataset).column("episode_id").to_pylist()))
    return SimpleEstimate("toypaid", requests=episodes, cost_usd=episodes * config.price_per_request,
                          wall_s=None if options.latency_s is None else episodes * options.latency_s)


def report_section(step: ReportInput) -> str:
    summary = json.loads((step.path / SUMMARY).read_text())
    link = f"[toy browser]({step.browser_page})" if step.browser_page else "no browser"
    return f"## Toy paid method\n\n{summary['requests']} paid requests, ${summary['cost_usd']:.2f}; {link}\n"


def browser_section(labelled: Path, options: BrowseOptions) -> HtmlSection:
    summary = json.loads((labelled / SUMMARY).read_text())
    return HtmlSection(
        title=f"toypaid: {labelled.name}", head="<style>#toypaid{color:#333}</style>",
        body=(f'<p id="toypaid" data-requests="{summary["requests"]}">{html.escape(labelled.name)}: '
              f'{summary["requests"]} requests</p>'
              '<script>document.body.setAttribute("data-ready", "1")</script>'))


TOY_PAID = LabelMethod(
    "toypaid", ToyPaidConfig, run, needs=needs, paid=lambda config: config.price_per_request > 0,
    estimate=estimate, outputs=lambda config: [OutputColumn(COLUMN, "progress", "served progress per frame")],
    describe=lambda config: f"the toy API at {config.base_url}",
    report_section=report_section, browser_section=browser_section)


def register() -> None:
    """The register line."""
    LABEL_METHODS["toypaid"] = TOY_PAID
