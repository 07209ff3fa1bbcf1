"""The run report reads only the manifest: reference rows, Wilson intervals, paired
comparisons and the paper's claims, on evaluation results written in the real format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rayrg.config import ConfigError
from rayrg.contracts.episodes import episodes_dir, write_episodes
from rayrg.contracts.manifest import Evaluation, Manifest, MethodEntry, write_manifest
from rayrg.report.build import build_report

TASKS = [f"t{k}-{i}" for k in (1, 2) for i in range(8)]


def _episodes(directory: Path, p_success: float, seed: int) -> None:
    """Episodes of one evaluation at ``episodes_dir(directory)``, written through the contract."""
    rng = np.random.default_rng(seed)
    rows = []
    for mode in ("fixed", "randomized"):
        for task in TASKS:
            k = int(task[1])
            done = int(rng.binomial(k, p_success if mode == "fixed" else p_success / 2))
            rows.append({"task_id": task, "env_name": "babyai", "num_subtasks": k, "mode": mode, "seed": 0,
                         "return": done / k, "subtasks_completed": done, "success": done == k, "steps": 5,
                         "budget": 10, "start_pos": [1, 1], "start_dir": 0})
    write_episodes(episodes_dir(directory), "a", rows)


def _evaluation(method: str, directory: Path, seed: int | None, label: str) -> Evaluation:
    return Evaluation(method=method, kind="learned" if seed is not None else "reference", seed=seed,
                      policy=method, path=directory, episodes=episodes_dir(directory), display_name=label)


def test_report_from_manifest(tmp_path: Path) -> None:
    evaluations = []
    for method, p in (("sparse", 0.1), ("dense", 0.5), ("dense+sparse", 0.95)):
        for seed in (0, 1, 2):
            d = tmp_path / "eval" / method / f"seed{seed}"
            _episodes(d, p, seed * 10 + len(method))
            evaluations.append(_evaluation(method, d, seed, method))
    for ref, p in (("expert", 1.0), ("random", 0.0)):
        d = tmp_path / "eval" / "_reference" / ref
        _episodes(d, p, 99)
        evaluations.append(_evaluation(ref, d, None, f"{ref} (reference)"))
    manifest = Manifest.model_validate({
        "name": "t", "methods": {m: {"display_name": m} for m in ("sparse", "dense", "dense+sparse")},
        "evaluations": evaluations, "comparisons": [["dense+sparse", "sparse"]],
        "claims": {"sparse": "sparse", "dense": "dense", "dense_plus_sparse": "dense+sparse"}})
    write_manifest(tmp_path, manifest)
    build_report(tmp_path)
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    table = numbers["evaluation"]["by_mode_method_subtasks"]
    assert table["fixed"]["expert"]["1"]["mean"] == 1.0 and table["fixed"]["random"]["2"]["mean"] == 0.0
    for by_k in table["fixed"].values():
        for cell in by_k.values():
            assert 0.0 <= cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1] <= 1.0
    fixed = next(c for c in numbers["evaluation"]["comparisons"] if c["mode"] == "fixed")
    assert fixed["significant"] and fixed["difference"] > 0.5 and fixed["seeds"] == 3
    claims = {c["claim"].split(" (")[0]: c for c in numbers["evaluation"]["claims"]}
    assert claims["dense + sparse"]["significant"] and claims["dense + sparse"]["difference"] > 0
    assert set(next(iter(numbers["evaluation"]["claims"])).keys()) == {
        "claim", "finding", "difference", "ci95", "significant", "covers", "mde80", "paper_effect", "paper"}
    report = (tmp_path / "report" / "report.md").read_text()
    assert "expert (reference)" in report and "The paper's claims" in report
    assert numbers["design"]["instruction"] == "full" and "the chained mission's full instruction" in report
    # The one-at-a-time evaluation mode is labelled as such: in the design and in the returns' heading.
    write_manifest(tmp_path, manifest.model_copy(update={"config": {"evaluation": {"instruction": "one_at_a_time"}}}))
    build_report(tmp_path)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "**one sub-instruction at a time**" in report
    assert "(Figure-4 analogue; test split; policies fed one sub-instruction at a time)" in report


def test_report_needs_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no manifest.json"):
        build_report(tmp_path)



@pytest.mark.browser
def test_html_report_renders_in_a_browser(tmp_path: Path) -> None:
    """The HTML report as a browser builds it: real tables (header + one row per method), the
    notes as block quotes, every image present on disk, and markup in names escaped."""
    from html.parser import HTMLParser

    from tests._browser import dump_dom

    evaluations = []
    for method, p in (("sparse", 0.2), ("dense", 0.6)):
        d = tmp_path / "eval" / method / "seed0"
        _episodes(d, p, len(method))
        evaluations.append(_evaluation(method, d, 0, method))
    write_manifest(tmp_path, Manifest(name="<b>x</b>", notes=["a pipeline-check note"], evaluations=evaluations,
                                      methods={m: MethodEntry(display_name=m) for m in ("sparse", "dense")}))
    build_report(tmp_path)
    page = tmp_path / "report" / "report.html"
    shown = dump_dom(page.resolve().as_uri(), tmp_path / "profile")

    class Dom(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.images: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            if tag == "img":
                self.images.append(dict(attrs)["src"] or "")

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    dom = Dom()
    dom.feed(shown)
    assert "table" in dom.tags and "th" in dom.tags and "blockquote" in dom.tags
    assert "b" not in dom.tags and "<b>x</b>" in "".join(dom.text)  # the name is text, not markup
    assert dom.images and all((page.parent / src).is_file() for src in dom.images)
    assert "|---|" not in shown  # no table left as raw markdown


def _returns_episodes(directory: Path, returns: list[float]) -> None:
    rows = [{"task_id": f"t{i}", "env_name": "babyai", "num_subtasks": 1, "mode": "fixed", "seed": 0,
             "return": r, "subtasks_completed": int(r), "success": r == 1.0, "steps": 5, "budget": 10,
             "start_pos": [1, 1], "start_dir": 0} for i, r in enumerate(returns)]
    write_episodes(episodes_dir(directory), "a", rows)


def test_accuracy_sweep_slope_from_the_columns_stated_accuracy(make_toy_dataset, tmp_path: Path) -> None:
    """Points are the methods whose column provenance states an accuracy; the slope is the
    least-squares slope of per-seed mean returns, its interval over the seeds' own slopes;
    sparse (no accuracy) and random are reference lines, not points."""
    from rayrg.contracts.datasets import DatasetMetadata

    labelled = make_toy_dataset()  # a valid dataset; only its metadata's provenance matters here
    provenance = {"reward_sparse": {"method": "sparse"},
                  "reward_a70_sparse": {"method": "simulated", "accuracy": 0.7, "fusion": {"dense": 1, "sparse": 1}},
                  "reward_a90_sparse": {"method": "simulated", "accuracy": 0.9, "fusion": {"dense": 1, "sparse": 1}}}
    meta = DatasetMetadata.read(labelled)
    meta.extra = {**meta.extra, "labels": provenance}
    meta.write(labelled)
    # seed s, accuracy a: mean return 0.05·s + 0.5·a·(1 + 0.5·(s − 1)) (the ±0.05 episodes cancel)
    methods = {"sparse": ("reward_sparse", None), "a70": ("reward_a70_sparse", 0.7),
               "a90": ("reward_a90_sparse", 0.9)}
    evaluations = []
    for method, (_, acc) in methods.items():
        for seed in (0, 1, 2):
            d = tmp_path / "eval" / method / f"seed{seed}"
            base = 0.1 if acc is None else 0.05 * seed + 0.5 * acc * (1 + 0.5 * (seed - 1))
            _returns_episodes(d, [base - 0.05, base + 0.05])
            evaluations.append(_evaluation(method, d, seed, method))
    d = tmp_path / "eval" / "_reference" / "random"
    _returns_episodes(d, [0.0, 0.1])
    evaluations.append(_evaluation("random", d, None, "random (reference)"))
    manifest = Manifest.model_validate({
        "name": "t", "labelled": labelled, "evaluations": evaluations,
        "methods": {m: {"display_name": m, "reward_column": c} for m, (c, _) in methods.items()}})
    write_manifest(tmp_path, manifest)
    build_report(tmp_path)
    sweep = json.loads((tmp_path / "report" / "report.json").read_text())["accuracy_sweep"]
    series = sweep["series"]["dense + sparse"]
    assert [p["accuracy"] for p in series["points"]] == [0.7, 0.9]
    # seed s's slope is 0.5·(1 + 0.5·(s − 1)): 0.25, 0.5, 0.75; interval 0.5 ± t_2·sd/√3
    assert series["slope"]["seed_slopes"] == pytest.approx([0.25, 0.5, 0.75])
    assert series["slope"]["slope"] == pytest.approx(0.5)
    half = 4.302653 * 0.25 / np.sqrt(3)
    assert series["slope"]["ci"] == pytest.approx([0.5 - half, 0.5 + half], abs=1e-5)
    assert set(sweep["reference"]) == {"sparse", "random policy"}
    assert sweep["reference"]["sparse"] == pytest.approx(0.1)
    assert "dense only" not in sweep["series"]
    assert (tmp_path / "report" / "accuracy_sweep.png").is_file()
    assert "## Return against label accuracy" in (tmp_path / "report" / "report.md").read_text()
