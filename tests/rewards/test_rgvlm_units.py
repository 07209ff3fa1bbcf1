"""RG-VLM without models: parser, prompts, config, cache, rate limiter, lazy imports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.rgvlm.backends.base import RateLimiter
from rayrg.rewards.rgvlm.cache import AnswerCache, cache_key
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.parse import ParseError, parse_scores
from rayrg.rewards.rgvlm.prompts import PROMPTS, render, scores_schema


@pytest.mark.parametrize("text", [
    '{"scores": [0, 1, 2, 10]}',
    '```json\n{"scores": [0, 1, 2, 10]}\n```',
    'Here you go: {"scores": [0, 1, 2, 10]} -- done',
    "[0, 1, 2, 10]",
    '{"scores": [0.0, 1, 2, 10.0]}',
])
def test_parser_accepts_exactly_n_scores(text: str) -> None:
    assert parse_scores(text, 4) == [0, 1, 2, 10]


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty answer"),
    ("all good", "no JSON"),
    ('{"scores": [1, 2, 3]}', "expected 4 scores, got 3"),
    ('{"scores": [1, 2, 3, 4, 5]}', "expected 4 scores, got 5"),
    ('{"scores": [1, 2, 3, 11]}', "outside 0..10"),
    ('{"scores": [1, 2, 3, -1]}', "outside 0..10"),
    ('{"scores": [1, 2, 3, 4.5]}', "not an integer"),
    ('{"scores": [1, 2, 3, "4"]}', "not an integer"),
    ('{"scores": [1, 2, 3, true]}', "not an integer"),
    ('{"scores": [1, 2, 3, NaN]}', "not an integer"),
    ('{"score": [1, 2, 3, 4]}', "without 'scores'"),
    ('{"scores": 7}', "not a list"),
    ('{"scores": [1, 2', "no JSON"),
])
def test_parser_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_scores(text, 4)


def test_prompts_are_versioned_and_ask_for_num_steps() -> None:
    system, analysis, scores = render("v1", "open the door", "t=8: left\nt=9: toggle", 8, 2)
    assert "open the door" in analysis and "t=9: toggle" in analysis and "t=8 to t=9" in analysis
    assert "exactly 2 integers" in scores and system
    schema = scores_schema(3)["properties"]["scores"]
    assert schema["minItems"] == schema["maxItems"] == 3
    assert schema["items"] == {"type": "integer", "minimum": 0, "maximum": 10}
    assert PROMPTS["v1"].version == "v1"


def test_config_picks_backend_by_type_and_rejects_keys_in_place_of_names() -> None:
    method, config = load_label_config({"method": "rgvlm", "backend": {
        "type": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key_env": "MY_KEY"}})
    assert method.name == "rgvlm" and config.backend.type == "openai"
    assert config.fusion == {"rgvlm_sparse": {"rgvlm": 1.0, "sparse": 1.0}}
    gemini = RGVLMConfig.from_dict({"backend": {"type": "gemini"}})
    assert gemini.backend.api_key_env == "GEMINI_API_KEY"
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        RGVLMConfig.from_dict({"backend": {"type": "gemini", "api_key_env": "sk-abc123-def"}})
    with pytest.raises(ConfigError, match="upper-case"):
        RGVLMConfig.from_dict({"backend": {"type": "gemini", "api_key_env": "AIzaSyAbCdEfGhIjKl0123"}})
    with pytest.raises(ConfigError, match="type"):
        RGVLMConfig.from_dict({"backend": {"type": "claude", "model": "x"}})
    with pytest.raises(ConfigError, match="weights over"):
        RGVLMConfig.from_dict({"backend": {"type": "gemini"}, "fusion": {"x": {"clip": 1.0}}})
    with pytest.raises(ConfigError, match="unknown prompt_version"):
        RGVLMConfig.from_dict({"backend": {"type": "gemini"}, "prompt_version": "v0"})


# What enters the cache key: tests/rewards/test_cache_key.py


def test_cache_is_atomic_under_concurrent_writers(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path)
    keys = [cache_key(bytes([i]), ("v1",), {"model": "m"}) for i in range(20)]
    errors = []

    def writer(seed: int) -> None:
        try:
            for k in keys:
                cache.put(k, {"scores": [seed] * 50, "k": k})
                got = cache.get(k)
                assert got is not None and got["k"] == k and len(set(got["scores"])) == 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) == 20
    assert not list(tmp_path.glob("**/*.tmp"))


def _write_entries(directory: str, seed: int) -> int:
    cache = AnswerCache(directory)
    for i in range(30):
        cache.put(cache_key(bytes([i]), ("v1",), {"model": "m"}), {"scores": [seed] * 200, "i": i})
    cache.flush()
    return seed


def test_cache_is_atomic_across_processes(tmp_path: Path) -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:  # fork is unsafe beside Ray threads
        assert sorted(pool.starmap(_write_entries, [(str(tmp_path), s) for s in range(4)])) == [0, 1, 2, 3]
    cache = AnswerCache(tmp_path)
    assert len(cache) == 30 and not list(tmp_path.glob("**/*.tmp"))
    for i in range(30):
        entry = cache.get(cache_key(bytes([i]), ("v1",), {"model": "m"}))
        assert entry["i"] == i and len(set(entry["scores"])) == 1  # one writer's whole entry, never a mix


def test_cache_stores_many_entries_per_file_and_serves_them_after_reopening(tmp_path: Path) -> None:
    # 50k answers must not be 50k files (one fsync and, on object storage, one request each)
    cache = AnswerCache(tmp_path, flush_entries=400)
    keys = [cache_key(bytes([i % 256, i // 256]), ("v1",), {"model": "m"}) for i in range(1000)]
    for i, k in enumerate(keys):
        cache.put(k, {"scores": [i % 11] * 8, "i": i})
    cache.flush()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3  # 400 + 400 + 200
    fresh = AnswerCache(tmp_path)  # another worker / a re-run
    hits = fresh.get_many([*keys, "0" * 64])
    assert len(hits) == 1000 and all(hits[k]["i"] == i for i, k in enumerate(keys))
    assert len(fresh) == 1000


def test_cache_writes_buffered_answers_without_a_flush_call(tmp_path: Path) -> None:
    # a batch that never ends (hung requests, then a kill) must still leave its answers stored
    cache = AnswerCache(tmp_path, flush_interval_s=0.2)
    key = cache_key(b"x", ("v1",), {"model": "m"})
    cache.put(key, {"scores": [1]})
    deadline = time.monotonic() + 10
    while AnswerCache(tmp_path).get(key) is None:
        assert time.monotonic() < deadline, "buffered answer never written"
        time.sleep(0.05)
    cache.close()


def test_cache_skips_an_unreadable_segment_and_accepts_a_uri(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path.as_uri())  # file:///...: the pyarrow.fs path object stores take
    good, bad = cache_key(b"a", ("v1",), {}), cache_key(b"b", ("v1",), {})
    cache.put(good, {"scores": [1]})
    cache.flush()
    (next(tmp_path.rglob("*.parquet")).parent / "0-0-broken.parquet").write_bytes(b"not parquet")
    fresh = AnswerCache(tmp_path)
    assert fresh.get(good) == {"scores": [1]} and fresh.get(bad) is None


def test_rate_limiter_holds_requests_per_minute() -> None:
    async def run() -> list[float]:
        limiter = RateLimiter(requests_per_minute=3, tokens_per_minute=None)
        limiter.WINDOW_S = 0.5  # a "minute" of 0.5 s keeps the test short
        stamps = []
        for _ in range(7):
            await limiter.acquire(1)
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(run())
    # no 0.5 s window holds more than 3 requests
    for i in range(len(stamps) - 3):
        assert stamps[i + 3] - stamps[i] >= 0.5 - 1e-3
    assert stamps[-1] - stamps[0] < 2.5


def test_rate_limiter_holds_tokens_per_minute() -> None:
    async def run() -> float:
        limiter = RateLimiter(requests_per_minute=None, tokens_per_minute=100)
        limiter.WINDOW_S = 0.3
        start = time.monotonic()
        for _ in range(3):
            await limiter.acquire(60)  # 60 + 60 > 100: each waits for the previous to age out
        return time.monotonic() - start

    assert 0.55 <= asyncio.run(run()) < 1.5


def test_importing_the_labeller_loads_no_sdk() -> None:
    code = ("import sys, rayrg.rewards.rgvlm, rayrg.rewards.rgvlm.pipeline, rayrg.rewards.cli, "
            "rayrg.rewards.report; "
            "heavy = [m for m in ('google.genai', 'vllm', 'transformers', 'torch', 'xgrammar', 'aiohttp') "
            "if m in sys.modules]; print(json.dumps(heavy))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_backend_modules_own_their_configs_and_load_no_sdk() -> None:
    """Each backend module holds its config, Ray plan and class; importing every one of them
    (which validating any RGVLMConfig does) still loads no SDK, and none imports another."""
    code = ("import sys, json; from rayrg.rewards.rgvlm import backends; "
            "from rayrg.rewards.rgvlm.config import RGVLMConfig; "
            "classes = {n: backends.backend_class(n) for n in backends.backend_names()}; "
            "heavy = [m for m in ('google.genai', 'vllm', 'transformers', 'torch', 'xgrammar', 'aiohttp') "
            "if m in sys.modules]; "
            "print(json.dumps([heavy, {n: [c.__module__, c.config_class.__module__, c.asynchronous] "
            "for n, c in classes.items()}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    heavy, classes = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == []
    assert set(classes) >= {"openai", "gemini", "transformers", "vllm"}
    for module, config_module, _ in classes.values():
        assert module == config_module  # the config lives with its backend
    assert {n: c[2] for n, c in classes.items()} == {"openai": True, "gemini": True, "transformers": False,
                                                     "vllm": False}
    backends_dir = Path(__file__).resolve().parents[2] / "rayrg/rewards/rgvlm/backends"
    for name in ("openai_http", "gemini", "hf", "vllm"):
        text = (backends_dir / f"{name}.py").read_text()
        others = [o for o in ("openai_http", "gemini", "hf", "vllm") if o != name]
        assert not any(f"backends.{o} import" in text for o in others), name


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("jobs/label_*.yaml")),
                         ids=lambda p: p.name)
def test_job_label_configs_validate(path: Path) -> None:
    import yaml

    method, config = load_label_config(yaml.safe_load(path.read_text()), source=str(path))
    assert method.name == config.method


def test_missing_api_key_is_a_config_error_before_any_work(tmp_path: Path, monkeypatch) -> None:
    from rayrg.rewards.rgvlm.pipeline import label_rgvlm

    monkeypatch.delenv("RAYRG_TEST_ABSENT_KEY", raising=False)
    config = RGVLMConfig.from_dict({"backend": {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                "model": "m", "api_key_env": "RAYRG_TEST_ABSENT_KEY"}})
    with pytest.raises(ConfigError, match="RAYRG_TEST_ABSENT_KEY is not set"):
        label_rgvlm(config, tmp_path / "data", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_label_cli_runs_any_registered_method(make_toy_dataset, tmp_path: Path, capsys) -> None:
    from rayrg.cli import main
    from rayrg.data.access import read_trajectories

    source = make_toy_dataset()
    (tmp_path / "sparse.yaml").write_text("method: sparse\n")
    assert main(["label", "--config", str(tmp_path / "sparse.yaml"), "--dataset", str(source),
                 "--out", str(tmp_path / "out")]) == 0
    assert "reward_sparse" in read_trajectories(tmp_path / "out").column_names
    (tmp_path / "bad.yaml").write_text("method: gpt\n")
    assert main(["label", "--config", str(tmp_path / "bad.yaml"), "--dataset", str(source),
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown label method 'gpt'" in capsys.readouterr().err
