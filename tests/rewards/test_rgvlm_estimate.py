"""``rayrg estimate``: image-token rules, the request model, and the estimate against what a
real labelling run against the loopback chat-completions server records."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrg.rewards.rgvlm.backends import _qwen2vl
from rayrg.rewards.rgvlm.backends.base import png_size
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.estimate import (
    confirm,
    estimate,
    estimate_cli,
    expected_turn2_requests,
    window_texts,
)
from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE, cap_image, capped_size, label_rgvlm
from rayrg.windows.grid import compose_grid

# The estimate counts text per piece (characters / 4 each) while the server counts per
# request; the gap is a few tokens of rounding per request, far under this.
INPUT_TOLERANCE = 0.02


def _config(base_url: str = "http://127.0.0.1:1/v1", **extra) -> RGVLMConfig:
    backend = {"type": "openai", "base_url": base_url, "model": "loopback-vlm", "backoff_initial_s": 0.01,
               "max_in_flight": 4, "price_input_per_mtok": 1.0, "price_output_per_mtok": 4.0,
               **extra.pop("backend", {})}
    return RGVLMConfig.from_dict({"method": "rgvlm", "backend": backend, **extra})


def test_smart_resize_matches_transformers() -> None:
    qwen = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    for h, w in [(300, 542), (28, 28), (20, 3000), (1080, 1920), (4000, 3000), (57, 85)]:
        for low, high in [(_qwen2vl.MIN_PIXELS, _qwen2vl.MAX_PIXELS), (28 * 28 * 4, 28 * 28 * 16)]:
            assert _qwen2vl.smart_resize(h, w, 28, low, high) == qwen.smart_resize(h, w, 28, low, high), (h, w)


def test_image_token_rules_per_backend() -> None:
    # Qwen2-VL: (H/28)·(W/28) after resizing; capped by max_pixels
    assert _qwen2vl.image_tokens(280, 560) == 10 * 20
    vllm = RGVLMConfig.from_dict({"method": "rgvlm", "backend": {"type": "vllm", "model": "m",
                                                                 "max_pixels": 28 * 28 * 16}}).backend
    assert vllm.image_tokens(2800, 2800) == 16
    gemini = RGVLMConfig.from_dict({"method": "rgvlm", "backend": {"type": "gemini", "model": "gemini-2.5-flash"}})
    assert gemini.backend.image_tokens(384, 300) == 258  # one image, no tiling
    assert gemini.backend.image_tokens(800, 400) == 258 * 2  # 2×1 tiles of 768
    g3 = {"type": "gemini", "model": "gemini-3-flash"}
    assert RGVLMConfig.from_dict({"method": "rgvlm", "backend": g3}).backend.image_tokens(100, 100) == 1120
    low = RGVLMConfig.from_dict({"method": "rgvlm", "backend": {**g3, "media_resolution": "low"}})
    assert low.backend.image_tokens(3000, 3000) == 280


def test_expected_turn2_requests() -> None:
    assert expected_turn2_requests(0.0, 3) == 1.0
    assert expected_turn2_requests(0.5, 3) == pytest.approx(1.75)
    assert expected_turn2_requests(1.0, 3) == 3.0  # every answer malformed: all attempts used


def test_grid_and_cap_sizes_are_computed_without_drawing(make_toy_dataset) -> None:
    """The estimate's image size equals the grid the windows stage draws, capped like the labeller."""
    from rayrg.windows.build import WindowConfig

    source = make_toy_dataset(num_episodes=2, steps=(5, 3), frame_size=20)
    config = _config(windows={"window_size": 4, "columns": 3, "frame_scale": 3}, max_image_side=100)
    windows, size = window_texts(config, source)
    assert [(w.start_step, w.num_steps) for w in windows] == [(0, 4), (4, 1), (0, 3)]
    w = WindowConfig(window_size=4, columns=3, frame_scale=3)
    grid = compose_grid([np.zeros((20, 20, 3), np.uint8)] * 3, [0, 1, 2], 4, w.columns, w.frame_scale,
                        w.label_height)
    from rayrg.data.schema import encode_png

    png = encode_png(grid)
    assert capped_size(grid.shape[1], grid.shape[0], None) == png_size(png)
    assert size == png_size(cap_image(png, 100))


@pytest.mark.integration
def test_estimate_matches_a_loopback_run(make_toy_dataset, tmp_path: Path, ray_local) -> None:
    """Windows exact, requests == backend calls, input tokens within 2 % of the server's usage."""
    source = make_toy_dataset(num_episodes=3, steps=(5, 9, 12), frame_size=24)
    with LoopbackServer(Faults(latency_s=0.02)) as server:
        config = _config(server.base_url, windows={"window_size": 4})
        before = estimate(config, source, latency_s=0.02)
        measured = estimate_cli(config, source, measure_windows=3)
        calls_measuring = server.stats.requests
        label_rgvlm(config, source, tmp_path / "out")
        run_calls = server.stats.requests - calls_measuring
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["failed"] == 0
    for est in (before, measured):
        assert est.windows == summary["windows"] == 2 + 3 + 3
        assert est.requests == summary["backend_calls"] == run_calls == 2 * est.windows
    m = measured.measured
    assert m is not None and m.windows == 3 and m.backend_calls == calls_measuring == 6
    # the measured answer lengths make input (turn 2 carries turn 1's answer) and output close
    assert measured.input_tokens == pytest.approx(summary["input_tokens"], rel=INPUT_TOLERANCE)
    assert measured.output_tokens == pytest.approx(summary["output_tokens"], rel=0.1)
    assert measured.cost_usd == pytest.approx(summary["cost_usd"], rel=INPUT_TOLERANCE)
    assert m.estimated_input_tokens == pytest.approx(m.input_tokens, rel=INPUT_TOLERANCE)
    # without a measurement the output budgets bound output (and turn-2 input) from above
    assert before.output_tokens >= summary["output_tokens"] and before.input_tokens > summary["input_tokens"]
    # the image is in every request: Qwen2-VL's rule on the grid as sent
    assert before.image_tokens == _qwen2vl.image_tokens(*before.image_size) > 0
    assert before.turn1_input_tokens > before.image_tokens
    # wall time: 2 requests × latency per window, 4 windows in flight
    assert before.wall_floors["concurrency"] == pytest.approx(8 * 2 * 0.02 / 4)
    assert measured.wall_s is not None and measured.wall_s > 0


def test_rate_limits_bound_the_wall_time(make_toy_dataset) -> None:
    source = make_toy_dataset(num_episodes=2, steps=(8, 8), frame_size=16)
    config = _config(backend={"requests_per_minute": 2, "tokens_per_minute": 1e9, "max_in_flight": 64},
                     windows={"window_size": 4})
    est = estimate(config, source, latency_s=1.0)
    assert est.requests == 8
    assert est.wall_s == est.wall_floors["requests_per_minute"] == pytest.approx(8 / 2 * 60)
    unknown = estimate(config, source)
    assert unknown.wall_s is None and "unknown" in "\n".join(unknown.lines())


def test_confirmation_asks_on_a_terminal_and_proceeds_elsewhere(make_toy_dataset) -> None:
    source = make_toy_dataset(num_episodes=1, steps=(4,), frame_size=16)
    config = _config()
    out = io.StringIO()
    assert confirm(config, source, io.StringIO(""), out)  # not a terminal: proceed, estimate printed
    assert "cost: $" in out.getvalue() and "not a terminal" in out.getvalue()
    for answer, expected in (("n\n", False), ("y\n", True)):
        master, slave = os.openpty()  # a real terminal
        try:
            os.write(master, answer.encode())
            with open(slave, closefd=False) as tty:
                out = io.StringIO()
                assert confirm(config, source, tty, out) is expected
                assert "[y/N]" in out.getvalue()
        finally:
            os.close(master)
            os.close(slave)


def test_cli_prints_the_estimate(make_toy_dataset, tmp_path: Path, capsys) -> None:
    from rayrg.cli import main

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    path = tmp_path / "label.yaml"
    path.write_text(yaml.safe_dump({"method": "rgvlm", "backend": {
        "type": "gemini", "model": "gemini-2.5-flash", "price_input_per_mtok": 0.3, "price_output_per_mtok": 2.5,
        "requests_per_minute": 1000}}))
    assert main(["estimate", "--config", str(path), "--dataset", str(source), "--latency-s", "2"]) == 0
    text = capsys.readouterr().out
    assert "windows: 3" in text and "requests: 6" in text and "258 tokens" in text
    assert "approximate: characters / 4" in text and "wall time:" in text
    assert main(["estimate", "--config", str(path), "--dataset", str(source), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["windows"] == 3 and data["cost_usd"] > 0


def test_run_plan_shows_the_estimate_for_an_existing_dataset(make_toy_dataset, tmp_path: Path) -> None:
    from rayrg.experiments.config import ExperimentConfig
    from rayrg.experiments.preflight import plan

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    tasks = tmp_path / "eval_tasks.json"
    tasks.write_text("[]")
    config = ExperimentConfig.from_dict({
        "out": str(tmp_path / "out"), "methods": {"sparse": {"reward_column": "reward_sparse"}},
        "data": {"source": "path", "trajectories": str(source), "eval_tasks": str(tasks)},
        "labels": [{"method": "rgvlm", "backend": {"type": "gemini", "model": "gemini-2.5-flash",
                                                   "price_input_per_mtok": 0.3, "price_output_per_mtok": 2.5}}]})
    text = plan(config)
    assert "(2 model calls per window" in text and "windows: 3" in text and "requests: 6" in text
    assert "cost: $" in text


def test_a_windows_dir_is_counted_as_made(tmp_path: Path) -> None:
    """With ``windows_dir`` the windows are read as they are (partial ones included), and the
    image size comes from a stored grid."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rayrg.rewards.rgvlm.estimate import _first_windows
    from rayrg.windows.schema import WINDOW_SCHEMA
    from tests.rewards._rgvlm_helpers import window_row

    rows = [window_row(0), window_row(1, num_steps=3, start_step=8), window_row(2)]
    (tmp_path / "w").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA), tmp_path / "w" / "part-0.parquet")
    config = _config(windows_dir=str(tmp_path / "w"), max_windows=2)
    windows, size = window_texts(config, tmp_path / "unused")
    assert [(w.start_step, w.num_steps) for w in windows] == [(0, 8), (8, 3)]
    assert size == png_size(rows[0]["image"])
    assert _first_windows(config, tmp_path / "unused", 2).column("window_id").to_pylist() == ["ep0:0", "ep1:8"]


def test_estimate_matches_transformers_own_token_count(make_toy_dataset, tmp_path: Path) -> None:
    """Independent of the estimator's rules: transformers' Qwen2-VL processor and the
    checkpoint's chat template count the input_ids of the same two requests (system, image +
    analysis prompt; then turn 1, its answer and the scores prompt) for the tiny checkpoint."""
    pytest.importorskip("torchvision")  # the Qwen2-VL processor needs it
    from transformers import AutoProcessor

    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
    from rayrg.rewards.rgvlm.backends.hf import to_hf_messages
    from rayrg.rewards.rgvlm.estimate import Measured, _first_windows
    from rayrg.rewards.rgvlm.prompts import render
    from rayrg.rewards.rgvlm.settings import local_text_counter

    model = build_tiny_qwen2vl(tmp_path / "tiny-qwen2vl")
    source = make_toy_dataset(num_episodes=1, steps=(9,), frame_size=24)
    config = RGVLMConfig.from_dict({"method": "rgvlm", "windows": {"window_size": 4}, "max_windows": 1,
                                    "backend": {"type": "transformers", "model": str(model)}})
    row = _first_windows(config, source, 1).to_pylist()[0]  # the window the run would send first
    system, analysis, scores = render(config.prompt_version, row["instruction"], row["actions_text"],
                                      row["start_step"], row["num_steps"])
    image = cap_image(row["image"], config.max_image_side)
    answer = "The agent turns left, moves forward twice, then picks up the blue key: step 3 helps most."
    turn1 = [{"role": "system", "text": system}, {"role": "user", "text": analysis, "image": image}]
    turn2 = [*turn1, {"role": "assistant", "text": answer}, {"role": "user", "text": scores}]
    processor = AutoProcessor.from_pretrained(str(model))
    true1, true2 = (len(processor.apply_chat_template(to_hf_messages(m), add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"][0]) for m in (turn1, turn2))
    count, _ = local_text_counter(str(model))
    # turn 2 carries turn 1's answer: its length as if measured (the answer as the model wrote it)
    measured = Measured(windows=1, failed=0, mean_window_latency_s=1.0, invalid_answer_rate=0.0,
                        turn1_output_tokens=float(count(answer)), turn2_output_tokens=10.0, backend_calls=2,
                        input_tokens=0, estimated_input_tokens=0, wall_s=1.0)
    est = estimate(config, source, measured=measured)
    assert est.windows == 1 and est.image_tokens > 1
    assert est.turn1_input_tokens == pytest.approx(true1, rel=INPUT_TOLERANCE), (est.turn1_input_tokens, true1)
    assert est.turn2_input_tokens == pytest.approx(true2, rel=INPUT_TOLERANCE), (est.turn2_input_tokens, true2)
