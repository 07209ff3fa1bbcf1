"""GVL and TOPReward: sampling and stitching, then end to end on a loopback OpenAI-compatible
server returning log-probabilities and on the tiny Qwen2-VL through transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rayrg.config import ConfigError
from rayrg.rewards.progress.sampling import (
    chunk_spans,
    interpolate,
    sample_indices,
    shuffle_order,
    stitch,
    unshuffle,
)
from rayrg.rewards.registry import load_label_config, run_label

# -- sampling ---------------------------------------------------------------------------


def test_sample_indices_spread_and_short_episodes_use_every_frame() -> None:
    assert sample_indices(5, 16) == [0, 1, 2, 3, 4]
    picked = sample_indices(100, 16)
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 99
    assert sorted(set(picked)) == picked


def test_shuffle_keeps_the_first_frame_and_unshuffle_inverts_frame_by_frame() -> None:
    order = shuffle_order(10, seed=3, salt="ep0:0")
    assert order[0] == 0 and sorted(order) == list(range(10)) and order != list(range(10))
    assert shuffle_order(10, 3, "ep0:0") == order and shuffle_order(10, 4, "ep0:0") != order
    truth = [i / 9 for i in range(10)]  # progress of frame i
    shown = [truth[f] for f in order]  # what a perfect model answers, in shown order
    assert unshuffle(shown, order) == truth
    for j, frame in enumerate(order):
        assert unshuffle(shown, order)[frame] == shown[j]
    with pytest.raises(ValueError):
        unshuffle(shown[:-1], order)


def test_chunks_overlap_and_stitching_averages_overlaps_and_measures_disagreement() -> None:
    spans = chunk_spans(20, 8, 3)
    assert spans == [(0, 8), (5, 13), (10, 18), (15, 20)]
    assert chunk_spans(8, 8, 3) == [(0, 8)] and chunk_spans(8, None, 3) == [(0, 8)]
    truth = np.linspace(0, 1, 20)
    chunks = [(a, b, truth[a:b] + (0.1 if i == 1 else 0.0)) for i, (a, b) in enumerate(spans)]
    progress, disagreement = stitch(20, chunks)
    # steps 5..7 are in chunks 0 and 1: averaged (0.05 off); 8, 9 only in chunk 1 (0.1 off)
    assert progress[6] == pytest.approx(truth[6] + 0.05) and progress[8] == pytest.approx(truth[8] + 0.1)
    assert progress[0] == pytest.approx(truth[0]) and progress[19] == pytest.approx(truth[19])
    assert disagreement == pytest.approx(0.1 * 2 / 3)  # overlaps 0|1 and 1|2 differ by 0.1, 2|3 agree
    failed = [(a, b, None if i == 1 else truth[a:b]) for i, (a, b) in enumerate(spans)]
    progress, _ = stitch(20, failed)
    assert np.isnan(progress[8]) and np.isnan(progress[9]) and progress[6] == pytest.approx(truth[6])


def test_interpolate_between_sampled_frames() -> None:
    assert interpolate([0, 4], [0.0, 1.0], 0, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_topreward_probability_bound_when_the_affirmative_token_is_absent() -> None:
    from rayrg.rewards.progress.topreward import completion_probability

    yes, no = ("True",), ("False",)
    p, bounded = completion_probability([["True", np.log(0.6)], ["False", np.log(0.2)]], yes, no)
    assert p == pytest.approx(0.75) and not bounded
    p, bounded = completion_probability([["False", np.log(0.8)], ["x", np.log(0.05)]], yes, no)
    assert bounded and p == pytest.approx(0.05 / 0.85)


# -- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory) -> Path:
    from rayrg.data.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("progress") / "gen"
    return generate(GenerateConfig(subtask_counts=[1, 2], episodes_per_count=1, eval_tasks_per_count=0, noise=0.2,
                                   episodes_per_shard=2, max_steps=30), out, progress=False) / "trajectories"


def _openai(base_url: str, method: str, **extra: Any) -> dict[str, Any]:
    return {"method": method, "backend": {"type": "openai", "base_url": base_url, "model": "loopback-vlm",
                                          "backoff_initial_s": 0.01, "backoff_max_s": 0.05}, **extra}


def _summary(out: Path, method: str) -> dict[str, Any]:
    return json.loads((out / f"_{method}_summary.json").read_text())


def _columns(out: Path, method: str) -> dict[str, np.ndarray]:
    from rayrg.data.access import Dataset

    table = Dataset.open(out).read(columns=["episode_id", "step", f"progress_{method}", f"reward_{method}"])
    return {c: np.asarray(table.column(c).to_pylist()) for c in table.column_names}


@pytest.mark.integration
def test_gvl_on_loopback_server_resume_and_changed_seed(trajectories: Path, tmp_path: Path, ray_local) -> None:
    from rayrg.data.access import Dataset
    from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer

    with LoopbackServer(Faults(invalid_progress_rate=0.4, seed=1)) as server:
        raw = _openai(server.base_url, "gvl", frames=6, max_chunk_frames=10, chunk_overlap=3, gamma=0.9,
                      max_parse_attempts=1, cache_dir=str(tmp_path / "cache"))
        method, config = load_label_config(raw)
        out = tmp_path / "gvl"
        run_label(method, config, trajectories, out)
        first = _summary(out, "gvl")
        assert first["failed"] > 0 and first["failure_reasons"] == {"invalid answer": first["failed"]}
        assert first["chunk_disagreement"]["episodes"] >= 1  # episodes were chunked and stitched
        assert first["backend_calls"] == first["windows"] == server.stats.requests

        # a re-run asks only the failed chunks again
        server.faults.invalid_progress_rate = 0.0
        before = server.stats.requests
        run_label(method, config, trajectories, out)
        second = _summary(out, "gvl")
        assert second["failed"] == 0 and second["backend_calls"] == first["failed"]
        assert server.stats.requests - before == first["failed"]

        cols = _columns(out, "gvl")
        phi, reward = cols["progress_gvl"], cols["reward_gvl"]
        assert np.all((phi >= 0) & (phi <= 1)) and not np.isnan(reward).any()
        starts = np.flatnonzero(np.r_[True, cols["episode_id"][1:] != cols["episode_id"][:-1]])
        assert np.all(phi[starts] == 0.0)  # the first frame is the 0 % reference
        prov = Dataset.open(out).provenance["reward_gvl"]
        assert prov["shaping_gamma"] == 0.9 and prov["shuffle_seed"] == 0

        # finished: a third run is skipped, 0 model calls
        before = server.stats.requests
        run_label(method, config, trajectories, out)
        assert server.stats.requests == before
        # same cache, new output: every answer from the cache, 0 model calls
        run_label(method, config, trajectories, tmp_path / "gvl_again")
        assert server.stats.requests == before and _summary(tmp_path / "gvl_again", "gvl")["backend_calls"] == 0

        # a changed seed, K or prompt: refused by default; redone on request with new answers
        for change in ({"seed": 1}, {"frames": 5}):
            _, changed = load_label_config({**raw, **change})
            with pytest.raises(ConfigError):
                run_label(method, changed, trajectories, out)
        _, reseeded = load_label_config({**raw, "seed": 1})
        run_label(method, reseeded, trajectories, out, on_change="redo")
        assert _summary(out, "gvl")["backend_calls"] == _summary(out, "gvl")["windows"] > 0


@pytest.mark.integration
def test_topreward_on_loopback_server_with_logprobs(trajectories: Path, tmp_path: Path, ray_local) -> None:
    from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer

    with LoopbackServer(Faults(drop_affirmative_rate=0.3, seed=2)) as server:
        raw = _openai(server.base_url, "topreward", frames=5, gamma=0.95)
        method, config = load_label_config(raw)
        out = tmp_path / "top"
        run_label(method, config, trajectories, out)
        summary = _summary(out, "topreward")
        assert summary["failed"] == 0 and summary["windows"] == summary["backend_calls"] > 0
        assert 0 < summary["bounded_frames"] < summary["windows"]
        assert sum(server.stats.logprob_answers.values()) == summary["windows"]
        cols = _columns(out, "topreward")
        assert np.all((cols["progress_topreward"] > 0) & (cols["progress_topreward"] < 1))

        before = server.stats.requests
        run_label(method, config, trajectories, out)
        assert server.stats.requests == before  # re-run: 0 model calls
        _, changed = load_label_config({**raw, "prompt_version": "v1", "top_logprobs": 5})
        with pytest.raises(ConfigError):
            run_label(method, changed, trajectories, out)

        # a server that returns no log-probabilities: each query fails with its reason
        server.faults.logprobs = False
        _, other = load_label_config({**raw, "frames": 3})
        run_label(method, other, trajectories, tmp_path / "nolp")
        assert _summary(tmp_path / "nolp", "topreward")["failure_reasons"] == {
            "the server returned no log-probabilities": _summary(tmp_path / "nolp", "topreward")["windows"]}


def test_topreward_refuses_a_backend_without_logprobs_before_any_call(tmp_path: Path) -> None:
    from rayrg.rewards.progress.pipeline import preflight
    from rayrg.rewards.rgvlm.backends import backend_class

    _, config = load_label_config({"method": "topreward", "backend": {"type": "openai", "base_url": "http://x/v1",
                                                                      "model": "m"}})
    cls = backend_class("openai")
    original = cls.logprobs_unavailable
    try:
        cls.logprobs_unavailable = classmethod(lambda c, cfg: "backend 'openai' returns no log-probabilities")
        with pytest.raises(ConfigError) as err:
            preflight("topreward", config, local=True)
        assert "log-probabilities" in str(err.value) and "\n" not in str(err.value)
    finally:
        cls.logprobs_unavailable = original


@pytest.fixture(scope="module")
def tiny_qwen2vl(tmp_path_factory) -> Path:
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen2vl")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("method", ["gvl", "topreward"])
def test_progress_methods_on_tiny_qwen2vl(method: str, tiny_qwen2vl: Path, trajectories: Path, tmp_path: Path,
                                          ray_local) -> None:
    from rayrg.data.access import Dataset

    raw = {"method": method, "frames": 4, "max_image_side": 56, "max_episodes": 1, "cache_dir": str(tmp_path / "c"),
           "backend": {"type": "transformers", "model": str(tiny_qwen2vl), "num_cpus": 0.5, "batch_size": 4}}
    labeller, config = load_label_config(raw)
    out = tmp_path / method
    run_label(labeller, config, trajectories, out)
    summary = _summary(out, method)
    # xgrammar holds the random model to the schema (GVL); logits give TOPReward its probabilities
    assert summary["failed"] == 0 and summary["backend_calls"] == summary["windows"] > 0
    cols = _columns(out, method)
    labelled = ~np.isnan(cols[f"progress_{method}"])
    assert labelled.any() and np.all((cols[f"progress_{method}"][labelled] >= 0)
                                      & (cols[f"progress_{method}"][labelled] <= 1))
    assert Dataset.open(out).provenance[f"reward_{method}"]["tiny_random_weights"] is True  # pipeline check
    run_label(labeller, config, trajectories, tmp_path / "again")  # same answer cache: 0 model calls
    assert _summary(tmp_path / "again", method)["backend_calls"] == 0


def test_declarations_reach_the_generic_loops(make_toy_dataset, monkeypatch) -> None:
    """GVL and TOPReward declare their columns (with kinds), cost, estimate and plan line; a
    backend without log-probabilities is a need preflight reports in one line for TOPReward
    only, before any call."""
    from rayrg.rewards.declarations import need_problems
    from rayrg.rewards.registry import get_method
    from rayrg.rewards.rgvlm.backends import backend_class

    dataset = make_toy_dataset(num_episodes=3, steps=(5, 9, 4), frame_size=16)
    backend = {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m",
               "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0}
    for name in ("gvl", "topreward"):
        method = get_method(name)
        config = method.config_cls.from_dict({"method": name, "backend": backend, "frames": 4})
        assert [(c.name, c.kind) for c in method.outputs_of(config)] == [
            (f"progress_{name}", "progress"), (f"reward_{name}", "reward")]
        assert method.costs_money(config) and name in method.describe(config)
        estimate = method.estimate_of(config, dataset)
        assert estimate.requests >= 3 and estimate.cost_usd > 0
        assert not [p for p in need_problems(method.needs_of(config), "labels[0].", local=False)]
    monkeypatch.setattr(backend_class("openai"), "logprobs_unavailable",
                        classmethod(lambda cls, config: "this server returns no log-probabilities"))
    for name, refused in (("gvl", False), ("topreward", True)):
        method = get_method(name)
        config = method.config_cls.from_dict({"method": name, "backend": backend})
        problems = need_problems(method.needs_of(config), "labels[0].", local=False)
        assert bool(problems) == refused
        if refused:
            assert problems == ["labels[0].backend.type: this server returns no log-probabilities (topreward "
                                "reads progress from log-probabilities: use transformers, vllm, openai (a server "
                                "that returns logprobs) or gemini)"]
