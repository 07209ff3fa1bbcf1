"""A report a reviewer can read without the code: its design, every term it uses, the base
rate, an x axis over the lengths that have data, training curves, the MDE beside the
paper's effects for each comparison and claim, and which split and reward variant ran."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rayrg.contracts.curves import write_curve
from rayrg.contracts.episodes import episodes_dir, write_episodes
from rayrg.contracts.manifest import Evaluation, Manifest, TrainRun, write_manifest
from rayrg.report.build import build_report

TASKS = [f"t{k}-{i}" for k in (1, 2, 3) for i in range(6)]
METHODS = (("sparse", 0.3), ("dense", 0.5), ("dense+sparse", 0.6))


def _episodes(directory: Path, p: float, seed: int, eval_seeds: int = 1, deterministic: bool = True) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for mode in ("fixed", "randomized"):
        for task in TASKS:
            k = int(task[1])
            first = int(rng.binomial(k, p if mode == "fixed" else p / 2))
            for s in range(eval_seeds):
                done = first if deterministic and mode == "fixed" else int(rng.binomial(k, p / 2))
                rows.append({"task_id": task, "env_name": "babyai", "num_subtasks": k, "mode": mode, "seed": s,
                             "return": done / k, "subtasks_completed": done, "success": done == k, "steps": 5,
                             "budget": 10, "start_pos": [1, 1], "start_dir": 0})
    write_episodes(episodes_dir(directory), "a", rows)


def _report(tmp_path: Path, variant: str | None = None, generate: dict | None = None) -> tuple[str, dict]:
    evaluations, train = [], []
    for method, p in METHODS:
        for seed in (0, 1, 2):
            d = tmp_path / "eval" / method / f"seed{seed}"
            _episodes(d, p, seed * 10 + len(method), eval_seeds=3)
            evaluations.append(Evaluation(method=method, kind="learned", seed=seed, policy=method, path=d,
                                          episodes=episodes_dir(d), display_name=method))
            ckpt = tmp_path / "train" / method / f"seed{seed}" / "final"
            ckpt.mkdir(parents=True)
            curve = write_curve(ckpt, [{"step": s, "loss/q": 1.0 / s, "loss/value": 0.5 / s,
                                        "loss/policy": 2.0 - s / 100} for s in (25, 50, 75, 100)])
            train.append(TrainRun(method=method, seed=seed, checkpoint=ckpt, curve=curve))
    for ref, p, det in (("expert", 1.0, True), ("random", 0.2, False)):
        d = tmp_path / "eval" / "_reference" / ref
        _episodes(d, p, 99, eval_seeds=3, deterministic=det)
        evaluations.append(Evaluation(method=ref, kind="reference", policy=ref, path=d,
                                      episodes=episodes_dir(d), display_name=f"{ref} (reference)"))
    train_config = {"num_steps": 100, "batch_size": 64, **({"reward_variant": variant} if variant else {})}
    manifest = Manifest.model_validate({
        "name": "t", "methods": {m: {"display_name": m} for m, _ in METHODS}, "train": train,
        "config": {"data": {"source": "babyai", "generate": {"episodes_per_count": 64, "val_tasks_per_count": 8,
                                                             "noise": 0.2, **(generate or {})}},
                   "seeds": [0, 1, 2], "train": train_config,
                   "evaluation": {"modes": ["fixed", "randomized"], "seeds": [0, 1, 2]}},
        "evaluations": evaluations, "comparisons": [["dense+sparse", "dense"], ["dense+sparse", "sparse"]],
        "claims": {"sparse": "sparse", "dense": "dense", "dense_plus_sparse": "dense+sparse"}})
    write_manifest(tmp_path, manifest)
    build_report(tmp_path)
    return ((tmp_path / "report" / "report.md").read_text(),
            json.loads((tmp_path / "report" / "report.json").read_text()))


def test_design_split_and_reward_variant_with_numbers(tmp_path: Path) -> None:
    md, numbers = _report(tmp_path)
    design = numbers["design"]
    assert design["test_tasks_per_length"] == {"1": 6, "2": 6, "3": 6}
    assert design["training_seeds"] == [0, 1, 2] and design["updates"] == 100
    assert design["evaluated_split"] == ["test"] and design["reward_variant"] == "raw"
    assert "| test tasks per number of sub-tasks | 1: 6, 2: 6, 3: 6 |" in md
    assert "| training seeds (independently trained policies per method) | 3 ([0, 1, 2]) |" in md
    assert "| IQL updates per training run (batch size) | 100 (64) |" in md
    assert "8 (`val_tasks.json`: for `rayrg tune` only" in md
    assert "| reward variant | raw" in md
    assert "(Figure-4 analogue; test split)" in md and numbers["evaluation"]["split"] == "test"
    md2, numbers2 = _report(tmp_path / "centred", variant="centred")
    assert numbers2["design"]["reward_variant"] == "centred" and "| reward variant | centred |" in md2
    assert "20 % random actions)" in md and "abandoned" not in md
    md3, numbers3 = _report(tmp_path / "skills", generate={"protocol": "skills", "abandon_prob": 0.5,
                                                           "detour_prob": 0.05})
    assert numbers3["design"]["abandon_prob"] == 0.5 and numbers3["design"]["protocol"] == "skills"
    assert "20 % random actions, skills abandoned first with p 0.5, detours with p per step 0.05)" in md3


def test_every_term_is_defined_with_the_random_drop_explained(tmp_path: Path) -> None:
    md, numbers = _report(tmp_path)
    terms = md.split("## Terms")[1].split("\n## ")[0]
    for term in ("relative drop", "tok/1k tr", "invalid", "MDE (80 %)", "significant", "good base rate",
                 "dense + sparse (fused) reward"):
        assert f"**{term}**" in terms, term
    assert "so a step pays up to 2" in terms
    r = numbers["evaluation"]["overall"]["random"]
    drop = (r["fixed"]["mean"] - r["randomized"]["mean"]) / r["fixed"]["mean"]
    assert f"The random policy's is {drop:+.2f}" in terms


def test_base_rate_of_the_random_policy_and_success(tmp_path: Path) -> None:
    md, numbers = _report(tmp_path)
    rates = numbers["base_rates"]
    assert set(rates) == {"random", "expert", "sparse", "dense", "dense+sparse"}
    random_fixed = rates["random"]["fixed"]
    assert 0 <= random_fixed["success_rate"] <= 1 and random_fixed["episodes"] == 18 * 3
    assert rates["expert"]["fixed"]["success_rate"] == 1.0
    section = md.split("## Base rates")[1].split("\n## ")[0]
    assert f"(fixed: return {random_fixed['return_mean']:.3f}, success {random_fixed['success_rate']:.3f})" in section
    assert re.search(r"\| random \(reference\) \| fixed \| [0-9.]+ \| [0-9.]+ \[[0-9.]+, [0-9.]+\] \| 54 \|", section)


def test_deterministic_repeats_count_once_random_ones_do_not(tmp_path: Path) -> None:
    _, numbers = _report(tmp_path)
    table = numbers["evaluation"]["by_mode_method_subtasks"]
    # 6 tasks per length; 3 training seeds × 3 evaluation seeds of a greedy policy = 3 episodes per task
    assert table["fixed"]["sparse"]["1"]["n"] == 6 * 3 and table["fixed"]["expert"]["1"]["n"] == 6
    assert table["fixed"]["random"]["1"]["n"] == 6 * 3  # the random policy's seeds are real repeats
    assert table["randomized"]["sparse"]["1"]["n"] == 6 * 3 * 3
    assert "random" not in numbers["evaluation"]["deterministic_methods"]


def test_mde_and_paper_effect_beside_every_comparison_and_claim(tmp_path: Path) -> None:
    md, numbers = _report(tmp_path)
    ev = numbers["evaluation"]
    for c in ev["comparisons"]:
        assert c["mde80"] > 0 and c["mde80_relative"] > 0 and c["split"] == "test"
    adding = next(c for c in ev["comparisons"] if (c["a"], c["b"], c["mode"]) == ("dense+sparse", "dense", "fixed"))
    base = ev["overall"]["dense"]["fixed"]["mean"]
    assert adding["paper"]["key"] == "adding_sparse"
    assert adding["paper"]["absolute"] == [0.14 * base, 0.14 * base]
    assert adding["paper"]["reading"]
    row = next(line for line in md.splitlines() if line.startswith("| dense+sparse | dense | fixed |"))
    assert f"±{adding['mde80']:.3f}" in row and f"+14 % = {0.14 * base:.3f} here" in row
    for claim in ev["claims"]:
        assert claim["mde80"] > 0
        line = next(line for line in md.splitlines() if line.startswith(f"| {claim['claim']} |"))
        assert f"±{claim['mde80']:.3f}" in line
        if claim["paper_effect"]:
            assert claim["paper"]["paper"] in line and claim["paper"]["reading"] in line


def test_axis_spans_only_lengths_with_data_and_training_curves_are_plotted(tmp_path: Path) -> None:
    from rayrg.report.plots import subtask_axis

    md, numbers = _report(tmp_path)
    assert subtask_axis({"fixed": {"a": {1: (0, 0, 0), 3: (0, 0, 0)}}, "randomized": {"b": {2: (0, 0, 0)}}}) == [1, 2, 3]
    assert (tmp_path / "report" / "training_curves.png").stat().st_size > 0
    curves = numbers["training_curves"]
    assert curves["sparse"]["0"][-1] == {"step": 100.0, "loss/q": 0.01, "loss/value": 0.005, "loss/policy": 1.0}
    assert "![training curves](training_curves.png)" in md
    assert "| sparse | 3 | 100 | 0.04 → 0.01 | 0.02 → 0.005 | 1.75 → 1 |" in md
