"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from rayrg.data.access import read_trajectories
from rayrg.data.schema import DatasetMetadata
from rayrg.rewards.rgvlm.backends import build_backend
from rayrg.rewards.rgvlm.cache import AnswerCache
from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE, build_query
from tests.rewards._rgvlm_helpers import openai_config, window_row

SECRET = "sk-test-Zq81dfKx0PLmnb"  # a fake key the tests search for in every output
KEY_ENV = "RAYRG_TEST_OPENAI_KEY"
# Set at collection time, before the session's Ray cluster starts: local Ray workers read
# the key from the environment they inherit (keys never travel in configs or task args).
os.environ[KEY_ENV] = SECRET


def _label(server: LoopbackServer, rows, **backend):
    config = openai_config(server.base_url, **backend)
    backend_ = build_backend(config)
    try:
        return backend_.label_batch([build_query(r, config) for r in rows])
    finally:
        backend_.close()


def test_two_turns_structured_output_and_key_header() -> None:
    rows = [window_row(0), window_row(1, num_steps=3, start_step=8)]
    with LoopbackServer() as server:
        answers = _label(server, rows, api_key_env=KEY_ENV)
        assert server.stats.auth_headers == {f"Bearer {SECRET}"}
        assert server.stats.requests == 4  # two turns per window
    assert [len(a.scores) for a in answers] == [8, 3]
    for a in answers:
        assert a.error is None and a.attempts == 1 and a.backend_calls == 2
        assert a.analysis_text.startswith("t=0") and json.loads(a.scores_text)["scores"] == a.scores
        assert a.input_tokens > 0 and a.output_tokens > 0


def test_loopback_counts_requests_in_flight() -> None:
    """bench_label_scale reads the server's mean concurrency from this integral: 8 windows at
    once, 2 requests each held >= 0.2 s, is >= 3.2 request-seconds, at most 8 in flight over
    the span, and nothing stays counted."""
    with LoopbackServer(Faults(latency_s=0.2)) as server:
        before, start = server.stats.occupancy(), time.monotonic()
        answers = _label(server, [window_row(i) for i in range(8)], max_in_flight=8)
        area, span = server.stats.occupancy() - before, time.monotonic() - start
    assert all(a.scores is not None for a in answers)
    assert server.stats.in_flight == 0
    assert 8 * 2 * 0.2 <= area <= 8 * span


def test_faults_end_labelled_or_failed_with_reason() -> None:
    """20 % injected 429/500 and 5 % malformed answers: nothing crashes, every window ends somewhere."""
    rows = [window_row(i) for i in range(60)]
    with LoopbackServer(Faults(error_rate=0.2, malformed_rate=0.05, seed=3)) as server:
        answers = _label(server, rows, max_retries=3, max_in_flight=16)
        assert server.stats.by_status[429] > 0 and server.stats.by_status[500] > 0
        assert server.stats.malformed > 0
    assert len(answers) == 60
    for a in answers:
        assert (a.scores is not None and len(a.scores) == 8) ^ (a.error is not None)
    assert sum(a.transport_retries for a in answers) > 0
    assert sum(a.invalid_answers for a in answers) == server.stats.malformed
    assert sum(a.scores is not None for a in answers) >= 50


def test_retries_run_out_into_a_failed_window_with_reason() -> None:
    with LoopbackServer(Faults(error_rate=1.0, retry_after_s=None)) as server:
        (answer,) = _label(server, [window_row(0)], max_retries=2)
        assert server.stats.requests == 3
    assert answer.scores is None and "gave up after 3 tries" in answer.error
    assert answer.error.startswith("HTTP 429") or answer.error.startswith("HTTP 500")


def test_malformed_answers_are_retried_then_fail_with_parser_reason() -> None:
    with LoopbackServer(Faults(malformed_rate=1.0)) as server:
        (answer,) = _label(server, [window_row(0)])
        assert server.stats.requests == 1 + 3  # turn 1 once, turn 2 max_parse_attempts times
    assert answer.scores is None and answer.attempts == 3 and answer.invalid_answers == 3
    assert answer.error.startswith("invalid answer:")


def test_timeouts_are_retried() -> None:
    # a 1 s client timeout leaves a loaded 2-core machine room for the normal answers
    with LoopbackServer(Faults(timeout_rate=0.3, timeout_delay_s=3.0, seed=1)) as server:
        answers = _label(server, [window_row(i) for i in range(6)], timeout_s=1.0, max_retries=10)
    assert all(a.scores is not None for a in answers)
    assert any("timeout" in e for a in answers for e in a.errors)


def test_client_errors_are_not_retried(monkeypatch) -> None:
    # Nothing listens on this port once the server is gone: a connection error, retried, then failed.
    with LoopbackServer() as server:
        url = server.base_url
    (answer,) = _label(type("S", (), {"base_url": url})(), [window_row(0)], max_retries=1)
    assert answer.scores is None and "connection error" in answer.error


# -- the pipeline on Ray Data --------------------------------------------------------------

def _write_config(path: Path, server: LoopbackServer, num_actors: int = 1, max_in_flight: int = 64,
                  **extra) -> Path:
    config = {"method": "rgvlm", "backend": {"type": "openai", "base_url": server.base_url, "model": "loopback-vlm",
                                             "api_key_env": KEY_ENV, "backoff_initial_s": 0.01,
                                             "num_actors": num_actors, "max_in_flight": max_in_flight,
                                             "price_input_per_mtok": 1.0, "price_output_per_mtok": 4.0}, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.integration
def test_every_request_failing_gives_nan_rewards_with_reasons_and_an_incomplete_run(
        make_toy_dataset, tmp_path: Path, ray_local, capsys) -> None:
    """No retries and a server that answers every request 429/500: each window is failed with
    its reason, every reward is NaN (never a made-up 0), and the run is left incomplete so
    the same command retries exactly those windows."""
    from rayrg.cli import main
    from rayrg.provenance import read_record

    source = make_toy_dataset(num_episodes=2, steps=(5, 9), frame_size=16)
    out = tmp_path / "out"
    with LoopbackServer(Faults(error_rate=1.0, retry_after_s=None)) as server:
        config_path = _write_config(tmp_path / "label.yaml", server)
        raw = yaml.safe_load(config_path.read_text())
        config_path.write_text(yaml.safe_dump({**raw, "backend": {**raw["backend"], "max_retries": 0}}))
        assert main(["label", "--config", str(config_path), "--dataset", str(source), "--out", str(out)]) == 0
        first_calls = server.stats.requests
        assert "windows failed" in capsys.readouterr().out
        assert main(["label", "--config", str(config_path), "--dataset", str(source), "--out", str(out)]) == 0
        second_calls = server.stats.requests - first_calls
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["labelled"] == 0 and summary["failed"] == summary["windows"] == first_calls > 0
    assert second_calls == first_calls  # retried: one request (turn 1) per failed window, again
    labels = pq.read_table(out / "_labels").to_pylist()
    assert {r["status"] for r in labels} == {"failed"}
    assert all(r["error"] and ("429" in r["error"] or "500" in r["error"]) for r in labels), labels[0]["error"]
    table = read_trajectories(out, decode_images=False)
    assert np.isnan(table.column("reward_rgvlm").to_numpy()).all()
    assert np.isnan(table.column("reward_rgvlm_sparse").to_numpy()).all()
    assert read_record(out)["complete"] is False


@pytest.mark.integration
def test_pipeline_labels_joins_caches_and_keeps_the_key_secret(make_toy_dataset, tmp_path: Path, ray_local,
                                                                capfd) -> None:
    source = make_toy_dataset(num_episodes=3, steps=(5, 9, 12), frame_size=16)
    with LoopbackServer(Faults(error_rate=0.2, malformed_rate=0.05, seed=7)) as server:
        config_path = _write_config(tmp_path / "label.yaml", server, num_actors=2, max_in_flight=4,
                                    windows={"window_size": 4, "stride": 2})
        from rayrg.cli import main

        assert main(["label", "--config", str(config_path), "--dataset", str(source),
                     "--out", str(tmp_path / "out")]) == 0
        first_calls = server.stats.requests
        summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
        # second run: nothing labelled is asked again
        assert main(["label", "--config", str(config_path), "--dataset", str(source),
                     "--out", str(tmp_path / "out")]) == 0
        again = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
        calls_for_failed = server.stats.requests - first_calls
    assert summary["windows"] == summary["labelled"] + summary["failed"]
    assert summary["labelled"] > 0 and summary["backend_calls"] == first_calls
    if summary["failed"]:  # an incomplete run: the re-run retries only the failed windows
        assert again["cached"] == summary["labelled"] and again["this_run"]["queried_windows"] == summary["failed"]
    else:  # a complete run of the same inputs is skipped: no call at all
        assert again == summary and calls_for_failed == 0

    labels = pq.read_table(tmp_path / "out" / "_labels")
    for field in ("scores", "turn1_text", "turn2_text", "model", "backend", "prompt_version", "decoding",
                  "latency_s", "input_tokens", "output_tokens", "cost_usd", "attempts", "error"):
        assert field in labels.column_names
    ok = [r for r in labels.to_pylist() if r["status"] == "ok"]
    assert all(r["cost_usd"] > 0 and r["model"] == "loopback-vlm" and r["prompt_version"] == "v1" for r in ok)
    assert all(r["error"] for r in labels.to_pylist() if r["status"] == "failed")

    # stride 2 < window 4: each transition's reward is the mean of its windows' scores / 10
    table = read_trajectories(tmp_path / "out")
    expected: dict[tuple[str, int], list[float]] = {}
    for r in ok:
        for i, s in enumerate(r["scores"]):
            expected.setdefault((r["episode_id"], r["start_step"] + i), []).append(s / 10)
    for ep, step, value in zip(*(table.column(c).to_pylist() for c in ("episode_id", "step", "reward_rgvlm")),
                               strict=True):
        if (ep, step) in expected:
            assert value == pytest.approx(np.mean(expected[(ep, step)]), abs=1e-6)
        else:
            assert np.isnan(value)
    np.testing.assert_allclose(
        table.column("reward_rgvlm_sparse").to_numpy(),
        table.column("reward_rgvlm").to_numpy() + _sparse(table), equal_nan=True)
    prov = DatasetMetadata.read(tmp_path / "out").extra["labels"]["reward_rgvlm"]
    assert prov["model"] == "loopback-vlm" and prov["prompt_version"] == "v1" and prov["decoding"]
    assert prov["backend_config"]["api_key_env"] == KEY_ENV

    # the key is nowhere: outputs, caches, labels, logs, console
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err
    import ray

    log_dir = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    for root in (tmp_path, log_dir):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _sparse(table) -> np.ndarray:
    from rayrg.rewards.base import sparse_rewards

    return sparse_rewards(table.column("episode_id"), table.column("success"))


@pytest.mark.integration
def test_killed_run_resumes_and_labels_each_window_exactly_once(make_toy_dataset, tmp_path: Path, ray_local,
                                                                  capfd) -> None:
    source = make_toy_dataset(num_episodes=6, steps=(9, 12, 7), frame_size=16)
    out = tmp_path / "out"
    with LoopbackServer(Faults(latency_s=0.05, hang_after_windows=5)) as server:
        config_path = _write_config(tmp_path / "label.yaml", server, windows={"window_size": 4})
        cmd = [sys.executable, "-m", "rayrg.cli", "label", "--config", str(config_path), "--dataset", str(source),
               "--out", str(out), "--num-cpus", "2"]
        env = {**os.environ, KEY_ENV: SECRET}
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            # wait until the first windows are answered AND stored; later requests hang
            deadline = time.monotonic() + 120
            cache = out / "_cache"
            while time.monotonic() < deadline:
                stored = len(AnswerCache(cache)) if cache.exists() else 0
                if stored >= 5 and stored == len(server.stats.scores_answers):
                    time.sleep(0.5)
                    if len(AnswerCache(cache)) == len(server.stats.scores_answers):
                        break
                assert proc.poll() is None, "labelling finished or died before it could be killed"
                time.sleep(0.1)
            else:
                pytest.fail("first run never got going")
        finally:
            # The run's process tree: the driver, its Ray head and the Ray workers (which sit
            # in process groups of their own), each killed by id.
            tree = _descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=30)
        first = dict(server.stats.scores_answers)
        server.release()
        assert not (out / SUMMARY_FILE).exists()

        # resume: the same command (in this process's Ray cluster), the same cache
        from rayrg.cli import main

        assert main(cmd[3:-2]) == 0
        summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["failed"] == 0 and summary["cached"] == len(first)
    answered = server.stats.scores_answers
    assert len(answered) == summary["windows"]
    assert set(answered.values()) == {1}, "a window was labelled twice"
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err
